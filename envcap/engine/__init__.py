"""The container engine seen by envcap: a small Protocol, so build/replay never touch the SDK.

Why a Protocol: unit tests pass a fake engine (tests/fakes.py) instead of patching ``docker``;
``envcap.engine.docker_engine`` is the only module that imports the Docker SDK, and nothing
touches Docker at import time.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from envcap.engine.errors import (
    BuildStepFailed,
    ContainerFailed,
    EngineError,
    EngineLost,
    EngineRefused,
    EngineUnavailable,
    ImageMissing,
    ImagePullFailed,
)

# Put on every container envcap starts, so strays can be found (``containers(MANAGED_LABEL)``).
MANAGED_LABEL = "io.envcap.managed"
# Also put on every container envcap starts: which process started it (``envcap.engine.leftovers``), so a later
# run can remove the containers of a run that died with its engine, and only those.
OWNER_LABEL = "io.envcap.owner"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    digests: tuple[str, ...] = ()  # name@sha256:... as the registry knows it (none for a local or imported image)
    entrypoint: tuple[str, ...] | None = None  # its ENTRYPOINT, () for none; None: not known (a list does not say)

    def digest_of(self, reference: str) -> str | None:
        """The registry digest (sha256:...) of ``reference``'s repository, when the engine knows one."""
        repository = reference.split("@", 1)[0]
        tail = repository.rsplit("/", 1)[-1]
        if ":" in tail:
            repository = repository[: len(repository) - len(tail)] + tail.split(":", 1)[0]
        for entry in self.digests:
            name, _, digest = entry.partition("@")
            if name in (repository, f"docker.io/{repository}", f"docker.io/library/{repository}") and digest:
                return digest
        return None


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    labels: dict[str, str] = field(default_factory=dict)


BuildEventKind = Literal["step", "log", "error"]
OutputStream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class BuildEvent:
    """One line of the build's progress: a step (Step n/m), a log line, or the builder's error."""

    kind: BuildEventKind
    text: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Commit:
    """Keep what the container wrote as an image, tagged, when it exits 0 (``docker commit``).

    Why: the venv a network-less container installed becomes an image without being sent back
    through a build context and copied again (half of a first build's time, measured). The engine
    restores the image's own entrypoint, command and user, so only the files and ``labels`` differ.
    """

    repository: str
    tag: str
    labels: dict[str, str] = field(default_factory=dict)


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
    commit: Commit | None = None


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: bytes = b""  # captured only when no on_output callback streams it
    stderr: bytes = b""
    oom_killed: bool = False
    container_id: str | None = None
    committed: ImageInfo | None = None  # the image made by RunSpec.commit


OutputCallback = Callable[[bytes, OutputStream], None]


class ContainerEngine(Protocol):
    endpoint: str  # where it looked, for messages (unix:///var/run/docker.sock)

    def ping(self) -> None:
        """Raises EngineUnavailable naming ``endpoint`` and how to start an engine."""

    def image(self, ref: str) -> ImageInfo | None:
        """The image by tag or id, or None when the engine does not have it."""

    def build(self, context: Path, *, tag: str, labels: dict[str, str],
              on_event: Callable[[BuildEvent], None] | None = None, network_disabled: bool = False) -> ImageInfo:
        """Builds ``context`` (Dockerfile inside); raises BuildStepFailed with the failing step and log tail."""

    def run(self, spec: RunSpec, *, on_output: OutputCallback | None = None) -> RunResult:
        """Runs to completion and removes the container, also on KeyboardInterrupt (which it re-raises).

        Raises ImageMissing, ContainerFailed, EngineRefused or EngineLost; never a workload's failure
        (that is the exit code in the result)."""

    def gpu_runtime_available(self) -> bool:
        """Whether the engine can pass GPUs through (an nvidia runtime or CDI devices configured)."""

    def containers(self, label: str) -> list[str]:
        """Ids of containers, running or not, that carry ``label`` (key or key=value)."""

    def remove_container(self, container_id: str) -> None: ...

    def find_containers(self, label: str) -> list[ContainerInfo]:
        """Containers, running or not, that carry ``label`` (key or key=value), with their labels: one call."""

    def remove_leftover_image(self, image_id: str) -> bool:
        """Removes an untagged image nothing uses (no container, no child image); False when it was kept."""

    def find_images(self, label: str) -> list[ImageInfo]:
        """Images that carry ``label`` (key or key=value), newest first: replay finds the lock's image by it."""

    # -- added for ``envcap build`` ---------------------------------------------------------
    def pull(self, ref: str) -> ImageInfo:
        """Fetches ``ref`` from its registry; raises ImagePullFailed naming the image when it cannot."""

    def tag(self, image_id: str, ref: str) -> None:
        """Points ``ref`` (name[:tag]) at an existing image."""

    def remove_image(self, ref: str) -> None:
        """Removes the tag or image (no error when it is already gone)."""


def keep_signals_for_the_main_thread() -> None:
    """Blocks Ctrl-C and SIGTERM in the calling worker thread, so the kernel delivers them to the main one.

    Why: a signal that lands in a thread blocked on the attach socket interrupts its read, and
    docker-py takes the EINTR for the end of the stream, so the workload's last output was lost
    (seen in half the replays interrupted right after they printed).
    """
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


from envcap.engine.connect import candidate_endpoints, connect  # noqa: E402 - connect's own imports need the types above

__all__ = ["MANAGED_LABEL", "OWNER_LABEL", "BuildEvent", "BuildEventKind", "BuildStepFailed", "Commit", "ContainerEngine",
           "ContainerFailed", "ContainerInfo",
           "EngineError", "EngineLost", "EngineRefused", "EngineUnavailable", "ImageInfo", "ImageMissing",
           "ImagePullFailed", "Mount", "OutputCallback", "OutputStream", "RunResult", "RunSpec",
           "candidate_endpoints", "connect", "keep_signals_for_the_main_thread"]
