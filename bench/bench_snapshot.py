"""How fast is ``envcap snapshot`` against the tools a user would otherwise run, and does it miss a fact?

Why a script and not a test: wall-clock numbers depend on the machine and its load; the suite never
asserts them. This prints ratios (measured in the same run, interleaved, medians) against the issue's
targets, and a list of the facts ``python -m torch.utils.collect_env`` reports that a snapshot lacks.

    python bench/bench_snapshot.py                 # build the ML venv once (cached), then time
    python bench/bench_snapshot.py --runs 7 --compile-runs 3 --profile

The venv (torch 2.13.0 from the local CPU wheel, numpy, scipy, pandas, scikit-learn, matplotlib,
jupyterlab, transformers, datasets, tensorboard: about 150 distributions) is built once under
bench/.work/ (git-ignored) and reused while its package list is unchanged.

Timed commands (each in a fresh process, stdout discarded):
  warm   envcap snapshot --python VENV --out TMP   (its caches filled by an earlier snapshot)
  bare scan                                        VENV/bin/python -c "importlib.metadata: every version"
  pip inspect                                      VENV/bin/python -m pip inspect
  collect_env                                      VENV/bin/python -m torch.utils.collect_env
  cold   the same snapshot with a fresh ENVCAP_CACHE_DIR (probe cache empty, every hash fetched)
  uv     uv pip compile --generate-hashes --no-cache of name==version of every distribution, with
         the same sources the snapshot uses (pip's index-url, extra-index-url, find-links)
  uv public   the same on the pins PyPI alone serves (local-version builds such as torch+cpu left
         out, no find-links): uv's fastest case, and the peer of the cold target
  pip-compile --generate-hashes                    on the same pins, fresh cache (slow; --compile-runs)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _setup import byte_compile_envcap

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
VENV = WORK / "mlvenv"
PACKAGES = (
    "torch==2.13.0", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "jupyterlab",
    "transformers", "datasets", "tensorboard",
)
# The targets, as ratios of the median times.
TARGETS = {"warm / pip inspect": 0.5, "warm / collect_env": 0.25, "warm / bare scan": 1.6,
           "cold / uv public": 0.5, "cold / uv": 0.5, "cold / pip-compile": 0.1}
BARE_SCAN = "import importlib.metadata as m; [d.version for d in m.distributions()]"


# ------------------------------------------------------------------------------------- the venv

def venv_python() -> Path:
    return VENV / "bin" / "python"


def build_venv(python: str) -> None:
    """Creates the ML venv once; a marker file holding the package list says it is complete."""
    marker = VENV / ".bench-ready"
    wanted = "\n".join(PACKAGES)
    if marker.exists() and marker.read_text("utf-8") == wanted and venv_python().exists():
        return
    if VENV.exists():
        shutil.rmtree(VENV)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"building {VENV} (once; several minutes)...", file=sys.stderr)
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    marker.write_text(wanted, "utf-8")


def envcap_cli() -> list[str]:
    """The console script next to this interpreter: what a user runs."""
    script = Path(sys.executable).parent / "envcap"
    if not script.exists():
        raise SystemExit(f"no envcap console script next to {sys.executable}; run this with envcap's venv python")
    return [str(script)]


# --------------------------------------------------------------------------------------- timing

def timed(argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd,
                          check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return elapsed


def interleaved(cases: dict[str, Callable[[], float]], runs: dict[str, int]) -> dict[str, list[float]]:
    """Runs every case once per round, in turn, so a slow minute of the machine hits all of them."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(max(runs.values())):
        for name, case in cases.items():
            if round_index < runs[name]:
                samples[name].append(case())
                print(f"  round {round_index + 1}: {name:<12} {samples[name][-1]:7.3f} s", file=sys.stderr)
    return samples


def snapshot_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ENVCAP_CACHE_DIR"] = str(cache)
    return env


def warm_cases(cli: list[str], tmp: Path) -> dict[str, Callable[[], float]]:
    python = str(venv_python())
    warm_cache = WORK / "cache-warm"
    env = snapshot_env(warm_cache)
    # The first snapshot fills the caches ("an earlier snapshot of the same environment").
    timed([*cli, "snapshot", "--python", python, "--out", str(tmp / "warmup")], env=env, cwd=str(tmp))
    return {
        "warm": lambda: timed([*cli, "snapshot", "--python", python, "--out", str(tmp / "warm")], env=env,
                              cwd=str(tmp)),
        "bare scan": lambda: timed([python, "-c", BARE_SCAN], cwd=str(tmp)),
        "pip inspect": lambda: timed([python, "-m", "pip", "inspect"], cwd=str(tmp)),
        "collect_env": lambda: timed([python, "-m", "torch.utils.collect_env"], cwd=str(tmp)),
    }


