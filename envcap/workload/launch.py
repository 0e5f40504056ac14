"""envcap's replay launcher: reads the host's facts inside the workload's container, then becomes the workload.

Why: the replay describes the image with the probe, and most of what the probe reports is decided by
the image alone, so a replay keeps it by image (``envcap.replay.image_facts``) instead of starting a
second container for it every time. The kernel, the CPU and the GPUs are the machine's, and the
machine may change between two replays of one image; they are read here, by the probe's own readers
(``host_facts`` of the ``_probe.py`` copied beside this file), in the very container the workload
runs in, before it starts.

Usage (the container's command; the image's interpreter runs it with ``-I``):
    python3 -I launch.py OUT -- CMD [ARG...]

Rules it keeps, because the process it leaves behind is the workload's:
- it then replaces itself with CMD (``execve``): same PID, same parent (the container's init), same
  working folder, and the environment exactly as the container started it, read back from
  ``/proc/self/environ`` (Python itself may have added ``LC_CTYPE`` at start-up, PEP 538);
- the signals Python changes at start-up (SIGINT handled, SIGPIPE and SIGXFSZ ignored) are default
  again before CMD starts, as ``subprocess`` restores them for its children;
- CMD is looked up on ``PATH`` as the init would (``execvp``: a file without ``#!`` runs under
  ``/bin/sh``), and when it cannot be run the exit status is the init's: 127 when not found, 126
  when not executable, else 1;
- it never prints unless CMD cannot be run, and then one line, ``envcap: exec CMD failed: why``,
  where the init would have said the same (CMD's name through the probe's redaction engine: it is
  envcap speaking);
- a failure to read a fact loses only the facts (``OUT`` is then missing and the replay probes the
  image in a container of its own).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

TYPE_CHECKING = False  # typing is not imported at run time: this runs ahead of every replayed workload
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_SKIP_ON = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV, errno.ETIMEDOUT, errno.EACCES)


def load_probe() -> Any:
    """The probe script copied beside this file, as a module (its readers and its redaction engine)."""
    import importlib.util

    sys.dont_write_bytecode = True  # no __pycache__ in the replay's folder
    spec = importlib.util.spec_from_file_location("_envcap_probe", os.path.join(_HERE, "_probe.py"))
    if spec is None or spec.loader is None:
        raise ImportError("the probe script is missing")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe


def write_host_facts(probe: Any, out: str) -> None:
    """The probe's ``host_facts`` and what it could not read, as JSON in ``out`` (written, then renamed)."""
    facts = dict(probe.host_facts())
    facts["unavailable"] = list(probe.UNAVAILABLE)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(facts, handle, sort_keys=True, default=str)
    os.replace(tmp, out)


def original_environment() -> Mapping[bytes, bytes]:
    """The environment this process was started with (Python may have set ``LC_CTYPE`` since)."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            block = handle.read()
    except OSError:
        return os.environb
    env: dict[bytes, bytes] = {}
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name not in env:
            env[name] = value
    return env


def default_signals() -> None:
    for name in ("SIGINT", "SIGPIPE", "SIGXFSZ"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)


def execvp(argv: Sequence[str], env: Mapping[bytes, bytes], probe: Any = None) -> int:
    """Runs argv as glibc's execvp does (PATH search, ``/bin/sh`` for a file it cannot exec); returns the
    init's exit status when it cannot be run, after one line on stderr (redacted by ``probe``'s engine)."""
    name = os.fsencode(argv[0])
    if not name:
        candidates = []
    elif b"/" in name:
        candidates = [name]
    else:
        folders = env.get(b"PATH", b"/bin:/usr/bin").split(b":")
        candidates = [os.path.join(folder or b".", name) for folder in folders]
    failure = errno.ENOENT
    denied = False
    for candidate in candidates:
        try:
            os.execve(candidate, list(argv), env)
        except OSError as exc:
            if exc.errno == errno.ENOEXEC:
                try:
                    os.execve(b"/bin/sh", [b"/bin/sh", candidate] + [os.fsencode(a) for a in argv[1:]], env)
                except OSError as inner:
                    failure = inner.errno or errno.ENOEXEC
                    break
            failure = exc.errno or errno.ENOENT
            denied = denied or failure == errno.EACCES
            if failure not in _SKIP_ON:
                break
    if denied and failure in _SKIP_ON:
        failure = errno.EACCES
    sys.stderr.write(f"envcap: exec {_shown(argv[0], probe)} failed: {os.strerror(failure)}\n")
    sys.stderr.flush()
    return {errno.ENOENT: 127, errno.EACCES: 126}.get(failure, 1)


def _shown(name: str, probe: Any) -> str:
    """The command's name as envcap may print it: redacted, without control characters."""
    try:
        name = str(probe.redact_argv([name])[0])
    except Exception:  # noqa: BLE001 - without the probe's redaction engine, the name is not shown at all
        return "the command"
    return "".join(c if c.isprintable() else "?" for c in name)


def main(args: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C before CMD starts ends this as it would end CMD
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: launch.py OUT -- CMD [ARG...]\n")
        return 2
    env = original_environment()
    probe = None
    try:
        probe = load_probe()
        write_host_facts(probe, args[0])
    except Exception:  # noqa: BLE001 - no facts costs the replay a probe container, never the workload its run
        pass
    default_signals()
    return execvp(args[2:], env, probe)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
