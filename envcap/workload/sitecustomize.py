"""envcap's replay hook: records the precision and determinism settings the workload left behind.

Why at exit, and why in the workload's own interpreter: a snapshot taken in a fresh interpreter sees
only the defaults, while training scripts flip TF32, cuDNN benchmark or deterministic algorithms
themselves. This module is put on ``PYTHONPATH`` inside the replay container (a mounted folder), so
Python imports it at start-up as ``sitecustomize``; it only registers an ``atexit`` function.

Rules it keeps, because it runs inside someone else's program:
- stdlib only, and it never imports torch, jax or tensorflow: it reads them only when the workload
  imported them (``sys.modules``), so a workload that does not use them pays nothing;
- it never raises and never prints; a failure to read one flag loses that flag only;
- it imports the ``sitecustomize`` it shadows (Debian and conda ship one), so the image behaves as
  it would without envcap;
- it writes ``precision-<pid>.json`` into ``$ENVCAP_HOOK_OUT``, one file per process, written to a
  temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: this module loads in every interpreter
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

OUT_ENV = "ENVCAP_HOOK_OUT"
ROOT_ENV = "ENVCAP_PROJECT_ROOT"  # whose imported modules are listed (the project's, not site-packages')
MAX_MODULES = 2000
_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain_previous() -> None:
    """Imports the next ``sitecustomize`` on sys.path (the one this module shadows), if any."""
    ours = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
        try:
            __import__("sitecustomize")
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - site.py would report it; do the same and carry on
            import traceback

            sys.stderr.write("Error in sitecustomize (chained by envcap's replay hook):\n")
            traceback.print_exc()
    finally:
        sys.path[:] = saved
        chained = sys.modules.get("sitecustomize")
        if ours is not None:
            sys.modules["sitecustomize"] = ours
            if chained is not None and chained is not ours:
                sys.modules["_envcap_chained_sitecustomize"] = chained


def _read(flags: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    try:
        value = fn()
    except Exception:  # noqa: BLE001 - an older or newer framework may lack this flag
        return
    if value is None or isinstance(value, (bool, int, float, str)):
        flags[name] = value
    else:
        flags[name] = str(value)


def torch_flags(torch: Any) -> dict[str, Any]:
    """TF32, matmul precision, cuDNN and determinism flags, read without initialising CUDA."""
    flags: dict[str, Any] = {}
    backends: Any = getattr(torch, "backends", None)
    matmul: Any = getattr(getattr(backends, "cuda", None), "matmul", None)
    cudnn: Any = getattr(backends, "cudnn", None)
    _read(flags, "torch.version", lambda: str(torch.__version__))
    _read(flags, "torch.backends.cuda.matmul.allow_tf32", lambda: bool(matmul.allow_tf32))
    _read(flags, "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
          lambda: bool(matmul.allow_fp16_reduced_precision_reduction))
    _read(flags, "torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
          lambda: bool(matmul.allow_bf16_reduced_precision_reduction))
    _read(flags, "torch.float32_matmul_precision", lambda: torch.get_float32_matmul_precision())
    _read(flags, "torch.backends.cudnn.enabled", lambda: bool(cudnn.enabled))
    _read(flags, "torch.backends.cudnn.allow_tf32", lambda: bool(cudnn.allow_tf32))
    _read(flags, "torch.backends.cudnn.benchmark", lambda: bool(cudnn.benchmark))
    _read(flags, "torch.backends.cudnn.deterministic", lambda: bool(cudnn.deterministic))
    _read(flags, "torch.deterministic_algorithms", lambda: bool(torch.are_deterministic_algorithms_enabled()))
    _read(flags, "torch.deterministic_algorithms_warn_only",
          lambda: bool(torch.is_deterministic_algorithms_warn_only_enabled()))
    _read(flags, "torch.num_threads", lambda: int(torch.get_num_threads()))
    # torch >= 2.9 spells TF32 as fp32_precision ("none" | "tf32" | "ieee") per backend.
    if hasattr(backends, "fp32_precision"):
        _read(flags, "torch.backends.fp32_precision", lambda: str(backends.fp32_precision))
        _read(flags, "torch.backends.cuda.matmul.fp32_precision", lambda: str(matmul.fp32_precision))
        _read(flags, "torch.backends.cudnn.fp32_precision", lambda: str(cudnn.fp32_precision))
    return flags


def jax_flags(jax: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    config: Any = getattr(jax, "config", None)
    _read(flags, "jax.version", lambda: str(jax.__version__))
    _read(flags, "jax.default_matmul_precision", lambda: config.jax_default_matmul_precision)
    _read(flags, "jax.enable_x64", lambda: bool(config.jax_enable_x64))
    return flags


def tensorflow_flags(tf: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    experimental: Any = getattr(getattr(tf, "config", None), "experimental", None)
    _read(flags, "tensorflow.version", lambda: str(tf.__version__))
    _read(flags, "tensorflow.tensor_float_32_execution",
          lambda: bool(experimental.tensor_float_32_execution_enabled()))
    _read(flags, "tensorflow.op_determinism", lambda: bool(experimental.is_op_determinism_enabled()))
    return flags


READERS: tuple[tuple[str, Callable[[Any], dict[str, Any]]], ...] = (("torch", torch_flags), ("jax", jax_flags), ("tensorflow", tensorflow_flags))


def collect(modules: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flags of every framework the workload imported; empty when it imported none."""
    modules = sys.modules if modules is None else modules
    flags: dict[str, Any] = {}
    for name, reader in READERS:
        module = modules.get(name)
        if module is not None:
            try:
                flags.update(reader(module))
            except Exception:  # noqa: BLE001 - one broken reader must not cost the others
                pass
    return flags


def project_modules(root: str | None) -> list[str]:
    """The files of the modules the workload imported from the project (to tell which edits matter)."""
    if not root:
        return []
    prefix = os.path.join(os.path.abspath(root), "")
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            path = os.path.abspath(path)
            if path.startswith(prefix) and "site-packages" not in path:
                found.add(os.path.relpath(path, prefix))
    return sorted(found)[:MAX_MODULES]


def record(out_dir: str | None = None) -> None:
    """The atexit function: writes the flags and the project's imported modules into ``out_dir``."""
    try:
        out_dir = out_dir or os.environ.get(OUT_ENV)
        if not out_dir:
            return
        flags = collect()
        modules = project_modules(os.environ.get(ROOT_ENV))
        if not flags and not modules:
            return
        document = {"pid": os.getpid(), "ppid": os.getppid(), "argv": list(sys.argv[:4]), "flags": flags,
                    "modules": modules}
        path = os.path.join(out_dir, f"precision-{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - never change how the workload ends
        pass


_chain_previous()
if os.environ.get(OUT_ENV):
    atexit.register(record)
