"""``envcap replay --match`` for real: a snapshot taken under a capped ISA, replayed on this uncapped machine.

The "original" is this machine with NumPy's AVX-512 dispatch switched off and OpenBLAS on the Haswell kernels it
picks on an AVX2 CPU, its lock then made to say what an AVX2-only host would have said (no AVX-512 in its CPU
flags, no cap variable in its environment). Replayed
plainly, the image computes float64 exp and power with AVX-512 and the fingerprint says so; replayed with
--match, envcap caps the dispatch itself and the image's fingerprint is the snapshot's, kernel for kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from envcap.lock import dumps, loads

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network, pytest.mark.usefixtures("clean_numerics_env")]

NO_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR X86_V4"


def envcap(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1200, stdin=subprocess.DEVNULL, check=False, env={**os.environ, **(env or {})})


def test_a_capped_snapshot_replayed_with_match_gives_the_capped_fingerprint(tmp_path: Path, venvs,  # type: ignore[no-untyped-def]
                                                                           base_image: str) -> None:
    flags = Path("/proc/cpuinfo").read_text().split("\nflags", 1)[-1].split("\n", 1)[0].split()
    if "avx512f" not in flags:
        pytest.skip("this CPU has no AVX-512: there is no capped ISA to replay onto an uncapped one")
    python = venvs.python(["numpy==2.2.6"])
    done = envcap("snapshot", "--python", str(python), "--fingerprint", "--base-image", base_image, cwd=tmp_path,
                  env={"NPY_DISABLE_CPU_FEATURES": NO_AVX512, "OPENBLAS_CORETYPE": "Haswell"})
    assert done.returncode == 0, done.stderr
    path = tmp_path / ".envcap" / "envcap.lock.json"
    lock = loads(path.read_text())
    assert lock.fingerprints and lock.cpu and lock.cpu.numeric_flags
    # as an AVX2-only host would have written it: no AVX-512, and no cap needed to keep NumPy off it
    cpu = replace(lock.cpu, numeric_flags=tuple(f for f in lock.cpu.numeric_flags if not f.startswith("avx512")))
    env = {k: v for k, v in (lock.env or {}).items() if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    path.write_text(dumps(replace(lock, cpu=cpu, env=env).with_digest()))

    plain = envcap("replay", "--report", "plain.json", "--", "python", "-c", "print('ok')", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    report = json.loads((tmp_path / "plain.json").read_text())
    differing = {d["kernel"] for d in report["fingerprint"]["differences"]}
    assert {"numpy.exp_f64", "numpy.power_f64", "numpy.gemm_f32"} <= differing
    assert report["match"] is None

    matched = envcap("replay", "--match", "--report", "matched.json", "--", "python", "-c", "print('ok')",
                     cwd=tmp_path)
    assert matched.returncode == 0, matched.stderr
    report = json.loads((tmp_path / "matched.json").read_text())
    part = report["fingerprint"]
    assert part["differences"] == [] and part["identical"] == part["compared"] == len(lock.fingerprints)
    kinds = {m["kind"]: m["variables"] for m in report["match"]["matched"]}
    assert "AVX512F" in kinds["isa"]["NPY_DISABLE_CPU_FEATURES"]
    assert kinds["isa"]["OPENBLAS_CORETYPE"] == "Haswell"
    assert "Matched to the original host (--match):" in matched.stderr
    assert "compute the same bits" in matched.stderr
