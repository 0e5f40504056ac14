"""The fleet survey over a fake cluster: classes, the reference, every way a node can fail to answer.

Only the batch system is faked (tests/fakes.FakeCluster); the facts are this machine's own, from the
real probe, varied per node the way real nodes differ.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from envcap.cluster import Node, NodeCommand, NodeRun, Selection
from envcap.cluster.fleet import SNAPSHOT_IMAGE, FleetRequest, FleetUnanswered, survey
from envcap.cluster.task import read_answer
from envcap.errors import ClusterError, LockfileError, UsageError
from envcap.lock import dumps
from envcap.probe import run_probe, snapshot_from_facts
from tests.fakes import FakeCluster, task_stdout

UP = "idle"


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    """This machine's probe report, once: every node starts from it."""
    return run_probe(sys.executable, timeout=120)


def variant(facts: dict[str, Any], *, env: dict[str, str | None] | None = None, numpy: str | None = None,
            memory: int | None = None) -> dict[str, Any]:
    out = copy.deepcopy(facts)
    for name, value in (env or {}).items():
        out.setdefault("env", {})
        if value is None:
            out["env"].pop(name, None)
        else:
            out["env"][name] = value
    if numpy is not None:
        dists = [d for d in out["distributions"] if d["name"] != "numpy"]
        out["distributions"] = [*dists, {"name": "numpy", "display_name": "numpy", "version": numpy,
                                         "location": "/usr/lib/python3/dist-packages", "site": "dist-packages",
                                         "metadata_format": "dist-info", "installer": "debian", "requested": False,
                                         "origin": {"kind": "index", "url": None}}]
    if memory is not None:
        out["cpu"]["memory_total_bytes"] = memory
    return out


def ran(node: str, facts: dict[str, Any], **parts: dict[str, Any]) -> NodeRun:
    body = {"probe": {"rc": 0, "stdout": json.dumps(facts), "stderr": ""}} | parts
    return NodeRun(node, "ran", task_stdout(body, host=node, before="Welcome to the cluster"), "", 0)


def up(*names: str) -> list[Node]:
    return [Node(name, True, UP, partition="fleet") for name in names]


def lock_dir(tmp_path: Path, facts: dict[str, Any]) -> Path:
    folder = tmp_path / ".envcap"
    folder.mkdir()
    (folder / "envcap.lock.json").write_text(dumps(snapshot_from_facts(facts, source="probe")), "utf-8")
    return folder


# ------------------------------------------------------------------------------------- classes

def test_the_odd_node_is_singled_out_with_its_causes(facts: dict[str, Any]) -> None:
    odd = variant(facts, env={"OMP_NUM_THREADS": "1"}, numpy="1.24.2")
    cluster = FakeCluster(up("n1", "n2", "n3", "n4"),
                          {"n1": ran("n1", facts), "n2": ran("n2", facts), "n3": ran("n3", odd), "n4": ran("n4", facts)})
    report = survey(FleetRequest(selection=Selection(partition="fleet")), cluster)

    assert [c.nodes for c in report.classes] == [("n1", "n2", "n4"), ("n3",)]
    reference, other = report.classes
    assert reference.is_reference and reference.matches
    assert report.reference == "majority" and "n1, n2, n4" in report.reference_source
    facts_found = {f.fact for f in other.report.significant}
    assert {"pkg.numpy", "env.OMP_NUM_THREADS"} <= facts_found
    assert other.variables.added == ("OMP_NUM_THREADS",)
    assert "n3" in report.verdict() and "4 of 4 nodes answered in 2 environments" in report.verdict()
    assert "pkg.numpy" in other.causes() and "env.OMP_NUM_THREADS unset vs 1" in other.causes()


def test_without_differences_there_is_one_class(facts: dict[str, Any]) -> None:
    cluster = FakeCluster(up("a", "b"), {"a": ran("a", facts), "b": ran("b", facts)})
    report = survey(FleetRequest(), cluster)
    assert [c.nodes for c in report.classes] == [("a", "b")]
    assert report.verdict() == "2 of 2 nodes answered in one environment; all match the most common environment."


def test_allocation_variables_do_not_split_a_class(facts: dict[str, Any]) -> None:
    """Slurm hands each allocation its own GPUs: CUDA_VISIBLE_DEVICES=0 here, 1 there, one environment."""
    a = variant(facts, env={"CUDA_VISIBLE_DEVICES": "0"})
    b = variant(facts, env={"CUDA_VISIBLE_DEVICES": "1"})
    report = survey(FleetRequest(), FakeCluster(up("a", "b"), {"a": ran("a", a), "b": ran("b", b)}))
    assert [c.nodes for c in report.classes] == [("a", "b")]
    assert any("CUDA_VISIBLE_DEVICES" in note for note in report.notes)


def test_differences_that_cannot_change_results_stay_inside_one_class(facts: dict[str, Any]) -> None:
    """A few MB of memory the firmware keeps is not another environment; it is listed as varying."""
    other = variant(facts, memory=int(facts["cpu"]["memory_total_bytes"]) - 4096)
    report = survey(FleetRequest(), FakeCluster(up("a", "b"), {"a": ran("a", facts), "b": ran("b", other)}))
    assert [c.nodes for c in report.classes] == [("a", "b")]
    assert "cpu.memory_total_bytes" in report.classes[0].varies


