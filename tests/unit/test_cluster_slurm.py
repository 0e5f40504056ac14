"""Slurm behind the Cluster Protocol, through a canned runner: what is asked of sinfo and srun, and how
their answers (as Slurm 22.05 words them, recorded from the test cluster) are read."""

from __future__ import annotations

import pytest

from envcap._subprocess import RunFailed, RunTimedOut
from envcap.cluster import Node, NodeCommand, Selection
from envcap.cluster.slurm import SlurmCluster, classify, parse_sinfo, state_usable, state_words
from envcap.errors import ClusterError
from tests.fakes import CannedRunner

SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%T|%P|%E"]
ROWS = """envcap-host|idle|envcap*|none
node1|idle|fleet|none
node2|mixed|fleet|none
node3|down*|fleet|Not responding
node4|drained|fleet|bad DIMM
node5|idle~|fleet|none
node1|idle|gpu|none
"""
COMMAND = NodeCommand(argv=("python3", "-c", "pass"), timeout=20, label="envcap-fleet-abcd")


def cluster(rows: str = ROWS, **kwargs: object) -> tuple[SlurmCluster, CannedRunner]:
    runner = CannedRunner()
    runner.add(SINFO, rows)
    runner.add(["sinfo", "--version"], "slurm 22.05.8\n")
    return SlurmCluster(runner=runner, **kwargs), runner  # type: ignore[arg-type]


@pytest.mark.parametrize(("state", "usable", "words"), [
    ("idle", True, "idle"), ("mixed", True, "mixed"), ("allocated", True, "allocated"), ("planned", True, "planned"),
    ("idle*", False, "idle, not responding"), ("down*", False, "down, not responding"), ("drained", False, "drained"),
    ("draining", False, "draining"), ("idle~", False, "idle, powered down (power saving)"),
    ("unknown", False, "unknown"), ("reboot^", False, "reboot, rebooting"), ("mixed-", True, "mixed, planned for a pending job"),
    ("maint$", False, "maint, in a maintenance reservation"), ("fail", False, "fail"),
])
def test_sinfo_states(state: str, usable: bool, words: str) -> None:
    assert state_usable(state) is usable
    assert state_words(state) == words


def test_without_a_partition_the_default_partitions_nodes_are_asked() -> None:
    slurm, _ = cluster()
    nodes = slurm.nodes(Selection())
    assert [n.name for n in nodes] == ["envcap-host"]
    assert nodes[0].partition == "envcap" and nodes[0].usable
    assert slurm.where == "Slurm 22.05.8"


def test_a_partition_lists_its_nodes_with_why_each_cannot_be_used() -> None:
    slurm, runner = cluster(ROWS.replace("envcap-host|idle|envcap*|none\n", "").replace("node1|idle|gpu|none\n", ""))
    nodes = slurm.nodes(Selection(partition="fleet"))
    assert runner.calls[0] == (*SINFO, "--partition=fleet")
    assert [(n.name, n.usable, n.reason) for n in nodes] == [
        ("node1", True, None), ("node2", True, None), ("node3", False, "down, not responding: Not responding"),
        ("node4", False, "drained: bad DIMM"), ("node5", False, "idle, powered down (power saving)")]
    assert {n.partition for n in nodes} == {"fleet"}
    assert [n.name for n in slurm.nodes(Selection(partition="fleet", count=2))] == ["node1", "node2"]


def test_a_node_list_is_expanded_by_slurm_and_unknown_names_are_reported() -> None:
    slurm, runner = cluster()
    runner.add(["scontrol", "show", "hostnames"], "node1\nnode7\n")
    runner.add([*SINFO, "--nodes=node[1,7]"], "node1|idle|gpu|none\nnode1|idle|fleet*|none\n")
    nodes = slurm.nodes(Selection(nodelist="node[1,7]"))
    assert [(n.name, n.usable, n.partition) for n in nodes] == [("node1", True, "fleet"), ("node7", False, None)]
    assert nodes[1].reason == "Slurm knows no node of this name in this cluster"


def test_a_partition_without_nodes_is_an_error() -> None:
    slurm, _ = cluster("")
    with pytest.raises(ClusterError, match="no nodes in the partition 'nope'"):
        slurm.nodes(Selection(partition="nope"))


def test_a_bad_node_list_is_slurms_own_sentence() -> None:
    slurm, runner = cluster()
    runner.add(["scontrol", "show", "hostnames"], returncode=1, stderr="scontrol: error: Invalid hostlist: node[1-\n")
    with pytest.raises(ClusterError, match=r"Slurm cannot read the node list 'node\[1-': scontrol: error: Invalid"):
        slurm.nodes(Selection(nodelist="node[1-"))


