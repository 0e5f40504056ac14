"""DockerEngine against a real dockerd: failing steps, Ctrl-C during a build and a run, stdin and streams.

Ctrl-C is delivered where a user's would land: as KeyboardInterrupt in the main thread while the
engine streams (raised from the progress callback), so the same cleanup paths run.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from envcap.engine import BuildEvent, BuildStepFailed, ContainerEngine, RunSpec, connect

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def engine(docker_client: object) -> ContainerEngine:
    return connect()


def context(tmp_path: Path, base_image: str, *lines: str) -> Path:
    folder = tmp_path / "ctx"
    folder.mkdir()
    (folder / "Dockerfile").write_text("\n".join([f"FROM {base_image}", *lines]) + "\n")
    return folder


def containers_mentioning(engine: ContainerEngine, marker: str) -> list[str]:
    """Every container (any state) whose command mentions ``marker``."""
    import docker

    client = docker.from_env()
    try:
        return [c.id for c in client.containers.list(all=True) if marker in " ".join(c.attrs["Config"]["Cmd"] or [])]
    finally:
        client.close()


def test_a_failing_step_is_named_with_its_log_tail_and_tags_nothing(engine: ContainerEngine, base_image: str,
                                                                   tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    folder = context(tmp_path, base_image, f"RUN echo {marker}-before && echo line-two && exit 3",
                     "RUN echo never")
    tag = f"envcap-test-failing:{marker[:12]}"
    events: list[BuildEvent] = []

    with pytest.raises(BuildStepFailed) as caught:
        engine.build(folder, tag=tag, labels={}, on_event=events.append)

    assert caught.value.step is not None and f"echo {marker}-before" in caught.value.step
    assert "step 2/3" in caught.value.message and "returned a non-zero code: 3" in caught.value.message
    assert f"{marker}-before" in caught.value.log_tail and "line-two" in caught.value.log_tail
    assert [e.step for e in events if e.kind == "step"] == [1, 2]
    assert engine.image(tag) is None
    assert containers_mentioning(engine, marker) == []


def test_ctrl_c_during_a_build_step_leaves_no_tag_and_no_container(engine: ContainerEngine, base_image: str,
                                                                  tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    folder = context(tmp_path, base_image, f"RUN echo {marker} && sleep 60", "LABEL done=yes")
    tag = f"envcap-test-cancel:{marker[:12]}"

    def press_ctrl_c(event: BuildEvent) -> None:
        if event.kind == "log" and event.text == marker:  # the step is running inside its container
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.build(folder, tag=tag, labels={}, on_event=press_ctrl_c)

    assert time.monotonic() - started < 50, "the build was cancelled, not waited for"
    assert engine.image(tag) is None
    assert containers_mentioning(engine, marker) == []
    engine.ping()  # the engine object is usable again after the cancelled build


def test_run_feeds_stdin_streams_output_and_removes_the_container(engine: ContainerEngine, base_image: str) -> None:
    marker = uuid.uuid4().hex
    script = ("import sys\ndata = sys.stdin.read()\nprint(len(data))\n"
              "print('to-stderr', file=sys.stderr)\nsys.exit(4)\n")
    chunks: list[tuple[bytes, str]] = []

    captured = engine.run(RunSpec(image=base_image, command=("python3", "-c", script),
                                  stdin_data=b"x" * 200_000, labels={"io.envcap.test": marker}))
    streamed = engine.run(RunSpec(image=base_image, command=("sh", "-c", "echo out; echo err >&2; id -u"),
                                  user="1234:1234", env={"MARK": marker}, network_disabled=True,
                                  labels={"io.envcap.test": marker}),
                          on_output=lambda chunk, stream: chunks.append((chunk, stream)))

    assert (captured.exit_code, captured.stdout, captured.stderr) == (4, b"200000\n", b"to-stderr\n")
    assert streamed.exit_code == 0 and streamed.stdout == b""
    assert b"".join(c for c, s in chunks if s == "stdout") == b"out\n1234\n"
    assert b"".join(c for c, s in chunks if s == "stderr") == b"err\n"
    assert engine.containers(f"io.envcap.test={marker}") == []


def test_ctrl_c_during_a_run_stops_and_removes_the_container(engine: ContainerEngine, base_image: str) -> None:
    marker = uuid.uuid4().hex

    def press_ctrl_c(chunk: bytes, stream: str) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.run(RunSpec(image=base_image, command=("sh", "-c", "echo ready; sleep 120"),
                           labels={"io.envcap.test": marker}), on_output=press_ctrl_c)

    assert time.monotonic() - started < 60
    assert engine.containers(f"io.envcap.test={marker}") == []


def test_mounts_are_bound_read_only_when_asked(engine: ContainerEngine, base_image: str, tmp_path: Path) -> None:
    from envcap.engine import Mount

    (tmp_path / "data.txt").write_text("hello")
    done = engine.run(RunSpec(image=base_image, command=("sh", "-c", "cat /in/data.txt; touch /in/x || echo ro"),
                              mounts=(Mount(str(tmp_path), "/in", read_only=True),)))

    assert done.stdout.decode().startswith("hello") and done.stdout.decode().rstrip().endswith("ro")
    assert not (tmp_path / "x").exists()
