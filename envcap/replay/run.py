"""One run of the workload in the image: its environment, its mounts, the hook, and what it left.

Why apart from the session: this is the part that touches the user's files (the mounted tree, the
outputs it wrote) and the engine's streams; the session only decides when and how often to call it.
"""

from __future__ import annotations

import hashlib
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envcap.emit.plan import HOST_ONLY_ENV, REDACTED
from envcap.engine import ContainerEngine, Mount, OutputCallback, OutputStream, RunSpec
from envcap.lock import Snapshot
from envcap.replay.report import ReplayStatus, RunRecord
from envcap.workload import hook
from envcap.workload.outputs import fresh_outputs, fs_now, keep_copies

CONTAINER_HOME = "/tmp"  # writable for any UID, which may have no passwd entry in the image
# Device and topology variables are the engine's business; LANG (which the image leaves out, as a
# locale may not exist there) is passed, as the workload ran with it.
REPLAY_SKIP_ENV = HOST_ONLY_ENV - {"LANG"}


STDERR_TAIL = 64 << 10
_MISSING_PATH = re.compile(r"(?:No such file or directory|FileNotFoundError|not found)[^'\"\n]*['\"](/[^'\"\n]+)['\"]")


@dataclass(frozen=True)
class RunOutcome:
    record: RunRecord
    precision: dict[str, Any] | None  # the flags the workload's main process left (hook)
    stderr_tail: bytes = b""  # the end of what it wrote to stderr, to explain a failure
    modules: tuple[str, ...] | None = None  # the project files it imported (None: not a Python workload)


def missing_path_hint(stderr_tail: bytes, mounts: Sequence[Mount]) -> str | None:
    """A workload that died on a path outside every mount gets the --mount that would have shown it."""
    text = stderr_tail.decode("utf-8", "replace")
    for found in reversed(_MISSING_PATH.findall(text)):
        path = Path(found)
        if any(path == Path(m.target) or Path(m.target) in path.parents for m in mounts):
            continue
        here = next((p for p in (path, *path.parents) if p.exists() and p != Path(p.anchor)), None)
        if here is None:
            return None
        folder = here if here.is_dir() else here.parent
        return (f"the workload looked for {path}, which is outside every folder mounted into the container; "
                f"pass --mount {folder} to make it visible")
    return None


