"""How long do ``envcap bisect`` (the scikit-learn case) and the numeric fingerprint take, and how many builds and runs?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never asserts
them (tests/e2e/test_bisect_e2e.py proves the result, this measures the cost).

    python bench/bench_bisect.py                       # sets up once (cached), then measures
    python bench/bench_bisect.py --cold                # also A's and B's own images rebuilt from scratch
    python bench/bench_bisect.py --torch               # also the fingerprint in the local torch CPU wheel's venv

Set-up, once, under bench/.work/bisect (git-ignored): the venvs of tests/e2e/test_bisect_e2e.py (scikit-learn
1.3.2 -> 1.5.2 with joblib, threadpoolctl, click and packaging upgraded; NumPy and SciPy the same), their
snapshots (``--base-image``) and the KMeans workload.

Measured:
  fingerprint   ``envcap fingerprint --python VENV --json``: the suite inside the interpreter, and the whole
                command, against a warm ``envcap snapshot`` of the same venv (the price of --fingerprint)
  bisect        ``envcap bisect A B --outputs 'out/*.json' -- python kmeans.py --json``: layers cold (every
                intermediate layer of an earlier bench run removed, A's and B's images kept), then warm
                (everything cached: runs only); with --cold, A's and B's images are removed first too
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "bisect"
sys.path.insert(0, str(REPO))

from tests.e2e.test_bisect_e2e import SKLEARN_A, SKLEARN_B  # noqa: E402 - the same cases the tests prove
from tests.venvs import VenvCache  # noqa: E402

TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
NUMERICS_PREFIXES = ("OPENBLAS_", "GOTO_", "OMP_", "MKL_", "NPY_", "ATEN_", "ONEDNN_")


def clean_env() -> dict[str, str]:
    """This machine exports OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE to every process: not into the locks."""
    return {k: v for k, v in os.environ.items() if not k.startswith(NUMERICS_PREFIXES)}


def envcap(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("envcap")
    argv = [str(script), *args] if script.exists() else [sys.executable, "-m", "envcap", *args]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                          env=clean_env(), timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"envcap {' '.join(args)} failed ({done.returncode}): {done.stderr[-1500:]}")
    return done


def setup(base_image: str) -> tuple[Path, Path, Path]:
    venvs = VenvCache(WORK / "venvs")
    a, b = venvs.python(SKLEARN_A), venvs.python(SKLEARN_B)
    project = WORK / "project"
    marker = project / ".ready"
    if not (marker.exists() and marker.read_text() == base_image):
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        shutil.copy(REPO / "tests" / "data" / "bisect" / "kmeans.py", project / "kmeans.py")
        for name, python in (("A", a), ("B", b)):
            envcap("snapshot", "--python", str(python), "--out", name, "--base-image", base_image, cwd=project)
        marker.write_text(base_image)
    return project, a, b


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


def remove_layers(project: Path) -> int:
    """Only this bench's layers: those built on its A image (label io.envcap.bisect-base)."""
    removed = 0
    digest = json.loads((project / "A" / "envcap.lock.json").read_text())["digest"]
    for image in docker("images", "-q", "--filter", f"label=io.envcap.lock-digest={digest}").split():
        full = docker("inspect", "--format", "{{.Id}}", image).strip()
        for layer in set(docker("images", "-q", "--filter", f"label=io.envcap.bisect-base={full}").split()):
            docker("rmi", "-f", layer)
            removed += 1
    return removed


def remove_own_images(project: Path) -> None:
    for side in ("A", "B"):
        digest = json.loads((project / side / "envcap.lock.json").read_text())["digest"]
        for image in set(docker("images", "-q", "--filter", f"label=io.envcap.lock-digest={digest}").split()):
            docker("rmi", "-f", image)


def full_build(project: Path) -> float:
    """What a candidate would cost as a full ``envcap build`` of its own lock: A with B's scikit-learn, and a
    nonce variable so no earlier build's layers apply (the lock digest is in requirements.lock, before pip)."""
    from dataclasses import replace

    from envcap.lock import dumps, loads

    a = loads((project / "A" / "envcap.lock.json").read_text())
    b = loads((project / "B" / "envcap.lock.json").read_text())
    swapped = tuple(b.distribution("scikit-learn") if d.name == "scikit-learn" else d for d in a.distributions)
    variant = replace(a, distributions=swapped, env={**(a.env or {}), "ENVCAP_BENCH_NONCE": str(time.time_ns())})
    folder = WORK / "full-build"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "envcap.lock.json").write_text(dumps(variant.with_digest()))  # type: ignore[arg-type]
    started = time.perf_counter()
    done = envcap("build", str(folder), "--json", cwd=project)
    seconds = time.perf_counter() - started
    docker("rmi", "-f", json.loads(done.stdout)["image"])
    return seconds


def bisect(project: Path) -> tuple[dict[str, object], float]:
    started = time.perf_counter()
    done = envcap("bisect", "A", "B", "--outputs", "out/*.json", "--json", "--", "python", "kmeans.py", cwd=project)
    return json.loads(done.stdout), time.perf_counter() - started


