"""``envcap fingerprint``: run the seeded numeric kernels in an interpreter and print what each computed."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from envcap.cli.options import json_option, verbose_option
from envcap.cli.output import console, emit_json

if TYPE_CHECKING:
    from envcap.probe.fingerprint import FingerprintRun


@click.command("fingerprint")
@click.option("--python", "python", metavar="PATH", help="Interpreter to measure (default: the one running envcap).")
@click.option("--only", "only", type=click.Choice(["numpy", "scipy", "torch"]), multiple=True,
              help="Run only this library's kernels (repeatable).")
@json_option
@verbose_option
def command(python: str | None, only: tuple[str, ...], as_json: bool) -> None:
    """Hash the results of seeded NumPy/SciPy/torch kernels (GEMM, reductions, exp/log/pow, LAPACK, FFT, RNG)."""
    from envcap._serde import to_json
    from envcap.probe.fingerprint import run_fingerprint

    started = time.monotonic()
    measured = run_fingerprint(python or sys.executable, only=only)
    wall = time.monotonic() - started
    if as_json:
        emit_json("fingerprint", {"kernels": to_json(measured.kernels), "context": measured.context,
                                  "unavailable": to_json(list(measured.unavailable)), "seconds": measured.seconds,
                                  "suite_seconds": measured.total_seconds, "wall_seconds": round(wall, 3)})
        return
    _render(measured, wall)


def _render(measured: FingerprintRun, wall: float) -> None:
    from rich.table import Table

    out = console()
    if not measured.kernels:
        out.print("No kernels ran: the interpreter has none of numpy, scipy, torch.")
    else:
        table = Table(title="Numeric fingerprint", title_justify="left")
        for column in ("fact", "result", "sha256", "threads"):
            table.add_column(column)
        for name, fp in measured.kernels.items():
            shape = "×".join(str(n) for n in fp.shape) or "scalar"
            table.add_row(f"fingerprint.{name}", f"{fp.dtype}[{shape}]", fp.sha256[:16],
                          str(fp.threads) if fp.threads else "")
        out.print(table)
    context = ", ".join(f"{key} {value}" for key, value in sorted(measured.context.items()) if value != "")
    if context:
        out.print(f"[dim]{context}[/]", highlight=False)
    for item in measured.unavailable:
        out.print(f"[yellow]not measured:[/] {item.probe}: {item.reason}")
    out.print(f"{len(measured.kernels)} kernels in {measured.total_seconds:.2f} s inside the interpreter "
              f"({wall:.2f} s with its start).")
