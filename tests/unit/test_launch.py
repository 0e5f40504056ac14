"""The replay launcher (envcap/workload/launch.py), run for real: it reads the machine, then *becomes* the workload.

What it must never change is the workload's own process: its PID, environment, signal dispositions,
and the exit status and words of a command that cannot be run (as the container's init gives them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from envcap.workload import hook

def installed(tmp_path: Path) -> Path:
    return hook.install(tmp_path / "hook", launcher=True)


def launch(folder: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*hook.launch_command(sys.executable, str(folder)), *command]
    return subprocess.run(argv, env=env if env is not None else {"PATH": os.environ["PATH"]}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_it_writes_the_probes_host_facts_then_runs_the_command(tmp_path: Path, probe: ModuleType) -> None:
    folder = installed(tmp_path)

    done = launch(folder, sys.executable, "-c", "print('workload ran')")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "workload ran\n" and done.stderr == ""
    facts = json.loads((folder / hook.HOST_FACTS).read_text())
    assert sorted(facts) == ["cpu", "gpu", "os", "unavailable"]
    here = probe.host_facts()
    assert facts["cpu"]["numeric_flags"] == here["cpu"]["numeric_flags"]
    assert facts["os"]["kernel"] == here["os"]["kernel"]
    assert not list(folder.rglob("*.tmp")) and not list(folder.rglob("__pycache__"))


def test_the_workload_is_the_launchers_own_process(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    process = subprocess.Popen([*hook.launch_command(sys.executable, str(folder)), "/bin/sh", "-c", "echo $$ $PPID"],
                               stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=60)

    assert out.split() == [str(process.pid), str(os.getpid())]  # exec, not a child: same PID, same parent


def test_the_workload_gets_exactly_the_environment_the_container_started_with(tmp_path: Path) -> None:
    """Nothing added (Python sets LC_CTYPE for itself in a C locale, PEP 538), nothing taken away."""
    folder = installed(tmp_path)
    env = {"PATH": os.environ["PATH"], "ODD": "a=b c", "PYTHONPATH": "/nowhere", "EMPTY": "", "LC_ALL": ""}
    del env["LC_ALL"]  # no locale at all: the case where Python coerces

    done = launch(folder, "env", "-0", env=env)

    assert done.returncode == 0, done.stderr
    seen = dict(entry.split("=", 1) for entry in done.stdout.split("\0") if entry)
    assert seen == env


def test_the_signals_python_changes_are_default_again(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    read = ["/bin/sh", "-c", "grep -E '^Sig(Ign|Cgt|Blk)' /proc/self/status"]

    through = launch(folder, *read)
    direct = subprocess.run(read, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)

    assert through.returncode == 0, through.stderr
    assert through.stdout == direct.stdout


@pytest.mark.parametrize(("name", "code", "words"), [
    ("no-such-program-anywhere", 127, "No such file or directory"),
    ("not-executable", 126, "Permission denied"),
])
def test_a_command_that_cannot_run_exits_as_the_init_would(tmp_path: Path, name: str, code: int, words: str) -> None:
    folder = installed(tmp_path)
    (tmp_path / "not-executable").write_text("echo never\n")  # mode 0644: execve says EACCES, even to root
    command = str(tmp_path / name) if name == "not-executable" else name

    done = launch(folder, command)

    assert done.returncode == code
    assert done.stderr == f"envcap: exec {command} failed: {words}\n"
    assert (folder / hook.HOST_FACTS).is_file()  # the machine was read before


def test_a_secret_shaped_command_is_not_repeated(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"

    done = launch(folder, token)

    assert done.returncode == 127 and token not in done.stderr and "<redacted>" in done.stderr


def test_a_script_without_a_shebang_runs_under_sh(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    script = tmp_path / "bin" / "plain"
    script.parent.mkdir()
    script.write_text("echo from sh $1\n")
    script.chmod(0o755)

    done = launch(folder, "plain", "arg", env={"PATH": f"{script.parent}:{os.environ['PATH']}"})

    assert done.returncode == 0, done.stderr
    assert done.stdout == "from sh arg\n"


def test_without_the_probe_the_workload_still_runs(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    (folder / hook.LAUNCH_FOLDER / "_probe.py").unlink()

    done = launch(folder, sys.executable, "-c", "print('ran')")

    assert done.returncode == 0 and done.stdout == "ran\n" and done.stderr == ""
    assert not (folder / hook.HOST_FACTS).exists()  # the replay then probes the image in a container


def test_the_workload_cannot_import_the_launcher_or_the_probe(tmp_path: Path) -> None:
    """The hook folder is on the workload's PYTHONPATH; the launcher's copies sit where no import reaches them."""
    folder = installed(tmp_path)
    code = ("import importlib.util as u; "
            "print([u.find_spec(n) is None for n in ('launch', '_probe', 'envcap_launch')])")
    done = launch(folder, sys.executable, "-c", code, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(folder)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True, True]"


def test_launch_runs_on_python_3_8() -> None:
    import ast

    source = (Path(hook.__file__).with_name("launch.py")).read_text()
    ast.parse(source, feature_version=(3, 8))
