"""``envcap show``: a readable summary of a saved snapshot."""

from __future__ import annotations

from pathlib import Path

import click

from envcap.cli.output import console, emit_json
from envcap.lock.records import snapshot_to_dict
from envcap.lock.store import load_snapshot, summarize


@click.command("show")
@click.argument("location", required=False, type=click.Path(path_type=Path), default=Path(".envcap"))
@click.option("--json", "as_json", is_flag=True, help="Print the whole snapshot as JSON.")
def command(location: Path, as_json: bool) -> None:
    """Summarise a saved snapshot (a folder or an envcap.lock.json file)."""
    snapshot = load_snapshot(location)
    if as_json:
        emit_json("snapshot", {"snapshot": snapshot_to_dict(snapshot)})
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summarize(snapshot):
        table.add_row(label, value)
    console().print(table)
