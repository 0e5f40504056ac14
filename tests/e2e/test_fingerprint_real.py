"""The fingerprint against real wheels: NumPy's AVX-512 dispatch switched off, another OpenBLAS core, torch's
threads and ISA, and Python 3.8. Venvs come from PyPI once per session (tests/venvs.py); no engine is needed.

What this machine showed when these tests were written (AMD EPYC with AVX-512): switching NumPy's AVX-512
targets off changes float64 exp and power (and log, float32 power) by one ULP; OpenBLAS picks its SkylakeX
kernels here by default, and OPENBLAS_CORETYPE=Haswell changes the float32 GEMM (and the LAPACK solve). This
machine exports OPENBLAS_CORETYPE=Haswell to every process, which hides the default: the tests clear such
variables first (``clean_numerics_env``), and ask the CPU and OpenBLAS what they are, so they hold elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from envcap.explain import diff
from envcap.lock import PythonEnv, Snapshot
from envcap.probe.fingerprint import FINGERPRINT_SCRIPT, parse_fingerprint_output, with_fingerprints

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.usefixtures("clean_numerics_env")]

# Every AVX-512 target name either NumPy generation dispatches (1.x: AVX512F.., 2.x: X86_V4..); NumPy ignores,
# with an ImportWarning, a name it does not dispatch.
NO_AVX512 = ("AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR "
             "X86_V4")
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def run(python: Path, env: dict[str, str] | None = None, only: str = "numpy") -> tuple[dict[str, dict[str, object]], str]:
    done = subprocess.run([str(python), str(FINGERPRINT_SCRIPT), "--only", only], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=True, timeout=300)
    data = json.loads(done.stdout)
    assert data["unavailable"] == [], data["unavailable"]
    return data["kernels"], done.stderr


def changed(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> set[str]:
    return {k for k in a if a[k]["sha256"] != b.get(k, {}).get("sha256")}


@pytest.mark.parametrize("numpy", ["1.26.4", "2.2.6"])
def test_switching_off_avx512_dispatch_changes_float64_exp_and_power(venvs, numpy: str) -> None:  # type: ignore[no-untyped-def]
    if "avx512f" not in cpu_flags():
        pytest.skip("this CPU has no AVX-512: there is nothing to switch off")
    python = venvs.python([f"numpy=={numpy}"])
    plain, _ = run(python)
    again, _ = run(python)
    assert again == plain  # the same environment, the same bits
    capped, _ = run(python, {"NPY_DISABLE_CPU_FEATURES": NO_AVX512})
    assert {"numpy.exp_f64", "numpy.power_f64"} <= changed(plain, capped)
    assert "numpy.gemm_f64" not in changed(plain, capped)  # BLAS does not read NumPy's switch

    # explain reads them as measured evidence, with the ULP distance
    def snapshot(kernels: dict[str, dict[str, object]]) -> Snapshot:
        output = json.dumps({"fingerprint_version": 1, "kernels": kernels})
        return with_fingerprints(Snapshot(python=PythonEnv(version="3.11")), parse_fingerprint_output(output, "", 0, "x"))

    found = {f.fact: f for f in diff(snapshot(plain), snapshot(capped)).findings}
    exp = found["fingerprint.numpy.exp_f64"]
    assert exp.severity == "medium" and "largest ULP distance" in exp.why


def openblas_core(python: Path, env: dict[str, str] | None = None) -> str:
    _, stderr = run(python, {"OPENBLAS_VERBOSE": "2", **(env or {})})
    cores = [line.split(":", 1)[1].strip() for line in stderr.splitlines() if line.startswith("Core:")]
    assert cores, stderr
    return cores[0]


def test_openblas_coretype_haswell_changes_the_float32_gemm(venvs) -> None:  # type: ignore[no-untyped-def]
    python = venvs.python(["numpy==2.2.6"])
    default = openblas_core(python)
    plain, _ = run(python)
    if default != "Haswell":  # this machine: SkylakeX by default
        other = "Haswell"
    else:  # a CPU whose own choice is Haswell: another core must show the same
        same, _ = run(python, {"OPENBLAS_CORETYPE": "Haswell"})
        assert changed(plain, same) == set()
        other = "SkylakeX" if "avx512f" in cpu_flags() else "Sandybridge"
    assert openblas_core(python, {"OPENBLAS_CORETYPE": other}) == other
    forced, _ = run(python, {"OPENBLAS_CORETYPE": other})
    assert "numpy.gemm_f32" in changed(plain, forced)
    assert not changed(plain, forced) & {"numpy.exp_f64", "numpy.random_default", "numpy.fft_f64"}


def test_torch_kernels_are_stable_and_state_their_thread_count(venvs) -> None:  # type: ignore[no-untyped-def]
    if not Path(TORCH_WHEEL).is_file():
        pytest.skip(f"{TORCH_WHEEL} is not on this machine")
    python = venvs.python([TORCH_WHEEL, "numpy==2.2.6"])
    one, _ = run(python, {"OMP_NUM_THREADS": "1"}, only="torch")
    two, _ = run(python, {"OMP_NUM_THREADS": "2"}, only="torch")
    assert run(python, {"OMP_NUM_THREADS": "2"}, only="torch")[0] == two
    assert {k for k in one if k.startswith("torch.")} >= {"torch.matmul_f32", "torch.conv2d_f32", "torch.softmax_f32",
                                                          "torch.layer_norm_f32", "torch.rng_cpu"}
    assert one["torch.matmul_f32"]["threads"] == 1 and two["torch.matmul_f32"]["threads"] == 2
    assert one["torch.rng_cpu"]["threads"] is None
    if "avx2" in cpu_flags():
        generic, _ = run(python, {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default"}, only="torch")
        assert changed(two, generic)  # torch's own SIMD dispatch shows in its kernels


def test_the_script_runs_on_python_3_8_with_its_numpy(venvs) -> None:  # type: ignore[no-untyped-def]
    base = Path.home() / ".pyenv" / "versions"
    found = sorted(base.glob("3.8.*/bin/python3.8"))
    if not found:
        pytest.skip("no Python 3.8 on this machine (pyenv)")
    python = venvs.python(["numpy==1.24.4"], python=str(found[-1]))
    kernels, _ = run(python)
    assert len(kernels) >= 20 and kernels["numpy.exp_f64"]["dtype"] == "float64"
