"""``envcap fleet`` on the command line, over a fake cluster: the three forms, the JSON contract, the errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from envcap.cli import main
from envcap.cluster import Node, NodeRun
from envcap.explain.ranking import FINDING_KEYS
from envcap.probe import run_probe
from tests.fakes import FakeCluster, task_stdout
from tests.unit.test_cluster_fleet import lock_dir, ran, variant

# The shape scripts rely on (``envcap fleet --json``); a change here is a change of contract.
TOP_KEYS = {"format", "kind", "fleet_format", "backend", "reference", "probe", "verdict", "nodes", "classes",
            "problems", "notes", "seconds"}
CLASS_KEYS = {"class", "nodes", "reference", "matches", "summary", "verdict", "compared", "findings",
              "unknown_in_reference", "unknown_on_nodes", "variables", "varies"}


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    return run_probe(sys.executable, timeout=120)


@pytest.fixture
def fleet(facts: dict[str, Any]) -> FakeCluster:
    odd = variant(facts, env={"OMP_NUM_THREADS": "1"}, numpy="1.24.2")
    nodes = [Node(n, True, "idle", partition="fleet") for n in ("node1", "node2", "node3")]
    nodes.append(Node("node9", False, "down*", reason="down, not responding", partition="fleet"))
    return FakeCluster(nodes, {"node1": ran("node1", facts), "node2": ran("node2", facts), "node3": ran("node3", odd)})


def invoke(cli: CliRunner, cluster: FakeCluster, *args: str) -> Any:
    return cli.invoke(main, ["fleet", "--slurm", *args], obj={"cluster": cluster})


def test_json_contract(cli: CliRunner, fleet: FakeCluster) -> None:
    result = invoke(cli, fleet, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert set(doc) == TOP_KEYS
    assert (doc["format"], doc["kind"], doc["fleet_format"]) == (1, "fleet", 1)
    assert doc["backend"] == {"kind": "slurm", "where": "Fake Slurm"}
    assert doc["reference"]["kind"] == "majority"
    assert doc["probe"] == {"mode": "interpreter", "python": "python3", "image": None, "fingerprint": False}
    assert doc["nodes"] == {"asked": ["node1", "node2", "node3", "node9"], "answered": 3, "classes": 2, "problems": 1}
    assert [set(c) for c in doc["classes"]] == [CLASS_KEYS, CLASS_KEYS]
    odd = doc["classes"][1]
    assert odd["nodes"] == ["node3"] and not odd["matches"] and odd["variables"]["added"] == ["OMP_NUM_THREADS"]
    assert all(set(f) == set(FINDING_KEYS) for f in odd["findings"])
    assert {"pkg.numpy", "env.OMP_NUM_THREADS"} <= {f["fact"] for f in odd["findings"]}
    assert doc["problems"] == [{"node": "node9", "kind": "down", "reason": "down, not responding"}]


def test_text_names_the_odd_node_and_its_causes(cli: CliRunner, fleet: FakeCluster) -> None:
    result = invoke(cli, fleet)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "class 2 (1 node): node3" in out and "pkg.numpy" in out and "OMP_NUM_THREADS" in out
    assert "node9  down: down, not responding" in out
    assert " ".join(out.split()).endswith("3 of 4 nodes answered in 2 environments; 1 differs from the most common "
                                          "environment (node3; most likely cause: pkg.numpy); 1 gave no answer.")


def test_markdown_is_ready_to_paste(cli: CliRunner, fleet: FakeCluster) -> None:
    result = invoke(cli, fleet, "--markdown")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("### envcap fleet\n")
    assert "| 2 | node3 |" in result.output and "#### class 2 (1 node): node3" in result.output
    assert "| node9 | down | down, not responding |" in result.output


def test_against_a_snapshot_the_missing_variables_are_listed(cli: CliRunner, facts: dict[str, Any], tmp_path: Any) -> None:
    folder = lock_dir(tmp_path, variant(facts, env={"OMP_NUM_THREADS": "4"}))
    cluster = FakeCluster([Node("host", True, "idle")], {"host": ran("host", variant(facts, env={"OMP_NUM_THREADS": None}))})
    result = cli.invoke(main, ["fleet", str(folder), "--slurm", "--json"], obj={"cluster": cluster})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["reference"] == {"kind": "snapshot", "source": str(folder)}
    assert doc["classes"][0]["variables"]["missing"] == ["OMP_NUM_THREADS"]


def test_fail_on_is_a_ci_gate(cli: CliRunner, facts: dict[str, Any]) -> None:
    odd = variant(facts, env={"OMP_NUM_THREADS": "1"})  # medium
    cluster = FakeCluster([Node("a", True, "idle"), Node("b", True, "idle"), Node("c", True, "idle")],
                          {"a": ran("a", facts), "b": ran("b", facts), "c": ran("c", odd)})
    assert invoke(cli, cluster, "--json", "--fail-on", "medium").exit_code == 1
    assert invoke(cli, cluster, "--json", "--fail-on", "high").exit_code == 0
    assert invoke(cli, cluster, "--json").exit_code == 0


def test_selection_options_reach_the_cluster(cli: CliRunner, fleet: FakeCluster) -> None:
    invoke(cli, fleet, "--json", "--partition", "fleet", "--nodes", "2")
    invoke(cli, fleet, "--json", "--nodelist", "node[1-3]")
    assert [(s.partition, s.count, s.nodelist) for s in fleet.selections] == [("fleet", 2, None), (None, None, "node[1-3]")]


@pytest.mark.parametrize(("args", "message"), [
    (["--json", "--markdown"], "error: --json and --markdown cannot be combined."),
    (["--nodes", "2", "--nodelist", "n1"], "error: --nodes and --nodelist cannot be combined."),
    (["--fingerprint"], "error: --fingerprint is not available in this build (it has no numeric fingerprint suite)."),
    (["--image"], "error: --image without an image name runs the snapshot's own image, so it needs the snapshot DIR."),
])
def test_usage_errors_are_one_sentence_and_exit_2(cli: CliRunner, fleet: FakeCluster, args: list[str], message: str) -> None:
    result = invoke(cli, fleet, *args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0] == message
    assert result.output.splitlines()[1].startswith("hint: ")
    assert fleet.sent == []


def test_a_backend_must_be_named(cli: CliRunner, fleet: FakeCluster) -> None:
    result = cli.invoke(main, ["fleet"], obj={"cluster": fleet})
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: no batch system was named, so envcap does not know how to reach the nodes.",
                                          "hint: add --slurm to run one task per node through Slurm"]


def test_a_named_image_is_given_with_equals(cli: CliRunner, fleet: FakeCluster) -> None:
    result = invoke(cli, fleet, "--image=team/train:v1", "--json")
    assert json.loads(result.output)["probe"]["image"] == "team/train:v1"


def test_when_no_node_answers_the_report_is_printed_then_exit_14(cli: CliRunner) -> None:
    cluster = FakeCluster([Node("n1", True, "idle"), Node("n2", False, "drained", reason="drained: bad DIMM")],
                          {"n1": NodeRun("n1", "ran", task_stdout({"probe": {"error": "timeout", "detail": "x"}}), "", 0)})
    result = cli.invoke(main, ["fleet", "--slurm"], obj={"cluster": cluster})
    assert result.exit_code == 14, result.output
    assert "n2  down: drained: bad DIMM" in result.output
    assert "error: none of the 2 nodes asked gave an environment (1 timeout, 1 down)." in result.output