def workload_env(lock: Snapshot, explicit: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The lock's variables, then what the user passed with ``-e``; nothing is read from the host by name.

    Why: a lock may come from a stranger; one listing ``AWS_SECRET_ACCESS_KEY: <redacted>`` must not
    make envcap fill in this host's real value. A redacted variable is left out and named, with how
    to pass it. Device-selection variables are the engine's business.
    """
    env: dict[str, str] = {}
    redacted = []
    for name, value in sorted((lock.env or {}).items()):
        if name in REPLAY_SKIP_ENV:
            continue
        if REDACTED in value:
            if name not in explicit:
                redacted.append(name)
            continue
        env[name] = value
    env.update(explicit)
    env["HOME"] = CONTAINER_HOME
    env.setdefault("PYTHONUNBUFFERED", "1")  # streamed output, not a block at exit
    return env, redacted


def host_differences(lock: Snapshot, host_env: Mapping[str, str], explicit: Mapping[str, str]) -> list[str]:
    """Numerics variables set differently on this host now than in the lock: the replay uses the lock's.

    Why say so: ``OMP_NUM_THREADS=1 envcap replay ...`` looks like it sets the workload's threads; it
    does not (the lock decides), and silence would hide that.
    """
    from envcap.probe._probe import env_allowed

    recorded = lock.env or {}
    notes = []
    for name in sorted(set(host_env) | set(recorded)):
        if name in explicit or name in REPLAY_SKIP_ENV or not env_allowed(name):
            continue
        here, there = host_env.get(name), recorded.get(name)
        if here is not None and here != there and (there is None or REDACTED not in there):
            recorded_text = repr(there) if there is not None else "unset"
            notes.append(f"{name} is {here!r} here but {recorded_text} in the lock; the replay uses the lock's "
                         f"(pass -e {name} to use this one)")
    return notes


def describe_exit(code: int | None, oom: bool, command: Sequence[str], image: str) -> tuple[ReplayStatus, str | None]:
    """(status, sentence) for a workload's exit code."""
    if code is None:
        return "engine-failed", "the engine did not report how the workload ended."
    if code == 0:
        return "ok", None
    if code == 127:
        return ("command-not-found",
                (f"the command {command[0]!r} (or a command it runs) was not found inside the image {image} (exit 127); "
                "check its spelling and that the image has it on PATH (envcap's images put the locked venv first)."))
    if code == 126:
        return ("workload-failed", (f"the command {command[0]!r} could not be executed inside the image {image} "
                "(exit 126: not executable, or a directory)."))
    if 128 < code <= 128 + 64:
        name = signal_name(code - 128)
        why = " by the kernel's out-of-memory killer" if oom else ""
        return "workload-failed", f"the workload was killed by {name}{why} (exit {code})."
    return "workload-failed", f"the workload exited with status {code}."


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def hook_folder(replay_dir: Path, index: int) -> Path:
    """Where run ``index`` finds the hook and leaves its records (and the launcher's reading of the machine)."""
    return replay_dir / "hook" / f"run-{index}"


def run_once(engine: ContainerEngine, base: RunSpec, *, index: int, replay_dir: Path, cwd: Path,
             patterns: Sequence[str], user: str, tty: bool, interactive: bool,
             on_output: OutputCallback | None, project_root: str | None = None,
             launcher: str | None = None) -> RunOutcome:
    """Run ``index`` of the workload: the hook mounted, output streamed and hashed, fresh outputs kept.

    ``launcher``: the image's interpreter, to read the machine's facts in this container before the
    workload starts (``envcap/workload/launch.py``, into ``hook_folder``); only for an image without an
    entrypoint of its own.
    """
    uid, _, gid = user.partition(":")
    hook_dir = hook.install(hook_folder(replay_dir, index), uid=int(uid), gid=int(gid) if gid else None,
                            launcher=launcher is not None)
    spec = replace(base, tty=tty, interactive=interactive,
                   mounts=base.mounts + (Mount(str(hook_dir), hook.MOUNT_TARGET),),
                   env=base.env | hook.environment(hook.MOUNT_TARGET, base.env.get("PYTHONPATH"), project_root),
                   entrypoint=hook.launch_command(launcher) if launcher is not None else base.entrypoint)
    since = fs_now(hook_dir)
    started = time.monotonic()
    printed = hashlib.sha256()
    tail = bytearray()
    try:
        result = engine.run(spec, on_output=_tee(printed, tail, on_output))
    finally:
        if launcher is not None:
            hook.remove_launcher(hook_dir)
    prints, stale = fresh_outputs(patterns, cwd, since) if patterns else ((), ())
    if prints:
        keep_copies(prints, cwd, replay_dir / "outputs" / f"run-{index}")
    code = result.exit_code
    record = RunRecord(index=index, exit_code=code, signal=signal_name(code - 128) if 128 < code <= 192 else None,
                       oom_killed=result.oom_killed, seconds=time.monotonic() - started, outputs=prints,
                       not_rewritten=stale, stdout_sha256=printed.hexdigest())
    return RunOutcome(record, hook.read_records(hook_dir), bytes(tail), hook.read_modules(hook_dir))


def _tee(printed: Any, tail: bytearray, on_output: OutputCallback | None) -> OutputCallback:
    """Streams the workload's output on, hashing stdout so ``--repeat`` can say if the runs printed the
    same, and keeping the end of stderr to explain a failure."""

    def tee(chunk: bytes, stream: OutputStream) -> None:
        if stream == "stdout":
            printed.update(chunk)
        else:
            tail.extend(chunk)
            del tail[:-STDERR_TAIL]
        if on_output is not None:
            on_output(chunk, stream)

    return tee