def test_no_slurm_here_is_one_sentence_and_exit_14() -> None:
    runner = CannedRunner(raises={("sinfo",): RunFailed("sinfo was not found")})
    with pytest.raises(ClusterError) as caught:
        SlurmCluster(runner=runner).nodes(Selection())
    assert caught.value.exit_code == 14
    assert caught.value.message == "sinfo could not run (sinfo was not found), so Slurm cannot be asked from here."
    assert "login node" in (caught.value.hint or "")


def test_a_controller_that_does_not_answer_is_reported() -> None:
    runner = CannedRunner()
    runner.add(SINFO, returncode=1, stderr="slurm_load_partitions: Unable to contact slurm controller (connect failure)\n")
    with pytest.raises(ClusterError, match="sinfo failed: slurm_load_partitions: Unable to contact slurm controller"):
        SlurmCluster(runner=runner).nodes(Selection())


# ----------------------------------------------------------------------------------------- srun

def test_one_srun_per_node_never_waits_for_a_busy_node() -> None:
    slurm, _ = cluster(srun_args=["--account=ml"])
    argv = slurm.srun_argv(Node("node2", True, "idle", partition="fleet"), COMMAND)
    assert argv == ["srun", "--nodelist=node2", "--nodes=1", "--ntasks=1", "--immediate=20", "--time=1",
                    "--job-name=envcap-fleet-abcd", "--chdir=/tmp", "--quiet", "--partition=fleet", "--account=ml",
                    "python3", "-c", "pass"]


def test_every_node_is_run_and_answers_come_back_in_order() -> None:
    slurm, runner = cluster(parallel=2)
    for name in ("a", "b", "c"):
        runner.add(["srun", f"--nodelist={name}"], f"out {name}\n")
    runs = slurm.run([Node(n, True, "idle") for n in ("a", "b", "c")], COMMAND)
    assert [(r.node, r.outcome, r.stdout) for r in runs] == [("a", "ran", "out a\n"), ("b", "ran", "out b\n"),
                                                            ("c", "ran", "out c\n")]
    assert max(runner.timeouts) == 20 + 20 + 15, "srun is stopped after the wait, the task's time and a margin"


def test_a_timed_out_srun_is_reported_and_its_tasks_cancelled_by_name() -> None:
    slurm, runner = cluster()
    runner.raises[("srun", "--nodelist=slow")] = RunTimedOut("srun did not finish within 55 s")
    runner.add(["srun", "--nodelist=fast"], "ok\n")
    runner.add(["scancel"])
    runs = slurm.run([Node("slow", True, "idle"), Node("fast", True, "idle")], COMMAND)
    assert [r.outcome for r in runs] == ["timeout", "ran"]
    assert runs[0].detail == "no answer within 55 s (srun was stopped)"
    assert ("scancel", "--quiet", "--name=envcap-fleet-abcd") in runner.calls


@pytest.mark.parametrize(("stderr", "outcome", "detail"), [
    ("srun: Required node not available (down, drained or reserved)\nsrun: job 3 queued and waiting for resources\n"
     "srun: error: Unable to allocate resources: Requested nodes are busy\n", "refused", "Requested nodes are busy"),
    ("srun: error: Unable to allocate resources: Invalid node name specified\n", "refused",
     "Invalid node name specified"),
    ("slurmstepd: error: *** STEP 12.0 ON node1 CANCELLED AT 2026-12-01T15:50:01 DUE TO TIME LIMIT ***\n", "timeout",
     "Slurm stopped the task (time limit)"),
    ("slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-12-01T15:50:01 DUE TO NODE FAILURE ***\n", "lost",
     "Slurm stopped the task (node failure)"),
    ("slurmstepd-node1: error: execve(): python9: No such file or directory\n"
     "srun: error: node1: task 0: Exited with exit code 2\n", "ran",
     "python9 could not be started on the node (No such file or directory)"),
])
def test_srun_failures_as_slurm_words_them(stderr: str, outcome: str, detail: str) -> None:
    from envcap._subprocess import Completed

    run = classify("node1", Completed(("srun",), 1 if "allocate" in stderr else 2, "", stderr))
    assert (run.outcome, run.detail) == (outcome, detail)


def test_parse_sinfo_skips_junk_lines() -> None:
    assert [n.name for n in parse_sinfo("\nnonsense\nnode1|idle|p|none\n")] == ["node1"]
