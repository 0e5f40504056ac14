"""Issue 10's real-project paths, for real: envcap in its own venv, the project's venv activated,
a replay from a subfolder that needs a dataset outside the tree and a variable from the command line.

envcap runs as its own process from *its* venv (this test's interpreter), with ``VIRTUAL_ENV`` and
``PATH`` naming the project's venv the way ``source .venv/bin/activate`` leaves them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]

WORKLOAD = """\
import json, os, pathlib, sys
import packaging
data = pathlib.Path(os.environ.get("DATA_DIR", "/data")) / "input.txt"
out = pathlib.Path(__file__).resolve().parent / "out"
out.mkdir(exist_ok=True)
(out / "result.json").write_text(json.dumps({
    "seed": os.environ.get("SEED"), "data": data.read_text().strip(), "packaging": packaging.__version__,
    "cwd": os.getcwd(), "prefix": sys.prefix}, sort_keys=True))
print("wrote", out / "result.json")
"""


def activated(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME")}
    return env | {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


def envcap(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    envcap_script = Path(sys.executable).with_name("envcap")  # envcap's own venv, not the project's
    argv = [str(envcap_script)] if envcap_script.exists() else [sys.executable, "-m", "envcap"]
    return subprocess.run([*argv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("fit") / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "work.py").write_text(WORKLOAD)
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "packaging==24.2"], check=True)
    env = activated(venv)
    data = root.parent / "dataset"  # outside the project: only --mount brings it in
    data.mkdir()
    (data / "input.txt").write_text("forty-two\n")
    done = envcap("snapshot", "--base-image", base_image, "--json", "--", "python", "-c", "pass", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    done = envcap("build", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    return root, env


def test_an_activated_project_venv_is_what_the_snapshot_describes(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    lock = json.loads((root / ".envcap" / "envcap.lock.json").read_text())
    names = {d["name"] for d in lock["distributions"]}

    assert lock["python"]["prefix"] == str(root / ".venv")
    assert "packaging" in names and not names & {"click", "docker", "rich"}, "envcap's own venv was described"


def test_a_replay_from_a_subfolder_with_a_mount_and_a_variable(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    data = root.parent / "dataset"
    done = envcap("replay", "--mount", f"{data}:/data:ro", "-e", "SEED=7", "--json", "--", "python", "../work.py",
                  cwd=root / "sub", env=env)

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((root / "out" / "result.json").read_text())
    assert result == {"seed": "7", "data": "forty-two", "packaging": "24.2", "cwd": str(root / "sub"),
                      "prefix": "/opt/venv"}
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["exit_code"] == 0 and report["workdir"] == str(root / "sub")


def test_a_dataset_outside_the_mounts_gets_a_hint_naming_mount(project: tuple[Path, dict[str, str]]) -> None:
    """The host path exists but was not mounted: the failure names the --mount that would show it."""
    root, env = project
    data = root.parent / "dataset"
    done = envcap("replay", "-e", "SEED=7", "-e", f"DATA_DIR={data}", "--", "python", "../work.py", cwd=root / "sub",
                  env=env)

    assert done.returncode == 1, done.stderr[-2000:]
    assert f"pass --mount {data} to make it visible" in done.stderr
