"""The only module that starts processes: argv lists, timeouts, never a shell.

``Runner`` is the edge tests replace (a canned runner returns recorded output) instead of
patching ``subprocess`` where it is used.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from envcap import _log

LOG = _log.get("subprocess")
LOGGED_ARG_CHARS = 200  # a script passed with -c (the fleet's node task is ~25 kB) is shown by its length


def shown(argv: Sequence[str]) -> str:
    """The command line for the log: long arguments cut, so ``-v`` stays one readable line per call."""
    return shlex.join(a if len(a) <= LOGGED_ARG_CHARS else f"{a[:40].splitlines()[0]}...<{len(a)} chars>"
                      for a in argv)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = ...,
        cwd: str | None = ...,
        env: Mapping[str, str] | None = ...,
        stdin: str | None = ...,
    ) -> Completed: ...


class RunFailed(Exception):
    """The program could not be started or timed out (not: it exited non-zero)."""


class RunTimedOut(RunFailed):
    """The program ran past its timeout and was killed (a caller may have to clean up after it)."""


def _start_failure(argv: Sequence[str], exc: OSError) -> RunFailed:
    if isinstance(exc, FileNotFoundError):
        return RunFailed(f"{argv[0]} was not found")
    if isinstance(exc, PermissionError):
        return RunFailed(f"{argv[0]} is not executable")
    return RunFailed(f"{argv[0]} could not start: {exc.strerror or exc}")


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> Completed:
    LOG.debug("run %s%s", shown(argv), f" (in {cwd})" if cwd else "")
    started = time.monotonic()
    try:
        done = subprocess.run(
            list(argv),
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except OSError as exc:
        raise _start_failure(argv, exc) from exc
    except subprocess.TimeoutExpired as exc:
        raise RunTimedOut(f"{argv[0]} did not finish within {timeout:g} s") from exc
    LOG.debug("exit %d after %.2f s: %s", done.returncode, time.monotonic() - started, argv[0])
    return Completed(
        argv=tuple(argv),
        returncode=done.returncode,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
    )


def call(argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
         stdout_to_stderr: bool = False) -> int:
    """Runs a program attached to this terminal (stdio inherited): its exit status, 128+n for signal n.

    For a workload the user watches (``envcap snapshot --outputs ... -- CMD``); Ctrl-C reaches it
    through the terminal's process group, and envcap waits for it before re-raising.
    """
    LOG.debug("call %s%s", shown(argv), f" (in {cwd})" if cwd else "")
    try:
        # With --json, envcap's stdout carries the JSON document: the workload writes to stderr instead.
        process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env) if env is not None else None,
                                   stdout=sys.stderr.fileno() if stdout_to_stderr else None)
    except OSError as exc:
        raise _start_failure(argv, exc) from exc
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.wait()
        raise
    return 128 - code if code < 0 else code
