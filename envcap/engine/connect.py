"""Finding an engine: ``DOCKER_HOST``, else Docker's socket, else Podman's, the first that answers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from envcap.engine.errors import EngineUnavailable

if TYPE_CHECKING:
    from envcap.engine import ContainerEngine


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
            problems.append(f"{endpoint} ({exc.reason or exc.message.rstrip('.')})")
            continue
        return engine
    where = "; ".join(problems) or ", ".join(candidates)
    hint = ("start one (`sudo dockerd`, `sudo systemctl start docker`, or `systemctl --user start podman.socket`) "
            "or point DOCKER_HOST at a running engine")
    if any("(permission denied)" in problem for problem in problems):
        hint = "add your user to the docker group (then log in again), or point DOCKER_HOST at an engine you may use"
    raise EngineUnavailable(f"cannot reach a container engine: looked at {where}.", hint=hint)
