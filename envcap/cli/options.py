"""Options shared by several commands, defined once (as pip-tools' ``scripts/options.py`` does).

Why: ``--json`` or ``DIR`` spelled five times drift apart (help texts, defaults, types); a command
now lists the options it takes and nothing about how they are parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from envcap import _log

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_LOCK_DIR = Path(".envcap")


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``-v`` anywhere on the line (``envcap -v build`` or ``envcap build -v``) turns on the call log."""
    root = ctx.find_root()
    total = int(root.meta.get("envcap.verbosity", 0)) + (value or 0)
    root.meta["envcap.verbosity"] = total
    _log.setup(total)
    return value


verbose_option = click.option(
    "-v", "--verbose", count=True, expose_value=False, is_eager=True, callback=_set_verbosity,
    help="Log every subprocess, engine call and HTTP request envcap makes (on stderr).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (with a format version).")


def _upward(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """Left out: the nearest ``.envcap/`` holding a lock, from here upward (as git finds ``.git``)."""
    if value is not None:
        return value
    from envcap.lock.store import find_lock_folder

    return find_lock_folder(Path.cwd()) or DEFAULT_LOCK_DIR


def lock_dir_argument(help_text: str = "the snapshot folder", *,
                      default: Path | None = DEFAULT_LOCK_DIR) -> Callable[[F], F]:
    """``[DIR]``: a snapshot folder or an envcap.lock.json; left out, the nearest ``.envcap/`` from here
    upward (``default=None``: none at all)."""
    del help_text  # click arguments carry no help; the command's docstring names DIR
    if default is None:
        return click.argument("lock_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path),
                              default=None)
    return click.argument("lock_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path),
                          default=None, callback=_upward)


def base_image_option(help_text: str) -> Callable[[F], F]:
    return click.option("--base-image", metavar="IMG", help=help_text)


def verbosity(ctx: click.Context) -> int:
    return int(ctx.find_root().meta.get("envcap.verbosity", 0))