def test_the_biggest_class_is_the_reference_and_ties_go_to_the_first_node(facts: dict[str, Any]) -> None:
    odd = variant(facts, env={"OMP_NUM_THREADS": "3"})
    report = survey(FleetRequest(), FakeCluster(up("a", "b"), {"a": ran("a", odd), "b": ran("b", facts)}))
    assert report.classes[0].nodes == ("a",) and report.classes[0].is_reference
    assert "env.OMP_NUM_THREADS" in {f.fact for f in report.classes[1].report.significant}


def test_against_a_snapshot_every_class_is_compared_with_it(facts: dict[str, Any], tmp_path: Path) -> None:
    """The one-node case of the issue: the node lacks the variables the snapshot was taken with."""
    folder = lock_dir(tmp_path, variant(facts, env={"OMP_NUM_THREADS": "4", "MKL_CBWR": "AVX2"}))
    cluster = FakeCluster(up("host"), {"host": ran("host", variant(facts, env={"OMP_NUM_THREADS": None,
                                                                                "MKL_CBWR": None}))})
    report = survey(FleetRequest(lock_dir=folder), cluster)
    (only,) = report.classes
    assert report.reference == "snapshot" and report.reference_source == str(folder)
    assert not only.is_reference and not only.matches
    assert only.variables.missing == ("MKL_CBWR", "OMP_NUM_THREADS")
    assert "env.OMP_NUM_THREADS" in {f.fact for f in only.report.significant}
    assert "1 differs from the snapshot (host;" in report.verdict()


def test_a_bad_snapshot_fails_before_the_cluster_is_asked(tmp_path: Path) -> None:
    cluster = FakeCluster(up("a"))
    with pytest.raises(LockfileError):
        survey(FleetRequest(lock_dir=tmp_path / "missing"), cluster)
    assert cluster.selections == []


# ------------------------------------------------------------------------------ nodes that fail

def test_every_kind_of_silent_node_is_listed_with_why(facts: dict[str, Any]) -> None:
    nodes = [*up("ok", "busy", "slow", "gone", "nopy", "junk", "crash", "late"),
             Node("dead", False, "down*", reason="down, not responding: Not responding", partition="fleet")]
    cluster = FakeCluster(nodes, {
        "ok": ran("ok", facts),
        "busy": NodeRun("busy", "refused", detail="Requested nodes are busy", returncode=1),
        "slow": NodeRun("slow", "timeout", detail="no answer within 75 s (srun was stopped)"),
        "gone": NodeRun("gone", "lost", detail="Slurm stopped the task (node failure)"),
        "nopy": NodeRun("nopy", "ran", stderr="slurmstepd: error: execve(): python3.12: No such file or directory",
                        returncode=2, detail="python3.12 could not be started on the node (No such file or directory)"),
        "junk": NodeRun("junk", "ran", stdout="hello\n", returncode=0),
        "crash": ran("crash", facts, probe={"rc": 1, "stdout": "", "stderr": "Traceback\nMemoryError"}),
        "late": ran("late", facts, probe={"error": "timeout", "detail": "did not finish within 5 s"}),
    })
    report = survey(FleetRequest(timeout=5), cluster)
    assert "dead" not in cluster.sent, "a down node is reported, never sent a task"
    kinds = {p.node: (p.kind, p.reason) for p in report.problems}
    assert kinds["dead"] == ("down", "down, not responding: Not responding")
    assert kinds["busy"][0] == "busy" and "Requested nodes are busy" in kinds["busy"][1]
    assert kinds["slow"][0] == "timeout"
    assert kinds["gone"][0] == "failed"
    assert kinds["nopy"] == ("failed", "python3.12 could not be started on the node (No such file or directory)")
    assert kinds["junk"][0] == "bad-output" and "hello" in kinds["junk"][1]
    assert kinds["crash"] == ("failed", "the probe failed with python3 (exit 1: MemoryError)")
    assert kinds["late"] == ("timeout", "the probe did not finish within 5 s")
    assert [c.nodes for c in report.classes] == [("ok",)]
    assert [p.node for p in report.problems] == ["busy", "slow", "gone", "nopy", "junk", "crash", "late", "dead"]
    assert "1 of 9 nodes answered" in report.verdict() and "8 gave no answer" in report.verdict()


def test_a_damaged_answer_is_a_bad_answer_not_a_crash(facts: dict[str, Any]) -> None:
    damaged = NodeRun("a", "ran", "ENVCAP-FLEET-RESULT not-base64!!\n", "", 0)
    not_probe = ran("b", facts, probe={"rc": 0, "stdout": '{"no": "python"}', "stderr": ""})
    report = survey(FleetRequest(), FakeCluster(up("a", "b", "c"), {"a": damaged, "b": not_probe,
                                                                     "c": ran("c", facts)}))
    kinds = {p.node: p.kind for p in report.problems}
    assert kinds == {"a": "bad-output", "b": "bad-output"}


