"""``envcap snapshot``: describe an interpreter and write the lock set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcap.cli.options import DEFAULT_LOCK_DIR, base_image_option, json_option, verbose_option
from envcap.cli.output import console, emit_json, interactive, note, say

# envcap.snapshot (and the lock's records with it) is imported in the command, once the probe can be
# started first: loading them before it cost every snapshot 25 ms of waiting.
if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from envcap.snapshot.hashes import Release
    from envcap.workload.native import NativeRun


@click.command("snapshot")
@click.option("--python", "python", metavar="PATH",
              help="Interpreter to describe (default: the one -- CMD runs, else $VIRTUAL_ENV, $CONDA_PREFIX, python3).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=DEFAULT_LOCK_DIR,
              show_default=True, help="Folder for envcap.lock.json, requirements.lock, pylock.toml, Dockerfile.")
@base_image_option("Record IMG as the image to rebuild on (build and the Dockerfile use it) instead of choosing one.")
@click.option("--deep", is_flag=True, help="Also import numpy/torch for threadpoolctl's and torch's live view.")
@click.option("--offline", is_flag=True, help="Take hashes only from the cache and local wheels.")
@click.option("--fingerprint", "fingerprint", is_flag=True,
              help="Also run seeded numpy/scipy/torch kernels and record a hash of each result (a second or more).")
@json_option
@verbose_option
@click.option("--outputs", "outputs", metavar="PATTERN", multiple=True,
              help="With -- CMD: run CMD here, then fingerprint the files matching this glob (replay's baseline).")
@click.argument("workload", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD...]")
@click.pass_context
def command(ctx: click.Context, python: str | None, out_dir: Path, base_image: str | None, deep: bool,
            offline: bool, fingerprint: bool, as_json: bool, outputs: tuple[str, ...],
            workload: tuple[str, ...]) -> None:
    """Describe an interpreter's environment and write a lock, requirements.lock and a Dockerfile."""
    from envcap.snapshot import take

    with _HashProgress(enabled=not as_json and interactive()) as progress:
        result = take(python, out_dir, base_image=base_image, deep=deep, offline=offline, workload=workload,
                      outputs=outputs, quiet_stdout=as_json, fingerprint=fingerprint, on_stage=progress.on_stage,
                      on_release=progress.on_release)
    snapshot, native = result.snapshot, result.native
    described = result.interpreter.describe() if result.interpreter else None
    if as_json:
        from envcap.lock import snapshot_to_dict

        emit_json("snapshot", {"out": str(out_dir), "files": [str(p) for p in result.files],
                               "interpreter": described, "notes": list(result.notes),
                               "snapshot": snapshot_to_dict(snapshot)})
        if native is not None and native.exit_code:
            ctx.exit(native.exit_code)
        return
    for warning in snapshot.warnings:
        note("warning", warning)
    for text in result.notes:
        note("warning", text)
    pinned = sum(1 for d in snapshot.distributions if d.artifacts)
    python_version = snapshot.python.version if snapshot.python else "?"
    say(f"Snapshot of Python {python_version} at {described}: {len(snapshot.distributions)} distributions "
        f"({pinned} pinned by hash) -> {out_dir}/ [{snapshot.digest}]")
    if native is not None:
        _report_native_run(ctx, native, outputs)


class _HashProgress:
    """A progress bar for the hash look-ups a cold snapshot makes (seconds); nothing when warm."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> _HashProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_stage(self, stage: str, count: int) -> None:
        if stage != "hashes" and self.bar is not None:  # the bar must not hold the terminal past its stage
            self.bar.stop()
            self.bar = None
        if not (self.enabled and stage == "hashes" and count):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("pinning hashes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console(stderr=True), transient=True)
        self.task = self.bar.add_task("hashes", total=count)
        self.bar.start()

    def on_release(self, release: Release) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)


# -- `envcap snapshot --outputs PATTERN -- CMD` (replay's baseline, issue 4) --------------------------
def _report_native_run(ctx: click.Context, native: NativeRun, outputs: tuple[str, ...]) -> None:
    if native.exit_code != 0:
        click.echo(f"envcap: the command exited with status {native.exit_code}; its outputs were not recorded.",
                   err=True)
        ctx.exit(native.exit_code)
    if outputs:
        say(f"Recorded {len(native.outputs)} output file(s) matching {', '.join(outputs)} as the replay "
                   "baseline.", err=True)
        for path in native.not_rewritten:
            say(f"envcap: {path} matched but was not written by the command; left out.", err=True)
