"""envcap against a real Podman, through its Docker-compatible socket (scripts/ensure-podman.sh).

What differs from Docker and is checked here: Podman's builder writes ``STEP 1/5: ...`` and its own
error words (progress and a failing step's name must still come through), its commit must keep the
base's entrypoint and command, replays run under catatonit (``--init``), and a Podman without
catatonit runs them under envcap's stand-in init. envcap runs as a separate process with
DOCKER_HOST pointing at Podman, as a user would run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envcap.engine import BuildEvent, BuildStepFailed, ContainerEngine, ContainerFailed, RunSpec, connect
from envcap.engine.docker_engine import DockerEngine
from envcap.lock import load_snapshot
from envcap.lock.disposition import pins
from envcap.replay import REPLAY_LABEL
from tests.e2e.conftest import PodmanService
from tests.e2e.test_build_e2e import LIST_DISTRIBUTIONS, inside, make_venv
from tests.e2e.workloads import SLEEPER
from tests.machine import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.podman, pytest.mark.slow, pytest.mark.network]

PINS = ("numpy==2.2.6", "packaging==24.2")
WORKLOAD = ("import json, pathlib, sys, numpy\n"
            "out = pathlib.Path('out'); out.mkdir(exist_ok=True)\n"
            "(out / 'result.json').write_text(json.dumps({'sum': float(numpy.arange(10).sum()), 'args': sys.argv[1:]}))\n"
            "print('wrote', out / 'result.json', flush=True)\n")


def envcap(*args: str, cwd: Path, host: str, timeout: float = 600,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          env=os.environ | {"DOCKER_HOST": host}, check=False)


@contextlib.contextmanager
def removing_what_it_leaves(podman: DockerEngine) -> Iterator[None]:
    """Removes the untagged images that appeared meanwhile: a failed step's cache, a builder stage."""
    before = {str(image["Id"]) for image in podman.api.images(all=True)}
    try:
        yield
    finally:
        for image in podman.api.images(filters={"dangling": True}):
            if str(image["Id"]) not in before:
                podman.remove_leftover_image(str(image["Id"]))


@pytest.fixture(scope="module")
def podman(podman_service: PodmanService) -> DockerEngine:
    engine = connect(podman_service.host)
    assert isinstance(engine, DockerEngine)
    return engine


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, podman_service: PodmanService) -> Path:
    """A project with its venv (numpy, packaging), a snapshot with a recorded output, built by Podman."""
    root = tmp_path_factory.mktemp("podman-e2e")
    (root / "work.py").write_text(WORKLOAD)
    make_venv(root / ".venv", *PINS)
    done = envcap("snapshot", "--python", ".venv/bin/python", "--outputs", "out/*.json", "--",
                  ".venv/bin/python", "work.py", "a", cwd=root, host=podman_service.host)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def built(project: Path, podman_service: PodmanService) -> tuple[dict[str, object], str]:
    """``envcap build --json -v`` of the project through Podman: the result, and the progress on stderr."""
    done = envcap("build", ".envcap", "--base-image", podman_service.base_image, "--json", "-v", cwd=project,
                  host=podman_service.host)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result, done.stderr


def test_the_engine_behind_the_socket_is_podman(podman: DockerEngine) -> None:
    assert podman.flavour() == "podman"


def test_the_build_installs_every_pinned_distribution_and_reports_its_steps(
        built: tuple[dict[str, object], str], project: Path, podman: DockerEngine) -> None:
    result, progress = built
    found = inside(podman, str(result["tag"]), LIST_DISTRIBUTIONS)

    pinned = sorted([name, version] for name, version in pins(load_snapshot(project / ".envcap")))
    assert found["dists"] == pinned and {"numpy", "packaging"} <= {name for name, _ in pinned}
    assert found["numpy_sum"] == 10.0 and found["prefix"] == "/opt/venv"
    assert "Step 1/" in progress, "Podman's STEP lines are read as steps, not only echoed"
    info = podman.image(str(result["tag"]))
    assert info is not None and info.id == result["image"]
    assert str(result["tag"]) in info.tags, "tags read as Docker names them, not docker.io/library/..."
    assert info.labels["io.envcap.lock-digest"] == load_snapshot(project / ".envcap").digest


def test_the_committed_install_image_starts_the_bases_command_not_the_install_script(
        built: tuple[dict[str, object], str], podman: DockerEngine, podman_service: PodmanService) -> None:
    base = podman.api.inspect_image(podman_service.base_image)["Config"]
    # the final image inherits the install image's labels: the install image is the one tagged envcap-venv:...
    installs = [i for i in podman.find_images("io.envcap.purpose=packages")
                if any(t.startswith("envcap-venv:") for t in i.tags)]
    assert installs, "the install container was committed as an image, tagged as asked"
    config = podman.api.inspect_image(installs[0].id)["Config"]

    assert (config.get("Entrypoint") or None) == (base.get("Entrypoint") or None)
    assert config.get("Cmd") == (base.get("Cmd") or ["python3"])
    assert config.get("User") in ("", "root") and config.get("WorkingDir") in ("", "/")
    assert installs[0].labels["io.envcap.owner"] == "" and installs[0].labels["io.envcap.managed"] == "true"
    started = podman.run(RunSpec(image=installs[0].id, command=(), network_disabled=True))
    assert (started.exit_code, started.stdout, started.stderr) == (0, b"", b""), "bash with no input, not useradd"
    final = podman.api.inspect_image(str(built[0]["tag"]))["Config"]
    assert final["Cmd"] == ["python"] and final["User"] == "1000:1000"