def test_when_no_node_answers_the_error_carries_the_report() -> None:
    nodes = [Node("x", False, "drained", reason="drained: bad DIMM"), *up("y")]
    cluster = FakeCluster(nodes, {"y": NodeRun("y", "timeout", detail="no answer within 75 s")})
    with pytest.raises(FleetUnanswered) as caught:
        survey(FleetRequest(), cluster)
    assert isinstance(caught.value, ClusterError) and caught.value.exit_code == 14
    assert caught.value.message == "none of the 2 nodes asked gave an environment (1 down, 1 timeout)."
    assert [p.node for p in caught.value.report.problems] == ["x", "y"]


# ------------------------------------------------------------------------------------- --image

def test_image_without_a_snapshot_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs the snapshot DIR"):
        survey(FleetRequest(image=SNAPSHOT_IMAGE), FakeCluster(up("a")))


def test_the_snapshot_image_is_found_on_each_node_by_the_lock_digest(facts: dict[str, Any], tmp_path: Path) -> None:
    folder = lock_dir(tmp_path, variant(facts, env={"OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "0"}))
    seen: dict[str, Any] = {}

    def in_image(command: NodeCommand) -> NodeRun:
        seen["config"] = _config_of(command)
        return NodeRun("a", "ran", task_stdout({"probe": {"rc": 0, "stdout": json.dumps(facts), "stderr": ""}},
                                               runtime="docker", image="sha256:abc"), "", 0)

    cluster = FakeCluster(up("a", "b", "c"), {
        "a": in_image,
        "b": NodeRun("b", "ran", task_stdout({}, runtime=None, error="no-runtime"), "", 0),
        "c": NodeRun("c", "ran", task_stdout({}, runtime="podman", error="no-image"), "", 0)})
    report = survey(FleetRequest(lock_dir=folder, image=SNAPSHOT_IMAGE), cluster)
    config = seen["config"]
    assert config["image"] is None and config["image_label"].startswith("io.envcap.lock-digest=sha256:")
    expected = {k: v for k, v in facts.get("env", {}).items() if k != "CUDA_VISIBLE_DEVICES"} | {"OMP_NUM_THREADS": "2"}
    assert config["env"] == expected, "the lock's variables, none the scheduler sets"
    assert report.mode == "image" and report.image and "io.envcap.lock-digest" in report.image
    kinds = {p.node: p.kind for p in report.problems}
    assert kinds == {"b": "no-runtime", "c": "no-image"}


def test_a_named_image_missing_on_a_node_is_reported_as_such(facts: dict[str, Any]) -> None:
    failed = {"rc": 125, "stdout": "", "stderr": "Unable to find image 'team/train:v1' locally\nError: no pull"}
    missing = NodeRun("a", "ran", task_stdout({"probe": failed}, runtime="docker"), "", 0)
    answer = read_answer(missing.stdout)
    assert answer is not None and answer.runtime == "docker"
    with pytest.raises(FleetUnanswered) as caught:
        survey(FleetRequest(image="team/train:v1"), FakeCluster(up("a"), {"a": missing}))
    (problem,) = caught.value.report.problems
    assert problem.kind == "no-image"


# --------------------------------------------------------------------------------- --fingerprint

def test_fingerprint_is_not_available_in_this_build() -> None:
    with pytest.raises(UsageError) as caught:
        survey(FleetRequest(fingerprint=True), FakeCluster(up("a")))
    assert caught.value.message == "--fingerprint is not available in this build (it has no numeric fingerprint suite)."


def test_a_fingerprint_suite_slots_in_as_a_second_part(facts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract issue 11 fills: script_source() and facts_from_output(); here a stand-in that adds a warning."""
    suite = types.ModuleType("envcap.probe.fingerprint")
    suite.script_source = lambda: "print('{\"gemm\": \"abc\"}')"  # type: ignore[attr-defined]
    suite.facts_from_output = lambda out: {"warnings": [f"fingerprint {json.loads(out)['gemm']}"]}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "envcap.probe.fingerprint", suite)
    cluster = FakeCluster(up("a", "b"), {
        "a": ran("a", facts, fingerprint={"rc": 0, "stdout": '{"gemm": "abc"}', "stderr": ""}),
        "b": ran("b", facts, fingerprint={"rc": 1, "stdout": "", "stderr": "ImportError: numpy"})})
    report = survey(FleetRequest(fingerprint=True), cluster)
    config = _config_of(cluster.commands[0])
    assert [p["name"] for p in config["parts"]] == ["probe", "fingerprint"]
    assert report.fingerprint and report.answered == 2
    assert any(note.startswith("b: the fingerprint part gave nothing") and "ImportError: numpy" in note
               for note in report.notes)


def _config_of(command: NodeCommand) -> dict[str, Any]:
    """The configuration packed into the node's command line, unpacked as the node does."""
    import base64
    import zlib

    boot = command.argv[2]
    packed = boot.split("json.loads(u('")[1].split("')")[0]
    return json.loads(zlib.decompress(base64.b64decode(packed)))  # type: ignore[no-any-return]
