"""``envcap snapshot``: describe an interpreter and write the lock set."""

from __future__ import annotations

from pathlib import Path

import click

from envcap.commands._output import console, emit_json, interactive
from envcap.model import snapshot_to_dict
from envcap.snapshot import DEFAULT_OUT, capture, write_snapshot


@click.command("snapshot")
@click.option("--python", "python", metavar="PATH", help="Interpreter to describe (default: the one running envcap).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default=True, help="Folder for envcap.lock.json, requirements.lock, pylock.toml, Dockerfile.")
@click.option("--base-image", metavar="IMG", help="Base image for the Dockerfile instead of the one chosen from facts.")
@click.option("--deep", is_flag=True, help="Also import numpy/torch for threadpoolctl's and torch's live view.")
@click.option("--offline", is_flag=True, help="Take hashes only from the cache and local wheels.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def command(python: str | None, out_dir: Path, base_image: str | None, deep: bool, offline: bool,
            as_json: bool) -> None:
    """Describe an interpreter's environment and write a lock, requirements.lock and a Dockerfile."""
    snapshot = capture(python, deep=deep, offline=offline, on_stage=_stage_printer(as_json))
    result = write_snapshot(snapshot, out_dir, base_image=base_image)
    if as_json:
        emit_json("snapshot", {"out": str(out_dir), "files": [str(p) for p in result.files],
                               "snapshot": snapshot_to_dict(snapshot)})
        return
    if snapshot.warnings:
        out = console(stderr=True)
        for warning in snapshot.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
    pinned = sum(1 for d in snapshot.distributions if d.artifacts)
    python_version = snapshot.python.version if snapshot.python else "?"
    click.echo(f"Snapshot of Python {python_version}: {len(snapshot.distributions)} distributions "
               f"({pinned} pinned by hash) -> {out_dir}/ [{snapshot.digest}]")


def _stage_printer(quiet: bool):  # type: ignore[no-untyped-def]
    def on_stage(stage: str, count: int) -> None:
        if not quiet and interactive() and stage == "hashes" and count:
            click.echo(f"pinning {count} distributions by hash...", err=True)

    return on_stage
