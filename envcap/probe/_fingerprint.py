"""envcap's numeric fingerprint: seeded kernels run inside the target interpreter, each result hashed bit for bit.

Why: two environments that claim the same versions can still compute different bits (another ISA path in
NumPy's SIMD dispatch, another OpenBLAS kernel family, another libm, TF32 on a GPU). A fingerprint records
what an environment *computes*, so ``envcap diff`` and ``envcap replay`` can say which kernels differ, and by
how many units in the last place, instead of which facts might matter.

Like ``_probe.py`` this is one stdlib-only file that runs unchanged on Python 3.8+ wherever envcap describes an
interpreter (a venv, a container's python3). It imports only the numerics libraries the environment has
(numpy, scipy, torch), and only when asked: the default snapshot never runs it.

No flaky kernel. Inputs come from a stdlib generator of exact dyadic numbers (the same bits everywhere, whatever
the library's own RNG does). The BLAS behind NumPy and SciPy is pinned to one thread while their kernels run,
so a GEMM or a LAPACK call cannot depend on the thread count; torch's CPU kernels run at torch's own thread
count, which each of their records states (``threads``). Every kernel runs twice; one whose two results
differ is left out with the reason, never recorded.

Usage: python _fingerprint.py [--only numpy,scipy,torch]
Output: JSON on stdout: ``kernels`` (name -> record), ``libraries``, ``context``, ``seconds``, ``unavailable``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import struct
import sys
import time

TYPE_CHECKING = False  # the probe's convention: typing is never imported at run time (see _probe.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypedDict

    class Record(TypedDict):
        sha256: str
        dtype: str
        shape: List[int]
        sample: str
        sampled: bool
        threads: Optional[int]

    Kernel = Tuple[str, Callable[[Any], Any], bool]  # name, function of the library module, threaded

FINGERPRINT_VERSION = 1
SAMPLE = 64  # values kept beside the hash, for ULP distances
SEED = 0x5EED_F1A6
STRUCT_FORMATS = {"float16": "e", "float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h",
                  "int32": "i", "int64": "q", "uint32": "I", "uint64": "Q", "bool": "?"}

UNAVAILABLE: List[Dict[str, str]] = []


def note_unavailable(probe: str, reason: str) -> None:
    UNAVAILABLE.append({"probe": probe, "reason": reason})


# ------------------------------------------------------------------------------------------------ inputs
def exact_values(count: int, seed: int, scale: float = 1.0, positive: bool = False) -> List[float]:
    """``count`` numbers k / 2**23 * scale from a 64-bit xorshift: exact in float32 and float64 alike.

    Why not the library's RNG: NumPy and torch may change their streams between releases; an input that
    changed would make every kernel differ and hide which one really computes differently.
    """
    state = (seed * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF
    values = []
    for _ in range(count):
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        k = state >> 40  # 24 bits
        if positive:
            values.append((k + 1) / 8388608.0 * scale)  # (0, 2 * scale]
        else:
            values.append((k - 8388608) / 8388608.0 * scale)  # [-scale, scale)
    return values


# ------------------------------------------------------------------------------------------------ records
def record_of(dtype: str, shape: Sequence[int], raw: bytes, threads: Optional[int]) -> Record:
    """The hash of every byte, and up to SAMPLE values evenly spread over the flattened result."""
    itemsize = struct.calcsize("<" + STRUCT_FORMATS.get(dtype, "B"))
    count = len(raw) // itemsize
    if count <= SAMPLE:
        sample, sampled = raw, False
    else:
        picks = [i * count // SAMPLE for i in range(SAMPLE)]
        sample, sampled = b"".join(raw[i * itemsize:(i + 1) * itemsize] for i in picks), True
    return {"sha256": hashlib.sha256(raw).hexdigest(), "dtype": dtype, "shape": [int(n) for n in shape],
            "sample": sample.hex(), "sampled": sampled, "threads": threads}


def array_record(array: Any, threads: Optional[int]) -> Record:
    """A NumPy array (complex results as their real and imaginary parts), little-endian, C order."""
    np = sys.modules["numpy"]
    value = np.ascontiguousarray(array)
    if value.dtype.kind == "c":
        value = np.ascontiguousarray(value.view(value.real.dtype))
    little = value.dtype.newbyteorder("<")
    value = value.astype(little, copy=False)
    return record_of(str(value.dtype.name), value.shape, value.tobytes(), threads)


def tensor_record(tensor: Any, threads: Optional[int]) -> Record:
    """A torch tensor, through NumPy where torch can reach it, else through its Python values."""
    value = tensor.detach().cpu().contiguous()
    dtype = str(value.dtype).replace("torch.", "")
    try:
        return array_record(value.numpy(), threads)
    except (RuntimeError, TypeError, KeyError, ImportError):
        pass  # a torch without numpy: "Numpy is not available"
    if dtype not in STRUCT_FORMATS:
        raise ValueError("no byte format for torch dtype %s" % dtype)
    items = value.reshape(-1).tolist()
    raw = struct.pack("<%d%s" % (len(items), STRUCT_FORMATS[dtype]), *items)
    return record_of(dtype, tuple(value.shape), raw, threads)


# ------------------------------------------------------------------------------------------------ BLAS threads
OPENBLAS_SET = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                "scipy_openblas_set_num_threads64_")
OPENBLAS_GET = ("openblas_get_num_threads", "openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                "scipy_openblas_get_num_threads64_")


def loaded_libraries() -> List[str]:
    """Shared libraries mapped into this process (Linux), the way threadpoolctl finds them."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    paths = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5] and parts[5] not in paths:
            paths.append(parts[5])
    return paths


