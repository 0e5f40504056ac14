"""The command line: wiring and presentation only; each verb lives in ``envcap.cli.<verb>``.

Why lazy: ``envcap snapshot`` is timed against ``pip inspect``; loading the Docker SDK or rich's
tables for a command that does not use them would cost more than the probe itself.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from envcap import __version__
from envcap.cli.options import verbose_option
from envcap.errors import EnvcapError

COMMANDS = {
    "snapshot": "envcap.cli.snapshot",
    "show": "envcap.cli.show",
    "build": "envcap.cli.build",
    "replay": "envcap.cli.replay",
    "diff": "envcap.cli.diff",
    "fleet": "envcap.cli.fleet",
    "fingerprint": "envcap.cli.fingerprint",
    "bisect": "envcap.cli.bisect",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, module in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the command exists and something it imports is missing: say so
            return None
        command = module.command
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """The one place where failures become a sentence, a hint and an exit code."""
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except EnvcapError as exc:
            if debug:
                raise
            from envcap.cli.output import say

            say(f"error: {exc.message}", err=True)  # messages quote paths and values: redacted, no controls
            if exc.hint:
                say(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("error: interrupted.", err=True)
            ctx.exit(130)


def _module_exists(name: str) -> bool:
    import importlib.util  # here: a command runs without it (it cost each start 2 ms)

    return importlib.util.find_spec(name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envcap")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@verbose_option
def main(debug: bool) -> None:
    """Capture an ML environment, rebuild it as an image, replay a run and explain what differs."""
    _terminate_like_interrupt()


def _terminate_like_interrupt() -> None:
    """SIGTERM (a CI timeout, ``kill``) takes the Ctrl-C path: builds untag, containers are removed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
