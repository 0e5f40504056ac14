"""The node task for real, without a batch system: its command line runs here, as a node would run it.

The task script, like the probe, runs on Python 3.8+ with the standard library alone: it is parsed as
3.8, checked by vermin, and run with this machine's system Python.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from envcap._subprocess import run
from envcap.cluster import Node, NodeCommand, NodeRun
from envcap.cluster.fleet import FleetRequest, survey
from envcap.cluster.task import TASK_SCRIPT, Part, TaskPlan, node_command, probe_part, read_answer
from envcap.probe import parse_probe_output, snapshot_from_facts
from tests.fakes import FakeCluster

BIN = Path(sys.executable).parent
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture
def task() -> ModuleType:
    spec = importlib.util.spec_from_file_location("envcap_task_under_test", TASK_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_here(command: NodeCommand, env: dict[str, str] | None = None, name: str = "here") -> NodeRun:
    done = run(list(command.argv), timeout=command.timeout + 30, cwd="/tmp",
               env=(dict(os.environ) | (env or {})))
    return NodeRun(name, "ran", done.stdout, done.stderr, done.returncode)


def test_the_task_script_parses_as_python_3_8() -> None:
    ast.parse(TASK_SCRIPT.read_text("utf-8"), filename=str(TASK_SCRIPT), feature_version=(3, 8))


def test_vermin_finds_nothing_newer_than_3_8() -> None:
    done = subprocess.run([str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.8-", str(TASK_SCRIPT)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_line_stays_far_below_linuxs_limit_for_one_argument() -> None:
    command = node_command(TaskPlan(python="python3", parts=(probe_part(),), timeout=60))
    assert command.argv[:2] == ("python3", "-c")
    assert len(command.argv[2].encode()) < 64 * 1024  # MAX_ARG_STRLEN is 128 KiB
    assert command.label == "envcap-fleet-0"


def test_the_probe_runs_from_the_command_line_with_the_nodes_python() -> None:
    command = node_command(TaskPlan(python=SYSTEM_PYTHON, parts=(probe_part(),), timeout=60, token="t"))
    node = run_here(command, {"OMP_NUM_THREADS": "3", "PYTHONPATH": "/nonexistent"})
    assert node.returncode == 0, node.stderr
    answer = read_answer(node.stdout)
    assert answer is not None and answer.host == socket.gethostname() and answer.runtime is None
    probe = answer.parts["probe"]
    assert probe.returncode == 0, probe.stderr
    snapshot = snapshot_from_facts(parse_probe_output(probe.stdout, probe.stderr, 0, "here"))
    assert snapshot.env is not None and snapshot.env["OMP_NUM_THREADS"] == "3"
    assert snapshot.git is None, "no git on a node: --skip-git"
    assert snapshot.python is not None and snapshot.python.version.startswith("3.")


def test_a_part_that_overruns_is_stopped_and_later_parts_are_not_started() -> None:
    plan = TaskPlan(python=SYSTEM_PYTHON, timeout=1.5, parts=(
        Part("slow", "import time; time.sleep(30)"), Part("after", "print('never')")))
    node = run_here(node_command(plan))
    answer = read_answer(node.stdout)
    assert answer is not None
    assert answer.parts["slow"].error == "timeout"
    assert answer.parts["after"].error == "timeout" and answer.parts["after"].detail == "no time was left for it"


def test_a_failing_part_keeps_its_exit_status_and_error_tail() -> None:
    plan = TaskPlan(python=SYSTEM_PYTHON, timeout=30, parts=(Part("bad", "import sys; sys.exit('no numpy here')"),))
    answer = read_answer(run_here(node_command(plan)).stdout)
    assert answer is not None
    assert answer.parts["bad"].returncode == 1 and "no numpy here" in answer.parts["bad"].stderr


def test_image_mode_on_a_node_without_docker_or_podman(tmp_path: Path) -> None:
    plan = TaskPlan(python=SYSTEM_PYTHON, timeout=30, parts=(probe_part(),), image="team/train:v1")
    answer = read_answer(run_here(node_command(plan), {"PATH": str(tmp_path)}).stdout)
    assert answer is not None and answer.error == "no-runtime" and answer.parts == {}


def test_the_container_command_pins_the_image_and_its_variables(task: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    argv = task.container_argv("/usr/bin/docker", {"env": {"OMP_NUM_THREADS": "2"}}, "img:1", "envcap-fleet-x", ["--skip-git"])
    assert argv == ["/usr/bin/docker", "run", "--rm", "-i", "--pull=never", "--network=none", "--name", "envcap-fleet-x",
                    "--label", "io.envcap.managed=fleet", "-e", "OMP_NUM_THREADS=2", "--gpus", "all", "img:1",
                    "python3", "-", "--skip-git"]
    assert task.gpu_args("/usr/bin/podman") == ["--device", "nvidia.com/gpu=all"]


def test_answers_are_found_among_whatever_else_the_node_prints() -> None:
    plan = TaskPlan(python=SYSTEM_PYTHON, timeout=30, parts=(Part("hi", "print('{}')"),))
    node = run_here(node_command(plan))
    noisy = "Welcome to the cluster\nexport FOO=1\n" + node.stdout + "bye\n"
    answer = read_answer(noisy)
    assert answer is not None and answer.parts["hi"].stdout.strip() == "{}"
    assert read_answer("ENVCAP-FLEET-RESULT " + "eJ" * 10) is None
    assert read_answer("no answer at all") is None


def test_a_survey_of_two_local_nodes_end_to_end() -> None:
    """No Slurm: the fake cluster runs the real command line here, once per node, each with its own variables."""
    def node(name: str, env: dict[str, str]) -> Any:
        return lambda command: run_here(command, env, name)

    cluster = FakeCluster([Node("a", True, "idle"), Node("b", True, "idle"), Node("c", True, "idle")],
                          {"a": node("a", {}), "b": node("b", {"OMP_NUM_THREADS": "1"}), "c": node("c", {})})
    report = survey(FleetRequest(python=SYSTEM_PYTHON, timeout=60), cluster)
    assert [c.nodes for c in report.classes] == [("a", "c"), ("b",)]
    assert "env.OMP_NUM_THREADS" in {f.fact for f in report.classes[1].report.significant}
    assert report.classes[1].variables.added == ("OMP_NUM_THREADS",)


def test_the_verbose_log_shows_the_node_command_by_its_length() -> None:
    """-v logs every srun: one line each, not the 25 kB script it carries."""
    from envcap._subprocess import shown

    command = node_command(TaskPlan(python="python3", parts=(probe_part(),), timeout=60))
    line = shown(["srun", "--nodelist=node1", *command.argv])
    assert line.startswith("srun --nodelist=node1 python3 -c 'import base64,json,zlib")
    assert len(line) < 200 and "\n" not in line and f"<{len(command.argv[2])} chars>" in line
