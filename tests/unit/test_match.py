"""``envcap replay --match``: the plan (pure: the original's lock and this host in, variables out) and the replay
that applies it, proven by the image's fingerprint (here on the fake engine; for real in tests/e2e)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from envcap.lock import Blas, Cpu, Gpu, GpuDevice, PythonEnv, Snapshot, ThreadPool, TorchRuntime
from envcap.replay import replay
from envcap.replay.match import openblas_core, plan
from envcap.replay.render import render_text
from tests.unit.test_replay import engine_for, host_facts, image_facts, make_lock, no_gpu, request
from tests.unit.test_replay_fingerprint import CAPPED, PLAIN, Measuring

__all__ = ["host_facts"]

AVX2 = ("sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c")
AVX512 = AVX2 + ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512ifma", "avx512vbmi",
                 "avx512_vbmi2", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16")


def original(flags: tuple[str, ...] = AVX2, **changes: Any) -> Snapshot:
    base = Snapshot(python=PythonEnv(version="3.11.7"), env={},
                    cpu=Cpu(model_name="Intel Xeon E5-2680 v4", logical_cores=8, physical_cores=4, numeric_flags=flags))
    return replace(base, **changes)


HOST = Cpu(model_name="AMD EPYC 9654", logical_cores=2, physical_cores=1, numeric_flags=AVX512)


def test_an_avx2_original_on_an_avx512_host_caps_every_library() -> None:
    matched = plan(original(), HOST)
    env = matched.env
    assert {"AVX512F", "AVX512_SKX", "AVX512_ICL", "X86_V4"} <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert "X86_V3" not in env["NPY_DISABLE_CPU_FEATURES"] and "AVX2" not in env["NPY_DISABLE_CPU_FEATURES"]
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("8", "4")  # the original's defaults
    assert {m.kind for m in matched.matched} == {"threads", "isa"}
    assert [u.fact for u in matched.unmatched] == ["cpu.model_name"]


def test_the_same_cpu_needs_no_caps_and_the_originals_own_settings_win() -> None:
    same = plan(original(AVX512), HOST)
    assert not any(k in same.env for k in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY"))
    own = plan(original(env={"OMP_NUM_THREADS": "3", "OPENBLAS_CORETYPE": "Zen"}), HOST)
    assert "OMP_NUM_THREADS" not in own.env and "MKL_NUM_THREADS" not in own.env
    assert "OPENBLAS_CORETYPE" not in own.env
    assert own.kept == {"OMP_NUM_THREADS": "3", "OPENBLAS_CORETYPE": "Zen"}
    limited = plan(original(cpu=Cpu(logical_cores=64, affinity_cores=64, cgroup_cpu_limit=2.0, physical_cores=32,
                                    numeric_flags=AVX2)), HOST)
    assert (limited.env["OMP_NUM_THREADS"], limited.env["MKL_NUM_THREADS"]) == ("2", "2")


def test_what_the_original_recorded_itself_is_used_over_what_its_flags_suggest() -> None:
    deep = original(AVX512, blas=Blas(threadpools=(ThreadPool(user_api="blas", internal_api="openblas",
                                                              architecture="SkylakeX"),)),
                    torch_runtime=TorchRuntime(cpu_capability="AVX2"))
    env = plan(deep, HOST).env
    assert env["OPENBLAS_CORETYPE"] == "SkylakeX"  # OpenBLAS's real choice there, though this CPU runs Haswell's
    assert openblas_core(frozenset(AVX512)) == "Cooperlake"


def test_what_cannot_be_matched_is_listed() -> None:
    richer = plan(original(AVX512 + ("amx_tile", "amx_bf16")), HOST)
    (isa,) = [u for u in richer.unmatched if u.fact == "cpu.isa"]
    assert "amx_bf16" in isa.original and "cannot run here" in isa.why
    gpu = original(gpu=Gpu(status="ok", driver_version="470.57", devices=(GpuDevice(0, "Tesla V100", "7.0"),)))
    here = Gpu(status="ok", driver_version="550.54", devices=(GpuDevice(0, "NVIDIA A100-SXM4-80GB", "8.0"),))
    matched = plan(gpu, HOST, here)
    assert matched.env["NVIDIA_TF32_OVERRIDE"] == "0"  # a V100 never used TF32; an A100 would
    assert {u.fact for u in matched.unmatched} >= {"gpu.model", "gpu.driver"}
    on_cpu = plan(gpu, HOST, None)  # a replay without GPUs
    assert "NVIDIA_TF32_OVERRIDE" not in on_cpu.env
    assert any(u.fact == "gpu.model" and u.here == "none" for u in on_cpu.unmatched)
    unknown = plan(original(cpu=None), HOST)
    assert any(u.fact == "cpu.isa" for u in unknown.unmatched)


def test_replay_match_gives_the_capped_fingerprint_on_an_uncapped_host(tmp_path: Path,
                                                                       host_facts: dict[str, Any]) -> None:
    facts = dict(host_facts)
    facts["cpu"] = dict(facts["cpu"], numeric_flags=list(AVX2))
    make_lock(tmp_path / "lock", facts, fingerprints=CAPPED, env={})
    container = Measuring(image_facts(facts))
    plain = replay(request(tmp_path), engine=engine_for(container), host_gpu=no_gpu, host_cpu=lambda: HOST)
    assert plain.match is None and plain.fingerprint is not None and len(plain.fingerprint.differences) == 1
    matched = replay(request(tmp_path, match=True), engine=engine_for(container), host_gpu=no_gpu,
                     host_cpu=lambda: HOST)
    assert matched.fingerprint is not None and matched.fingerprint.differences == ()
    assert matched.fingerprint.identical == len(CAPPED)
    workload = container.workload_runs[-1]
    assert "AVX512F" in workload.env["NPY_DISABLE_CPU_FEATURES"]
    assert workload.env["OMP_NUM_THREADS"] == str(facts["cpu"]["logical_cores"])
    assert matched.match is not None and "isa" in {m.kind for m in matched.match.matched}
    text = render_text(matched)
    assert "Matched to the original host (--match):" in text and "NPY_DISABLE_CPU_FEATURES=" in text
    assert PLAIN != CAPPED
