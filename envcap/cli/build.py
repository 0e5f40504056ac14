"""``envcap build``: the image of a saved lock, content-addressed and hermetic by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcap.cli.options import base_image_option, json_option, lock_dir_argument, verbose_option, verbosity
from envcap.cli.output import console, emit_json, engine_from, interactive, note, say
from envcap.textsafe import markup, terminal

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

    from envcap.engine import BuildEvent


@click.command("build")
@lock_dir_argument()
@base_image_option("Start from this image instead of the one the lock records (it needs python3 and python3-venv).")
@click.option("--tag", "tags", metavar="NAME[:TAG]", multiple=True, help="Also tag the image with this name.")
@click.option("--online", is_flag=True, help="Let pip fetch from the index inside the build (no wheelhouse).")
@click.option("--target-python", metavar="X.Y.Z", help="Choose wheels for this Python instead of the base image's.")
@click.option("--target-glibc", metavar="X.Y", help="Choose wheels for this glibc instead of the base image's.")
@click.option("--allow-path", "allow_paths", metavar="PATH", multiple=True, type=click.Path(path_type=Path),
              help="Also build local sources from this folder, outside the lock's project (repeatable).")
@click.option("--context", "context_dir", metavar="DIR", type=click.Path(path_type=Path),
              help="Write a self-contained build context (Dockerfile + hash-checked wheels) to this new folder "
                   "instead of building: any builder builds it offline.")
@verbose_option
@json_option
@click.pass_context
def command(ctx: click.Context, lock_dir: Path, base_image: str | None, tags: tuple[str, ...], online: bool,
            target_python: str | None, target_glibc: str | None, allow_paths: tuple[Path, ...],
            context_dir: Path | None, as_json: bool) -> None:
    """Build the image of a snapshot (DIR, default .envcap/), or find it already built."""
    from envcap.build import BuildOptions, build, write_context
    from envcap.engine import BuildStepFailed

    options = BuildOptions(base_image=base_image, online=online, tags=tags, target_python=target_python,
                           target_glibc=target_glibc, source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH"),
                           allow_paths=allow_paths)
    engine = engine_from(ctx)
    progress = _Progress(verbose=verbosity(ctx) > 0)  # -v also streams the build log
    if context_dir is not None:
        progress.start()
        try:
            written = write_context(lock_dir, engine, context_dir, options, progress=progress)
        finally:
            progress.stop()
        if as_json:
            emit_json("build-context", written.to_json())
            return
        for text in written.notes:
            note("note", text)
        for text in written.warnings:
            note("warning", text, style="bold red")
        say(f"Wrote a build context with {written.wheels} wheels to {terminal(str(written.folder))}: "
            f"build it with `docker build --network none {terminal(str(written.folder))}`.")
        return
    progress.start()
    try:
        result = build(lock_dir, engine, options, progress=progress)
    except BuildStepFailed as exc:
        progress.show_failure(exc.step, exc.log_tail)
        raise
    finally:
        progress.stop()
    if as_json:
        emit_json("build", result.to_json())
        return
    for text in (*result.notes, *(f"left out of the image: {item}" for item in result.left_out)):
        note("note", text)
    for text in result.warnings:
        note("warning", text, style="bold red")
    if result.cached:
        say(f"Up to date: {result.tag} ({result.image_id[:19]}), nothing was sent to the engine.")
    elif result.packages_reused:
        say(f"Built {result.tag} ({result.image_id[:19]}) in {result.seconds:.1f} s on the packages already "
            f"installed in {result.install_image}: only the lock's settings are new.")
    else:
        fetched = f", {result.downloaded_bytes / 1e6:.1f} MB downloaded" if result.downloaded_bytes else ""
        say(f"Built {result.tag} ({result.image_id[:19]}) in {result.seconds:.1f} s: {result.wheels} wheels "
            f"for {result.target} installed into {result.install_image}{fetched}.")
    for extra in result.tags[1:]:
        say(f"Tagged {extra}")


class _Progress:
    """Downloads and build steps as rich progress bars on stderr; the log itself only with --verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.out = console(stderr=True)
        self.live = interactive()
        self.bar: Progress | None = None
        self.download_task: TaskID | None = None
        self.step_task: TaskID | None = None
        self.step_text: str | None = None

    def start(self) -> None:
        if self.live:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                ProgressColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.text import Text

            class Amount(ProgressColumn):
                """Bytes for the download bar, steps (n/m) for the build bar."""

                def render(self, task: Task) -> Text:
                    if task.fields.get("bytes"):
                        return DownloadColumn().render(task)
                    return Text(f"{int(task.completed)}/{int(task.total or 0)}")

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), Amount(),
                                TimeElapsedColumn(), console=self.out, transient=True)
            self.bar.start()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(terminal(text), markup=False, highlight=False)
        else:
            say(text, err=True)

    def stage(self, text: str) -> None:
        if self.verbose:
            self._print(f"envcap: {text}")

    def downloads(self, files: int, total_bytes: int) -> None:
        if self.bar is not None:
            self.download_task = self.bar.add_task(f"wheels ({files} files)", total=total_bytes or None, bytes=True)

    def advance(self, nbytes: int) -> None:
        if self.bar is not None and self.download_task is not None:
            self.bar.advance(self.download_task, nbytes)

    def build_event(self, event: BuildEvent) -> None:
        if event.kind == "step":
            self.step_text = f"Step {event.step}/{event.total}: {event.text}"
            if self.bar is not None:
                if self.download_task is not None:
                    self.bar.update(self.download_task, visible=False)
                if self.step_task is None:
                    self.step_task = self.bar.add_task("build", total=event.total)
                self.bar.update(self.step_task, completed=(event.step or 1) - 1, total=event.total,
                                description=markup(_short(self.step_text)))  # the bar reads rich markup
            if self.verbose:
                self._print(self.step_text)
        elif event.kind == "log" and self.verbose:
            self._print(event.text)

    def show_failure(self, step: str | None, tail: tuple[str, ...]) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        say(f"failed step: {step or self.step_text or 'unknown'}", err=True)
        if tail and not self.verbose:
            say("last lines of its log:", err=True)
            for line in tail:
                say(f"  | {line}", err=True)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
