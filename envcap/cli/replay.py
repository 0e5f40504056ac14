"""``envcap replay [DIR] -- CMD``: rerun a workload in the snapshot's image and report what differs.

The workload's output streams through unchanged (stdout to stdout, stderr to stderr); envcap's report
follows on stderr, so ``envcap replay -- python eval.py > result.txt`` still captures only the
workload's own output. envcap exits with the workload's exit code.

Why the workload's output is the one stream not redacted: it is the user's program (and the
container's init, which names a command it cannot run) talking to the user, exactly as with
``docker run``; envcap writes none of it into a file or a report, and redacting it would rewrite
bytes the program meant (binary output, a line that only looks like a token). Everything envcap
itself says (its notes, the report, the call log) goes through the redaction engine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcap.cli.options import base_image_option, json_option, lock_dir_argument, verbose_option
from envcap.cli.output import engine_from, say
from envcap.replay.request import GpuChoice

if TYPE_CHECKING:
    from envcap.engine import BuildEvent
    from envcap.replay import ReplayReport


class _ReplayCommand(click.Command):
    """Splits the command line at ``--``: before it envcap's options and DIR, after it the workload's argv.

    Why not a plain ``nargs=-1`` argument: ``envcap replay out -- python x.py`` would be ambiguous
    (is ``out`` the folder or the program?), and the workload's own options must never be read as
    envcap's.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["envcap.replay.command"] = tuple(args[at + 1:])
            args = args[:at]
        else:
            ctx.meta["envcap.replay.command"] = ()
        return super().parse_args(ctx, args)


@click.command("replay", cls=_ReplayCommand)
@lock_dir_argument()
@click.option("--image", metavar="IMG", help="Run in this image (built elsewhere) instead of the snapshot's own.")
@base_image_option("When the image must be built first: start from this base image instead of the lock's.")
@click.option("--gpus", type=click.Choice(["auto", "all", "none"]), default="auto", show_default=True,
              help="Pass GPUs through; auto: when the snapshot had GPUs.")
@click.option("--outputs", "outputs", metavar="PATTERN", multiple=True,
              help="Fingerprint files matching this glob after the run and compare them (repeatable).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run N times in the same image: are the outputs identical across runs?")
@click.option("--report", "report_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON (- for standard output).")
@click.option("--markdown", "markdown_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as Markdown (for an issue or pull request).")
@click.option("--user", metavar="UID:GID", help="Run as this user (default: yours, so files written belong to you).")
@click.option("--mount", "mounts", metavar="SRC[:DST][:ro]", multiple=True,
              help="Also mount SRC (a dataset, a cache) at DST (default: the same path); repeatable.")
@click.option("-e", "--env", "env_args", metavar="NAME[=VALUE]", multiple=True,
              help="Set a variable for the workload (NAME alone: its value in this shell); wins over the lock's.")
