"""The engine dies in the middle: one sentence and exit 12, and a later run sweeps what was left.

A private dockerd (``second_engine``) is SIGKILLed while ``envcap build`` installs the packages (in a
container of the base image) and while ``envcap replay`` runs its workload; envcap runs as a separate process pointed at it with DOCKER_HOST,
so the exit code, the streams and the leftovers are the real ones. After the engine is restarted, the
leftovers are shown to be there (the builder's intermediate container, the workload's container) and
then gone after the next envcap run, which also must not touch what a live process or another host owns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from envcap.engine import OWNER_LABEL
from envcap.engine.leftovers import Process, this_process
from envcap.replay import REPLAY_LABEL
from tests.e2e.second_engine import SecondEngine

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network, pytest.mark.engine_faults]

INSTALLING = re.compile(r"^envcap: installing \d+ distributions? ")  # as -v prints it
WORKLOAD = "import time; print('workload started', flush=True); time.sleep(120)"


@pytest.fixture(scope="module")
def lock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real venv (one pinned distribution besides pip) and its snapshot."""
    root = tmp_path_factory.mktemp("faults")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "packaging==24.2"], check=True)
    done = subprocess.run([sys.executable, "-m", "envcap", "snapshot", "--python", str(root / "venv" / "bin" / "python"),
                           "--out", str(root / "lock")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return root / "lock"


@pytest.fixture()
def client(second_engine: SecondEngine) -> Iterator[docker.DockerClient]:
    made = docker.DockerClient(base_url=second_engine.endpoint, timeout=60)
    yield made
    made.close()


class Run:
    """``envcap ARGS`` against the second engine, its stderr read line by line as it comes."""

    def __init__(self, engine: SecondEngine, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "envcap", *args], cwd=cwd, env=engine.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.err: list[str] = []
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read_out, daemon=True)
        self._reader.start()

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out.append(line)

    def err_lines(self) -> Iterator[str]:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            yield line.rstrip("\n")

    def finish(self, timeout: float = 120) -> int:
        assert self.process.stderr is not None
        self.err += self.process.stderr.readlines()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def assert_one_sentence_and_exit_12(code: int, stderr: str, engine: SecondEngine) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"error: the container engine at {engine.endpoint} stopped answering"), errors
    assert code == 12, stderr


def later_run(engine: SecondEngine, lock: Path, cwd: Path) -> None:
    """Any later envcap build or replay against the engine sweeps; a replay in the base image is the cheapest."""
    done = subprocess.run([sys.executable, "-m", "envcap", "replay", str(lock), "--image", engine.base_image,
                           "--", "true"], cwd=cwd, env=engine.env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def container_ids(client: docker.DockerClient, **filters: str) -> set[str]:
    return {str(c.id)[:12] for c in client.containers.list(all=True, filters=dict(filters) or None)}


def journals() -> list[Path]:
    return sorted((Path(os.environ["ENVCAP_CACHE_DIR"]) / "leftovers").glob("build-*.jsonl"))


def test_engine_killed_while_the_build_installs(second_engine: SecondEngine, client: docker.DockerClient,
                                                lock: Path, base_image: str, tmp_path: Path) -> None:
    """The install runs in a container of the base image (committed as the packages' image when it ends):
    the engine is killed while that container exists, as soon as the engine shows it."""
    run = Run(second_engine, "-v", "build", str(lock), "--base-image", base_image, cwd=tmp_path)
    for line in run.err_lines():
        if INSTALLING.match(line):
            break
    installer = None
    deadline = time.monotonic() + 60
    while installer is None and time.monotonic() < deadline and run.process.poll() is None:
        mine = client.containers.list(all=True, filters={"label": OWNER_LABEL})
        installer = str(mine[0].id)[:12] if mine else None
        if installer is None:
            time.sleep(0.02)
    assert installer is not None, run.stderr
    second_engine.kill()
    code = run.finish()

    assert_one_sentence_and_exit_12(code, run.stderr, second_engine)
    assert "removed by its next build or replay" in run.stderr

    second_engine.start()
    assert installer in container_ids(client), "the install's container was left (else nothing to prove)"
    assert not client.images.list(name="envcap-venv"), "no packages' image is kept from a killed install"

    later_run(second_engine, lock, tmp_path)

    assert installer not in container_ids(client)
    assert not journals()
    client.images.get(base_image)  # what it started from is untouched


def test_engine_killed_during_a_replay(second_engine: SecondEngine, client: docker.DockerClient, lock: Path,
                                       tmp_path: Path) -> None:
    run = Run(second_engine, "replay", str(lock), "--image", second_engine.base_image, "--", "python3", "-c",
              WORKLOAD, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not any("workload started" in line for line in run.out) and time.monotonic() < deadline:
        assert run.process.poll() is None, run.stderr
        time.sleep(0.1)
    second_engine.kill()
    code = run.finish()

    assert_one_sentence_and_exit_12(code, run.stderr, second_engine)
    replay_ids = [p.name for p in (lock / "replays").iterdir() if p.is_dir()]
    report = json.loads((lock / "replays" / sorted(replay_ids)[-1] / "report.json").read_text())
    assert report["status"] == "engine-failed"

    second_engine.start()
    left = container_ids(client, label=f"{REPLAY_LABEL}={report['replay_id']}")
    assert left, "the workload's container was left behind by the dead engine (else nothing to prove)"
    owners = {c.labels[OWNER_LABEL] for c in client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    assert len(owners) == 1 and Process.parse(owners.pop()) is not None

    later_run(second_engine, lock, tmp_path)

    assert not container_ids(client, label=f"{REPLAY_LABEL}={report['replay_id']}")
    assert not container_ids(client, label=OWNER_LABEL), "the later run removed its own containers too"


def test_the_sweep_removes_only_what_a_gone_process_on_this_host_owned(second_engine: SecondEngine,
                                                                       client: docker.DockerClient, lock: Path,
                                                                       tmp_path: Path) -> None:
    me = this_process()
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "300"])
    try:
        with open(f"/proc/{alive.pid}/stat") as handle:
            alive_start = handle.read().rpartition(")")[2].split()[19]
        tokens = {
            "gone": Process(me.host, gone.pid, "1", me.boot, me.pidns).token(),
            "reused": Process(me.host, alive.pid, str(int(alive_start) - 1), me.boot, me.pidns).token(),
            "earlier-boot": Process(me.host, alive.pid, alive_start, "00000000", me.pidns).token(),
            "alive": Process(me.host, alive.pid, alive_start, me.boot, me.pidns).token(),
            "other-host": Process("elsewhere", 4_000_000, "1", me.boot, me.pidns).token(),
            "other-namespace": Process(me.host, 4_000_000, "1", me.boot, "1").token(),
            "unreadable": "not a token",
        }
        made = {name: str(client.containers.create(second_engine.base_image, ["true"],
                                                   labels={OWNER_LABEL: token, "io.envcap.test": name}).id)[:12]
                for name, token in tokens.items()}

        later_run(second_engine, lock, tmp_path)

        remaining = container_ids(client)
        assert {name for name, cid in made.items() if cid in remaining} == {
            "alive", "other-host", "other-namespace", "unreadable"}
    finally:
        alive.kill()
        alive.wait()
        for container in client.containers.list(all=True, filters={"label": "io.envcap.test"}):
            container.remove(force=True)
