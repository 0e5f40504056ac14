"""How long does ``envcap fleet`` take for N nodes, and how does that grow with N?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never
asserts them. Issue 12 asks for the time of a fleet probe of 1, 2 and 4 nodes and its growth.

    python bench/bench_fleet.py                  # starts the test cluster if needed (scripts/ensure-slurm.sh)
    python bench/bench_fleet.py --runs 9 --nodes 1 2 4

The cluster is the test cluster: node1..node4 are slurmd containers on this machine (partition fleet),
so every node's probe shares this machine's CPUs; on a real cluster each node probes on its own CPUs.

Timed, each in a fresh process with output discarded, interleaved in every round, medians:
  fleet N        envcap fleet --slurm --partition fleet --nodes N --json   (srun per node, all at once)
  sequential N   the same with --parallel 1                                 (one node after the other)
  srun           srun --nodelist=node1 true                                 (Slurm's own cost of one task)
The JSON's ``seconds`` (the survey inside envcap, without the CLI's start-up) is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def envcap_script() -> str:
    candidate = Path(sys.executable).with_name("envcap")
    return str(candidate) if candidate.exists() else "envcap"


def slurm_conf() -> str:
    done = subprocess.run(["bash", str(REPO / "scripts" / "ensure-slurm.sh")], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        sys.exit(f"bench_fleet: no Slurm cluster: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_fleet: {' '.join(argv[:6])} ... failed ({done.returncode}): {done.stderr[-800:]}")
    inner = None
    if done.stdout.lstrip().startswith("{"):
        doc = json.loads(done.stdout)
        inner = float(doc["seconds"])
        if doc["nodes"]["answered"] != len(doc["nodes"]["asked"]):
            sys.exit(f"bench_fleet: not every node answered: {doc['problems']}")
    return wall, inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()

    env = dict(os.environ, SLURM_CONF=slurm_conf())
    envcap = envcap_script()
    cases: dict[str, list[str]] = {"srun": ["srun", "--nodelist=node1", "--partition=fleet", "--quiet", "true"]}
    for n in args.nodes:
        base = [envcap, "fleet", "--slurm", "--partition", "fleet", "--nodes", str(n), "--json"]
        cases[f"fleet {n}"] = base
        if not args.skip_sequential and n > 1:
            cases[f"sequential {n}"] = [*base, "--parallel", "1"]
    for argv in cases.values():  # warm-up: page cache, slurmctld's first allocation of each node
        timed(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in cases}
    inners: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            wall, inner = timed(argv, env)
            walls[name].append(wall)
            if inner is not None:
                inners[name].append(inner)

    one = statistics.median(walls[f"fleet {args.nodes[0]}"])
    print(f"envcap fleet on the test cluster ({os.cpu_count()} CPUs shared by every node), {args.runs} runs, medians")
    print(f"{'case':<14} {'seconds':>8} {'min':>7} {'max':>7} {'in survey':>10} {'vs N=' + str(args.nodes[0]):>8}")
    for name in cases:
        w = walls[name]
        inner = f"{statistics.median(inners[name]):.3f}" if inners[name] else "-"
        ratio = f"{statistics.median(w) / one:.2f}" if name != "srun" else "-"
        print(f"{name:<14} {statistics.median(w):8.3f} {min(w):7.3f} {max(w):7.3f} {inner:>10} {ratio:>8}")


if __name__ == "__main__":
    main()