def pin_blas_threads() -> Tuple[List[str], Callable[[], None]]:
    """Every loaded OpenBLAS, MKL and BLIS set to one thread; (what was pinned, how to undo it)."""
    import ctypes

    pinned = []
    undo: List[Callable[[], None]] = []
    for path in loaded_libraries():
        base = os.path.basename(path).lower()
        setters: Sequence[str]
        getters: Sequence[str]
        if "openblas" in base:
            setters, getters = OPENBLAS_SET, OPENBLAS_GET
        elif base.startswith("libmkl_rt"):
            setters, getters = ("MKL_Set_Num_Threads",), ("MKL_Get_Max_Threads",)
        elif base.startswith("libblis"):
            setters, getters = ("bli_thread_set_num_threads",), ("bli_thread_get_num_threads",)
        else:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, name) for name in setters if hasattr(lib, name)), None)
        getter = next((getattr(lib, name) for name in getters if hasattr(lib, name)), None)
        if setter is None or getter is None:
            continue
        before = int(getter())
        setter(1)
        pinned.append("%s (%d -> 1)" % (os.path.basename(path), before))
        undo.append(functools.partial(setter, before))

    def restore() -> None:
        for step in undo:
            step()

    return pinned, restore


# ------------------------------------------------------------------------------------------------ NumPy
def np_input(np: Any, count: int, dtype: str, seed: int, scale: float = 1.0, positive: bool = False) -> Any:
    return np.array(exact_values(count, seed, scale, positive), dtype=dtype)


def np_matrix(np: Any, rows: int, cols: int, dtype: str, seed: int) -> Any:
    return np_input(np, rows * cols, dtype, seed).reshape(rows, cols)


def np_gemm(dtype: str) -> Callable[[Any], Any]:
    def kernel(np: Any) -> Any:
        return np.matmul(np_matrix(np, 96, 80, dtype, 1), np_matrix(np, 80, 72, dtype, 2))
    return kernel


def np_dot(dtype: str) -> Callable[[Any], Any]:
    def kernel(np: Any) -> Any:
        return np.asarray(np.dot(np_input(np, 4099, dtype, 3), np_input(np, 4099, dtype, 4)))
    return kernel


def np_unary(name: str, dtype: str, positive: bool = False, scale: float = 8.0) -> Callable[[Any], Any]:
    def kernel(np: Any) -> Any:
        return getattr(np, name)(np_input(np, 4096, dtype, 5, scale, positive))
    return kernel


def np_power(dtype: str) -> Callable[[Any], Any]:
    def kernel(np: Any) -> Any:
        return np.power(np_input(np, 4096, dtype, 6, 4.0, True), np_input(np, 4096, dtype, 7, 3.0))
    return kernel


def np_sum(np: Any) -> Any:
    return np.asarray(np.sum(np_input(np, 100003, "float32", 8)))


