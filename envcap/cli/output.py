"""Shared presentation helpers: JSON output with a format version, rich consoles, the engine to use."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from envcap.engine import ContainerEngine

JSON_FORMAT_VERSION = 1


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    """Every ``--json`` result carries ``format`` and ``kind`` so scripts can check what they read."""
    document = {"format": JSON_FORMAT_VERSION, "kind": kind} | payload
    click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


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
