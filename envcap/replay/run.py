"""One run of the workload in the image: its environment, its mounts, the hook, and what it left.

Why apart from the session: this is the part that touches the user's files (the mounted tree, the
outputs it wrote) and the engine's streams; the session only decides when and how often to call it.
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class RunOutcome:
    record: RunRecord
    precision: dict[str, Any] | None  # the flags the workload's main process left (hook)


def workload_env(lock: Snapshot, host_env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The captured numerics-relevant variables, as the image's ENV also has them.

    A value the lock redacted (a credential) is taken from the current environment when set there,
    never from the lock; device-selection variables are the engine's business.
    """
    env: dict[str, str] = {}
    warnings = []
    for name, value in sorted((lock.env or {}).items()):
        if name in REPLAY_SKIP_ENV:
            continue
        if REDACTED in value:
            if name in host_env:
                env[name] = host_env[name]
            else:
                warnings.append(f"{name} was redacted in the lock and is not set here, so the replay runs without it")
            continue
        env[name] = value
    env["HOME"] = CONTAINER_HOME
    env.setdefault("PYTHONUNBUFFERED", "1")  # streamed output, not a block at exit
    return env, warnings


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


def run_once(engine: ContainerEngine, base: RunSpec, *, index: int, replay_dir: Path, cwd: Path,
             patterns: Sequence[str], user: str, tty: bool, interactive: bool,
             on_output: OutputCallback | None) -> RunOutcome:
    """Run ``index`` of the workload: the hook mounted, output streamed and hashed, fresh outputs kept."""
    uid, _, gid = user.partition(":")
    hook_dir = hook.install(replay_dir / "hook" / f"run-{index}", uid=int(uid), gid=int(gid) if gid else None)
    spec = replace(base, tty=tty, interactive=interactive,
                   mounts=base.mounts + (Mount(str(hook_dir), hook.MOUNT_TARGET),),
                   env=base.env | hook.environment(hook.MOUNT_TARGET, base.env.get("PYTHONPATH")))
    since = fs_now(hook_dir)
    started = time.monotonic()
    printed = hashlib.sha256()
    result = engine.run(spec, on_output=_tee(printed, on_output))
    prints, stale = fresh_outputs(patterns, cwd, since) if patterns else ((), ())
    if prints:
        keep_copies(prints, cwd, replay_dir / "outputs" / f"run-{index}")
    code = result.exit_code
    record = RunRecord(index=index, exit_code=code, signal=signal_name(code - 128) if 128 < code <= 192 else None,
                       oom_killed=result.oom_killed, seconds=time.monotonic() - started, outputs=prints,
                       not_rewritten=stale, stdout_sha256=printed.hexdigest())
    return RunOutcome(record, hook.read_records(hook_dir))


def _tee(printed: Any, on_output: OutputCallback | None) -> OutputCallback:
    """Streams the workload's output on, hashing stdout so ``--repeat`` can say if the runs printed the same."""

    def tee(chunk: bytes, stream: OutputStream) -> None:
        if stream == "stdout":
            printed.update(chunk)
        if on_output is not None:
            on_output(chunk, stream)

    return tee