def freeze_pins() -> list[str]:
    """name==version of every distribution in the venv, as pip-compile would be given them."""
    out = subprocess.run([str(venv_python()), "-m", "pip", "list", "--format=json"], capture_output=True,
                         check=True, text=True).stdout
    return sorted(f"{d['name']}=={d['version']}" for d in json.loads(out))


def pip_sources() -> tuple[list[str], list[str]]:
    """The venv's pip settings (envcap's own reader) as uv flags: the sources the snapshot asks."""
    from envcap.net.pipconf import read_pip_settings

    prefix = subprocess.run([str(venv_python()), "-c", "import sys; print(sys.prefix)"], capture_output=True,
                            text=True, check=True).stdout.strip()
    settings = read_pip_settings(prefix)
    flags: list[str] = []
    if settings.no_index:
        flags.append("--no-index")
    elif settings.index_url:
        flags += ["--index-url", settings.index_url]
    for url in settings.extra_index_urls:
        if not url.startswith("file:") or Path(url.removeprefix("file://")).is_dir():
            flags += ["--extra-index-url", url]
    links = [f"--find-links={link}" for link in settings.find_links]
    if len(flags) > 2:  # several indexes: pip merges them all; uv only when told to
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags, links


def cold_cases(cli: list[str], tmp: Path, compile_runs: int) -> dict[str, Callable[[], float]]:
    python = str(venv_python())
    pins = [p for p in freeze_pins() if not p.lower().startswith(("pip==", "setuptools=="))]
    requirements_in = tmp / "requirements.in"
    requirements_in.write_text("\n".join(pins) + "\n", "utf-8")
    public_in = tmp / "requirements-public.in"
    public_in.write_text("\n".join(p for p in pins if "+" not in p) + "\n", "utf-8")
    pip_compile = Path(sys.executable).parent / "pip-compile"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("no uv next to this python or on PATH (it is in envcap's test extra)")
    index_flags, link_flags = pip_sources()
    counter = iter(range(1000))

    def cold() -> float:
        with tempfile.TemporaryDirectory(prefix="envcap-cold-") as cache:
            return timed([*cli, "snapshot", "--python", python, "--out", str(tmp / "cold")],
                         env=snapshot_env(Path(cache)), cwd=str(tmp))

    def uv_compile(source: Path, flags: list[str]) -> Callable[[], float]:
        def run() -> float:
            out = tmp / f"uv-{next(counter)}.txt"
            return timed([uv, "pip", "compile", "--quiet", "--generate-hashes", "--no-cache", "--no-header",
                          "--python", python, *flags, "--output-file", str(out), str(source)], cwd=str(tmp))
        return run

    def compile_() -> float:
        with tempfile.TemporaryDirectory(prefix="piptools-cold-") as cache:
            out = tmp / f"compiled-{next(counter)}.txt"
            return timed([str(pip_compile), "--quiet", "--generate-hashes", "--allow-unsafe", "--no-header",
                          "--cache-dir", cache, "--output-file", str(out), str(requirements_in)], cwd=str(tmp),
                         env=dict(os.environ, PIP_CACHE_DIR=str(Path(cache) / "pip")))

    cases = {"cold": cold, "uv public": uv_compile(public_in, []),
             "uv": uv_compile(requirements_in, index_flags + link_flags)}
    if compile_runs:
        cases["pip-compile"] = compile_
    return cases


# ---------------------------------------------------------------------------------- the facts

def collect_env_report() -> dict[str, str]:
    out = subprocess.run([str(venv_python()), "-m", "torch.utils.collect_env"], capture_output=True, text=True,
                         check=True).stdout
    report: dict[str, str] = {}
    section = None
    for line in out.splitlines():
        if line.endswith(":") and ":" not in line[:-1]:
            section = line[:-1]
            report[section] = ""
            continue
        key, sep, value = line.partition(":")
        if sep and section not in ("CPU", "Versions of relevant libraries"):
            report[key.strip()] = value.strip()
        elif section:
            report[section] += line + "\n"
    return report


def snapshot_facts(cli: list[str], tmp: Path) -> dict[str, object]:
    env = snapshot_env(WORK / "cache-warm")
    out = subprocess.run([*cli, "snapshot", "--python", str(venv_python()), "--out", str(tmp / "facts"), "--json"],
                         capture_output=True, text=True, env=env, check=True, cwd=str(tmp)).stdout
    return json.loads(out)["snapshot"]  # type: ignore[no-any-return]


