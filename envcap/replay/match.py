"""``envcap replay --match``: neutralise what software can of the difference between the original host and this one.

Why: a replay on another machine differs in things no image can carry: the core count (which sets every
BLAS and OpenMP pool's threads), the CPU's instruction sets (which NumPy, OpenBLAS, MKL, torch and oneDNN
dispatch on) and the GPU (TF32 only exists from compute capability 8.0). Most libraries can be told to
behave as on the original: threads by their variables, ISA dispatch capped down to what the original CPU
had, TF32 switched off where the original GPU could not use it. What cannot be matched (a CPU feature the
original had and this one lacks, the GPU model, the driver) is listed, never papered over.

Pure: the original's lock and this host's CPU (and GPU, when GPUs are used) in, a ``MatchPlan`` out. The
original's own variables (in the lock) always win: the plan only fills what the original left unset.
``envcap bisect`` uses the same plan for each side, so a thread count or an ISA cap is a difference it can
vary at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from envcap.lock import Cpu, Gpu, Snapshot

MatchKind = Literal["threads", "isa", "tf32"]

# NumPy's dispatch targets (1.x and 2.x names) and the /proc/cpuinfo flags each needs, as far as envcap's probe
# records flags. NumPy ignores (with an ImportWarning) a name it does not dispatch, so both generations' names
# can be given at once.
_SKX = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
NUMPY_TARGETS: dict[str, tuple[str, ...]] = {
    "AVX512F": ("avx512f",),
    "AVX512CD": ("avx512f", "avx512cd"),
    "AVX512_SKX": _SKX,
    "AVX512_CLX": _SKX + ("avx512_vnni",),
    "AVX512_CNL": _SKX + ("avx512ifma", "avx512vbmi"),
    "AVX512_ICL": _SKX + ("avx512_vnni", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg",
                          "avx512_vpopcntdq"),
    "AVX512_SPR": _SKX + ("avx512_vnni", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg",
                          "avx512_vpopcntdq", "avx512_fp16"),
    "X86_V4": _SKX,
    "X86_V3": ("avx", "avx2", "fma", "f16c"),
    "AVX2": ("avx2",),
    "FMA3": ("fma",),
    "F16C": ("f16c",),
    "AVX": ("avx",),
    "SSE42": ("sse4_2",),
    "SSE41": ("sse4_1",),
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")
ISA_VARIABLES = ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY",
                 "ONEDNN_MAX_CPU_ISA")
TF32_VARIABLES = ("NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG")


@dataclass(frozen=True)
class Matched:
    kind: MatchKind
    variables: dict[str, str]
    why: str


@dataclass(frozen=True)
class Unmatched:
    fact: str
    original: str
    here: str
    why: str


@dataclass(frozen=True)
class MatchPlan:
    env: dict[str, str]  # what the run adds (never a variable the original set itself)
    matched: tuple[Matched, ...] = ()
    unmatched: tuple[Unmatched, ...] = ()
    kept: dict[str, str] | None = None  # the original's own settings of these variables, applied from the lock


# ------------------------------------------------------------------------------------------------ levels
def _has(flags: frozenset[str], needed: Iterable[str]) -> bool:
    return all(flag in flags for flag in needed)


def openblas_core(flags: frozenset[str]) -> str:
    """The OpenBLAS kernel family a CPU with these flags can run (OPENBLAS_CORETYPE's names)."""
    if _has(flags, _SKX):
        if "amx_tile" in flags:
            return "SapphireRapids"
        return "Cooperlake" if "avx512_bf16" in flags else "SkylakeX"
    if _has(flags, ("avx2", "fma")):
        return "Haswell"
    if "avx" in flags:
        return "Sandybridge"
    if "sse4_2" in flags:
        return "Nehalem"
    return "Core2" if "ssse3" in flags else "Prescott"


def mkl_instructions(flags: frozenset[str]) -> str:
    if _has(flags, _SKX):
        return "AVX512"
    if "avx2" in flags:
        return "AVX2"
    return "AVX" if "avx" in flags else "SSE4_2"


def aten_capability(flags: frozenset[str]) -> str:
    if _has(flags, _SKX):
        return "avx512"
    return "avx2" if _has(flags, ("avx2", "fma")) else "default"


ONEDNN_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16",
                 "AVX512_CORE_AMX")


def onednn_isa(flags: frozenset[str]) -> str:
    if _has(flags, _SKX):
        if _has(flags, ("amx_tile", "amx_bf16")):
            return "AVX512_CORE_AMX"
        if "avx512_bf16" in flags:
            return "AVX512_CORE_BF16"
        return "AVX512_CORE_VNNI" if "avx512_vnni" in flags else "AVX512_CORE"
    if "avx2" in flags:
        return "AVX2_VNNI" if "avx_vnni" in flags else "AVX2"
    return "AVX" if "avx" in flags else "SSE41"