def describe(label: str, report: dict[str, object], wall: float) -> dict[str, float]:
    runs = report["runs"]
    assert isinstance(runs, list)
    culprits = ", ".join(f"{c['fact']} {c['a']} -> {c['b']}" for c in report["culprits"])  # type: ignore[union-attr]
    layers = [r for r in runs if r["image_built"] and str(r["image"]).startswith("envcap-bisect:")]
    b_own = next((r for r in runs if r["config"] == "B as locked"), None)
    run_seconds = sum(float(r["seconds"]) for r in runs)
    layer_seconds = sum(float(r["build_seconds"]) for r in layers)
    setup, b_build = float(str(report["setup_seconds"])), float(b_own["build_seconds"]) if b_own else 0.0
    print(f"  {label:12} {wall:6.1f} s wall; {len(runs)} runs ({run_seconds:.1f} s in containers, "
          f"{run_seconds / max(len(runs), 1):.2f} s each); {report['builds']} images built, {report['images_reused']} "
          f"reused: {len(layers)} layers in {layer_seconds:.1f} s; A's image and B's wheels {setup:.1f} s, B's own "
          f"image {b_build:.1f} s; culprit: {culprits}")
    return {"wall": wall, "runs": len(runs), "builds": float(str(report["builds"])), "run_seconds": run_seconds,
            "layers": len(layers), "layer_seconds": layer_seconds, "setup": setup, "b_build": b_build}


def fingerprint(python: Path, project: Path, rounds: int) -> tuple[list[float], list[float], int]:
    suite, wall = [], []
    kernels = 0
    for _ in range(rounds):
        started = time.perf_counter()
        done = envcap("fingerprint", "--python", str(python), "--json", cwd=project)
        wall.append(time.perf_counter() - started)
        data = json.loads(done.stdout)
        suite.append(float(data["suite_seconds"]))
        kernels = len(data["kernels"])
    return suite, wall, kernels


def snapshot_seconds(python: Path, project: Path, rounds: int) -> list[float]:
    out = WORK / "snapshot-out"
    envcap("snapshot", "--python", str(python), "--out", str(out), "--offline", cwd=project)  # warm the caches
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        envcap("snapshot", "--python", str(python), "--out", str(out), "--offline", cwd=project)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default=os.environ.get("ENVCAP_TEST_BASE_IMAGE", "envcap-test-base:bookworm"))
    parser.add_argument("--rounds", type=int, default=5, help="fingerprint and snapshot rounds")
    parser.add_argument("--cold", action="store_true", help="also rebuild A's and B's own images")
    parser.add_argument("--torch", action="store_true", help="also the fingerprint of a venv with torch (CPU)")
    parser.add_argument("--full", action="store_true", help="also time one candidate as a full envcap build of its "
                        "own lock (leaves that build's intermediate layers in the engine's cache)")
    args = parser.parse_args()
    project, a, _ = setup(args.base_image)

    print(f"numeric fingerprint (median of {args.rounds}, seconds):")
    pythons = [("numpy+scipy (scikit-learn A)", a)]
    if args.torch and Path(TORCH_WHEEL).exists():
        pythons.append(("torch CPU + numpy", VenvCache(WORK / "venvs").python([TORCH_WHEEL, "numpy==2.2.6"])))
    snap = statistics.median(snapshot_seconds(a, project, args.rounds))
    for label, python in pythons:
        suite, wall, kernels = fingerprint(python, project, args.rounds)
        print(f"  {label:30} {kernels} kernels: suite {statistics.median(suite):.2f} s inside the interpreter "
              f"({min(suite):.2f}-{max(suite):.2f}), `envcap fingerprint` {statistics.median(wall):.2f} s")
    print(f"  warm `envcap snapshot` of the same venv: {snap:.2f} s; --fingerprint adds the suite "
          f"({statistics.median(fingerprint(a, project, 1)[0]) / snap:.2f}x the snapshot)")

    print("bisect, scikit-learn 1.3.2 -> 1.5.2 among 5 upgrades:")
    removed = remove_layers(project)  # the layers first: an image with children cannot be removed
    if args.cold:
        remove_own_images(project)
    cold_report, cold_wall = bisect(project)
    cold = describe("layers cold" if not args.cold else "all cold", cold_report, cold_wall)
    warm_report, warm_wall = bisect(project)
    warm = describe("warm", warm_report, warm_wall)
    print(f"  ({removed} layers of an earlier run removed first)")
    print("ratios:")
    print(f"  cold / warm wall: {cold['wall'] / warm['wall']:.2f}x; builds {int(cold['builds'])} -> "
          f"{int(warm['builds'])}; runs {int(cold['runs'])} (cold) and {int(warm['runs'])} (warm)")
    if cold["layers"]:
        layer = cold["layer_seconds"] / cold["layers"]
        full = full_build(project) if args.full else None
        print(f"  a layer costs {layer:.1f} s to build on average"
              + (f"; the same candidate as a full build of its own lock {full:.1f} s (a layer is {layer / full:.2f}x "
                 "of it)" if full else "")
              + f"; a run {cold['run_seconds'] / cold['runs']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
