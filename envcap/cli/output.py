"""Shared presentation helpers: JSON output with a format version, rich consoles, the engine to use."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from envcap.engine import ContainerEngine

JSON_FORMAT_VERSION = 1


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    """Every ``--json`` result carries ``format`` and ``kind`` so scripts can check what they read."""
    from envcap.textsafe import json_text

    document = {"format": JSON_FORMAT_VERSION, "kind": kind} | payload
    click.echo(json_text(document))


def say(text: str, *, err: bool = False) -> None:
    """One line for the user, through the redaction engine and with no control characters."""
    from envcap.textsafe import terminal

    click.echo(terminal(text), err=err)


def note(label: str, text: str, *, style: str = "yellow") -> None:
    """``warning: ...`` / ``note: ...`` in colour on stderr; the text cannot inject markup."""
    from envcap.textsafe import markup

    console(stderr=True).print(f"[{style}]{label}:[/] {markup(text)}")


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def interactive() -> bool:
    return sys.stderr.isatty()


def engine_from(ctx: click.Context) -> ContainerEngine:
    """The engine given by the caller (``obj={"engine": ...}``, as tests pass a fake) or the one found."""
    given = ctx.obj.get("engine") if isinstance(ctx.obj, dict) else None
    if given is not None:
        return given  # type: ignore[no-any-return]  # a test's fake, which implements the Protocol
    from envcap.engine import connect

    return connect()
