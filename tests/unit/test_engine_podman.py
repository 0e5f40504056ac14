"""Podman behind the Docker API, without an engine: its build stream, its error words, its init.

The streams and messages below are recorded from Debian 12's podman 4.3.1 through its compatible
socket (``podman system service``), next to Docker 20.10's for the same Dockerfiles.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from envcap.engine import BuildEvent, EngineRefused, RunSpec
from envcap.engine._buildlog import BuildLog, builder_error
from envcap.engine._init import ENTRYPOINT, SCRIPT, exec_failure, wrap
from envcap.engine.docker_engine import DockerEngine, familiar, flavour_of, said
from envcap.engine.leftovers import BuildJournal, read_journal

PODMAN_VERSION = {"Platform": {"Name": "linux/amd64/debian-12"}, "Version": "4.3.1", "ApiVersion": "1.41",
                  "Components": [{"Name": "Podman Engine", "Version": "4.3.1"},
                                 {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
                                 {"Name": "OCI Runtime (runc)", "Version": "runc version 1.1.5+ds1"}]}
DOCKER_VERSION = {"Platform": {"Name": ""}, "Version": "20.10.24+dfsg1", "ApiVersion": "1.41",
                  "Components": [{"Name": "Engine", "Version": "20.10.24+dfsg1"},
                                 {"Name": "containerd", "Version": "1.6.20~ds1"},
                                 {"Name": "docker-init", "Version": "0.19.0"}]}

PODMAN_OK: list[dict[str, Any]] = [
    {"stream": "STEP 1/4: FROM envcap-test-base:bookworm\n"},
    {"stream": "STEP 2/4: RUN echo hello\n"}, {"stream": "hello\n"}, {"stream": "--> ce41593d1c8\n"},
    {"stream": "STEP 3/4: ENV A=1\n"},
    {"stream": "--> Using cache dec8b52f8cda566e15cd59002240633423802e5def63d94b40dbe60a0bdf15d9\n"},
    {"stream": "--> dec8b52f8cd\n"},
    {"stream": 'STEP 4/4: LABEL "a"="b"\n'}, {"stream": "COMMIT\n"}, {"stream": "--> c0d812f4eb3\n"},
    {"stream": "c0d812f4eb32e80c11177b01fa6b8d7d469c68db688b9bb1dc6d0666282291fd\n"},
    {"aux": {"ID": "sha256:c0d812f4eb32e80c11177b01fa6b8d7d469c68db688b9bb1dc6d0666282291fd"}},
    {"stream": "Successfully built c0d812f4eb32\n"},
]
PODMAN_FAILED: list[dict[str, Any]] = [
    {"stream": "STEP 1/5: FROM envcap-test-base:bookworm\n"},
    {"stream": "STEP 2/5: RUN echo hello\n"}, {"stream": "hello\n"}, {"stream": "--> ce41593d1c8\n"},
    {"stream": "STEP 3/5: RUN echo bad >&2 && exit 3\n"}, {"stream": "bad\n"},
    {"errorDetail": {"message": 'building at STEP "RUN echo bad >&2 && exit 3": while running runtime: exit status 3\n'},
     "error": 'building at STEP "RUN echo bad >&2 && exit 3": while running runtime: exit status 3\n'},
]
PODMAN_STAGES: list[dict[str, Any]] = [
    {"stream": "[1/3] STEP 1/1: FROM envcap-test-base:bookworm AS runtime\n"}, {"stream": "--> d743069462b\n"},
    {"stream": "[2/3] STEP 1/2: FROM d743069462b3b8a40b83820b28643e9e9f2aff05d41513ef5f944788b267437f AS builder\n"},
    {"stream": "[2/3] STEP 2/2: COPY wheels/ /envcap/wheels/\n"}, {"stream": "--> f1d4f678992\n"},
    {"stream": "[3/3] STEP 1/2: FROM d743069462b3b8a40b83820b28643e9e9f2aff05d41513ef5f944788b267437f\n"},
    {"stream": "[3/3] STEP 2/2: RUN useradd --no-log-init --create-home --uid 1000 envcap\n"},
    {"errorDetail": {"message": 'building at STEP "RUN useradd --no-log-init --create-home --uid 1000 envcap": '
                                "while running runtime: exit status 9\n"}},
]


def feed(items: list[dict[str, Any]], tmp_path: Path) -> tuple[BuildLog, list[BuildEvent]]:
    events: list[BuildEvent] = []
    log = BuildLog(events.append, BuildJournal("unix:///podman.sock", folder=tmp_path))
    for item in items:
        log.feed(item)
    return log, events


def test_podmans_step_lines_are_steps_and_its_step_images_are_journaled(tmp_path: Path) -> None:
    log, events = feed(PODMAN_OK, tmp_path)

    assert [(e.step, e.total, e.text) for e in events if e.kind == "step"] == [
        (1, 4, "FROM envcap-test-base:bookworm"), (2, 4, "RUN echo hello"), (3, 4, "ENV A=1"), (4, 4, 'LABEL "a"="b"')]
    assert log.image_id == "sha256:c0d812f4eb32e80c11177b01fa6b8d7d469c68db688b9bb1dc6d0666282291fd"
    journal = read_journal(next(tmp_path.iterdir()))
    assert journal is not None
    assert journal.images == ("ce41593d1c8", "c0d812f4eb3")  # not the cache hit of step 3
    assert BuildEvent("log", "hello") in events


def test_without_the_aux_item_the_id_after_commit_is_the_image(tmp_path: Path) -> None:
    log, _ = feed([item for item in PODMAN_OK if "aux" not in item and "Successfully" not in str(item)], tmp_path)

    assert log.image_id == "c0d812f4eb32e80c11177b01fa6b8d7d469c68db688b9bb1dc6d0666282291fd"


def test_a_failing_podman_step_reads_like_dockers(tmp_path: Path) -> None:
    log, events = feed(PODMAN_FAILED, tmp_path)

    assert log.step_label == "3/5" and log.step_text == "RUN echo bad >&2 && exit 3"
    assert log.error == "the command returned a non-zero code: 3"
    assert list(log.tail) == ["bad"] and events[-1] == BuildEvent("error", log.error)


def test_a_step_of_a_later_stage_names_its_stage(tmp_path: Path) -> None:
    log, events = feed(PODMAN_STAGES, tmp_path)

    assert log.step_label == "2/2 of stage 3/3" and log.step_text.startswith("RUN useradd")
    assert log.error == "the command returned a non-zero code: 9"
    assert [e.step for e in events if e.kind == "step"] == [1, 1, 2, 1, 2]


@pytest.mark.parametrize(("said_by_the_builder", "expected"), [
    ('building at STEP "RUN x": while running runtime: exit status 3\n', "the command returned a non-zero code: 3"),
    ('building at STEP "COPY nothere /x": checking on sources under "/var/tmp/libpod_builder1/build": copier: '
     'stat: "/nothere": no such file or directory\n',
     'checking on sources under "/var/tmp/libpod_builder1/build": copier: stat: "/nothere": no such file or directory'),
    ('building at STEP "FROBNICATE ": Build error: Unknown instruction: "FROBNICATE" &imagebuilder.Step{Env:[]string{'
     '"PATH=/usr/bin"}, Command:"frobnicate", Original:"FROBNICATE x"}\n',
     'Build error: Unknown instruction: "FROBNICATE"'),
    ("The command '/bin/sh -c exit 3' returned a non-zero code: 3", "The command '/bin/sh -c exit 3' returned a "
                                                                     "non-zero code: 3"),
    ("COPY failed: file not found in build context or excluded by .dockerignore: stat nothere: file does not exist",
     "COPY failed: file not found in build context or excluded by .dockerignore: stat nothere: file does not exist"),
    ("", "failed"),
])
def test_builder_errors_become_one_line(said_by_the_builder: str, expected: str) -> None:
    assert builder_error(said_by_the_builder) == expected


def test_the_engine_is_told_apart_by_its_version() -> None:
    assert flavour_of(PODMAN_VERSION) == "podman"
    assert flavour_of({"Platform": {"Name": "Podman Engine"}}) == "podman"
    assert flavour_of(DOCKER_VERSION) == "docker"
    assert flavour_of({}) == "docker"


def test_engine_explanations_are_one_clause() -> None:
    class Refusal(Exception):
        explanation = "unable to find user nobody2: no matching entries in passwd file\n"

    assert said(Refusal()) == "unable to find user nobody2: no matching entries in passwd file"
    assert said(ValueError("it failed.")) == "it failed"


@pytest.mark.parametrize(("tag", "expected"), [
    ("docker.io/library/envcap:abc", "envcap:abc"), ("docker.io/team/train:v1", "team/train:v1"),
    ("localhost/envcap-test-base:bookworm", "localhost/envcap-test-base:bookworm"),
    ("envcap:abc", "envcap:abc"), ("registry:5000/x:1", "registry:5000/x:1"),
])
def test_podmans_full_names_read_as_dockers(tag: str, expected: str) -> None:
    assert familiar(tag) == expected


# -- Podman's refusals ---------------------------------------------------------------------------
class FakeRunAPI:
    """Just enough of docker.APIClient to create containers; the first init create fails as Podman's does."""

    def __init__(self, *, init_missing: bool, config: dict[str, Any] | None = None) -> None:
        self.init_missing = init_missing
        self.config = config or {"Entrypoint": None, "Cmd": ["/bin/bash"]}
        self.created: list[dict[str, Any]] = []

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return {"Init": kwargs.get("init")}

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        if kwargs["host_config"]["Init"] and self.init_missing:
            raise podman_error(500, "container create: container-init binary not found on the host: stat "
                                    "/usr/libexec/podman/catatonit: no such file or directory")
        self.created.append(kwargs)
        return {"Id": "c" * 64}

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:" + "1" * 64, "Config": self.config}

    def version(self) -> dict[str, Any]:
        return PODMAN_VERSION

    def tag(self, image: str, repo: str, tag: str, force: bool) -> None:
        raise podman_error(404, "failed to find image x: docker.io/library/x: image not known")