def _get(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def fact_rows(report: dict[str, str], snap: dict[str, object]) -> list[tuple[str, str, str, str]]:
    """(fact, collect_env's value, the snapshot's value, verdict) for each fact collect_env reports.

    verdict: "same" (the snapshot holds the value collect_env printed), "held" (the snapshot holds the
    fact, in its own words), "absent-both" (neither machine has it, e.g. ROCm on a CPU build, and the
    snapshot says so explicitly), "MISSING" (collect_env reports something the snapshot lacks).
    """
    torch_build = _get(snap, "cuda", "torch") or {}
    assert isinstance(torch_build, dict)
    dists = {d["name"]: d["version"] for d in snap.get("distributions", [])}  # type: ignore[union-attr]
    rows: list[tuple[str, str, str, str]] = []

    def row(fact: str, ce: str | None, ours: object, verdict: str) -> None:
        rows.append((fact, (ce or "")[:60], str(ours)[:60], verdict))

    def same_or(fact: str, ce: str | None, ours: object, ok: bool) -> None:
        if ours is None:
            row(fact, ce, ours, "MISSING")
        else:
            row(fact, ce, ours, "same" if ok else "held")

    ce_torch = report.get("PyTorch version")
    same_or("torch version", ce_torch, dists.get("torch"), ce_torch == dists.get("torch"))
    ce_debug = report.get("Is debug build")
    same_or("debug build", ce_debug, torch_build.get("debug"), str(torch_build.get("debug")) == ce_debug)
    ce_cuda_build = report.get("CUDA used to build PyTorch")
    if "version" in torch_build:
        ours = torch_build.get("cuda")
        row("CUDA used to build", ce_cuda_build, ours,
            "same" if str(ours) == ce_cuda_build or (ours is None and ce_cuda_build in ("None", "N/A")) else "held")
    else:
        row("CUDA used to build", ce_cuda_build, None, "MISSING")
    ce_rocm = report.get("ROCM used to build PyTorch")
    row("ROCm used to build", ce_rocm, torch_build.get("hip"),
        "absent-both" if torch_build.get("hip") is None and ce_rocm in ("N/A", "None") and "version" in torch_build
        else "held" if torch_build.get("hip") else "MISSING")
    ce_os = report.get("OS")
    ours_os = _get(snap, "os", "pretty_name")
    same_or("OS", ce_os, ours_os, bool(ours_os) and str(ours_os) in (ce_os or ""))
    for fact, key, tool in (("GCC", "GCC version", "gcc"), ("Clang", "Clang version", "clang"),
                            ("CMake", "CMake version", "cmake")):
        ce = report.get(key)
        ours = _get(snap, "toolchain", tool, "version")
        if ours is None and (ce or "").startswith("Could not collect"):
            row(fact, ce, ours, "absent-both" if _get(snap, "toolchain") is not None else "MISSING")
        else:
            same_or(fact, ce, ours, bool(ours) and str(ours) in (ce or ""))
    ce_libc = report.get("Libc version")
    ours_libc = _get(snap, "os", "libc_version")
    same_or("libc", ce_libc, ours_libc, bool(ours_libc) and str(ours_libc) in (ce_libc or ""))
    ce_py = report.get("Python version")
    ours_py = _get(snap, "python", "version")
    same_or("Python version", ce_py, ours_py, bool(ours_py) and (ce_py or "").startswith(str(ours_py)))
    ce_plat = report.get("Python platform")
    kernel = _get(snap, "os", "kernel")
    same_or("Python platform", ce_plat, f"{_get(snap, 'python', 'platform')} kernel {kernel}",
            bool(kernel) and str(kernel) in (ce_plat or ""))
    ce_avail = report.get("Is CUDA available")
    runtime = _get(snap, "torch_runtime", "cuda_available")
    if runtime is not None:
        same_or("CUDA available", ce_avail, runtime, str(runtime) == ce_avail)
    else:
        # Without --deep torch is not imported; availability follows from the build and the GPU facts.
        gpu_status = _get(snap, "gpu", "status")
        inferred = bool(torch_build.get("cuda")) and gpu_status == "ok"
        row("CUDA available", ce_avail, f"inferred {inferred} (gpu {gpu_status})",
            "held" if str(inferred) == ce_avail else "MISSING")
    ce_rt = report.get("CUDA runtime version")
    ours_rt = _get(snap, "cuda", "components", "cuda_runtime", "version")
    same_or("CUDA runtime", ce_rt, ours_rt, bool(ours_rt) and str(ours_rt) in (ce_rt or ""))
    ce_gpu = report.get("GPU models and configuration")
    gpu = _get(snap, "gpu") or {}
    assert isinstance(gpu, dict)
    names = [d.get("name") for d in gpu.get("devices", [])]
    row("GPU models", ce_gpu, names or f"none ({gpu.get('status')})",
        "held" if names else "absent-both" if gpu.get("status") in ("no-nvml", "no-driver", "no-gpu") else "MISSING")
    ce_driver = report.get("Nvidia driver version")
    ours_driver = gpu.get("driver_version")
    row("driver", ce_driver, ours_driver or f"none ({gpu.get('status')})",
        "same" if ours_driver and ours_driver == ce_driver else "held" if ours_driver
        else "absent-both" if gpu.get("status") in ("no-nvml", "no-driver") else "MISSING")
    ce_cudnn = report.get("cuDNN version")
    ours_cudnn = _get(snap, "cuda", "components", "cudnn", "version")
    row("cuDNN", ce_cudnn, ours_cudnn, "same" if ours_cudnn and str(ours_cudnn) in (ce_cudnn or "")
        else "held" if ours_cudnn else "absent-both" if (ce_cudnn or "").startswith(("Could not", "N/A", "None"))
        and _get(snap, "cuda") is not None else "MISSING")
    ce_hip = report.get("HIP runtime version")
    row("HIP runtime", ce_hip, torch_build.get("hip"),
        "held" if torch_build.get("hip") else "absent-both" if ce_hip in ("N/A", "None") and "version" in torch_build
        else "MISSING")
    ce_miopen = report.get("MIOpen runtime version")
    row("MIOpen runtime", ce_miopen, None,
        "absent-both" if ce_miopen in ("N/A", "None") and not torch_build.get("hip") else "MISSING")
    ce_xnn = report.get("Is XNNPACK available")
    ours_xnn = _get(snap, "torch_runtime", "xnnpack")
    row("XNNPACK", ce_xnn, ours_xnn, "same" if str(ours_xnn) == ce_xnn else "MISSING (needs --deep)")
    ce_cpu = report.get("CPU", "")
    model = _get(snap, "cpu", "model_name")
    row("CPU", ce_cpu.split("Model name:")[-1].split("\n")[0].strip(), model,
        "same" if model and str(model) in ce_cpu else "held" if model else "MISSING")
    libs = report.get("Versions of relevant libraries", "")
    missing_libs = []
    for line in libs.splitlines():
        match = re.match(r"\[pip3\]\s+(\S+)==(\S+)", line)
        if match and dists.get(re.sub(r"[-_.]+", "-", match.group(1)).lower()) != match.group(2):
            missing_libs.append(match.group(1))
    count = len(re.findall(r"\[pip3\]", libs))
    row("relevant libraries", f"{count} pip entries", f"{len(dists)} distributions",
        "same" if not missing_libs else "MISSING " + ",".join(missing_libs))
    return rows


# ------------------------------------------------------------------------------------- profile

def profile(cli: list[str], tmp: Path, top: int) -> None:
    python = str(venv_python())
    env = snapshot_env(WORK / "cache-warm")
    script = cli[0]
    print("\n## where a warm snapshot spends its time")
    done = subprocess.run([sys.executable, "-X", "importtime", script, "snapshot", "--python", python, "--out",
                           str(tmp / "prof")], capture_output=True, text=True, env=env, cwd=str(tmp), check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    top_level = sorted((r for r in rows if r[1] == 0), reverse=True)[:top]
    total = sum(r[0] for r in rows if r[1] == 0)
    print(f"\n### -X importtime of the CLI process: {total / 1e3:.0f} ms of imports in all; the largest top-level:")
    for cumulative, _, name in top_level:
        print(f"  {cumulative / 1e3:7.1f} ms  {name}")
    prof = tmp / "cli.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), script, "snapshot", "--python", python,
                    "--out", str(tmp / "prof")], capture_output=True, env=env, cwd=str(tmp), check=True)
    import io
    import pstats

    buffer = io.StringIO()
    pstats.Stats(str(prof), stream=buffer).sort_stats("cumulative").print_stats("envcap", top)
    print("\n### cProfile of the CLI process, envcap's functions by cumulative time (the probe is a child process)")
    print("\n".join(line for line in buffer.getvalue().splitlines() if line.strip())[:6000])
    buffer = io.StringIO()
    pstats.Stats(str(prof), stream=buffer).sort_stats("tottime").print_stats(15)
    print("\n### cProfile of the CLI process, by own time")
    print("\n".join(line for line in buffer.getvalue().splitlines() if line.strip())[:4000])
    probe = Path(__file__).resolve().parent.parent / "envcap" / "probe" / "_probe.py"
    cache_file = WORK / "probe-profile-cache.json"
    subprocess.run([python, str(probe), "--cache", str(cache_file)], stdout=subprocess.DEVNULL, check=True)
    times = [timed([python, str(probe), "--cache", str(cache_file)], cwd=str(tmp)) for _ in range(5)]
    bare = [timed([python, "-c", "import importlib.metadata as m; [d.version for d in m.distributions()]"])
            for _ in range(5)]
    started = [timed([python, "-c", "pass"]) for _ in range(5)]
    print(f"\n### the probe alone (warm file cache) in the venv's python: median {statistics.median(times):.3f} s; "
          f"bare importlib.metadata scan {statistics.median(bare):.3f} s; python -c pass "
          f"{statistics.median(started):.3f} s")
    probe_prof = tmp / "probe.prof"
    subprocess.run([python, "-m", "cProfile", "-o", str(probe_prof), str(probe), "--cache", str(cache_file)],
                   stdout=subprocess.DEVNULL, check=True)
    buffer = io.StringIO()
    pstats.Stats(str(probe_prof), stream=buffer).sort_stats("cumulative").print_stats(top)
    print("\n### cProfile of the probe (cumulative)")
    print("\n".join(line for line in buffer.getvalue().splitlines() if line.strip())[:6000])


