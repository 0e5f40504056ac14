"""What a replay is asked to do, checked before anything starts: the request and its small decisions."""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from envcap.engine import Mount
from envcap.errors import UsageError
from envcap.lock import Snapshot
from envcap.lock.validate import VARIABLE_NAME
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
    mounts: tuple[str, ...] = ()  # --mount SRC[:DST][:ro], on top of the project's folder
    env: Mapping[str, str] = field(default_factory=dict)  # -e NAME=VALUE / --env-file: on top of the lock's
    host_env: Mapping[str, str] = field(default_factory=dict)  # this host's, only to report what differs
    allow_broad_mount: bool = False  # mount / or $HOME itself as the working tree


def check_request(request: ReplayRequest) -> None:
    """Refuses what cannot be run, before the lock is even read."""
    if not request.command:
        raise UsageError("no command to replay was given.", hint="put it after --: envcap replay -- python train.py")
    if request.repeat < 1:
        raise UsageError(f"--repeat {request.repeat} must be at least 1.", hint="pass --repeat 2 to run twice")
    if request.user is not None:
        check_user(request.user)
    for name, value in request.env.items():
        if not VARIABLE_NAME.fullmatch(name) or "\x00" in value:
            raise UsageError(f"-e {name[:60]!r} is not a variable name (letters, digits and _) with a value.",
                             hint="pass -e NAME=VALUE, or -e NAME to take NAME from this shell")
    for spec in request.mounts:
        parse_mount(spec, request.cwd)


def check_tree(root: Path, allow_broad: bool) -> None:
    """The working tree is mounted read-write: never / or a home folder itself unless asked for."""
    resolved = root.resolve()
    if not allow_broad and (resolved == Path(resolved.anchor) or resolved == Path.home().resolve()):
        raise UsageError(f"replay would mount {resolved} read-write into the container as the working tree.",
                         hint="run it from the project's folder, or pass --allow-broad-mount if you mean it")


def parse_mount(spec: str, cwd: Path) -> Mount:
    """``SRC[:DST][:ro]``: SRC must exist (relative to here), DST is absolute (default: SRC's path)."""
    parts = spec.split(":")
    read_only = parts[-1] == "ro" and len(parts) > 1
    if read_only or (parts[-1] == "rw" and len(parts) > 1):
        parts = parts[:-1]
    if not parts[0] or len(parts) > 2:
        raise UsageError(f"--mount {spec!r} is not SRC[:DST][:ro].", hint="for example --mount /data/imagenet:ro")
    source = Path(os.path.normpath(cwd / os.path.expanduser(parts[0])))
    target = parts[1] if len(parts) == 2 else str(source)
    if not source.exists():
        raise UsageError(f"--mount {spec!r}: {source} does not exist.", hint="check the path; it is read on this host")
    if not target.startswith("/") or "\x00" in target:
        raise UsageError(f"--mount {spec!r}: the container path {target!r} is not absolute.",
                         hint="write it as SRC:/absolute/path")
    return Mount(str(source), target, read_only=read_only)


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
