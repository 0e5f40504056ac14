"""``envcap bisect A B --outputs GLOB -- CMD``: which differences between A and B change CMD's outputs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from envcap.cli.options import base_image_option, json_option, verbose_option
from envcap.cli.output import console, emit_json, engine_from


class _BisectCommand(click.Command):
    """Everything after ``--`` is the workload's argv, never read as envcap's options (as for replay)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        at = args.index("--") if "--" in args else len(args)
        ctx.meta["envcap.bisect.command"] = tuple(args[at + 1:])
        return super().parse_args(ctx, args[:at])


@click.command("bisect", cls=_BisectCommand)
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--outputs", "outputs", metavar="PATTERN", multiple=True, required=True,
              help="The files (glob, repeatable) whose contents differ between A and B.")
@base_image_option("Build A's and B's images from this base image instead of the locks'.")
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Runs per candidate (default: the endpoints twice, candidates twice only if outputs are unstable).")
@click.option("--no-match", "no_match", is_flag=True,
              help="Do not give each side its original's thread counts and ISA caps (as replay --match plans them).")
@click.option("--no-check-b", "no_check_b", is_flag=True,
              help="Skip building and running B's own image (the check that the intermediate layers reproduce B).")
@click.option("--user", metavar="UID:GID", help="Run as this user (default: yours).")
@json_option
@verbose_option
@click.pass_context
def command(ctx: click.Context, a: Path, b: Path, outputs: tuple[str, ...], base_image: str | None,
            repeat: int | None, no_match: bool, no_check_b: bool, user: str | None, as_json: bool) -> None:
    """Find, by running CMD (after --), which differences between snapshots A and B change its outputs."""
    from envcap.bisect import BisectRequest, bisect, render_text, to_document

    request = BisectRequest(a_dir=a, b_dir=b, command=tuple(ctx.meta.get("envcap.bisect.command") or ()),
                            outputs=outputs, cwd=Path(os.getcwd()), base_image=base_image, repeat=repeat,
                            match=not no_match, user=user, check_b=not no_check_b)
    report = bisect(request, engine=engine_from(ctx), notes=lambda text: click.echo(f"envcap: {text}", err=True))
    if as_json:
        emit_json("bisect-report", {k: v for k, v in to_document(report).items() if k not in ("format", "kind")})
    else:
        console().print(render_text(report), markup=False, highlight=False, end="", soft_wrap=True)
    if report.status in ("failed", "nondeterministic"):
        ctx.exit(1)