# ------------------------------------------------------------------------------------------------ the plan
def plan(original: Snapshot, host_cpu: Cpu | None, host_gpu: Gpu | None = None) -> MatchPlan:
    """What to set so this host computes as the original did, as far as the libraries let it."""
    env: dict[str, str] = {}
    matched: list[Matched] = []
    unmatched: list[Unmatched] = []
    own = dict(original.env or {})
    for part in (_threads(original, own), _isa(original, own, host_cpu), _tf32(original, own, host_gpu)):
        found, missing = part
        if found is not None and found.variables:
            matched.append(found)
            env.update(found.variables)
        unmatched += missing
    unmatched += _hardware(original, host_cpu, host_gpu)
    kept = {k: v for k, v in own.items() if k in THREAD_VARIABLES + ISA_VARIABLES + TF32_VARIABLES + ("MKL_CBWR",)}
    return MatchPlan(env=env, matched=tuple(matched), unmatched=tuple(unmatched), kept=kept or None)


def _threads(original: Snapshot, own: dict[str, str]) -> tuple[Matched | None, list[Unmatched]]:
    """Each runtime's default thread count on the original, where the original did not set it.

    OpenMP and OpenBLAS default to the usable logical cores, MKL and torch to the physical ones; OpenBLAS
    and MKL read OMP_NUM_THREADS when their own variable is unset, and torch reads OMP then MKL.
    """
    from envcap.explain.facts import usable_cores

    logical = usable_cores(original)
    physical = original.cpu.physical_cores if original.cpu else None
    variables: dict[str, str] = {}
    if "OMP_NUM_THREADS" not in own:
        if logical is None:
            return None, [Unmatched("cpu.usable_cores", "unknown", "", "the snapshot does not say how many cores the "
                                    "original could use, so its default thread counts are not known")]
        variables["OMP_NUM_THREADS"] = str(logical)
        if "MKL_NUM_THREADS" not in own and physical:
            variables["MKL_NUM_THREADS"] = str(min(physical, logical))
    why = (f"the original's defaults: {logical} usable logical cores for OpenMP and OpenBLAS"
           + (f", {variables['MKL_NUM_THREADS']} physical cores for MKL and torch" if "MKL_NUM_THREADS" in variables
              else "") if variables else "")
    return Matched("threads", variables, why), []


def _isa(original: Snapshot, own: dict[str, str], host_cpu: Cpu | None) -> tuple[Matched | None, list[Unmatched]]:
    original_flags = original.cpu.numeric_flags if original.cpu else None
    host_flags = host_cpu.numeric_flags if host_cpu else None
    if original_flags is None or host_flags is None:
        side = "the snapshot" if original_flags is None else "this host"
        return None, [Unmatched("cpu.isa", "unknown" if original_flags is None else "", "",
                                f"the instruction sets of {side} are not known, so ISA dispatch is not capped")]
    theirs, ours = frozenset(original_flags), frozenset(host_flags)
    missing: list[Unmatched] = []
    lacking = sorted(theirs - ours)
    if lacking:
        missing.append(Unmatched("cpu.isa", ", ".join(lacking), "absent", "the original CPU has instruction sets this "
                                 "one lacks: kernels that used them cannot run here, so they cannot be matched"))
    extra = sorted(ours - theirs)
    variables: dict[str, str] = {}
    if extra:
        capped = [name for name, needs in NUMPY_TARGETS.items() if _has(ours, needs) and not _has(theirs, needs)]
        if capped:
            variables["NPY_DISABLE_CPU_FEATURES"] = " ".join(capped)
        if mkl_instructions(theirs) != mkl_instructions(ours):
            variables["MKL_ENABLE_INSTRUCTIONS"] = mkl_instructions(theirs)
        if aten_capability(theirs) != aten_capability(ours):
            variables["ATEN_CPU_CAPABILITY"] = aten_capability(theirs)
        if ONEDNN_LEVELS.index(onednn_isa(theirs)) < ONEDNN_LEVELS.index(onednn_isa(ours)):
            variables["ONEDNN_MAX_CPU_ISA"] = onednn_isa(theirs)
    core = _recorded_openblas_core(original)
    if core is None and extra and openblas_core(theirs) != openblas_core(ours):
        core = openblas_core(theirs)  # OpenBLAS chooses by CPU model: a --deep snapshot records its real choice
    if core is not None:
        variables["OPENBLAS_CORETYPE"] = core
    if original.torch_runtime and original.torch_runtime.cpu_capability and "ATEN_CPU_CAPABILITY" in variables:
        variables["ATEN_CPU_CAPABILITY"] = original.torch_runtime.cpu_capability.lower()
    variables = {k: v for k, v in variables.items() if k not in own}
    why = (f"the original CPU lacks {', '.join(extra)}: NumPy, OpenBLAS, MKL, torch and oneDNN are capped to what "
           "it had" if extra else "OpenBLAS runs the kernel family the original's snapshot recorded")
    return Matched("isa", variables, why), missing