def podman_error(status: int, explanation: str) -> Exception:
    import docker
    import requests

    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Server Error", response=response, explanation=explanation)


def engine_with(api: FakeRunAPI) -> DockerEngine:
    engine = DockerEngine("unix:///podman.sock")
    engine._client = api
    return engine


def test_an_api_refusal_is_a_refusal_not_a_lost_engine() -> None:
    """docker's APIError is also a requests HTTPError: it must not read as "the engine stopped answering"."""
    with pytest.raises(EngineRefused) as caught:
        engine_with(FakeRunAPI(init_missing=False)).tag("sha256:" + "1" * 64, "envcap:x")

    assert caught.value.message == ("the container engine at unix:///podman.sock refused the request: failed to find "
                                    "image x: docker.io/library/x: image not known.")


def test_a_refusal_by_podman_names_podmans_log() -> None:
    with pytest.raises(EngineRefused) as caught:
        engine_with(FakeRunAPI(init_missing=False)).tag("sha256:" + "1" * 64, "envcap:x")

    assert "podman system service" in (caught.value.hint or "")


# -- the stand-in init ----------------------------------------------------------------------------
def test_a_podman_without_catatonit_runs_the_workload_under_the_stand_in() -> None:
    api = FakeRunAPI(init_missing=True, config={"Entrypoint": ["/entry"], "Cmd": ["serve"]})
    engine = engine_with(api)

    engine._create_with_init(RunSpec(image="img", command=("python", "train.py"), init=True))
    engine._create_with_init(RunSpec(image="img", command=(), init=True))
    engine._create_with_init(RunSpec(image="img", command=("true",)))

    first, second, plain = api.created
    assert first["host_config"]["Init"] is None and first["entrypoint"] == list(ENTRYPOINT)
    assert first["command"] == ["/entry", "python", "train.py"]
    assert second["command"] == ["/entry", "serve"], "no command: the image's, after its entrypoint"
    assert plain["entrypoint"] is None and plain["command"] == ["true"], "a run without --init is left alone"


