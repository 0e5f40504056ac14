"""A stand-in for the engine's init process, for Podman hosts without catatonit.

Why: a replay runs its workload under an init (``docker run --init``), so Ctrl-C and SIGTERM reach
it and a signal death reads as exit 128+n; without one the workload is PID 1, which the kernel
shields from every signal it has no handler for (``kill -TERM`` of a shell script does nothing).
Podman's init is catatonit, a separate package Debian does not pull in with ``podman``: the create
fails with "container-init binary not found". Then the container runs this small Python program as
PID 1 instead: it starts the command as its child, passes the usual signals on, reaps orphans, and
exits with the child's status (128+n for a signal), as catatonit and Docker's tini do.

Why Python and not ``sh``: a shell starts a background command with SIGINT and SIGQUIT ignored
(POSIX, without job control, which needs a terminal), and an ignored signal cannot be reset by the
shell, so Ctrl-C would never reach the workload. Every image envcap replays in has ``python3`` (its
probe runs there), and ``-I -S`` keeps the stand-in away from the image's site-packages and
``PYTHON*`` variables; the command itself gets the environment unchanged. The program is written for
Python 3.8, the oldest the probe supports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

SCRIPT = """\
import errno, os, signal, sys
FORWARDED = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                                          "SIGWINCH") if hasattr(signal, n)]
argv = sys.argv[1:]
child = 0
def forward(signo, frame):
    if child > 0:
        try:
            os.kill(child, signo)
        except OSError:
            pass
for signo in FORWARDED:
    signal.signal(signo, forward)
if not argv:
    sys.stderr.write("envcap-init: no command to run\\n")
    os._exit(127)
child = os.fork()
if child == 0:
    for signo in FORWARDED + [signal.SIGPIPE, getattr(signal, "SIGXFSZ", signal.SIGPIPE)]:
        signal.signal(signo, signal.SIG_DFL)  # Python ignores SIGPIPE and SIGXFSZ; exec would keep that
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write("envcap-init: cannot run %s: %s\\n" % (argv[0], exc.strerror))
        os._exit(127 if exc.errno == errno.ENOENT else 126)
while True:
    try:
        pid, status = os.waitpid(-1, 0)
    except ChildProcessError:
        os._exit(1)
    if pid == child:
        break
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""
ENTRYPOINT = ("python3", "-I", "-S", "-c", SCRIPT)
INIT_MISSING = "container-init binary not found"  # Podman's words when its init_path (catatonit) is absent
# catatonit's words when it cannot start the command; it then exits 1, where tini (Docker) and a shell say 127
CATATONIT_EXEC = re.compile(rb"ERROR \(catatonit:\d+\): failed to exec pid1: ([^\r\n]*)")


def exec_failure(first_output: bytes) -> int | None:
    """The exit status Docker's init would give (127: not found, 126: not executable) when ``first_output``
    is catatonit saying it could not start the command; None for anything else.

    Why: a replay tells "the command was not found inside the image" by its 127; under catatonit the
    same mistake read as the workload failing with status 1.
    """
    found = CATATONIT_EXEC.search(first_output)
    if found is None:
        return None
    reason = found.group(1).lower()
    if b"no such file" in reason or b"not found" in reason:
        return 127
    if b"permission denied" in reason or b"exec format" in reason or b"is a directory" in reason:
        return 126
    return None


def wrap(entrypoint: Sequence[str] | None, command: Sequence[str],
         image_config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The (entrypoint, command) that runs what the container would have run, under the stand-in.

    Docker's rules decide what would have run: no entrypoint given means the image's, followed by
    the command or else the image's command; an entrypoint given drops the image's command.
    """
    if entrypoint is None:
        argv = [*(image_config.get("Entrypoint") or ()), *(command or image_config.get("Cmd") or ())]
    else:
        argv = [*entrypoint, *command]
    return list(ENTRYPOINT), [str(arg) for arg in argv]


__all__ = ["CATATONIT_EXEC", "ENTRYPOINT", "INIT_MISSING", "SCRIPT", "exec_failure", "wrap"]
