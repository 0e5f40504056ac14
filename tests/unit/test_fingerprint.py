"""The numeric fingerprint: its script (stdlib-only, 3.8+), its records, and how two of them are compared.

The kernels run for real on this venv's NumPy (a test dependency); the GPU kernels run on a fake torch
(tests/fake_torch.py) through the same interface, as there is no GPU here. The ISA and OpenBLAS effects
are proven against real NumPy wheels in tests/e2e/test_fingerprint_real.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from envcap.cli import main
from envcap.explain import diff, render_json
from envcap.explain.fingerprints import KernelValue, compare_kernels, distance, ulp_distance
from envcap.lock import Fingerprint, Snapshot, dumps, loads
from envcap.probe.fingerprint import FINGERPRINT_SCRIPT, parse_fingerprint_output, run_fingerprint, with_fingerprints
from tests.fake_torch import FakeTorch
from tests.fakes import CannedRunner

BIN = Path(sys.executable).parent


@pytest.fixture
def script() -> ModuleType:
    """A private copy of the script as a module (its list of unavailable kernels starts empty)."""
    spec = importlib.util.spec_from_file_location("envcap_fingerprint_under_test", FINGERPRINT_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(*, env: dict[str, str] | None = None, only: str = "numpy") -> dict[str, dict[str, object]]:
    done = subprocess.run([sys.executable, str(FINGERPRINT_SCRIPT), "--only", only], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=True, timeout=120)
    data = json.loads(done.stdout)
    assert data["unavailable"] == [], data["unavailable"]
    kernels = data["kernels"]
    assert isinstance(kernels, dict)
    return kernels


# ------------------------------------------------------------------------------------------------ the script
def test_the_script_is_python_3_8_and_stdlib_only() -> None:
    source = FINGERPRINT_SCRIPT.read_text("utf-8")
    ast.parse(source, feature_version=(3, 8))
    done = subprocess.run([str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.8-", str(FINGERPRINT_SCRIPT)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    imported = {node.names[0].name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import)}
    assert imported <= set(sys.stdlib_module_names), imported


def test_an_interpreter_without_numerics_libraries_gives_an_empty_fingerprint(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-I", "-S", "-", "--only", "numpy,scipy,torch"],
                          input=FINGERPRINT_SCRIPT.read_text(), capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["kernels"] == {} and data["unavailable"] == []
    assert data["fingerprint_version"] == 1


def test_inputs_are_exact_and_the_same_everywhere(script: ModuleType) -> None:
    values = script.exact_values(1000, 7)
    assert values == script.exact_values(1000, 7)
    assert values != script.exact_values(1000, 8)
    for value in values:
        assert struct.unpack("<f", struct.pack("<f", value))[0] == value  # exact in float32 too
        assert -1.0 <= value < 1.0
    assert all(0 < v <= 6.0 for v in script.exact_values(100, 3, 3.0, positive=True))


def test_a_record_keeps_the_whole_small_result_and_samples_a_large_one(script: ModuleType) -> None:
    small = struct.pack("<4d", 1.0, 2.0, 3.0, 4.0)
    record = script.record_of("float64", (4,), small, None)
    assert record["sample"] == small.hex() and record["sampled"] is False
    big = struct.pack("<1000f", *range(1000))
    record = script.record_of("float32", (10, 100), big, 2)
    assert record["sampled"] is True and record["threads"] == 2 and record["shape"] == [10, 100]
    sample = struct.unpack("<64f", bytes.fromhex(record["sample"]))
    assert sample == tuple(float(i * 1000 // 64) for i in range(64))


def test_a_tensor_without_numpy_hashes_like_the_array(script: ModuleType) -> None:
    np = pytest.importorskip("numpy")
    torch = FakeTorch(numpy_available=False)
    tensor = torch.tensor(script.exact_values(300, 1), dtype=torch.float32).reshape(3, 100)
    through_values = script.tensor_record(tensor, 1)
    through_numpy = script.array_record(np.array(script.exact_values(300, 1), dtype="float32").reshape(3, 100), 1)
    assert through_values == through_numpy


@pytest.mark.usefixtures("clean_numerics_env")
def test_the_suite_agrees_with_itself_across_runs_and_thread_counts() -> None:
    """No flaky kernel: the same environment always gives the same bits, whatever the thread variables say."""
    pytest.importorskip("numpy")
    first = measure()
    assert len(first) >= 20
    for env in ({}, {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
                {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}, {"OPENBLAS_NUM_THREADS": "3"},
                {"MKL_NUM_THREADS": "3", "OMP_NUM_THREADS": "3"}):
        assert measure(env=env) == first, env
    blas = {k: v["threads"] for k, v in first.items() if k.split(".")[1].startswith(("gemm", "dot", "svd"))}
    assert set(blas.values()) == {1}, blas  # pinned to one thread while they ran


def test_blas_threads_are_put_back_after_the_suite(script: ModuleType) -> None:
    pytest.importorskip("numpy")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    script.collect(["numpy"])
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"] == before


def test_gpu_kernels_run_behind_the_same_interface(script: ModuleType) -> None:
    torch = FakeTorch(cuda_present=True)
    result = script.collect(["torch"], torch_module=torch)
    kernels = result["kernels"]
    assert {"torch.cuda_gemm_f32", "torch.cuda_gemm_tf32", "torch.cudnn_conv2d_f32", "torch.cuda_rng"} <= set(kernels)
    assert kernels["torch.cuda_gemm_f32"]["sha256"] != kernels["torch.cuda_gemm_tf32"]["sha256"]
    # TF32 on and off as asked, then put back; cuDNN pinned while it ran, then put back
    assert [s["allow_tf32"] for s in torch.seen if s["kernel"] == "matmul"][-4:] == [False, False, True, True]
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert all(s["deterministic"] and not s["benchmark"] for s in torch.seen if s["kernel"] == "conv2d")
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (True, False)
    assert result["context"]["torch.cuda_device"] == "Fake GPU"
    assert kernels["torch.matmul_f32"]["threads"] == 4 and kernels["torch.rng_cpu"]["threads"] is None


def test_no_gpu_means_no_gpu_kernels(script: ModuleType) -> None:
    kernels = script.collect(["torch"], torch_module=FakeTorch(cuda_present=False))["kernels"]
    assert kernels and not any("cuda" in k for k in kernels)


def test_a_kernel_that_disagrees_with_itself_is_left_out(script: ModuleType) -> None:
    result = script.collect(["torch"], torch_module=FakeTorch(cuda_present=True, noisy=True))
    assert "torch.matmul_f32" not in result["kernels"] and "torch.cuda_gemm_f32" not in result["kernels"]
    reasons = {u["probe"]: u["reason"] for u in result["unavailable"]}
    assert "different bits" in reasons["fingerprint.torch.matmul_f32"]
    assert "torch.softmax_f32" in result["kernels"]


# ------------------------------------------------------------------------------------------------ records
def fp(values: list[float], dtype: str = "float64", threads: int | None = None) -> Fingerprint:
    import hashlib

    code = {"float64": "d", "float32": "f", "int64": "q"}[dtype]
    raw = struct.pack(f"<{len(values)}{code}", *values)
    return Fingerprint(sha256=hashlib.sha256(raw).hexdigest(), dtype=dtype, shape=(len(values),), sample=raw.hex(),
                       sampled=False, threads=threads)


def test_ulp_distance() -> None:
    import math

    assert ulp_distance(1.0, math.nextafter(1.0, 2.0), "float64") == 1
    assert ulp_distance(-0.0, 0.0, "float64") == 0
    assert ulp_distance(math.nextafter(0.0, -1.0), math.nextafter(0.0, 1.0), "float64") == 2
    one_up = struct.unpack("<f", struct.pack("<I", 0x3F800001))[0]
    assert ulp_distance(1.0, one_up, "float32") == 1


def test_distance_and_kinds_of_change() -> None:
    import math

    a = fp([1.0, 2.0, 3.0])
    nudged = fp([1.0, math.nextafter(2.0, 3.0), 3.0])
    moved = fp([1.5, -2.0, 3.0])
    measured = distance(a, nudged)
    assert (measured.compared, measured.differing, measured.max_ulp) == (3, 1, 1)
    change = compare_kernels(KernelValue(a), KernelValue(nudged))
    assert change is not None and change.kind == "rounding" and "largest ULP distance 1 " in change.text
    change = compare_kernels(KernelValue(a), KernelValue(moved))
    assert change is not None and change.kind == "values"
    assert compare_kernels(KernelValue(a), KernelValue(fp([1.0, 2.0, 3.0]))) is None
    threaded = compare_kernels(KernelValue(fp([1.0], threads=1)), KernelValue(fp([1.5], threads=2)))
    assert threaded is not None and threaded.kind == "threads"
    added = compare_kernels(None, KernelValue(a))
    assert added is not None and added.kind == "added"
    ints = compare_kernels(KernelValue(fp([1, 2], "int64")), KernelValue(fp([1, 3], "int64")))
    assert ints is not None and ints.kind == "values" and "1 of 2 values differ" in ints.text


def snapshot_with(kernels: dict[str, Fingerprint] | None) -> Snapshot:
    from envcap.lock import PythonEnv

    return Snapshot(python=PythonEnv(version="3.11.7"), fingerprints=kernels).with_digest()


def test_an_older_lock_without_fingerprints_still_reads_and_a_new_one_round_trips() -> None:
    old = json.loads(dumps(snapshot_with(None)))
    del old["fingerprints"]
    assert loads(json.dumps(old)).fingerprints is None
    lock = snapshot_with({"numpy.exp_f64": fp([1.0, 2.0])})
    again = loads(dumps(lock))
    assert again.fingerprints == lock.fingerprints and again.schema == 2


def test_diff_names_the_kernels_that_differ_with_their_ulp_distance() -> None:
    import math

    a = snapshot_with({"numpy.exp_f64": fp([1.0, 2.0]), "numpy.gemm_f32": fp([1.0], "float32"),
                       "numpy.random_default": fp([0.5, 0.25]), "scipy.special_f64": fp([3.0])})
    b = snapshot_with({"numpy.exp_f64": fp([1.0, math.nextafter(2.0, 3.0)]), "numpy.gemm_f32": fp([1.0], "float32"),
                       "numpy.random_default": fp([0.75, -0.25])})
    report = diff(a, b)
    found = {f.fact: f for f in report.findings}
    assert set(found) == {"fingerprint.numpy.exp_f64", "fingerprint.numpy.random_default",
                          "fingerprint.scipy.special_f64"}
    assert found["fingerprint.numpy.exp_f64"].severity == "medium"
    assert found["fingerprint.numpy.exp_f64"].rule == "fingerprint-simd"
    assert "largest ULP distance 1 " in found["fingerprint.numpy.exp_f64"].why
    assert found["fingerprint.numpy.random_default"].severity == "high"
    assert found["fingerprint.numpy.random_default"].rule == "fingerprint-rng"
    assert found["fingerprint.scipy.special_f64"].severity == "info"  # measured on one side only
    assert report.findings[0].fact == "fingerprint.numpy.random_default"
    document = json.loads(json.dumps(render_json(report)))
    exp = next(f for f in document["findings"] if f["fact"] == "fingerprint.numpy.exp_f64")
    assert exp["a"]["sha256"] == a.fingerprints["numpy.exp_f64"].sha256  # type: ignore[index]


def test_a_side_without_fingerprints_leaves_them_unknown_not_different() -> None:
    a = snapshot_with({"numpy.exp_f64": fp([1.0])})
    report = diff(a, snapshot_with(None))
    assert not report.findings and "fingerprint.numpy.exp_f64" in report.unknown_b


def test_a_failed_kernel_is_unknown_with_its_reason() -> None:
    output = json.dumps({"fingerprint_version": 1, "kernels": {"numpy.exp_f64": fp([1.0]).__dict__ | {"shape": [1]}},
                         "unavailable": [{"probe": "fingerprint.numpy.svd_f64", "reason": "LinAlgError: no"}]})
    measured = parse_fingerprint_output(output, "", 0, "python")
    snapshot = with_fingerprints(snapshot_with(None), measured)
    assert set(snapshot.fingerprints or {}) == {"numpy.exp_f64"}
    assert [u.probe for u in snapshot.unavailable] == ["fingerprint.numpy.svd_f64"]


def test_a_crashing_interpreter_is_one_probe_error() -> None:
    from envcap.errors import ProbeError

    runner = CannedRunner()
    runner.add([sys.executable], returncode=1, stderr="Traceback...\nImportError: libopenblas.so: cannot open")
    with pytest.raises(ProbeError, match="could not run envcap's numeric fingerprint.*libopenblas"):
        run_fingerprint(sys.executable, runner=runner)


# ------------------------------------------------------------------------------------------------ the CLI
def test_envcap_fingerprint_json(cli) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("numpy")
    result = cli.invoke(main, ["fingerprint", "--only", "numpy", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "fingerprint" and document["format"] == 1
    assert document["kernels"]["numpy.exp_f64"]["dtype"] == "float64"
    assert document["context"]["numpy"]
    text = cli.invoke(main, ["fingerprint", "--only", "numpy"])
    assert text.exit_code == 0 and "fingerprint.numpy.gemm_f32" in text.stdout and "kernels in" in text.stdout


def test_snapshot_fingerprint_records_the_kernels_and_the_default_path_never_loads_them(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("numpy")
    result = cli.invoke(main, ["snapshot", "--offline", "--fingerprint", "--out", str(tmp_path / "fp")])
    assert result.exit_code == 0, result.stderr
    lock = loads((tmp_path / "fp" / "envcap.lock.json").read_text())
    assert lock.fingerprints and "numpy.gemm_f64" in lock.fingerprints
    # the default snapshot: envcap never loads the fingerprint module, numpy or torch
    code = ("import sys; from click.testing import CliRunner; from envcap.cli import main; "
            f"r = CliRunner().invoke(main, ['snapshot', '--offline', '--out', {str(tmp_path / 'plain')!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if 'fingerprint' in m or m.split('.')[0] in ('numpy', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip() == "[]", done.stdout
    plain = loads((tmp_path / "plain" / "envcap.lock.json").read_text())
    assert plain.fingerprints is None
    assert replace(plain, fingerprints=lock.fingerprints).with_digest().digest != plain.digest