def test_an_engine_with_its_init_keeps_it() -> None:
    api = FakeRunAPI(init_missing=False)
    engine_with(api)._create_with_init(RunSpec(image="img", command=("true",), init=True))

    (created,) = api.created
    assert created["host_config"]["Init"] is True and created["entrypoint"] is None


@pytest.mark.parametrize(("entrypoint", "command", "config", "argv"), [
    (None, ("python", "x.py"), {"Entrypoint": None, "Cmd": ["/bin/bash"]}, ["python", "x.py"]),
    (None, (), {"Entrypoint": None, "Cmd": ["/bin/bash"]}, ["/bin/bash"]),
    (None, ("x",), {"Entrypoint": ["/tini", "--"], "Cmd": ["y"]}, ["/tini", "--", "x"]),
    (("sh", "-c", "s"), (), {"Entrypoint": ["/e"], "Cmd": ["y"]}, ["sh", "-c", "s"]),
    (("sh", "-c"), ("s", "a"), {}, ["sh", "-c", "s", "a"]),
])
def test_the_stand_in_runs_what_the_engine_would_have_run(entrypoint: tuple[str, ...] | None,
                                                          command: tuple[str, ...], config: dict[str, Any],
                                                          argv: list[str]) -> None:
    assert wrap(entrypoint, command, config) == (list(ENTRYPOINT), argv)


def stand_in(*argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", SCRIPT, *argv], text=True, start_new_session=True,
                            **kwargs)


@pytest.mark.parametrize(("argv", "code"), [
    (("sh", "-c", "exit 3"), 3), (("sh", "-c", "kill -TERM $$"), 143), (("no-such-program-anywhere",), 127), ((), 127),
])
def test_the_stand_in_passes_the_exit_status_on(argv: tuple[str, ...], code: int) -> None:
    process = stand_in(*argv, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err


def test_the_stand_in_passes_stdin_and_signals_on() -> None:
    piped = stand_in("sh", "-c", "rev", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert piped.communicate("olleh\n", timeout=30)[0] == "hello\n" and piped.returncode == 0

    code = ("import sys, time\nprint('ready', flush=True)\ntry:\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('stopping', flush=True)\n    sys.exit(130)\n")
    for signo, expected in ((signal.SIGINT, "stopping\n"), (signal.SIGTERM, "")):
        process = stand_in(sys.executable, "-c", code, stdout=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        started = time.monotonic()
        process.send_signal(signo)
        out, _ = process.communicate(timeout=30)
        assert (out, process.returncode) == (expected, 130 if signo == signal.SIGINT else 143)
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(("first", "code"), [
    (b"ERROR (catatonit:6): failed to exec pid1: No such file or directory\n", 127),
    (b"ERROR (catatonit:7): failed to exec pid1: Permission denied\n", 126),
    (b"Traceback (most recent call last):\n", None), (b"", None),
])
def test_catatonits_exec_failure_reads_as_dockers_init_says_it(first: bytes, code: int | None) -> None:
    assert exec_failure(first) == code
