"""``envcap bisect`` for real: venvs from PyPI, snapshots, hermetic image builds and runs on a real engine.

Three cases, each with several differences of which exactly one changes the workload's output:

* scikit-learn 1.3 -> 1.5 (KMeans's n_init default became 'auto' in 1.4), with joblib, threadpoolctl, click
  and packaging upgraded too;
* a thread-count variable (OpenBLAS splits a large dot product across OMP_NUM_THREADS threads), with click,
  packaging and TZ changed too;
* NumPy 1.26 -> 2.1 (NEP 50: float32 scalar times a Python float stays float32), with SciPy moving along (1.11
  does not install with NumPy 2, so it is coupled), click and packaging too.

The images are built on the local Debian base (Python 3.11.2); the venvs are this machine's 3.11.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.engine import connect
from tests.machine import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network, pytest.mark.usefixtures("clean_numerics_env")]

WORKLOADS = Path(__file__).resolve().parent.parent / "data" / "bisect"
SKLEARN_A = ["scikit-learn==1.3.2", "joblib==1.3.2", "threadpoolctl==3.2.0", "click==8.1.3", "packaging==23.1",
             "numpy==1.26.4", "scipy==1.11.4"]
SKLEARN_B = ["scikit-learn==1.5.2", "joblib==1.4.2", "threadpoolctl==3.5.0", "click==8.1.7", "packaging==24.1",
             "numpy==1.26.4", "scipy==1.11.4"]
NUMPY_A = ["numpy==1.26.4", "scipy==1.11.4", "click==8.1.3", "packaging==23.1"]
NUMPY_B = ["numpy==2.1.3", "scipy==1.14.1", "click==8.1.7", "packaging==24.1"]
THREADS_B = ["numpy==1.26.4", "scipy==1.11.4", "click==8.1.7", "packaging==24.1"]


def envcap(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False, env={**os.environ, **(env or {})})


def project(root: Path, workload: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(WORKLOADS / workload, root / workload)
    return root


def snapshot(root: Path, name: str, python: Path, base: str, env: dict[str, str] | None = None) -> Path:
    done = envcap("snapshot", "--python", str(python), "--out", name, "--base-image", base, cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    return root / name


def run_bisect(root: Path, workload: str) -> dict[str, object]:
    done = envcap("bisect", "A", "B", "--outputs", "out/*.json", "--json", "--", "python", workload, cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["kind"] == "bisect-report" and report["format"] == 1
    assert isinstance(report, dict)
    return report


def facts(items: object) -> set[tuple[str, str | None, str | None]]:
    assert isinstance(items, list)
    return {(item["fact"], item["a"], item["b"]) for item in items}


def check_evidence(report: dict[str, object]) -> None:
    runs = report["runs"]
    assert isinstance(runs, list) and runs
    assert runs[0]["config"] == "A" and runs[0]["outcome"] == "A"
    assert any(r["config"] == "A + all" and r["outcome"] == "B" for r in runs)
    assert report["b_as_locked"] == "B"  # B's own image agrees with A's image plus every layer
    for run in runs:
        assert run["outputs"] and run["seconds"] > 0
    assert report["builds"] + report["images_reused"] >= 2
    assert connect().containers("io.envcap.bisect") == []


def test_bisect_names_scikit_learn_alone_among_five_upgrades(tmp_path_factory, venvs, base_image) -> None:  # type: ignore[no-untyped-def]
    root = project(tmp_path_factory.mktemp("bisect-sklearn"), "kmeans.py")
    snapshot(root, "A", venvs.python(SKLEARN_A), base_image)
    snapshot(root, "B", venvs.python(SKLEARN_B), base_image)
    report = run_bisect(root, "kmeans.py")
    assert report["status"] == "found"
    assert facts(report["culprits"]) == {("pkg.scikit-learn", "1.3.2", "1.5.2")}
    assert facts(report["harmless"]) == {("pkg.joblib", "1.3.2", "1.4.2"), ("pkg.threadpoolctl", "3.2.0", "3.5.0"),
                                         ("pkg.click", "8.1.3", "8.1.7"), ("pkg.packaging", "23.1", "24.1")}
    check_evidence(report)
    saved = Path(str(report["folder"])) / "report.json"
    assert json.loads(saved.read_text())["culprits"] == report["culprits"]


def test_bisect_finds_a_thread_count_variable(tmp_path_factory, venvs, base_image) -> None:  # type: ignore[no-untyped-def]
    root = project(tmp_path_factory.mktemp("bisect-threads"), "threads.py")
    snapshot(root, "A", venvs.python(NUMPY_A), base_image, env={"OMP_NUM_THREADS": "1", "TZ": "UTC"})
    snapshot(root, "B", venvs.python(THREADS_B), base_image, env={"OMP_NUM_THREADS": "2", "TZ": "Europe/Paris"})
    report = run_bisect(root, "threads.py")
    assert report["status"] == "found"
    assert facts(report["culprits"]) == {("env.OMP_NUM_THREADS", "1", "2")}
    assert {"pkg.click", "pkg.packaging", "env.TZ"} <= {item[0] for item in facts(report["harmless"])}
    check_evidence(report)


def test_bisect_finds_numpy_2_promotion_while_scipy_moves_along(tmp_path_factory, venvs, base_image) -> None:  # type: ignore[no-untyped-def]
    root = project(tmp_path_factory.mktemp("bisect-numpy"), "promote.py")
    snapshot(root, "A", venvs.python(NUMPY_A), base_image)
    snapshot(root, "B", venvs.python(NUMPY_B), base_image)
    report = run_bisect(root, "promote.py")
    assert report["status"] == "found"
    assert facts(report["culprits"]) == {("pkg.numpy", "1.26.4", "2.1.3")}
    runs = report["runs"]
    assert isinstance(runs, list)
    numpy_alone = [r for r in runs if r["applied"] == ["pkg.numpy"]]
    assert numpy_alone and numpy_alone[0]["coupled"] == ["scipy"]  # SciPy 1.11 does not install with NumPy 2
    scipy_alone = [r for r in runs if r["applied"] == ["pkg.scipy"]]
    assert scipy_alone and scipy_alone[0]["outcome"] == "A"  # tried alone: SciPy is not the cause
    assert {"pkg.scipy", "pkg.click", "pkg.packaging"} <= {item[0] for item in facts(report["harmless"])}
    check_evidence(report)


def test_pip_compile_resolves_a_consistent_set_with_a_as_constraints(tmp_path: Path) -> None:
    """The fallback for when no mix of A's and B's versions installs, run for real (pip-tools, PyPI)."""
    from envcap.bisect.resolve import PipCompile, pip_compile_program

    if pip_compile_program() is None:
        unavailable("pip-tools is not installed (it comes with the test extra: pip install -e '.[test]')")
    answer = PipCompile(tmp_path)({"scikit-learn": "1.5.2"}, {"numpy": "1.26.4", "scipy": "1.11.4"})
    assert isinstance(answer, dict), answer
    assert answer["scikit-learn"][0] == "1.5.2"
    assert answer["numpy"][0] == "1.26.4" and answer["scipy"][0] == "1.11.4"  # A's pins held
    assert {"joblib", "threadpoolctl"} <= set(answer)
    assert all(len(hashes) >= 1 for _, hashes in answer.values())
    impossible = PipCompile(tmp_path)({"scikit-learn": "1.5.2"}, {"numpy": "1.16.0"})
    assert isinstance(impossible, str) and impossible
