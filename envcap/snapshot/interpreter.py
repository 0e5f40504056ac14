"""Which interpreter a snapshot describes: the one the user means, said out loud.

Why a rule and not ``sys.executable``: envcap usually lives in its own environment (pipx), while the
project's venv is activated; describing envcap's own venv wrote a lock without numpy, and the replay
then died with ModuleNotFoundError. The order: ``--python`` (a path is a path, relative to here), the
interpreter ``-- CMD`` would run, ``$VIRTUAL_ENV``, ``$CONDA_PREFIX``, then ``python3`` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envcap.errors import UsageError

ChosenBy = Literal["--python", "the command", "VIRTUAL_ENV", "CONDA_PREFIX", "PATH"]
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?[a-z]?$")


@dataclass(frozen=True)
class Interpreter:
    path: str  # absolute, symlinks kept (a venv's python is a symlink; resolving it would leave the venv)
    chosen_by: ChosenBy

    def describe(self) -> str:
        return f"{self.path} (from {self.chosen_by})"


def _absolute(path: str, cwd: Path) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _shebang_python(executable: str, environ: Mapping[str, str]) -> str | None:
    """The interpreter a script's ``#!`` line names (``#!/usr/bin/env python3`` looked up on PATH)."""
    try:
        with open(executable, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").strip().split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        rest = [w for w in words[1:] if not w.startswith("-")]
        return shutil.which(rest[0], path=environ.get("PATH")) if rest and _PYTHON_NAME.match(rest[0]) else None
    return words[0] if _PYTHON_NAME.match(os.path.basename(words[0])) else None


def from_command(command: Sequence[str], environ: Mapping[str, str], cwd: Path) -> str | None:
    """``python train.py``, ``python3.11 -m x``, ``./train.py`` or ``torchrun ...``: the Python it starts."""
    if not command:
        return None
    program = command[0]
    if os.sep in program:
        found: str | None = _absolute(program, cwd)
    else:
        found = shutil.which(program, path=environ.get("PATH"))
    if found is None:
        return None
    if _PYTHON_NAME.match(os.path.basename(found)):
        return found
    return _shebang_python(found, environ)


def choose(python: str | None, command: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Interpreter:
    if python is not None:
        if not python.strip():
            raise UsageError("--python was given an empty value.",
                             hint="pass an interpreter, for example --python .venv/bin/python")
        if os.sep in python or python.startswith(("~", ".")):
            return Interpreter(_absolute(python, cwd), "--python")
        found = shutil.which(python, path=environ.get("PATH"))
        return Interpreter(found or python, "--python")
    started = from_command(command, environ, cwd)
    if started:
        return Interpreter(started, "the command")
    activated: tuple[ChosenBy, ...] = ("VIRTUAL_ENV", "CONDA_PREFIX")
    for variable in activated:
        prefix = environ.get(variable)
        if prefix and os.path.exists(os.path.join(prefix, "bin", "python")):
            return Interpreter(os.path.join(prefix, "bin", "python"), variable)
    found = shutil.which("python3", path=environ.get("PATH"))
    return Interpreter(found or sys.executable, "PATH")


def is_envcaps_own(prefix: str | None) -> bool:
    """The environment described is the one envcap runs in (its click, docker, rich are not the project's)."""
    if not prefix:
        return False
    try:
        return Path(prefix).resolve() == Path(sys.prefix).resolve()
    except OSError:
        return False


__all__ = ["ChosenBy", "Interpreter", "choose", "from_command", "is_envcaps_own"]
