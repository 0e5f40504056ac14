"""The container engine seen by envcap: a small Protocol, so build/replay never touch the SDK.

Why a Protocol: unit tests pass a fake engine (tests/fakes.py) instead of patching ``docker``;
``envcap.engine.docker_engine`` is the only module that imports the Docker SDK, and nothing
touches Docker at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


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
