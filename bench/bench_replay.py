"""How much does ``envcap replay`` cost over ``docker run`` of the same trivial command?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never
asserts them. Issue 10's target (item 8; issue 4 asked for 1 s): the replay's overhead (the
in-container probe, the comparison with the lock and the report included) is at most 0.5 s over
``docker run`` of the same command.

    python bench/bench_replay.py                       # sets up the example once (cached), then times
    python bench/bench_replay.py --runs 9 --base-image envcap-test-base:bookworm

Set-up, once, under bench/.work/replay (git-ignored): the example training project, a venv with its
requirements, ``envcap snapshot`` of it and ``envcap build --base-image IMG`` (no registry needed).

Timed, each in a fresh process with output discarded, interleaved in every round, medians:
  docker run   docker run --rm --init -v P:P -w P -u UID:GID -e HOME=/tmp IMAGE python -c pass
  replay       envcap replay P/.envcap -- python -c pass   (same mount, user, init; plus probe and report)
  first replay the same with an empty envcap cache: the image's first replay, which probes it in a
               container beside the workload (for reference; later replays take the image's facts kept
               by it and read the machine's in the workload's container, as the timed replay does)
  envcap CLI   envcap --version                            (for reference: the CLI's own start-up)
The verdict compares the replay with docker run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _setup import byte_compile_envcap

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "replay"
PROJECT = WORK / "project"
TARGET_OVERHEAD_S = 0.5
COMMAND = ("python", "-c", "pass")


def envcap_script() -> str:
    """The console script beside this interpreter (how a user runs envcap), else ``python -m``."""
    script = Path(sys.executable).with_name("envcap")
    return str(script) if script.exists() else ""


def envcap_argv(*args: str) -> list[str]:
    script = envcap_script()
    return [script, *args] if script else [sys.executable, "-m", "envcap", *args]


def setup(base_image: str) -> str:
    """The example project, its snapshot and image, made once; returns the image id."""
    marker = WORK / ".ready"
    if marker.exists() and json.loads(marker.read_text()).get("base_image") == base_image:
        return str(json.loads(marker.read_text())["image"])
    shutil.rmtree(WORK, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    for name in ("train.py", "requirements.txt"):
        shutil.copy(REPO / "examples" / "train" / name, PROJECT / name)
    subprocess.run([sys.executable, "-m", "venv", str(PROJECT / ".venv")], check=True)
    subprocess.run([str(PROJECT / ".venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-r", "requirements.txt"], cwd=PROJECT, check=True)
    subprocess.run(envcap_argv("snapshot", "--python", ".venv/bin/python"), cwd=PROJECT, check=True,
                   stdout=subprocess.DEVNULL)
    done = subprocess.run(envcap_argv("build", "--base-image", base_image, "--json"), cwd=PROJECT, check=True,
                          capture_output=True, text=True)
    image = json.loads(done.stdout)["image"]
    marker.write_text(json.dumps({"base_image": base_image, "image": image}))
    return str(image)


def timed(argv: Sequence[str], cwd: Path, cold: bool = False) -> float:
    """Seconds for one run; ``cold``: with an empty envcap cache of its own (made before the clock starts)."""
    with tempfile.TemporaryDirectory(prefix="envcap-bench-cache-") as empty:
        env = dict(os.environ, ENVCAP_CACHE_DIR=empty) if cold else None
        started = time.perf_counter()
        done = subprocess.run(list(argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, check=False, env=env)
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-800:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds (each runs every case once), at least 5")
    parser.add_argument("--base-image", default=os.environ.get("ENVCAP_TEST_BASE_IMAGE", "envcap-test-base:bookworm"))
    args = parser.parse_args()
    runs = max(5, args.runs)
    image = setup(args.base_image)
    byte_compile_envcap()
    project = str(PROJECT)
    cases = {
        "docker run": ["docker", "run", "--rm", "--init", "-v", f"{project}:{project}", "-w", project,
                       "-u", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp", image, *COMMAND],
        "envcap replay": envcap_argv("replay", str(PROJECT / ".envcap"), "--", *COMMAND),
        "first replay": envcap_argv("replay", str(PROJECT / ".envcap"), "--", *COMMAND),
        "envcap --version": envcap_argv("--version"),
    }
    cold = {"first replay"}
    for name, argv in cases.items():  # warm-up: image layers, page cache, the replay's image memo and kept facts
        timed(argv, PROJECT, name in cold)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(timed(argv, PROJECT, name in cold))
    print(f"{runs} interleaved rounds, medians (min-max), seconds:")
    for name, values in times.items():
        print(f"  {name:18} {statistics.median(values):6.3f}  ({min(values):.3f}-{max(values):.3f})")
    docker, replay = statistics.median(times["docker run"]), statistics.median(times["envcap replay"])
    overhead = replay - docker
    verdict = "meets" if overhead <= TARGET_OVERHEAD_S else "MISSES"
    print(f"replay overhead over docker run: {overhead:+.3f} s ({replay:.3f} s vs {docker:.3f} s, "
          f"{replay / docker:.2f}x); target <= {TARGET_OVERHEAD_S:.1f} s: {verdict}")
    first = statistics.median(times["first replay"])
    print(f"an image's first replay (its probe container included): {first - docker:+.3f} s over docker run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
