"""End-to-end fixtures: a real Docker engine and a locally made base image; a real Podman service.

No registry is reachable on the machines this suite runs on, so the base image is made with
debootstrap (scripts/ensure-docker.sh). These tests are skipped only where no engine could be
started at all, and then loudly: the reason is printed in pytest's summary and on stderr. The
Podman tests use the service scripts/ensure-podman.sh starts (scripts/test.sh says where, in
ENVCAP_PODMAN_HOST and ENVCAP_PODMAN_STATUS), and are skipped, loudly, only when it could not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.second_engine import SecondEngine, why_not
from tests.machine import unavailable

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "envcap-test-base:bookworm"


def _engine_problem() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine for these tests
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    problem = _engine_problem()
    if problem is not None and os.environ.get("ENVCAP_DOCKER_STATUS") is None:
        # Not started through scripts/test.sh: try to start one, as the suite promises.
        subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], check=False,
                       stdout=subprocess.DEVNULL)
        problem = _engine_problem()
    if problem is not None:
        unavailable(f"NO DOCKER ENGINE COULD BE STARTED, end-to-end test skipped: {problem}")
    import docker

    client = docker.from_env(timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: object) -> str:
    """A local Debian bookworm image with python3 and python3-venv (made once, then reused)."""
    name = os.environ.get("ENVCAP_TEST_BASE_IMAGE", DEFAULT_BASE)
    import docker

    assert isinstance(docker_client, docker.DockerClient)
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        env = dict(os.environ, ENVCAP_TEST_BASE_IMAGE=name)
        done = subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"could not make the base image {name}: {done.stderr[-2000:]}"
    return name


@pytest.fixture(scope="module")
def second_engine(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    """A private dockerd (tests/e2e/second_engine.py) with the base image, for tests that kill it."""
    problem = why_not()
    if problem is not None:
        unavailable(f"NO SECOND DOCKERD CAN BE STARTED HERE, engine-fault test skipped: {problem}")
    engine = SecondEngine(tmp_path_factory.mktemp("dockerd2"))
    try:
        engine.setup(base_image)
        yield engine
    finally:
        for note in engine.teardown():
            print(f"\nsecond dockerd teardown: {note}", file=sys.stderr)


@dataclass(frozen=True)
class PodmanService:
    host: str  # unix:///run/envcap-podman/podman.sock, for DOCKER_HOST
    base_image: str  # in Podman's own store


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """The Podman service of scripts/ensure-podman.sh: started here when scripts/test.sh did not run it."""
    script = REPO / "scripts" / "ensure-podman.sh"
    status = os.environ.get("ENVCAP_PODMAN_STATUS")
    started_here = False
    host, base = os.environ.get("ENVCAP_PODMAN_HOST", ""), os.environ.get("ENVCAP_PODMAN_BASE_IMAGE", DEFAULT_BASE)
    if status is None:  # not started through scripts/test.sh: start it, as the suite promises, and stop it after
        was_up = subprocess.run(["bash", str(script), "--status"], capture_output=True, check=False).returncode == 0
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            host, base = done.stdout.strip().splitlines()[-2:]
            status, started_here = "ready", not was_up
        else:
            status = f"unavailable: {(done.stderr.strip().splitlines() or ['ensure-podman.sh failed'])[-1]}"
    if status != "ready" or not host:
        unavailable(f"NO PODMAN SERVICE COULD BE STARTED, Podman end-to-end test skipped: {status}")
    try:
        yield PodmanService(host=host, base_image=base)
    finally:
        if started_here:
            subprocess.run(["bash", str(script), "--stop"], capture_output=True, check=False)
