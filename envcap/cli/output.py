"""Shared presentation helpers: JSON output with a format version, rich consoles on stderr/stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

JSON_FORMAT_VERSION = 1


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    """Every ``--json`` result carries ``format`` and ``kind`` so scripts can check what they read."""
    document = {"format": JSON_FORMAT_VERSION, "kind": kind} | payload
    click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def interactive() -> bool:
    return sys.stderr.isatty()


def engine_from(ctx: click.Context) -> Any:
    """The engine given by the caller (``obj={"engine": ...}``, as tests pass a fake) or the one found."""
    given = ctx.obj.get("engine") if isinstance(ctx.obj, dict) else None
    if given is not None:
        return given
    from envcap.engine import connect

    return connect()
