"""Leftovers of a run that died with its engine: who owned them, the build journal, and the sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envcap.engine import OWNER_LABEL, BuildEvent, ContainerInfo
from envcap.engine._buildlog import BuildLog
from envcap.engine.docker_engine import DockerEngine, short_reason
from envcap.engine.errors import BuildStepFailed, EngineLost, EngineRefused
from envcap.engine.leftovers import (
    JOURNAL_MAX_AGE_S,
    BuildJournal,
    Process,
    journal_dir,
    judge,
    owner_label,
    read_journal,
    start_ticks,
    sweep,
    this_process,
)
from tests.fakes import FakeEngine

HERE = Process(host="node1", pid=100, start="5000", boot="b00710d0", pidns="4026531836")


def ticks_of(table: dict[int, str]) -> Any:
    return lambda pid: table.get(pid)


# -- who owns a container --------------------------------------------------------------------------
def test_a_token_names_host_pid_start_boot_and_namespace() -> None:
    token = HERE.token()
    assert token == "node1:100:5000:b00710d0:4026531836"
    assert Process.parse(token) == HERE
    assert Process.parse("not a token") is None
    assert Process.parse("a:b:c:d:e") is None  # the PID must be a number


@pytest.mark.parametrize("owner, running, verdict", [
    (Process("node1", 200, "7000", "b00710d0", "4026531836"), {200: "7000"}, "alive"),
    (Process("node1", 200, "7000", "b00710d0", "4026531836"), {}, "gone"),  # no such PID now
    (Process("node1", 200, "7000", "b00710d0", "4026531836"), {200: "9999"}, "gone"),  # PID taken by another
    (Process("node1", 200, "7000", "1234abcd", "4026531836"), {200: "7000"}, "gone"),  # an earlier boot
    (Process("node2", 200, "7000", "b00710d0", "4026531836"), {}, "unknown"),  # another host: not ours to judge
    (Process("node1", 200, "7000", "b00710d0", "4026532000"), {}, "unknown"),  # another PID namespace
    (Process("node1", 200, "?", "b00710d0", "4026531836"), {}, "unknown"),  # its start could not be read
    (Process("node1", 100, "5000", "b00710d0", "4026531836"), {}, "alive"),  # this very process
])
def test_judge(owner: Process, running: dict[int, str], verdict: str) -> None:
    assert judge(owner.token(), HERE, ticks_of(running)) == verdict


def test_judge_reads_the_real_process_table() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = this_process()
        start = start_ticks(child.pid)
        assert start is not None and start.isdigit()
        token = Process(me.host, child.pid, start, me.boot, me.pidns).token()
        assert judge(token) == "alive"
        assert judge(Process(me.host, child.pid, str(int(start) + 1), me.boot, me.pidns).token()) == "gone"
    finally:
        child.kill()
        child.wait()
    assert judge(token) == "gone"
    assert judge(owner_label()[OWNER_LABEL]) == "alive"


def test_start_ticks_survives_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        for _ in range(100):  # the name is the new one once exec has happened
            if ")" in Path(f"/proc/{child.pid}/comm").read_text():
                break
            time.sleep(0.01)
        ticks = start_ticks(child.pid)
        assert ticks is not None and ticks.isdigit()
    finally:
        child.kill()
        child.wait()


# -- the sweep ------------------------------------------------------------------------------------
def owned(pid: int, start: str = "7000", **changes: str) -> dict[str, str]:
    fields = {"host": "node1", "boot": "b00710d0", "pidns": "4026531836"} | changes
    return {OWNER_LABEL: Process(fields["host"], pid, start, fields["boot"], fields["pidns"]).token(),
            "io.envcap.managed": "true"}


def test_the_sweep_removes_only_containers_of_gone_owners_on_this_host(tmp_path: Path) -> None:
    engine = FakeEngine(live_containers={
        "dead": owned(201), "alive": owned(202), "reused": owned(203, "1"), "elsewhere": owned(204, host="node2"),
        "other-ns": owned(205, pidns="1"), "damaged": {OWNER_LABEL: "??"}, "older-envcap": {"io.envcap.managed": "true"},
    })

    swept = sweep(engine, folder=tmp_path, here=HERE, ticks=ticks_of({202: "7000", 203: "7000"}))

    assert sorted(swept.containers) == ["dead", "reused"]
    assert sorted(engine.live_containers) == ["alive", "damaged", "elsewhere", "older-envcap", "other-ns"]


class RefusingEngine(FakeEngine):
    def remove_container(self, container_id: str) -> None:
        if container_id == "busy":
            raise EngineRefused("the container engine refused the request: device busy.")
        super().remove_container(container_id)


class LostEngine(FakeEngine):
    def find_containers(self, label: str) -> list[Any]:
        raise EngineLost("the container engine at fake://engine stopped answering (connection refused).")


def test_a_container_the_engine_will_not_remove_is_left_for_the_next_run(tmp_path: Path) -> None:
    engine = RefusingEngine(live_containers={"busy": owned(201), "dead": owned(202)})

    swept = sweep(engine, folder=tmp_path, here=HERE, ticks=ticks_of({}))

    assert swept.containers == ("dead",) and list(engine.live_containers) == ["busy"]


def test_a_sweep_never_fails_the_command_that_runs_it(tmp_path: Path) -> None:
    assert sweep(LostEngine(), folder=tmp_path, here=HERE, ticks=ticks_of({})).containers == ()


# -- the build journal ----------------------------------------------------------------------------
def write_journal(folder: Path, owner: Process, endpoint: str = "fake://engine", *, containers: tuple[str, ...] = (),
                  images: tuple[str, ...] = (), name: str = "build-1-a.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"endpoint": endpoint, "owner": owner.token()})]
    lines += [json.dumps({"container": c}) for c in containers] + [json.dumps({"image": i}) for i in images]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_journal_is_written_only_once_the_build_names_something(tmp_path: Path) -> None:
    journal = BuildJournal("unix:///x.sock", folder=tmp_path)
    assert not list(tmp_path.iterdir())

    journal.container("c1")
    journal.image("i1")
    journal.container("c2")

    found = read_journal(next(tmp_path.iterdir()))
    assert found is not None
    assert (found.endpoint, found.containers, found.images) == ("unix:///x.sock", ("c1", "c2"), ("i1",))
    assert judge(found.owner) == "alive"
    journal.discard()
    assert not list(tmp_path.iterdir())


def test_a_journal_that_cannot_be_written_costs_the_build_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    journal = BuildJournal("unix:///x.sock", folder=blocker / "leftovers")
    journal.container("c1")
    journal.discard()
    assert journal.broken


def test_the_sweep_removes_what_a_gone_builds_journal_names_newest_image_first(tmp_path: Path) -> None:
    dead = Process("node1", 300, "1", "b00710d0", "4026531836")
    path = write_journal(tmp_path, dead, containers=("c1", "c2"), images=("i1", "i2", "i3"))
    engine = FakeEngine(leftover_images={"i1", "i3"})

    swept = sweep(engine, folder=tmp_path, here=HERE, ticks=ticks_of({}))

    assert engine.removed == ["c1", "c2"]
    assert engine.removed_images == ["i3", "i1"]
    assert swept.images == ("i3", "i1")
    assert not path.exists()


def test_a_journal_of_a_live_build_or_of_another_engine_is_left_alone(tmp_path: Path) -> None:
    live = write_journal(tmp_path, Process("node1", 301, "7000", "b00710d0", "4026531836"), containers=("c1",),
                         name="build-301-a.jsonl")
    other = write_journal(tmp_path, Process("node1", 302, "1", "b00710d0", "4026531836"), "unix:///other.sock",
                          containers=("c2",), name="build-302-a.jsonl")
    damaged = tmp_path / "build-303-a.jsonl"
    damaged.write_text("{not json")
    engine = FakeEngine()

    sweep(engine, folder=tmp_path, here=HERE, ticks=ticks_of({301: "7000"}))

    assert engine.removed == [] and live.exists() and other.exists() and damaged.exists()


def test_a_journal_of_an_engine_unused_for_a_month_is_dropped(tmp_path: Path) -> None:
    path = write_journal(tmp_path, Process("node1", 302, "1", "b00710d0", "4026531836"), "unix:///gone.sock",
                         containers=("c2",))
    old = time.time() - JOURNAL_MAX_AGE_S - 60
    os.utime(path, (old, old))

    sweep(FakeEngine(), folder=tmp_path, here=HERE, ticks=ticks_of({}))

    assert not path.exists()


def test_the_journal_lives_in_the_cache_folder() -> None:
    assert journal_dir() == Path(os.environ["ENVCAP_CACHE_DIR"]) / "leftovers"


# -- what the builder's log names -----------------------------------------------------------------
STREAM: list[dict[str, Any]] = [
    {"stream": "Step 1/6 : FROM base:1 AS runtime\n"}, {"stream": " ---> 92e34e65a70b\n"},
    {"stream": "Step 2/6 : FROM runtime AS builder\n"}, {"stream": " ---> 92e34e65a70b\n"},
    {"stream": "Step 3/6 : COPY requirements.lock /envcap/requirements.lock\n"},
    {"stream": " ---> Using cache\n"}, {"stream": " ---> 0d31b30a5782\n"},
    {"stream": "Step 4/6 : RUN pip install -r /envcap/requirements.lock\n"},
    {"stream": " ---> Running in 534dbde37724\n"}, {"stream": "Collecting things\n"},
    {"stream": "Removing intermediate container 534dbde37724\n"}, {"stream": " ---> 869b23b304c4\n"},
    {"stream": "Step 5/6 : FROM runtime\n"}, {"stream": " ---> 92e34e65a70b\n"},
    {"stream": "Step 6/6 : ENV A=1\n"}, {"stream": " ---> Running in 9161b10b4e13\n"},
    {"stream": " ---> 7f973aae6d77\n"}, {"aux": {"ID": "sha256:7f973aae6d77aaaa"}},
    {"stream": "Successfully built 7f973aae6d77\n"},
]


def test_the_log_names_the_builders_containers_and_the_images_this_build_made(tmp_path: Path) -> None:
    events: list[BuildEvent] = []
    journal = BuildJournal("unix:///x.sock", folder=tmp_path)
    log = BuildLog(events.append, journal)

    for item in STREAM:
        log.feed(item)

    found = read_journal(next(tmp_path.iterdir()))
    assert found is not None
    assert found.containers == ("534dbde37724", "9161b10b4e13")
    assert found.images == ("869b23b304c4", "7f973aae6d77")  # not the base (FROM) nor a cache hit
    assert log.started == ["534dbde37724", "9161b10b4e13"] and log.image_id == "sha256:7f973aae6d77aaaa"
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4, 5, 6]
    assert BuildEvent("log", "Collecting things") in events


def test_a_builder_error_is_kept_with_its_step() -> None:
    events: list[BuildEvent] = []
    log = BuildLog(events.append, BuildJournal("x", folder=Path("/nonexistent/never-written")))
    for item in STREAM[:9] + [{"errorDetail": {"message": "boom"}, "error": "returned a non-zero code: 1"}]:
        log.feed(item)
    assert log.error == "returned a non-zero code: 1" and log.step_label == "4/6"
    assert events[-1] == BuildEvent("error", "returned a non-zero code: 1")


# -- DockerEngine: the journal stays only when the engine died ----------------------------------
class FakeAPI:
    """The few docker.APIClient calls a build makes; ``then`` is raised after the stream's items."""

    def __init__(self, items: list[dict[str, Any]], then: BaseException | None = None) -> None:
        self.items, self.then = items, then
        self.tagged: list[tuple[str, str]] = []

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield from self.items
        if self.then is not None:
            raise self.then

    def tag(self, image: str, repo: str, tag: str, force: bool) -> None:
        self.tagged.append((image, f"{repo}:{tag}"))

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:7f973aae6d77aaaa", "RepoTags": ["envcap:x"], "Config": {"Labels": {}}}

    def close(self) -> None:
        pass