def np_cumsum(np: Any) -> Any:
    return np.cumsum(np_input(np, 4096, "float64", 9))


def np_solve(np: Any) -> Any:
    a = np_matrix(np, 64, 64, "float64", 10) + 16.0 * np.eye(64)
    return np.linalg.solve(a, np_matrix(np, 64, 3, "float64", 11))


def np_svd(np: Any) -> Any:
    return np.linalg.svd(np_matrix(np, 48, 40, "float64", 12), compute_uv=False)


def np_eigh(np: Any) -> Any:
    a = np_matrix(np, 48, 48, "float64", 13)
    return np.linalg.eigvalsh(a + a.T)


def np_fft(np: Any) -> Any:
    return np.fft.fft(np_input(np, 1000, "float64", 14))


def np_random_legacy(np: Any) -> Any:
    state = np.random.RandomState(SEED & 0xFFFFFFFF)
    return np.concatenate([state.standard_normal(256), state.random_sample(256), state.standard_gamma(2.5, 64)])


def np_random_default(np: Any) -> Any:
    rng = np.random.default_rng(SEED)
    return np.concatenate([rng.standard_normal(256), rng.random(256), rng.standard_gamma(2.5, 64)])


def np_random_integers(np: Any) -> Any:
    return np.random.default_rng(SEED).integers(0, 1 << 40, 256, dtype="int64")


NUMPY_KERNELS: List[Kernel] = [
    ("gemm_f32", np_gemm("float32"), False),
    ("gemm_f64", np_gemm("float64"), False),
    ("dot_f32", np_dot("float32"), False),
    ("dot_f64", np_dot("float64"), False),
    ("sum_f32", np_sum, False),
    ("cumsum_f64", np_cumsum, False),
    ("exp_f64", np_unary("exp", "float64"), False),
    ("log_f64", np_unary("log", "float64", positive=True), False),
    ("power_f64", np_power("float64"), False),
    ("sin_f64", np_unary("sin", "float64", scale=64.0), False),
    ("tanh_f64", np_unary("tanh", "float64", scale=4.0), False),
    ("exp_f32", np_unary("exp", "float32"), False),
    ("log_f32", np_unary("log", "float32", positive=True), False),
    ("power_f32", np_power("float32"), False),
    ("sin_f32", np_unary("sin", "float32", scale=64.0), False),
    ("tanh_f32", np_unary("tanh", "float32", scale=4.0), False),
    ("solve_f64", np_solve, False),
    ("svd_f64", np_svd, False),
    ("eigh_f64", np_eigh, False),
    ("fft_f64", np_fft, False),
    ("random_legacy", np_random_legacy, False),
    ("random_default", np_random_default, False),
    ("random_integers", np_random_integers, False),
]


# ------------------------------------------------------------------------------------------------ SciPy
def sp_special(sp: Any) -> Any:
    np = sys.modules["numpy"]
    special = importlib.import_module("scipy.special")
    x = np_input(np, 512, "float64", 20, 6.0, True)
    return np.concatenate([special.erf(x - 6.0), special.gammaln(x), special.j0(4.0 * x)])


def sp_expm(sp: Any) -> Any:
    linalg = importlib.import_module("scipy.linalg")
    return linalg.expm(np_matrix(sys.modules["numpy"], 24, 24, "float64", 21))


def sp_solve(sp: Any) -> Any:
    np = sys.modules["numpy"]
    linalg = importlib.import_module("scipy.linalg")
    a = np_matrix(np, 64, 64, "float64", 22) + 16.0 * np.eye(64)
    return linalg.solve(a, np_matrix(np, 64, 3, "float64", 23))


def sp_dct(sp: Any) -> Any:
    fft = importlib.import_module("scipy.fft")
    return fft.dct(np_input(sys.modules["numpy"], 1000, "float64", 24), type=2)


SCIPY_KERNELS: List[Kernel] = [
    ("special_f64", sp_special, False),
    ("expm_f64", sp_expm, False),
    ("solve_f64", sp_solve, False),
    ("dct_f64", sp_dct, False),
]