@click.option("--env-file", "env_files", metavar="FILE", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Read NAME=VALUE lines (# comments) as if each were given with -e.")
@click.option("--allow-broad-mount", is_flag=True,
              help="Mount the working tree even when it is / or your home folder itself.")
@json_option
@click.option("--match", "match", is_flag=True,
              help="Neutralise the host difference: the original's thread counts, ISA caps and TF32 settings.")
@click.option("--fingerprint/--no-fingerprint", "fingerprint", default=None,
              help="Measure the image's numeric fingerprint beside the workload (default: when the lock has one).")
@verbose_option
@click.pass_context
def command(ctx: click.Context, lock_dir: Path, image: str | None, base_image: str | None, gpus: GpuChoice,
            outputs: tuple[str, ...], repeat: int, report_file: Path | None, markdown_file: Path | None,
            user: str | None, mounts: tuple[str, ...], env_args: tuple[str, ...], env_files: tuple[Path, ...],
            allow_broad_mount: bool, as_json: bool, match: bool, fingerprint: bool | None) -> None:
    """Rerun CMD (after --) in the image of the snapshot DIR (default .envcap/) and report what differs."""
    from envcap.errors import UsageError
    from envcap.replay import ReplayFailed, ReplayInterrupted, ReplayRequest, replay

    workload = ctx.meta.get("envcap.replay.command") or ()
    if not workload:
        raise UsageError("no command to replay was given.",
                         hint="put it after --, for example: envcap replay -- python train.py")
    interactive_stdin = _stdin_carries_input()
    request = ReplayRequest(lock_dir=lock_dir, command=tuple(workload), cwd=Path.cwd(), image=image,
                            base_image=base_image, gpus=gpus, outputs=outputs, repeat=repeat, user=user,
                            tty=sys.stdin.isatty() and sys.stdout.isatty(), interactive=interactive_stdin,
                            mounts=mounts, env=explicit_env(env_args, env_files, os.environ), host_env=dict(os.environ),
                            allow_broad_mount=allow_broad_mount, fingerprint=fingerprint, match=match)
    engine = engine_from(ctx)
    json_out = as_json or report_file == Path("-")  # stdout carries the one JSON document then

    def on_output(chunk: bytes, stream: str) -> None:
        text = sys.stderr if stream == "stderr" or json_out else sys.stdout
        text.flush()
        text.buffer.write(chunk)  # bytes as the workload wrote them, not re-decoded
        text.buffer.flush()

    publish = _Publisher(report_file, markdown_file, text=not as_json, json_out=json_out)
    try:
        report = replay(request, engine=engine, on_output=on_output, build_progress=_BuildNotes())
    except (ReplayFailed, ReplayInterrupted) as exc:
        publish(exc.report, with_message=False)
        raise
    publish(report, with_message=True)
    if report.status != "ok":
        ctx.exit(report.exit_code if report.exit_code is not None else 9)


class _BuildNotes:
    """Build progress as a few plain lines on stderr.

    Why not the build command's live bars: they would still own the terminal when the workload
    starts writing to it.
    """

    def stage(self, text: str) -> None:
        say(f"envcap: {text}", err=True)

    def downloads(self, files: int, total_bytes: int) -> None:
        say(f"envcap: {files} files, {total_bytes / 1e6:.1f} MB", err=True)

    def advance(self, nbytes: int) -> None:
        pass

    def build_event(self, event: BuildEvent) -> None:
        if event.kind == "step":
            say(f"envcap: build step {event.step}/{event.total}", err=True)


class _Publisher:
    """Where the report goes: the text on stderr (after the workload's own output), JSON on stdout
    (``--json`` or ``--report -``) or in a file, Markdown in a file."""

    def __init__(self, report_file: Path | None, markdown_file: Path | None, *, text: bool, json_out: bool) -> None:
        self.report_file = None if report_file == Path("-") else report_file
        self.markdown_file, self.text, self.json_out = markdown_file, text, json_out

    def __call__(self, report: ReplayReport, *, with_message: bool) -> None:
        from dataclasses import replace

        from envcap.fs import atomic_write
        from envcap.replay.render import render_json, render_markdown, render_text

        if self.text:  # plain text, already made safe for a terminal: click, not rich (whose import costs a replay ~30 ms)
            click.echo(render_text(report if with_message else replace(report, message=None)), err=True, nl=False)
        if self.json_out:
            click.echo(render_json(report), nl=False)
        if self.report_file is not None:
            atomic_write(self.report_file, render_json(report))
        if self.markdown_file is not None:
            atomic_write(self.markdown_file, render_markdown(report))


def explicit_env(args: tuple[str, ...], files: tuple[Path, ...], shell: Mapping[str, str]) -> dict[str, str]:
    """``--env-file`` lines, then ``-e`` (later wins): the only way a host value reaches the workload."""
    from envcap.errors import UsageError

    items: list[str] = []
    for path in files:
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --env-file {path}: {getattr(exc, 'strerror', None) or exc}.",
                             hint="pass a readable UTF-8 file of NAME=VALUE lines") from None
        items += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    items += list(args)
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in shell:
                raise UsageError(f"-e {name} names a variable that is not set in this shell.",
                                 hint=f"set it first, or pass a value: -e {name}=VALUE")
            value = shell[name]
        env[name] = value
    return env


def _stdin_carries_input() -> bool:
    """A terminal, a pipe or a file on stdin reaches the workload (as with ``docker run -i``);
    /dev/null or a closed stdin (CI) does not, so the workload is not left waiting on nothing."""
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISREG(mode)
