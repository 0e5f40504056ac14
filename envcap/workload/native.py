"""``envcap snapshot --outputs PATTERN -- CMD``: the workload run on the host, the replays' baseline.

Why beside the hook and the output fingerprints rather than in ``replay``: the native run and a
replay's run leave the same evidence (precision flags, output fingerprints), and ``snapshot`` must
not depend on the replay stage to record it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcap._subprocess import RunFailed, call
from envcap.errors import UsageError
from envcap.lock import OutputFingerprint
from envcap.workload import hook
from envcap.workload.outputs import fresh_outputs, fs_now, keep_copies


@dataclass(frozen=True)
class NativeRun:
    """``envcap snapshot --outputs ... -- CMD``: the workload run on the host, the replays' baseline."""

    exit_code: int
    outputs: tuple[OutputFingerprint, ...]
    not_rewritten: tuple[str, ...]
    precision: dict[str, Any] | None


def native_run(command: Sequence[str], *, patterns: Sequence[str], cwd: Path, copies_dir: Path,
               environ: Mapping[str, str] | None = None,
               runner: Callable[..., int] | None = None, stdout_to_stderr: bool = False) -> NativeRun:
    """Runs CMD on the host with the precision hook, then fingerprints (and copies) what it wrote.

    The copies in ``copies_dir`` are what a replay compares number by number; they are replaced
    only when the command succeeded, so a crashed run never becomes the baseline.
    """
    run_command = runner or call
    environ = dict(os.environ if environ is None else environ)
    with tempfile.TemporaryDirectory(prefix="envcap-hook-") as tmp:
        hook_dir = hook.install(Path(tmp))
        env = environ | hook.environment(str(hook_dir), environ.get("PYTHONPATH"))
        since = fs_now(hook_dir)
        try:
            code = (run_command(list(command), cwd=str(cwd), env=env, stdout_to_stderr=True) if stdout_to_stderr
                    else run_command(list(command), cwd=str(cwd), env=env))
        except RunFailed as exc:
            raise UsageError(f"cannot run {command[0]!r}: {exc}.",
                             hint="check the command after --; it runs on this host, in the current folder") from None
        prints, stale = fresh_outputs(patterns, cwd, since) if patterns else ((), ())
        precision = hook.read_records(hook_dir)
    if code == 0 and patterns:
        shutil.rmtree(copies_dir, ignore_errors=True)
        keep_copies(prints, cwd, copies_dir)
    return NativeRun(exit_code=code, outputs=prints, not_rewritten=stale, precision=precision)
