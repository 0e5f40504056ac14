"""What a replay is asked to do, checked before anything starts: the request and its small decisions."""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from envcap.errors import UsageError
from envcap.lock import Snapshot
from envcap.replay.preflight import lock_uses_gpu

GpuChoice = Literal["auto", "all", "none"]
GPU_CHOICES: tuple[str, ...] = get_args(GpuChoice)


@dataclass(frozen=True)
class ReplayRequest:
    lock_dir: Path
    command: tuple[str, ...]
    cwd: Path
    image: str | None = None
    base_image: str | None = None  # used only when the image has to be built
    gpus: GpuChoice = "auto"
    outputs: tuple[str, ...] = ()
    repeat: int = 1
    user: str | None = None  # "uid:gid"; default: the user running envcap
    tty: bool = False
    interactive: bool = False
    host_env: Mapping[str, str] = field(default_factory=dict)  # for values the lock redacted
    fingerprint: bool | None = None  # measure the image's numeric fingerprint; None: when the lock has one
    match: bool = False  # the original's thread counts, ISA caps and TF32 settings (envcap.replay.match)


def check_request(request: ReplayRequest) -> None:
    """Refuses what cannot be run, before the lock is even read."""
    if not request.command:
        raise UsageError("no command to replay was given.", hint="put it after --: envcap replay -- python train.py")
    if request.repeat < 1:
        raise UsageError(f"--repeat {request.repeat} must be at least 1.", hint="pass --repeat 2 to run twice")
    if request.user is not None:
        check_user(request.user)


def check_user(user: str) -> None:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise UsageError(f"--user {user!r} is not UID:GID.", hint="pass numbers, for example --user 1000:1000")


def decide_gpus(choice: str, lock: Snapshot) -> bool:
    if choice not in GPU_CHOICES:
        raise UsageError(f"--gpus {choice!r} is not one of {', '.join(GPU_CHOICES)}.",
                         hint="use --gpus all, --gpus none, or --gpus auto (GPUs when the snapshot had them)")
    if choice == "all":
        return True
    if choice == "none":
        return False
    return lock_uses_gpu(lock)


def new_replay_id(now: _dt.datetime | None = None) -> str:
    """Sortable by time, to the microsecond (two replays in one second must still sort in order);
    the random suffix keeps concurrent replays of one lock apart."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)
