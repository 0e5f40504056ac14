"""``envcap fleet --slurm`` against a real Slurm cluster: real sinfo, srun, slurmctld and slurmd nodes.

The nodes are described in tests/slurm/conftest.py. No test asserts a duration: "not waited for" is
shown by the node's reason (Slurm refused it at once, or it was left out as down), and every test
would still end within its --timeout if it were not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ENVCAP = str(Path(sys.executable).with_name("envcap"))
ODD = "node3"


def envcap(env: dict[str, str], *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None,
           expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ENVCAP, *args], env=env | (extra_env or {}), cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def fleet_json(env: dict[str, str], *args: str, cwd: Path | None = None, expect: int = 0) -> dict[str, Any]:
    done = envcap(env, "fleet", *args, "--slurm", "--json", cwd=cwd, expect=expect)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def sinfo_state(env: dict[str, str], node: str) -> str:
    done = subprocess.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%T"], env=env,
                          capture_output=True, text=True, check=False, timeout=30)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def wait_for_state(env: dict[str, str], node: str, states: tuple[str, ...], seconds: float = 90) -> str:
    """Polls sinfo until the node is in one of ``states`` (set-up and clean-up only; nothing is timed)."""
    deadline = time.monotonic() + seconds
    state = sinfo_state(env, node)
    while state not in states and time.monotonic() < deadline:
        time.sleep(1)
        state = sinfo_state(env, node)
    return state


def test_one_node_cluster_reports_the_node_and_the_variables_it_lacks(slurm_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    """The issue's first check: a snapshot taken with two numerics variables set, the node without them."""
    envcap(slurm_env, "snapshot", "--offline", "--python", sys.executable, cwd=tmp_path,
           extra_env={"OMP_NUM_THREADS": "4", "MKL_CBWR": "AVX2"})
    doc = fleet_json(slurm_env, ".envcap", "--python", sys.executable, cwd=tmp_path)

    assert doc["nodes"]["asked"] == ["envcap-host"] and doc["nodes"]["answered"] == 1
    assert doc["reference"] == {"kind": "snapshot", "source": ".envcap"}
    (only,) = doc["classes"]
    assert only["nodes"] == ["envcap-host"]
    assert {"MKL_CBWR", "OMP_NUM_THREADS"} <= set(only["variables"]["missing"])
    found = {f["fact"]: f for f in only["findings"]}
    assert found["env.OMP_NUM_THREADS"]["a"] == "4" and found["env.OMP_NUM_THREADS"]["b"] is None
    assert "env.MKL_CBWR" in found
    assert doc["problems"] == []


def test_the_odd_node_is_singled_out_with_its_causes(slurm_env: dict[str, str]) -> None:
    """node3: NumPy 1.26.4 from a wheel (not Debian's 1.24.2) and OMP_NUM_THREADS=1 from its task prolog."""
    doc = fleet_json(slurm_env, "--partition", "fleet", "--timeout", "60")

    assert doc["nodes"]["asked"] == ["node1", "node2", "node3", "node4", "node9"]
    reference, odd = doc["classes"]
    assert reference["nodes"] == ["node1", "node2", "node4"] and reference["reference"]
    assert odd["nodes"] == [ODD] and not odd["matches"]
    found = {f["fact"]: f for f in odd["findings"]}
    assert (found["pkg.numpy"]["a"], found["pkg.numpy"]["b"]) == ("1.24.2", "1.26.4")
    assert (found["env.OMP_NUM_THREADS"]["a"], found["env.OMP_NUM_THREADS"]["b"]) == (None, "1")
    assert odd["variables"]["added"] == ["OMP_NUM_THREADS"]
    assert ODD in doc["verdict"] and "1 differs from the most common environment" in doc["verdict"]
    # node9 is defined in slurm.conf and never started: reported from sinfo, no task sent to it
    assert [(p["node"], p["kind"]) for p in doc["problems"]] == [("node9", "down")]
    assert "not responding" in doc["problems"][0]["reason"] or "unknown" in doc["problems"][0]["reason"]