# ------------------------------------------------------------------------------------------------ torch
def t_input(torch: Any, shape: Sequence[int], seed: int, device: str = "cpu", dtype: str = "float32") -> Any:
    count = 1
    for n in shape:
        count *= n
    values = torch.tensor(exact_values(count, seed), dtype=getattr(torch, dtype))
    return values.reshape(*shape).to(device)


def t_matmul(torch: Any) -> Any:
    return torch.matmul(t_input(torch, (96, 80), 30), t_input(torch, (80, 72), 31))


def t_conv2d(torch: Any) -> Any:
    return torch.nn.functional.conv2d(t_input(torch, (2, 3, 24, 24), 32), t_input(torch, (8, 3, 3, 3), 33), padding=1)


def t_softmax(torch: Any) -> Any:
    return torch.softmax(t_input(torch, (32, 257), 34) * 8.0, dim=-1)


def t_layer_norm(torch: Any) -> Any:
    return torch.nn.functional.layer_norm(t_input(torch, (32, 192), 35), (192,))


def t_rng(torch: Any) -> Any:
    generator = torch.Generator().manual_seed(SEED)
    normal = torch.randn(1024, generator=generator)
    uniform = torch.rand(1024, generator=generator)
    return torch.cat([normal, uniform])


TORCH_KERNELS: List[Kernel] = [
    ("matmul_f32", t_matmul, True),
    ("conv2d_f32", t_conv2d, True),
    ("softmax_f32", t_softmax, True),
    ("layer_norm_f32", t_layer_norm, True),
    ("rng_cpu", t_rng, False),
]


def cuda_gemm(tf32: bool) -> Callable[[Any], Any]:
    """cuBLAS SGEMM with TF32 allowed or not; the flag is put back as it was."""

    def kernel(torch: Any) -> Any:
        matmul = torch.backends.cuda.matmul
        before = matmul.allow_tf32
        matmul.allow_tf32 = tf32
        try:
            out = torch.matmul(t_input(torch, (256, 192), 40, "cuda"), t_input(torch, (192, 160), 41, "cuda"))
            torch.cuda.synchronize()
            return out
        finally:
            matmul.allow_tf32 = before
    return kernel


def cudnn_conv2d(torch: Any) -> Any:
    """cuDNN convolution with the algorithm choice pinned (no benchmark, deterministic), TF32 as configured."""
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        out = torch.nn.functional.conv2d(t_input(torch, (4, 16, 32, 32), 42, "cuda"),
                                         t_input(torch, (32, 16, 3, 3), 43, "cuda"), padding=1)
        torch.cuda.synchronize()
        return out
    finally:
        cudnn.benchmark, cudnn.deterministic = before


def cuda_rng(torch: Any) -> Any:
    """Philox on the device; large enough to span more than one wave of blocks (it depends on the SM count)."""
    generator = torch.Generator(device="cuda").manual_seed(SEED)
    out = torch.randn(1 << 20, generator=generator, device="cuda")
    torch.cuda.synchronize()
    return out


CUDA_KERNELS: List[Kernel] = [
    ("cuda_gemm_f32", cuda_gemm(False), False),
    ("cuda_gemm_tf32", cuda_gemm(True), False),
    ("cudnn_conv2d_f32", cudnn_conv2d, False),
    ("cuda_rng", cuda_rng, False),
]


# ------------------------------------------------------------------------------------------------ the run
def run_kernels(library: str, module: Any, kernels: List[Kernel], to_record: Callable[[Any, Optional[int]], Record],
                threads: Optional[int], out: Dict[str, Record], seconds: Dict[str, float]) -> None:
    """Each kernel twice: the two results must agree bit for bit, or the kernel is left out."""
    for name, function, threaded in kernels:
        key = "%s.%s" % (library, name)
        started = time.perf_counter()
        try:
            first = to_record(function(module), threads if threaded else None)
            second = to_record(function(module), threads if threaded else None)
        except Exception as exc:  # noqa: BLE001 - a kernel the library cannot run is reported, not fatal
            note_unavailable("fingerprint." + key, "%s: %s" % (type(exc).__name__, str(exc)[:200]))
            continue
        if first["sha256"] != second["sha256"]:
            note_unavailable("fingerprint." + key, "two runs in one process gave different bits, so it is left out")
            continue
        out[key] = first
        seconds[key] = round((time.perf_counter() - started) / 2, 6)


