"""How long does ``envcap build`` take, how fast is an unchanged rebuild, and how big is the image?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never
asserts them. Issue 3's targets: a cached rebuild (unchanged inputs) under 2 s, and an image at most
5% larger than the base image plus the installed site-packages.

    python bench/bench_build.py                         # example venv made once (cached), then timed
    python bench/bench_build.py --runs 5 --base-image envcap-test-base:bookworm

Set-up, once, under bench/.work/build (git-ignored): a venv with the example's requirements
(numpy) plus packaging (pure Python). Every timed command is the real CLI in a fresh process.

  first build, cold   a new lock (a fresh OMP_NUM_THREADS value changes the lock digest, so Docker's
                      layer cache cannot answer the install step) and an empty wheelhouse cache
  first build, warm   a new lock again, the wheelhouse kept (what a second project with the same pins sees)
  cached rebuild      ``envcap build`` of an unchanged lock: one digest, one image lookup, nothing sent
  size                the image's size against the base image's plus the venv's site-packages (du -sb)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "build"
EXTRA = ("packaging==24.2",)
TARGET_CACHED_S = 2.0
TARGET_SIZE_OVER = 0.05


def envcap_argv(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("envcap")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "envcap", *args]


def setup() -> Path:
    python = WORK / "venv" / "bin" / "python"
    if python.exists():
        return python
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(WORK / "venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                    str(REPO / "examples" / "train" / "requirements.txt"), *EXTRA], check=True)
    return python


def snapshot(python: Path, out: Path, omp: str) -> Path:
    env = dict(os.environ, OMP_NUM_THREADS=omp)
    subprocess.run(envcap_argv("snapshot", "--python", str(python), "--out", str(out)), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def build(lock: Path, base_image: str, cache: Path) -> tuple[float, dict[str, object]]:
    env = dict(os.environ, ENVCAP_CACHE_DIR=str(cache))
    started = time.perf_counter()
    done = subprocess.run(envcap_argv("build", str(lock), "--base-image", base_image, "--json"), env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"envcap build failed ({done.returncode}): {done.stderr[-1500:]}")
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return elapsed, result


def du_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="first builds of each kind (medians)")
    parser.add_argument("--cached-runs", type=int, default=7, help="cached rebuilds (median)")
    parser.add_argument("--base-image", default=os.environ.get("ENVCAP_TEST_BASE_IMAGE", "envcap-test-base:bookworm"))
    args = parser.parse_args()
    from envcap.engine import connect

    engine = connect()
    base = engine.image(args.base_image)
    if base is None:
        raise SystemExit(f"no image {args.base_image}; run scripts/ensure-docker.sh first")
    python = setup()
    runs = WORK / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    warm_cache = runs / "warm-cache"
    made: list[str] = []
    cold: list[float] = []
    warm: list[float] = []
    for i in range(max(1, args.runs)):
        lock = snapshot(python, runs / f"cold-{i}", str(random.randrange(10**9)))
        seconds, result = build(lock, args.base_image, runs / f"cold-cache-{i}")
        cold.append(seconds)
        made.append(str(result["tag"]))
        if i == 0:
            shutil.copytree(runs / f"cold-cache-{i}", warm_cache)
        lock = snapshot(python, runs / f"warm-{i}", str(random.randrange(10**9)))
        seconds, result = build(lock, args.base_image, warm_cache)
        warm.append(seconds)
        made.append(str(result["tag"]))
    steady = snapshot(python, runs / "steady", "1")
    _, first = build(steady, args.base_image, warm_cache)
    cached = []
    for _ in range(max(1, args.cached_runs)):
        seconds, again = build(steady, args.base_image, warm_cache)
        if again["cached"] is not True:
            raise SystemExit("an unchanged rebuild was not a cache hit")
        cached.append(seconds)
    image = engine.image(str(first["image"]))
    assert image is not None and image.size is not None and base.size is not None
    site = next((WORK / "venv" / "lib").glob("python3*/site-packages"))
    installed = du_bytes(site)
    over = image.size / (base.size + installed) - 1

    def show(name: str, values: list[float]) -> None:
        print(f"  {name:22} {statistics.median(values):7.2f} s  ({min(values):.2f}-{max(values):.2f}, n={len(values)})")

    print(f"envcap build of the example (numpy, packaging, pip, setuptools) on {args.base_image}:")
    show("first build, cold", cold)
    show("first build, warm", warm)
    show("cached rebuild", cached)
    verdict = "meets" if statistics.median(cached) < TARGET_CACHED_S else "MISSES"
    print(f"  cached rebuild target < {TARGET_CACHED_S:.0f} s: {verdict}")
    print(f"  image {image.size / 1e6:.1f} MB = base {base.size / 1e6:.1f} MB + site-packages "
          f"{installed / 1e6:.1f} MB {over * 100:+.2f}%; target <= +{TARGET_SIZE_OVER * 100:.0f}%: "
          f"{'meets' if over <= TARGET_SIZE_OVER else 'MISSES'}")
    for tag in made:
        engine.remove_image(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