def test_a_second_build_is_a_cache_hit(built: tuple[dict[str, object], str], project: Path,
                                       podman_service: PodmanService) -> None:
    done = envcap("build", ".envcap", "--base-image", podman_service.base_image, "--json", cwd=project,
                  host=podman_service.host)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["cached"] is True and again["image"] == built[0]["image"]


def test_replay_runs_the_workload_and_compares_its_output(built: tuple[dict[str, object], str], project: Path,
                                                          podman: DockerEngine, podman_service: PodmanService) -> None:
    done = envcap("replay", "--outputs", "out/*.json", "--report", "r.json", "--", "python", "work.py", "a",
                  cwd=project, host=podman_service.host)

    assert done.returncode == 0, done.stderr
    assert "wrote out/result.json" in done.stdout
    report = json.loads((project / "r.json").read_text())
    assert report["status"] == "ok" and report["exit_code"] == 0
    assert [(f["path"], f["status"]) for f in report["outputs"]["files"]] == [("out/result.json", "same")]
    assert json.loads((project / "out" / "result.json").read_text()) == {"sum": 45.0, "args": ["a"]}
    assert podman.containers(REPLAY_LABEL) == []


def test_a_failing_build_step_is_named_with_its_log_tail(podman: DockerEngine, podman_service: PodmanService,
                                                        tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    (tmp_path / "Dockerfile").write_text(f"FROM {podman_service.base_image}\n"
                                         f"RUN echo {marker}-before && echo line-two && exit 3\nRUN echo never\n")
    tag = f"envcap-test-failing:{marker[:12]}"
    events: list[BuildEvent] = []

    with removing_what_it_leaves(podman), pytest.raises(BuildStepFailed) as caught:
        podman.build(tmp_path, tag=tag, labels={}, on_event=events.append, network_disabled=True)

    message = caught.value.message
    assert message.startswith("the image build failed at step 2/"), message
    assert f"(RUN echo {marker}-before" in message and message.endswith("returned a non-zero code: 3.")
    assert "\n" not in message and "building at STEP" not in message
    assert caught.value.step is not None and f"echo {marker}-before" in caught.value.step
    assert f"{marker}-before" in caught.value.log_tail and "line-two" in caught.value.log_tail
    assert [e.step for e in events if e.kind == "step"] == [1, 2]
    assert podman.image(tag) is None


def test_a_failing_step_of_a_later_stage_names_its_stage(podman: DockerEngine, podman_service: PodmanService,
                                                        tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {podman_service.base_image} AS first\nRUN true\n"
                                         f"FROM first\nCOPY no-such-file /x\n")

    with removing_what_it_leaves(podman), pytest.raises(BuildStepFailed) as caught:
        podman.build(tmp_path, tag=f"envcap-test-failing:{uuid.uuid4().hex[:12]}", labels={},
                     network_disabled=True)

    assert "at step 2/" in caught.value.message and "of stage 2/2 (COPY no-such-file /x)" in caught.value.message
    assert "no such file or directory" in caught.value.message and "\n" not in caught.value.message


def test_podmans_refusals_are_one_sentence(podman: DockerEngine, podman_service: PodmanService) -> None:
    with pytest.raises(ContainerFailed) as caught:
        podman.run(RunSpec(image=podman_service.base_image, command=("true",), user="no-such-user"))

    assert "\n" not in caught.value.message and caught.value.message.endswith("passwd file.")
    assert podman.image("Not A Valid Reference!") is None  # Podman answers 500 there, Docker 400


def test_the_context_folder_builds_offline_with_a_plain_podman_build(project: Path, podman: DockerEngine,
                                                                     podman_service: PodmanService,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    done = envcap("build", ".envcap", "--base-image", podman_service.base_image, "--context", str(out), "--json",
                  cwd=project, host=podman_service.host)
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    tag = "envcap-test-context:" + str(written["digest"]).split(":")[-1][:12]
    podman_cli = shutil.which("podman")
    assert podman_cli is not None
    with removing_what_it_leaves(podman):
        # --remote: the build runs in the service, under its containers.conf (the ulimits this machine needs)
        made = subprocess.run([podman_cli, "--remote", "--url", podman_service.host, "build", "--network", "none",
                               "-q", "-t", tag, str(out)], capture_output=True, text=True, timeout=600)
        assert made.returncode == 0, made.stderr[-2000:]
        try:
            found = inside(podman, tag, LIST_DISTRIBUTIONS)
            assert ["numpy", "2.2.6"] in found["dists"]  # type: ignore[operator]
        finally:
            podman.remove_image(tag)


# -- a Podman without catatonit -------------------------------------------------------------------
@pytest.fixture(scope="module")
def podman_without_init(podman_service: PodmanService) -> Iterator[str]:
    """A second Podman service that cannot find catatonit, as on a Debian host without the package.

    Its own mount namespace hides /usr/libexec/podman (where Podman looks for catatonit) under an empty
    tmpfs, and its own storage keeps the machine's store apart; the base image is copied in. The
    namespace is a slave of the machine's: unmounts there reach it, so it holds no other container's mounts.
    """
    podman_cli, unshare = shutil.which("podman"), shutil.which("unshare")
    if os.geteuid() != 0 or podman_cli is None or unshare is None:
        unavailable("A PODMAN WITHOUT CATATONIT NEEDS root, podman and unshare here; stand-in init test skipped")
    folder = Path(tempfile.mkdtemp(prefix="envcap-noinit-", dir="/tmp"))  # Podman wants a runroot under 50 characters
    store = ["--root", str(folder / "root"), "--runroot", str(folder / "runroot")]
    saved = subprocess.run([podman_cli, "save", podman_service.base_image], capture_output=True, timeout=300,
                           check=True)
    loaded = subprocess.run([podman_cli, *store, "load", "-q"], input=saved.stdout, capture_output=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr.decode(errors="replace")[-2000:]
    socket = f"unix://{folder / 'podman.sock'}"
    (folder / "containers.conf").write_text(  # as ensure-podman.sh writes it: Podman's own ulimits exceed this VM's
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n')
    script = ('if [ -d /usr/libexec/podman ]; then mount -t tmpfs -o size=1m envcap-no-catatonit /usr/libexec/podman '
              '|| exit 1; fi; exec "$0" "$@"')
    with (folder / "service.log").open("wb") as log:
        service = subprocess.Popen([unshare, "--mount", "--propagation", "slave", "sh", "-c", script, podman_cli,
                                    *store, "system", "service", "--time=0", socket],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=os.environ | {"CONTAINERS_CONF": str(folder / "containers.conf")})
    try:
        deadline = time.monotonic() + 30
        while not (folder / "podman.sock").exists() and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.2)
        assert (folder / "podman.sock").exists(), (folder / "service.log").read_text()
        yield socket
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=30)
        subprocess.run([podman_cli, *store, "system", "reset", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_without_catatonit_podman_itself_refuses_init(podman_without_init: str, podman_service: PodmanService) -> None:
    import docker

    api = docker.APIClient(base_url=podman_without_init, version="auto")
    try:
        with pytest.raises(docker.errors.APIError, match="container-init binary not found"):
            api.create_container(podman_service.base_image, ["true"], host_config=api.create_host_config(init=True))
    finally:
        api.close()


@pytest.fixture(params=["catatonit", "stand-in"])
def init_host(request: pytest.FixtureRequest, podman_service: PodmanService) -> str:
    """The Podman service with its own init (catatonit), then the one without, where envcap brings its own."""
    if request.param == "catatonit":
        if not Path("/usr/libexec/podman/catatonit").exists():
            unavailable("catatonit is not installed here (ensure-podman.sh installs it where apt has it)")
        return podman_service.host
    return str(request.getfixturevalue("podman_without_init"))


@pytest.mark.parametrize(("command", "code"), [
    (("sh", "-c", "exit 3"), 3),
    (("sh", "-c", "kill -TERM $$"), 143),
    (("sh", "-c", "echo $$ > pid.txt"), 0),
    (("no-such-program-in-the-image",), 127),
])
def test_exit_codes_pass_through_the_init(project: Path, init_host: str, podman_service: PodmanService,
                                          command: tuple[str, ...], code: int) -> None:
    (project / "pid.txt").unlink(missing_ok=True)

    done = envcap("replay", "--image", podman_service.base_image, "--", *command, cwd=project, host=init_host)

    assert done.returncode == code, done.stderr
    if "pid.txt" in command[-1]:
        assert (project / "pid.txt").read_text().strip() != "1", "the workload is not PID 1: an init runs"


def test_stdin_and_ctrl_c_reach_the_workload_through_the_init(project: Path, init_host: str,
                                                              podman_service: PodmanService) -> None:
    piped = envcap("replay", "--image", podman_service.base_image, "--", "python3", "-c",
                   "import sys; print('GOT', sys.stdin.read().strip()[::-1])", cwd=project,
                   host=init_host, stdin="olleh")
    assert piped.returncode == 0 and "GOT hello" in piped.stdout, piped.stderr

    (project / "saw-sigint.txt").unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "envcap", "replay", "--image", podman_service.base_image, "--",
                                "python3", "-c", SLEEPER], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env=os.environ | {"DOCKER_HOST": init_host})
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert (project / "saw-sigint.txt").read_text() == "yes"
    assert "saving a checkpoint before exiting" in out, err
    engine: ContainerEngine = connect(init_host)
    assert engine.containers(REPLAY_LABEL) == []