def engine_with(api: FakeAPI) -> DockerEngine:
    engine = DockerEngine("unix:///fake.sock")
    engine._client = api
    return engine


def test_an_engine_killed_mid_build_is_one_sentence_and_its_journal_stays(tmp_path: Path) -> None:
    import urllib3

    cut = urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read, 2 more expected)")
    engine = engine_with(FakeAPI(STREAM[:9], then=cut))

    with pytest.raises(EngineLost) as caught:
        engine.build(tmp_path, tag="envcap:x", labels={})

    assert caught.value.message == ("the container engine at unix:///fake.sock stopped answering (the connection "
                                    "broke off).")
    assert "next build or replay" in (caught.value.hint or "")
    found = [read_journal(p) for p in journal_dir().glob("build-*.jsonl")]
    assert [j.containers for j in found if j is not None] == [("534dbde37724",)]
    for path in journal_dir().glob("build-*.jsonl"):
        path.unlink()


@pytest.mark.parametrize("items", [STREAM, STREAM[:9] + [{"error": "returned a non-zero code: 1"}]])
def test_a_build_that_ends_with_the_engine_alive_leaves_no_journal(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    engine = engine_with(FakeAPI(items))

    try:
        engine.build(tmp_path, tag="envcap:x", labels={})
    except BuildStepFailed:
        pass

    assert not list(journal_dir().glob("build-*.jsonl"))


class FakeCreateAPI:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.labels = kwargs["labels"]
        return {"Id": "c" * 64}


def test_every_container_envcap_starts_names_its_owner() -> None:
    from envcap.engine import RunSpec

    api = FakeCreateAPI()
    engine = DockerEngine("unix:///fake.sock")
    engine._client = api

    engine._create(RunSpec(image="img", command=("true",), labels={"io.envcap.replay": "r1"}))

    assert api.labels["io.envcap.managed"] == "true" and api.labels["io.envcap.replay"] == "r1"
    assert judge(api.labels[OWNER_LABEL]) == "alive"


@pytest.mark.parametrize("text", ["('Connection broken: IncompleteRead(0 bytes read)', IncompleteRead(0 bytes read))",
                                  "('Connection aborted.', RemoteDisconnected('Remote end closed connection'))",
                                  "[Errno 104] Connection reset by peer"])
def test_an_engine_cut_off_mid_answer_is_told_in_a_few_words(text: str) -> None:
    assert short_reason(ConnectionError(text)) == "the connection broke off"


def test_container_infos_carry_their_labels() -> None:
    assert FakeEngine(live_containers={"a": {"k": "v"}}).find_containers("k") == [ContainerInfo("a", {"k": "v"})]