def try_import(name: str) -> Optional[Any]:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - not installed, or broken: either way no kernels from it
        if not isinstance(exc, ImportError) or getattr(exc, "name", None) != name:
            note_unavailable("fingerprint." + name, "%s: %s" % (type(exc).__name__, str(exc)[:200]))
        return None


def numpy_context(np: Any) -> Dict[str, str]:
    """Which SIMD targets NumPy dispatched to (2.x) and which features it was told to leave alone."""
    context = {"numpy": str(np.__version__)}
    core = sys.modules.get("numpy._core._multiarray_umath") or sys.modules.get("numpy.core._multiarray_umath")
    info = getattr(core, "__cpu_targets_info__", None)
    if isinstance(info, dict):
        current = set()
        for per_function in info.values():
            for per_type in (per_function or {}).values():
                if isinstance(per_type, dict) and per_type.get("current"):
                    current.add(str(per_type["current"]))
        context["numpy.simd_targets"] = " ".join(sorted(current))
    baseline = getattr(core, "__cpu_baseline__", None)
    if baseline:
        context["numpy.simd_baseline"] = " ".join(baseline)
    return context


def collect(only: Optional[List[str]] = None, torch_module: Optional[Any] = None) -> Dict[str, Any]:
    wanted = set(only or ("numpy", "scipy", "torch"))
    kernels: Dict[str, Record] = {}
    seconds: Dict[str, float] = {}
    context: Dict[str, Any] = {}
    started = time.perf_counter()
    np = try_import("numpy") if wanted & {"numpy", "scipy"} else None
    sp = try_import("scipy") if np is not None and "scipy" in wanted else None
    if sp is not None:
        for sub in ("scipy.linalg", "scipy.special", "scipy.fft"):
            try_import(sub)  # loaded before the BLAS is pinned, so its own OpenBLAS is pinned too
    if np is not None:
        context.update(numpy_context(np))
        pinned, restore = pin_blas_threads()
        context["blas.pinned"] = "; ".join(pinned)
        blas_threads = 1 if pinned else None
        if not pinned:
            note_unavailable("fingerprint.blas_threads", "no BLAS whose thread count could be pinned was found; "
                             "BLAS kernels ran at its default thread count")
        try:
            if "numpy" in wanted:
                run_kernels("numpy", np, NUMPY_KERNELS, array_record, None, kernels, seconds)
            if sp is not None:
                context["scipy"] = str(sp.__version__)
                run_kernels("scipy", sp, SCIPY_KERNELS, array_record, None, kernels, seconds)
        finally:
            restore()
        for key in list(kernels):
            if key.split(".")[1].startswith(("gemm", "dot", "solve", "svd", "eigh", "expm")):
                kernels[key]["threads"] = blas_threads
    torch = torch_module if torch_module is not None else (try_import("torch") if "torch" in wanted else None)
    if torch is not None:
        threads = int(torch.get_num_threads())
        context["torch"] = str(getattr(torch, "__version__", "?"))
        context["torch.num_threads"] = threads
        run_kernels("torch", torch, TORCH_KERNELS, tensor_record, threads, kernels, seconds)
        if cuda_available(torch):
            context["torch.cuda_device"] = str(torch.cuda.get_device_name(0))
            context["torch.cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
            run_kernels("torch", torch, CUDA_KERNELS, tensor_record, None, kernels, seconds)
    return {"fingerprint_version": FINGERPRINT_VERSION, "kernels": kernels, "context": context,
            "seconds": seconds, "total_seconds": round(time.perf_counter() - started, 6),
            "unavailable": UNAVAILABLE}


def cuda_available(torch: Any) -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup means no GPU kernels, with the reason
        note_unavailable("fingerprint.torch.cuda", "%s: %s" % (type(exc).__name__, exc))
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    only: Optional[List[str]] = None
    while args:
        arg = args.pop(0)
        if arg == "--only" and args:
            only = [part for part in args.pop(0).split(",") if part]
        else:
            raise SystemExit("envcap fingerprint: unknown argument %r" % arg)
    facts = collect(only)
    sys.stdout.write(json.dumps(facts, sort_keys=True, separators=(",", ":")))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