def _recorded_openblas_core(original: Snapshot) -> str | None:
    """OpenBLAS's own choice on the original (threadpoolctl's architecture, from a --deep snapshot)."""
    pools = original.blas.threadpools if original.blas and original.blas.threadpools else ()
    for pool in pools:
        if (pool.internal_api or "").startswith("openblas") and pool.architecture:
            return pool.architecture
    return None


def _compute_capability(gpu: Gpu | None) -> float | None:
    if gpu is None:
        return None
    values = []
    for device in gpu.devices:
        try:
            values.append(float(device.compute_capability or ""))
        except ValueError:
            continue
    return max(values) if values else None


def _tf32(original: Snapshot, own: dict[str, str], host_gpu: Gpu | None) -> tuple[Matched | None, list[Unmatched]]:
    """TF32 exists only from compute capability 8.0: where the original could not use it, it is switched off here."""
    if host_gpu is None or not host_gpu.devices:
        return None, []
    theirs, ours = _compute_capability(original.gpu), _compute_capability(host_gpu)
    if ours is not None and ours >= 8.0 and (theirs is None or theirs < 8.0) and "NVIDIA_TF32_OVERRIDE" not in own:
        where = f"compute capability {theirs:g}" if theirs is not None else "no GPU"
        return Matched("tf32", {"NVIDIA_TF32_OVERRIDE": "0"},
                       f"the original ran on {where}, where float32 math never used TF32; this GPU "
                       f"(compute capability {ours:g}) would"), []
    return None, []


def _names(gpu: Gpu | None) -> str:
    return " + ".join(sorted({d.name for d in gpu.devices})) if gpu and gpu.devices else "none"


def _hardware(original: Snapshot, host_cpu: Cpu | None, host_gpu: Gpu | None) -> list[Unmatched]:
    """What no variable can change: the GPU and its driver, the CPU model."""
    out: list[Unmatched] = []
    theirs = original.gpu
    if theirs is not None and theirs.devices:
        if _names(theirs) != _names(host_gpu):
            out.append(Unmatched("gpu.model", _names(theirs), _names(host_gpu),
                                 "another GPU runs other cuBLAS/cuDNN kernels and another CUDA random stream "
                                 "(it depends on the SM count)"))
        here = host_gpu.driver_version if host_gpu else None
        if theirs.driver_version and theirs.driver_version != here:
            out.append(Unmatched("gpu.driver", theirs.driver_version, here or "none",
                                 "the driver comes with the host; kernels JIT-compiled from PTX depend on it"))
    if original.cpu and host_cpu and original.cpu.model_name and original.cpu.model_name != host_cpu.model_name:
        out.append(Unmatched("cpu.model_name", original.cpu.model_name, host_cpu.model_name or "unknown",
                             "the CPU model itself stays; what it decides in software (threads, ISA) is matched above"))
    return out


def render_lines(match: MatchPlan) -> list[str]:
    """The report's lines for --match (text and Markdown use the same sentences)."""
    lines = ["Matched to the original host (--match):"]
    for item in match.matched:
        variables = " ".join(f"{k}={v}" for k, v in sorted(item.variables.items()))
        lines.append(f"  {item.kind:8} {variables}: {item.why}")
    if not match.matched:
        lines.append("  nothing needed setting: this host already behaves as the original in what software can set")
    if match.kept:
        lines.append("  kept     " + " ".join(f"{k}={v}" for k, v in sorted(match.kept.items()))
                     + ": the original's own settings, from the lock")
    for missing in match.unmatched:
        lines.append(f"  cannot match {missing.fact}: {missing.original or '?'} (original) → {missing.here or '?'} "
                     f"(here): {missing.why}")
    return lines


def host_cpu() -> Cpu | None:
    """This machine's CPU, read by the probe's own reader (the replay's container sees the same CPU)."""
    from envcap._serde import ShapeError, from_json
    from envcap.probe._probe import cpu_facts

    try:
        return from_json(Cpu, cpu_facts())
    except (ShapeError, OSError):
        return None


__all__ = ["ISA_VARIABLES", "NUMPY_TARGETS", "TF32_VARIABLES", "THREAD_VARIABLES", "MatchKind", "MatchPlan",
           "Matched", "Unmatched", "aten_capability", "host_cpu", "mkl_instructions", "onednn_isa", "openblas_core",
           "plan", "render_lines"]
