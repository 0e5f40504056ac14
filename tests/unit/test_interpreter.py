"""The interpreter a snapshot describes is the one the user means, whichever venv envcap lives in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.errors import UsageError
from envcap.snapshot.interpreter import choose, from_command
from tests.fakes import make_wheel

ENVCAP = str(Path(sys.executable).parent / "envcap")


def fake_python(folder: Path, name: str = "python") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexec true\n")
    path.chmod(0o755)
    return path


def test_a_relative_path_is_a_path_from_here_not_a_name_on_path(tmp_path: Path) -> None:
    fake_python(tmp_path)
    chosen = choose("./python", (), {"PATH": "/usr/bin"}, tmp_path)
    assert chosen.path == str(tmp_path / "python") and chosen.chosen_by == "--python"


def test_an_empty_python_is_refused() -> None:
    with pytest.raises(UsageError, match="empty"):
        choose("", (), {}, Path("/"))


def test_the_commands_python_comes_before_the_activated_venv(tmp_path: Path) -> None:
    project = fake_python(tmp_path / "project" / "bin")
    env = {"PATH": f"{project.parent}:/usr/bin", "VIRTUAL_ENV": str(tmp_path / "other")}
    assert choose(None, ("python", "train.py"), env, tmp_path).path == str(project)
    assert choose(None, ("python", "train.py"), env, tmp_path).chosen_by == "the command"


def test_a_script_runs_the_python_of_its_shebang(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "venv" / "bin", "python3.11")
    tool = tmp_path / "venv" / "bin" / "torchrun"
    tool.write_text(f"#!{python}\nimport sys\n")
    tool.chmod(0o755)
    env_script = tmp_path / "train.py"
    env_script.write_text("#!/usr/bin/env python3.11\n")
    env_script.chmod(0o755)
    env = {"PATH": f"{python.parent}:/usr/bin"}
    assert from_command(("torchrun", "--nproc", "2", "train.py"), env, tmp_path) == str(python)
    assert from_command(("./train.py",), env, tmp_path) == str(python)
    assert from_command(("bash", "run.sh"), env, tmp_path) is None


def test_then_virtual_env_then_conda_prefix_then_python3(tmp_path: Path) -> None:
    venv = fake_python(tmp_path / "venv" / "bin")
    conda = fake_python(tmp_path / "conda" / "bin")
    assert choose(None, (), {"VIRTUAL_ENV": str(tmp_path / "venv"), "CONDA_PREFIX": str(tmp_path / "conda")},
                  tmp_path).path == str(venv)
    assert choose(None, (), {"CONDA_PREFIX": str(tmp_path / "conda")}, tmp_path).chosen_by == "CONDA_PREFIX"
    assert choose(None, (), {"CONDA_PREFIX": str(tmp_path / "conda")}, tmp_path).path == str(conda)
    fallback = choose(None, (), {"PATH": "/usr/bin"}, tmp_path)
    assert fallback.chosen_by == "PATH" and fallback.path == "/usr/bin/python3"


@pytest.fixture(scope="module")
def project_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project's own venv with a package envcap's venv lacks (a local wheel: no network)."""
    root = tmp_path_factory.mktemp("project") / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    wheel = make_wheel(tmp_path_factory.mktemp("wheel"), "onlyhere", "1.0", {"onlyhere/__init__.py": "VALUE = 42\n"})
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    return root


def test_an_activated_project_venv_is_described_not_envcaps_own(project_venv: Path, tmp_path: Path) -> None:
    """Issue 10: envcap in its own venv, the project's venv activated: the lock describes the project."""
    env = dict(os.environ, VIRTUAL_ENV=str(project_venv), PATH=f"{project_venv}/bin:{os.environ['PATH']}")
    done = subprocess.run([ENVCAP, "snapshot", "--offline", "--json", "--out", str(tmp_path / "o"), "--",
                           "python", "-c", "import onlyhere"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    names = {d["name"] for d in document["snapshot"]["distributions"]}
    assert "onlyhere" in names and "click" not in names
    assert document["interpreter"] == f"{project_venv}/bin/python (from the command)"
    assert document["notes"] == []
