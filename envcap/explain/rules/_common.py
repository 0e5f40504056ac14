"""The explain rules, as data: which fact, how to compare it, how severe each kind of change is,
why it can change results, what neutralises it, and a public reference.

Why data and not a chain of ifs: a rule can be read in one line, listed in the docs
(docs/explain.md is checked against this table), tested on its own, and the engine in ``diff.py``
stays the same when rules are added. Dependencies between rules are data too: ``when`` holds the
conditions under which a difference matters (TF32 only on compute capability 8.0 or newer; MKL_CBWR
only where MKL is the BLAS); where they do not hold, the finding drops to ``otherwise`` (``info``),
or, with ``otherwise=None``, the next rule for the same fact decides.

Rules are tried in order for each fact; the first whose pattern matches, whose comparison sees a
change of a kind it rates, and whose conditions hold (or cannot be known) produces the finding.
Facts are the dotted paths of ``facts.py``; patterns use shell wildcards (``pkg.nvidia-*``).
The catalog ids (F01..F46) refer to the divergence-factor notes the rules were written from.

This module holds the rule types, shared conditions and references; the rules themselves live in
one module per domain (``gpu``, ``precision``, ``env``, ``cpu``, ``system``), joined in order in
``envcap.explain.rules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Severity = Literal["high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
ConditionOp = Literal["eq", "ne", "ge", "lt", "contains", "present", "absent", "unknown"]
Side = Literal["either", "both", "known"]  # known: the sides that state the fact
Comparison = Literal["equal", "version", "package", "set", "threshold"]


@dataclass(frozen=True)
class Cond:
    """A condition on one fact, checked on each side: ``side="either"`` holds if it holds on either."""

    fact: str
    op: ConditionOp
    value: Any = None
    side: Side = "either"


@dataclass(frozen=True)
class AnyOf:
    conds: tuple[Cond | AnyOf | AllOf, ...]


@dataclass(frozen=True)
class AllOf:
    conds: tuple[Cond | AnyOf | AllOf, ...]


@dataclass(frozen=True)
class Rule:
    id: str
    fact: str
    compare: Comparison
    severity: Mapping[str, Severity]  # kind of change -> severity; "*" for any other kind
    why: str
    mitigation: str
    reference: str
    weight: int = 50  # orders findings of the same severity (100 first)
    when: tuple[Cond | AnyOf | AllOf, ...] = ()
    otherwise: Severity | None = "info"
    threshold: float | None = None
    unless: tuple[str, ...] = ()  # facts (patterns) whose own finding already explains this one
    factor: str = ""
    when_text: str = ""  # the condition in words, for the report when it cannot be checked
    names: tuple[str, ...] = ()  # with a family pattern (pkg.*, env.*): the member names it covers

    def severity_for(self, kind: str) -> Severity | None:
        return self.severity.get(kind, self.severity.get("*"))


def S(**kinds: Severity) -> dict[str, Severity]:
    return dict(kinds)


ANY: dict[str, Severity] = {"*": "high"}
MED: dict[str, Severity] = {"*": "medium"}
LOW: dict[str, Severity] = {"*": "low"}
INFO: dict[str, Severity] = {"*": "info"}
VERSION_HIGH = S(major="high", minor="high", patch="medium", local="medium", other="medium", added="medium",
                 removed="medium")
VERSION_MED = S(major="medium", minor="medium", patch="low", local="low", other="medium", added="medium",
                removed="medium")
VERSION_LOW = S(major="low", minor="low", patch="low", local="low", other="low", added="low", removed="low")

# ------------------------------------------------------------------------------- conditions
AMPERE = Cond("gpu.compute_capability", "ge", "8.0")
TF32_NOT_FORCED_OFF = Cond("env.NVIDIA_TF32_OVERRIDE", "ne", "0")
HAS_GPU = AnyOf((Cond("gpu.count", "ge", 1), Cond("torch.cuda_build", "present")))
# torch's TF32 switches act only in a CUDA build: a "+cpu" wheel (cuda_build known to be None) runs no
# cuBLAS/cuDNN, so its precision flags cannot change results whatever GPU the machine has.
TORCH_CUDA = Cond("torch.cuda_build", "present")
MULTI_GPU = AnyOf((Cond("gpu.count", "ge", 2), Cond("env.WORLD_SIZE", "present")))
MKL = Cond("blas.backend", "contains", "mkl")
OPENBLAS = Cond("blas.backend", "contains", "openblas")
TORCH = Cond("pkg.torch", "present")
TENSORFLOW = AnyOf((Cond("pkg.tensorflow", "present"), Cond("pkg.tensorflow-cpu", "present"),
                    Cond("pkg.tensorflow-gpu", "present")))
JAX = Cond("pkg.jax", "present")
NUMPY = Cond("pkg.numpy", "present")
ISA_DISPATCH = AnyOf((MKL, OPENBLAS, TORCH, TENSORFLOW, NUMPY, JAX))
TF32_ON = AnyOf((  # some framework on either side lets float32 math run in TF32
    AllOf((TORCH, TORCH_CUDA, AnyOf((Cond("precision.torch.backends.cuda.matmul.allow_tf32", "eq", True),
                         Cond("precision.torch.backends.cudnn.allow_tf32", "eq", True),
                         Cond("precision.torch.float32_matmul_precision", "ne", "highest"))))),
    Cond("env.TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "eq", "1"),
    AllOf((TENSORFLOW, Cond("precision.tensorflow.tensor_float_32_execution", "eq", True))),
    Cond("pkg.jaxlib", "present"),
))

TF32_WHEN_TEXT = "matters only on a GPU of compute capability 8.0 or newer without NVIDIA_TF32_OVERRIDE=0"
TORCH_TF32_WHEN_TEXT = ("matters only for a CUDA build of torch on a GPU of compute capability 8.0 or newer "
                        "without NVIDIA_TF32_OVERRIDE=0")

# ------------------------------------------------------------------------------- references
R_TF32 = "https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices"
R_MATMUL_PRECISION = "https://pytorch.org/docs/stable/generated/torch.set_float32_matmul_precision.html"
R_RANDOMNESS = "https://pytorch.org/docs/stable/notes/randomness.html"
R_CUBLAS = "https://docs.nvidia.com/cuda/cublas/index.html#results-reproducibility"
R_TORCH_ENV = "https://pytorch.org/docs/stable/cuda_environment_variables.html"
R_ACCURACY = "https://pytorch.org/docs/stable/notes/numerical_accuracy.html"
R_NCCL_ENV = "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html"
R_MKL_CNR = ("https://www.intel.com/content/www/us/en/docs/onemkl/developer-guide-linux/2024-2/"
             "specifying-code-branches.html")
R_MKL_REPRO = ("https://www.intel.com/content/www/us/en/docs/onemkl/developer-guide-linux/2024-0/"
               "reproducibility-conditions.html")
R_ONEDNN = "https://oneapi-src.github.io/oneDNN/dev_guide_cpu_dispatcher_control.html"
R_NPY_SIMD = "https://numpy.org/doc/stable/reference/simd/build-options.html"
R_NEP50 = "https://numpy.org/neps/nep-0050-scalar-promotion.html"
R_TF_TF32 = "https://www.tensorflow.org/api_docs/python/tf/config/experimental/enable_tensor_float_32_execution"
R_TF_DET = "https://www.tensorflow.org/api_docs/python/tf/config/experimental/enable_op_determinism"
R_HASHSEED = "https://docs.python.org/3/using/cmdline.html#envvar-PYTHONHASHSEED"
R_PY_RANDOM = "https://docs.python.org/3/library/random.html#notes-on-reproducibility"
R_OPENBLAS_ENV = "https://github.com/OpenMathLib/OpenBLAS#setting-the-number-of-threads-using-environment-variables"
R_JAX_PRECISION = "https://jax.readthedocs.io/en/latest/_autosummary/jax.default_matmul_precision.html"
R_XLA_DET = "https://github.com/jax-ml/jax/discussions/10674"
R_GLIBC = "https://sourceware.org/glibc/wiki/Release/2.28"
R_CPU_THREADS = "https://pytorch.org/docs/stable/notes/cpu_threading_torchscript_inference.html"
R_GPU_RNG = "https://github.com/pytorch/pytorch/issues/90006"
R_CUDNN = "https://docs.nvidia.com/deeplearning/cudnn/latest/release-notes.html"
R_NCCL_PREC = "https://github.com/NVIDIA/nccl/issues/1055"
R_BLAS_BACKEND = "https://github.com/numpy/numpy/issues/15591"
R_OPENBLAS_ISA = "https://github.com/numpy/numpy/issues/10377"
R_AVX512 = "https://github.com/pytorch/pytorch/issues/155423"
R_MKL_AMD = "https://github.com/pytorch/pytorch/issues/49268"
R_PTX = "https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#just-in-time-compilation"
R_CUDA_ENV = "https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#cuda-environment-variables"
R_WORLD = "https://pytorch.org/docs/stable/notes/ddp.html"
R_LOCALE = "https://github.com/pandas-dev/pandas/issues/44625"
R_TF_ONEDNN = "https://github.com/tensorflow/tensorflow/pull/56039"
R_PINNING = "https://pip.pypa.io/en/stable/topics/repeatable-installs/"
R_TORCH_DET = "https://pytorch.org/docs/stable/generated/torch.use_deterministic_algorithms.html"
R_SKLEARN = "https://scikit-learn.org/stable/whats_new.html"
R_NUMPY_REL = "https://numpy.org/doc/stable/release.html"
R_SCIPY_REL = "https://docs.scipy.org/doc/scipy/release.html"
R_JAX_CHANGELOG = "https://jax.readthedocs.io/en/latest/changelog.html"
R_TF_REL = "https://github.com/tensorflow/tensorflow/releases"
R_SYS = "https://docs.python.org/3/library/sys.html"
R_GIT = "https://git-scm.com/docs/git-status"

DISABLE_TF32 = ("torch.backends.cuda.matmul.allow_tf32 = False and torch.backends.cudnn.allow_tf32 = False "
                "(or NVIDIA_TF32_OVERRIDE=0) on both sides")
PIN = "pin the same version on both sides (pip install NAME==VERSION)"
