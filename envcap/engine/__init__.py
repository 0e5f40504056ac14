"""The container engine seen by envcap: a small Protocol, so build/replay never touch the SDK.

Why a Protocol: unit tests pass a fake engine (tests/fakes.py) instead of patching ``docker``;
``envcap.engine.docker_engine`` is the only module that imports the Docker SDK, and nothing
touches Docker at import time.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from envcap.errors import BuildError, EngineUnavailable

# Put on every container envcap starts, so strays can be found (``containers(MANAGED_LABEL)``).
MANAGED_LABEL = "io.envcap.managed"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    size: int | None = None


@dataclass(frozen=True)
class BuildEvent:
    """One line of the build's progress: ``kind`` is step (Step n/m), log, or error."""

    kind: str
    text: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: tuple[str, ...]
    workdir: str | None = None
    user: str | None = None  # "uid:gid"
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    gpus: bool = False  # pass every GPU through (device requests)
    tty: bool = False
    interactive: bool = False  # attach the caller's stdin
    stdin_data: bytes | None = None  # written to the container's stdin, then closed (e.g. the probe script)
    labels: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    network_disabled: bool = False
    init: bool = False  # an init process as PID 1 (docker run --init): signals reach the workload, exit 128+n


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: bytes = b""  # captured only when no on_output callback streams it
    stderr: bytes = b""
    oom_killed: bool = False
    container_id: str | None = None


OutputCallback = Callable[[bytes, str], None]  # (chunk, "stdout" | "stderr")


class ContainerEngine(Protocol):
    endpoint: str  # where it looked, for messages (unix:///var/run/docker.sock)

    def ping(self) -> None:
        """Raises EngineUnavailable naming ``endpoint`` and how to start an engine."""

    def image(self, ref: str) -> ImageInfo | None:
        """The image by tag or id, or None when the engine does not have it."""

    def build(self, context: Path, *, tag: str, labels: dict[str, str],
              on_event: Callable[[BuildEvent], None] | None = None) -> ImageInfo:
        """Builds ``context`` (Dockerfile inside); raises BuildError with the failing step and log tail."""

    def run(self, spec: RunSpec, *, on_output: OutputCallback | None = None) -> RunResult:
        """Runs to completion and removes the container, also on KeyboardInterrupt (which it re-raises)."""

    def gpu_runtime_available(self) -> bool:
        """Whether the engine can pass GPUs through (an nvidia runtime or CDI devices configured)."""

    def containers(self, label: str) -> list[str]:
        """Ids of containers, running or not, that carry ``label`` (key or key=value)."""

    def remove_container(self, container_id: str) -> None: ...

    def find_images(self, label: str) -> list[ImageInfo]:
        """Images that carry ``label`` (key or key=value), newest first: replay finds the lock's image by it."""

    # -- added for ``envcap build`` ---------------------------------------------------------
    def pull(self, ref: str) -> ImageInfo:
        """Fetches ``ref`` from its registry; raises BuildError naming the image when it cannot."""

    def tag(self, image_id: str, ref: str) -> None:
        """Points ``ref`` (name[:tag]) at an existing image."""

    def remove_image(self, ref: str) -> None:
        """Removes the tag or image (no error when it is already gone)."""


class BuildStepFailed(BuildError):
    """A build step exited non-zero: which step, and the last lines of its log for the user."""

    def __init__(self, message: str, hint: str | None = None, *, step: str | None = None,
                 log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.step = step
        self.log_tail = log_tail


def _podman_sockets(environ: Mapping[str, str]) -> list[str]:
    runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return [f"unix://{runtime}/podman/podman.sock", "unix:///run/podman/podman.sock"]


def candidate_endpoints(environ: Mapping[str, str] | None = None) -> list[str]:
    """Where an engine is looked for, in order: ``DOCKER_HOST``, Docker's socket, then Podman's.

    Why Podman too: its socket speaks the Docker API, so a machine with only Podman works the same.
    ``DOCKER_HOST``, when set, is the only place looked (the user chose it).
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get("DOCKER_HOST")
    if explicit:
        return [explicit]
    return ["unix:///var/run/docker.sock", *_podman_sockets(environ)]


def connect(base_url: str | None = None, *, timeout: float = 60.0,
            environ: Mapping[str, str] | None = None) -> ContainerEngine:
    """The first engine that answers, or EngineUnavailable naming every place looked at.

    TLS settings (``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``) are honoured as the Docker CLI does.
    """
    from envcap.engine.docker_engine import DockerEngine

    environ = os.environ if environ is None else environ
    candidates = [base_url] if base_url else candidate_endpoints(environ)
    problems = []
    for endpoint in candidates:
        if endpoint.startswith("unix://") and not Path(endpoint[7:]).exists() and len(candidates) > 1:
            problems.append(f"{endpoint} (no such socket)")
            continue
        engine = DockerEngine(endpoint, timeout=timeout, environ=environ)
        try:
            engine.ping()
        except EngineUnavailable as exc:
            problems.append(f"{endpoint} ({getattr(exc, 'reason', exc.message.rstrip('.'))})")
            continue
        return engine
    where = "; ".join(problems) or ", ".join(candidates)
    hint = ("start one (`sudo dockerd`, `sudo systemctl start docker`, or `systemctl --user start podman.socket`) "
            "or point DOCKER_HOST at a running engine")
    if any("(permission denied)" in problem for problem in problems):
        hint = "add your user to the docker group (then log in again), or point DOCKER_HOST at an engine you may use"
    raise EngineUnavailable(f"cannot reach a container engine: looked at {where}.", hint=hint)


def keep_signals_for_the_main_thread() -> None:
    """Blocks Ctrl-C and SIGTERM in the calling worker thread, so the kernel delivers them to the main one.

    Why: a signal that lands in a thread blocked on the attach socket interrupts its read, and
    docker-py takes the EINTR for the end of the stream, so the workload's last output was lost
    (seen in half the replays interrupted right after they printed).
    """
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
