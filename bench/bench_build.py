"""How long does ``envcap build`` take against a plain ``docker build``, and how fast are the rebuilds?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never
asserts them. Targets (issues 3 and 10), each measured in the same run as its peer:

  first build, wheels cached   a scikit-learn stack whose wheels are in the wheelhouse but whose packages
                               were never installed: at most 1.5x the peer below
  peer                         ``docker build --no-cache`` of a Dockerfile that only adds the user and
                               COPYs the very venv envcap installed onto the same base (the floor any
                               image-building tool pays for these bytes)
  variable-only rebuild        a lock that differs from a built one in one variable: under 2 s
  cached rebuild               an unchanged lock: one digest, one image lookup, nothing sent; under 2 s
  first build, cold            the same, with an empty wheelhouse (downloads included; no target)
  size                         the image against the base image plus the venv's site-packages: <= +5%

    python bench/bench_build.py                         # stack venv made once (cached), then timed
    python bench/bench_build.py --runs 5 --base-image envcap-test-base:bookworm

Set-up, once, under bench/.work/build (git-ignored): a venv with the example's requirements plus
scikit-learn (numpy, scipy, joblib, threadpoolctl) and packaging. Every timed envcap command is the
real CLI in a fresh process.
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
from typing import Any

from _setup import byte_compile_envcap

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "build"
EXTRA = ("scikit-learn==1.6.1", "packaging==24.2")
TARGET_FIRST_RATIO = 1.5
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


def remove_install_images(client: Any) -> None:
    """The packages must be installed again: the next build is a first build with the wheels cached."""
    from envcap.build.inputs import INSTALL_REPOSITORY

    for image in client.images.list(name=INSTALL_REPOSITORY):
        for tag in image.tags:
            client.images.remove(tag, force=True)


def peer_context(client: Any, image: str, folder: Path, base_image: str) -> Path:
    """The venv envcap installed, copied out of its image, and a Dockerfile that only COPYs it."""
    import io
    import tarfile

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    container = client.containers.create(image, command=["true"])
    try:
        stream, _ = container.get_archive("/opt/venv")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            archive.extractall(folder, filter="tar")
    finally:
        container.remove(force=True)
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "RUN useradd --no-log-init --create-home --uid 1000 --shell /bin/sh envcap\n"
        "COPY venv/ /opt/venv/\n"
        'ENV PATH="/opt/venv/bin:$PATH" OMP_NUM_THREADS=1\n'
        "USER 1000:1000\n")
    return folder


def docker_build_no_cache(folder: Path, tag: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "build", "--no-cache", "-q", "-t", tag, str(folder)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, DOCKER_BUILDKIT="0"))
    return time.perf_counter() - started


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
    import docker

    from envcap.engine import connect

    engine = connect()
    client = docker.from_env()
    base = engine.image(args.base_image)
    if base is None:
        raise SystemExit(f"no image {args.base_image}; run scripts/ensure-docker.sh first")
    python = setup()
    byte_compile_envcap()
    runs = WORK / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    warm_cache = runs / "warm-cache"
    made: list[str] = []
    cold: list[float] = []
    first: list[float] = []
    peer: list[float] = []
    variable_only: list[float] = []
    for i in range(max(1, args.runs)):
        remove_install_images(client)
        lock = snapshot(python, runs / f"cold-{i}", str(random.randrange(10**9)))
        seconds, result = build(lock, args.base_image, runs / f"cold-cache-{i}")
        cold.append(seconds)
        made.append(str(result["tag"]))
        if i == 0:
            shutil.copytree(runs / f"cold-cache-{i}", warm_cache)
        remove_install_images(client)
        lock = snapshot(python, runs / f"first-{i}", str(random.randrange(10**9)))
        seconds, result = build(lock, args.base_image, warm_cache)
        first.append(seconds)
        made.append(str(result["tag"]))
        context = peer_context(client, str(result["tag"]), runs / "peer", args.base_image)
        peer.append(docker_build_no_cache(context, "envcap-bench-peer:latest"))
        lock = snapshot(python, runs / f"variable-{i}", str(random.randrange(10**9)))
        seconds, again = build(lock, args.base_image, warm_cache)
        if again["packages_reused"] is not True:
            raise SystemExit("a variable-only change installed the packages again")
        variable_only.append(seconds)
        made.append(str(again["tag"]))
    made.append("envcap-bench-peer:latest")
    steady = snapshot(python, runs / "steady", "1")
    _, steady_build = build(steady, args.base_image, warm_cache)
    cached = []
    for _ in range(max(1, args.cached_runs)):
        seconds, again = build(steady, args.base_image, warm_cache)
        if again["cached"] is not True:
            raise SystemExit("an unchanged rebuild was not a cache hit")
        cached.append(seconds)
    image = engine.image(str(steady_build["image"]))
    assert image is not None and image.size is not None and base.size is not None
    site = next((WORK / "venv" / "lib").glob("python3*/site-packages"))
    installed = du_bytes(site)
    over = image.size / (base.size + installed) - 1

    def show(name: str, values: list[float]) -> None:
        print(f"  {name:28} {statistics.median(values):7.2f} s  ({min(values):.2f}-{max(values):.2f}, n={len(values)})")

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    ratio = statistics.median(first) / statistics.median(peer)
    print(f"envcap build of a scikit-learn stack ({result['wheels']} wheels) on {args.base_image}:")
    show("first build, cold", cold)
    show("first build, wheels cached", first)
    show("peer: docker build --no-cache", peer)
    show("variable-only rebuild", variable_only)
    show("cached rebuild", cached)
    print(f"  first build / peer = {ratio:.2f}x; target <= {TARGET_FIRST_RATIO}x: {verdict(ratio <= TARGET_FIRST_RATIO)}")
    print(f"  variable-only rebuild target < {TARGET_CACHED_S:.0f} s: "
          f"{verdict(statistics.median(variable_only) < TARGET_CACHED_S)}")
    print(f"  cached rebuild target < {TARGET_CACHED_S:.0f} s: {verdict(statistics.median(cached) < TARGET_CACHED_S)}")
    print(f"  image {image.size / 1e6:.1f} MB = base {base.size / 1e6:.1f} MB + site-packages "
          f"{installed / 1e6:.1f} MB {over * 100:+.2f}%; target <= +{TARGET_SIZE_OVER * 100:.0f}%: "
          f"{verdict(over <= TARGET_SIZE_OVER)}")
    for tag in made:
        engine.remove_image(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