def test_the_text_report_names_the_odd_node(slurm_env: dict[str, str]) -> None:
    out = envcap(slurm_env, "fleet", "--slurm", "--partition", "fleet").stdout
    flat = " ".join(out.split())
    assert "class 2 (1 node): node3" in flat and "pkg.numpy" in flat and "env.OMP_NUM_THREADS" in flat
    assert "node9 down:" in flat


def test_a_node_taken_down_is_reported_not_waited_for(slurm_env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "update", "nodename=node2", "state=down", "reason=envcap fleet test"], env=slurm_env,
                   check=True, timeout=30)
    try:
        doc = fleet_json(slurm_env, "--nodelist", "node[1-2]", "--timeout", "30")
    finally:
        subprocess.run(["scontrol", "update", "nodename=node2", "state=resume"], env=slurm_env, check=False, timeout=30)
        wait_for_state(slurm_env, "node2", ("idle",))
    assert [c["nodes"] for c in doc["classes"]] == [["node1"]]
    assert doc["problems"] == [{"node": "node2", "kind": "down", "reason": "down: envcap fleet test"}]


def test_a_busy_node_is_refused_at_once_not_queued_for(slurm_env: dict[str, str]) -> None:
    """node4 held by a job of every CPU: srun --immediate gives up after --timeout, Slurm says why."""
    held = subprocess.run(["sbatch", "--parsable", "--nodelist=node4", "--partition=fleet", "--exclusive",
                           "--job-name=envcap-test-hold", "--output=/dev/null", "--wrap", "sleep 300"],
                          env=slurm_env, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    try:
        wait_for_state(slurm_env, "node4", ("allocated",))
        doc = fleet_json(slurm_env, "--nodelist", "node[1,4]", "--timeout", "3")
    finally:
        subprocess.run(["scancel", held], env=slurm_env, check=False, timeout=30)
        wait_for_state(slurm_env, "node4", ("idle",))
    assert [c["nodes"] for c in doc["classes"]] == [["node1"]]
    (problem,) = doc["problems"]
    assert problem["node"] == "node4" and problem["kind"] == "busy"
    assert "Requested nodes are busy" in problem["reason"]


def test_a_missing_interpreter_is_the_nodes_reason_and_exit_14(slurm_env: dict[str, str]) -> None:
    done = envcap(slurm_env, "fleet", "--slurm", "--nodelist", "node1", "--python", "python3.99", "--json", expect=14)
    doc = json.loads(done.stdout)
    assert doc["problems"] == [{"node": "node1", "kind": "failed",
                                "reason": "python3.99 could not be started on the node (No such file or directory)"}]
    assert done.stderr.startswith("error: none of the 1 nodes asked gave an environment (1 failed).")


def test_image_mode_runs_where_a_runtime_is_and_names_the_nodes_without_one(slurm_env: dict[str, str],
                                                                            base_image: str) -> None:
    """envcap-host has the Docker engine; the container nodes have no runtime; a missing image is named."""
    doc = fleet_json(slurm_env, "--nodelist", "envcap-host,node1", f"--image={base_image}", "--timeout", "120")
    assert doc["probe"]["mode"] == "image" and doc["probe"]["image"] == base_image
    assert [c["nodes"] for c in doc["classes"]] == [["envcap-host"]]
    assert [(p["node"], p["kind"]) for p in doc["problems"]] == [("node1", "no-runtime")]

    missing = fleet_json(slurm_env, "--nodelist", "envcap-host", "--image=envcap-no-such-image:none", expect=14)
    assert [(p["node"], p["kind"]) for p in missing["problems"]] == [("envcap-host", "no-image")]


@pytest.fixture
def base_image(slurm_conf: str) -> str:
    """The Debian image the cluster's nodes are built from (it exists wherever the cluster runs)."""
    return os.environ.get("ENVCAP_TEST_BASE_IMAGE", "envcap-test-base:bookworm")
