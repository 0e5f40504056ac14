"""``envcap diff A B``: which differences between two environments can change results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcap.cli.options import json_option, verbose_option
from envcap.cli.output import console, emit_json

if TYPE_CHECKING:
    from envcap.explain.rules import Severity

SEVERITY_CHOICES = ("high", "medium", "low")


@click.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@json_option
@verbose_option
@click.option("--markdown", "as_markdown", is_flag=True, help="Print a Markdown section to paste into an issue.")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Exit 1 when a finding at or above this severity exists (a CI gate).")
@click.pass_context
def command(ctx: click.Context, a: Path, b: Path, as_json: bool, as_markdown: bool,
            fail_on: Severity | None) -> None:
    """Compare two environments: snapshot folders, envcap.lock.json files, or pasted reports
    (collect_env, pip freeze, pip list --format=json, pip inspect, conda list --export, nvidia-smi -q)."""
    from envcap.errors import UsageError
    from envcap.explain import diff, render_json, render_markdown, render_text
    from envcap.foreign import load_any

    if as_json and as_markdown:
        raise UsageError("--json and --markdown cannot be combined.", hint="choose one output format")
    report = diff(load_any(a), load_any(b))
    if as_json:
        emit_json("diff", render_json(report))
    elif as_markdown:
        click.echo(render_markdown(report))  # md() already made every value safe
    else:
        render_text(report, console())
    if fail_on and report.at_or_above(fail_on):
        ctx.exit(1)