# ----------------------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per warm case and of the cold snapshot")
    parser.add_argument("--compile-runs", type=int, default=3, help="runs of pip-compile (slow; 0 skips it)")
    parser.add_argument("--uv-runs", type=int, default=0, help="runs of each uv case (default: --runs)")
    parser.add_argument("--skip-cold", action="store_true", help="time only the warm cases")
    parser.add_argument("--profile", action="store_true", help="also print -X importtime and cProfile")
    parser.add_argument("--top", type=int, default=25, help="rows per profile")
    parser.add_argument("--build-only", action="store_true", help="build the venv and stop")
    args = parser.parse_args(argv)

    build_venv(sys.executable)
    if args.build_only:
        return 0
    cli = envcap_cli()
    byte_compile_envcap()
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="envcap-bench-") as tmp_name:
        tmp = Path(tmp_name)
        count = len(json.loads(subprocess.run([str(venv_python()), "-m", "pip", "list", "--format=json"],
                                              capture_output=True, text=True, check=True).stdout))
        print(f"# envcap snapshot benchmark: {count} distributions in {VENV}")
        print(f"# {os.cpu_count()} cores; medians of interleaved runs\n")
        warm = interleaved(warm_cases(cli, tmp), {"warm": args.runs, "bare scan": args.runs,
                                                  "pip inspect": args.runs, "collect_env": args.runs})
        if not args.skip_cold:
            uv_runs = args.uv_runs or args.runs
            cold = interleaved(cold_cases(cli, tmp, args.compile_runs),
                               {"cold": args.runs, "uv public": uv_runs, "uv": uv_runs,
                                "pip-compile": args.compile_runs})
            warm.update(cold)
        print("| command | runs | median s | min s | max s |")
        print("| --- | --- | --- | --- | --- |")
        for name, values in warm.items():
            medians[name] = statistics.median(values)
            print(f"| {name} | {len(values)} | {medians[name]:.3f} | {min(values):.3f} | {max(values):.3f} |")
        print("\n| ratio | measured | target | met |")
        print("| --- | --- | --- | --- |")
        for label, target in TARGETS.items():
            top, bottom = label.split(" / ")
            if top in medians and bottom in medians:
                ratio = medians[top] / medians[bottom]
                print(f"| {label} | {ratio:.3f} | <= {target} | {'yes' if ratio <= target else 'NO'} |")

        print("\n## facts collect_env reports, and the snapshot's (warm, without --deep)")
        rows = fact_rows(collect_env_report(), snapshot_facts(cli, tmp))
        print("| fact | collect_env | snapshot | verdict |")
        print("| --- | --- | --- | --- |")
        for fact, ce, ours, verdict in rows:
            print(f"| {fact} | {ce} | {ours} | {verdict} |")
        missing = [r[0] for r in rows if r[3].startswith("MISSING")]
        print(f"\nmissing from the snapshot: {', '.join(missing) if missing else 'none'}")
        if args.profile:
            profile(cli, tmp, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
