"""ENV values as the Docker engine reads them: the rendered ENV block is built for real and printed back.

Why a real engine: whether a quoted Dockerfile word keeps ``$``, quotes, backslashes and non-ASCII text
is decided by the builder's parser, not by the template. Marked e2e; the fixtures come from
tests/e2e/conftest.py (a local Debian base image, no registry needed).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from envcap.emit.dockerfile import render_dockerfile
from envcap.emit.plan import make_plan
from envcap.lock import OsInfo, PythonEnv, Snapshot
from tests.e2e.conftest import base_image, docker_client  # noqa: F401 - fixtures for this module

pytestmark = pytest.mark.e2e


def env_block(dockerfile: str) -> str:
    """The ENV instruction that carries the captured variables (after its comment line)."""
    lines = dockerfile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# The numerics-relevant")) + 1
    block = []
    for line in lines[start:]:
        block.append(line)
        if not line.endswith(" \\"):
            break
    return "\n".join(block)


def values_seen_by_the_container(docker_client, base_image: str, env: dict[str, str], tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    snapshot = Snapshot(python=PythonEnv(version="3.11.2"), os=OsInfo(id="debian", codename="bookworm"),
                        env=env).with_digest()
    block = env_block(render_dockerfile(make_plan(snapshot)))
    names = json.dumps(sorted(env))
    script = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names}}}))"
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\n{block}\nCMD {json.dumps(['python3', '-c', script])}\n",
                                         "utf-8")
    tag = f"envcap-test-env-quoting:{uuid.uuid4().hex[:12]}"
    image, _ = docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        output = docker_client.containers.run(tag, remove=True)
    finally:
        docker_client.images.remove(image.id, force=True)
    return json.loads(output)  # type: ignore[no-any-return]


def test_quotes_dollars_backslashes_and_backticks_arrive_unchanged(docker_client, base_image: str,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    env = {
        "XLA_FLAGS": '--xla_dump_to="/tmp/a b" --flag=$HOME',
        "MKL_VERBOSE": "it's ${MKL} `uname` $(id)",
        "NCCL_DEBUG_SUBSYS": "INIT,\\ENV",
        "TORCH_LOGS": "+dynamo,guards",
        "OMP_NUM_THREADS": "4",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    assert values_seen_by_the_container(docker_client, base_image, env, tmp_path) == env


def test_non_ascii_and_control_characters_arrive_unchanged(docker_client, base_image: str,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    env = {"TORCHINDUCTOR_CACHE_DIR": "/home/jürgen/.cache/inductor", "TORCH_LOGS_FORMAT": "a\tb"}
    assert values_seen_by_the_container(docker_client, base_image, env, tmp_path) == env
