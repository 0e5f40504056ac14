"""``envcap fleet [DIR] --slurm``: which nodes of a cluster compute differently, and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcap.cli.options import json_option, lock_dir_argument, verbose_option
from envcap.cli.output import console, emit_json

if TYPE_CHECKING:
    from envcap.cluster import Cluster
    from envcap.cluster.report import FleetReport
    from envcap.explain.rules import Severity

SEVERITY_CHOICES = ("high", "medium", "low")


@click.command("fleet")
@lock_dir_argument(default=None)
@click.option("--slurm", is_flag=True, help="Run one task per node through Slurm (srun), with your own allocation rules.")
@click.option("--partition", metavar="P", help="Ask the nodes of this partition (default: the default partition).")
@click.option("--nodes", "count", type=click.IntRange(min=1), metavar="N", help="Ask the first N nodes only.")
@click.option("--nodelist", metavar="LIST", help="Ask these nodes (a Slurm node list, such as node[1-4],gpu07).")
@click.option("--python", "python", default="python3", show_default=True, metavar="PY",
              help="The interpreter to probe on each node (a name on the node's PATH, or a path there).")
@click.option("--image", is_flag=False, flag_value="@snapshot", default=None, metavar="[IMG]",
              help="Probe inside a container on each node (docker or podman): the image built from DIR's lock, "
                   "or IMG (write --image=IMG).")
@click.option("--fingerprint", is_flag=True, help="Also run the numeric fingerprint suite on each node.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="S",
              help="Seconds a node may take to be given to the task, and again to answer.")
@click.option("--srun-arg", "srun_args", multiple=True, metavar="ARG",
              help="Pass ARG to every srun (repeatable), e.g. --srun-arg=--gres=gpu:1 --srun-arg=--account=ml.")
@click.option("--parallel", type=click.IntRange(min=1), default=32, show_default=True, metavar="K",
              help="Nodes asked at the same time.")
@json_option
@click.option("--markdown", "as_markdown", is_flag=True, help="Print a Markdown section to paste into an issue.")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Exit 1 when some nodes differ from the reference at or above this severity (a CI gate).")
@verbose_option
@click.pass_context
def command(ctx: click.Context, lock_dir: Path | None, slurm: bool, partition: str | None, count: int | None,
            nodelist: str | None, python: str, image: str | None, fingerprint: bool, timeout: float,
            srun_args: tuple[str, ...], parallel: int, as_json: bool, as_markdown: bool,
            fail_on: Severity | None) -> None:
    """Probe every node of a cluster and group them into environments, each compared with the snapshot DIR
    (without DIR: with the fleet's most common environment) by the rules of `envcap diff`."""
    from envcap.cluster import Selection
    from envcap.cluster.fleet import FleetRequest, FleetUnanswered, survey
    from envcap.errors import UsageError

    if as_json and as_markdown:
        raise UsageError("--json and --markdown cannot be combined.", hint="choose one output format")
    if count is not None and nodelist:
        raise UsageError("--nodes and --nodelist cannot be combined.", hint="give the number or the list of nodes")
    cluster = _cluster(ctx, slurm, srun_args, parallel)
    request = FleetRequest(selection=Selection(partition=partition, count=count, nodelist=nodelist), python=python,
                           lock_dir=lock_dir, image=image, fingerprint=fingerprint, timeout=timeout)
    try:
        report = survey(request, cluster)
    except FleetUnanswered as exc:
        _publish(exc.report, as_json, as_markdown)
        raise
    _publish(report, as_json, as_markdown)
    if fail_on and any(c.report.at_or_above(fail_on) for c in report.classes):
        ctx.exit(1)


def _cluster(ctx: click.Context, slurm: bool, srun_args: tuple[str, ...], parallel: int) -> Cluster:
    """The cluster given by the caller (``obj={"cluster": ...}``, as tests pass a fake) or Slurm's."""
    from envcap.errors import UsageError

    given = ctx.obj.get("cluster") if isinstance(ctx.obj, dict) else None
    if not slurm:
        raise UsageError("no batch system was named, so envcap does not know how to reach the nodes.",
                         hint="add --slurm to run one task per node through Slurm")
    if given is not None:
        return given  # type: ignore[no-any-return]  # a test's fake, which implements the Protocol
    from envcap.cluster.slurm import SlurmCluster

    return SlurmCluster(srun_args=srun_args, parallel=parallel)


def _publish(report: FleetReport, as_json: bool, as_markdown: bool) -> None:
    from envcap.cluster.render import render_markdown, render_text
    from envcap.cluster.report import to_json

    if as_json:
        emit_json("fleet", to_json(report))
    elif as_markdown:
        click.echo(render_markdown(report), nl=False)
    else:
        render_text(report, console())
