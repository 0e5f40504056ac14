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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("high", "medium", "low", "info")


@dataclass(frozen=True)
class Cond:
    """A condition on one fact, checked on each side: ``side="either"`` holds if it holds on either."""

    fact: str
    op: str  # eq | ne | ge | lt | contains | present | absent | unknown
    value: Any = None
    side: str = "either"


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
    compare: str  # equal | version | package | set | threshold
    severity: Mapping[str, str]  # kind of change -> severity; "*" for any other kind
    why: str
    mitigation: str
    reference: str
    weight: int = 50  # orders findings of the same severity (100 first)
    when: tuple[Cond | AnyOf | AllOf, ...] = ()
    otherwise: str | None = "info"
    threshold: float | None = None
    unless: tuple[str, ...] = ()  # facts (patterns) whose own finding already explains this one
    factor: str = ""
    when_text: str = ""  # the condition in words, for the report when it cannot be checked
    names: tuple[str, ...] = ()  # with a family pattern (pkg.*, env.*): the member names it covers

    def severity_for(self, kind: str) -> str | None:
        return self.severity.get(kind, self.severity.get("*"))


def S(**kinds: str) -> dict[str, str]:
    return dict(kinds)


ANY = {"*": "high"}
MED = {"*": "medium"}
LOW = {"*": "low"}
INFO = {"*": "info"}
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

# ----------------------------------------------------------------------------------- rules
RULES: tuple[Rule, ...] = (
    # ---- GPU and the CUDA stack
    Rule("gpu-tf32-boundary", "gpu.compute_capability", "threshold", S(crossed="high"),
         "Only one side is an Ampere-or-newer GPU, where float32 matmuls and convolutions run in TF32 "
         "(10-bit mantissa) while TF32 is enabled, so errors grow from about 1e-7 to about 1e-3 relative.",
         DISABLE_TF32, R_TF32, weight=95, threshold=8.0, when=(TF32_ON, TF32_NOT_FORCED_OFF), otherwise=None,
         factor="F01/F03", when_text="matters where TF32 is enabled and NVIDIA_TF32_OVERRIDE=0 is not set"),
    Rule("gpu-architecture", "gpu.compute_capability", "threshold", MED,
         "Different GPU architectures run different cuBLAS/cuDNN kernels; NVIDIA promises bitwise-equal "
         "results only on the same architecture and SM count.",
         "replay on the same GPU model, or compare with tolerances instead of hashes", R_CUBLAS, weight=85,
         factor="F01"),
    Rule("gpu-model", "gpu.model", "equal", MED,
         "A different GPU model (even of one architecture) has another SM count, which changes cuBLAS "
         "heuristics and the random numbers torch draws on the GPU.",
         "replay on the same GPU model; draw random tensors on the CPU and move them", R_GPU_RNG, weight=80,
         unless=("gpu.compute_capability",), factor="F01/F02"),
    Rule("gpu-count", "gpu.count", "equal", S(changed="high", added="high", removed="high"),
         "A different number of GPUs changes the world size, data sharding and reduction order of "
         "distributed training, or moves the run between GPU and CPU.",
         "replay with the same devices (CUDA_VISIBLE_DEVICES) and the same world size", R_WORLD, weight=88,
         factor="F15"),
    Rule("gpu-sm-count", "gpu.sm_count", "equal", MED,
         "The SM count decides torch's CUDA random-number launch grid and cuBLAS's kernel choice, so random "
         "tensors and GEMM results differ.",
         "same GPU SKU and MIG profile; draw random tensors on the CPU", R_GPU_RNG, weight=70,
         unless=("gpu.model", "gpu.compute_capability"), factor="F02"),
    Rule("gpu-mig", "gpu.mig_mode", "equal", MED,
         "A MIG slice exposes fewer SMs than the whole GPU, which changes kernel choice and GPU random streams.",
         "replay with the same MIG profile", R_GPU_RNG, weight=60, factor="F02"),
    Rule("gpu-driver", "gpu.driver", "version", S(major="low", minor="low", patch="low", other="low",
                                                   added="low", removed="low"),
         "The driver rarely changes library kernels' arithmetic, except where kernels are JIT-compiled from PTX.",
         "use the same driver branch; use wheels built with SASS for the GPU", R_PTX, weight=20, factor="F16"),
    Rule("cuda-driver-api", "gpu.cuda_driver", "version", LOW,
         "The newest CUDA version the driver supports; it limits which runtimes load but not their arithmetic.",
         "use the same driver branch", R_PTX, weight=15, factor="F16"),
    Rule("cuda-runtime", "cuda.runtime", "version", VERSION_MED,
         "cuBLAS and other CUDA libraries promise bitwise reproducibility only within one toolkit version.",
         "pin the CUDA toolkit or the nvidia-* wheels to the same version", R_CUBLAS, weight=65, factor="F12",
         when=(HAS_GPU,), when_text="matters where a GPU is used"),
    Rule("torch-cuda-build", "torch.cuda_build", "version",
         S(major="medium", minor="medium", patch="low", added="high", removed="high", other="medium"),
         "torch built for another CUDA ships other cuBLAS/cuDNN versions (or none: a CPU build runs everything "
         "on the CPU).",
         "install the same torch build tag (+cu121, +cpu) on both sides", R_CUBLAS, weight=72, factor="F12"),
    Rule("cudnn", "cuda.cudnn", "version", S(major="high", minor="medium", patch="low", other="medium",
                                              added="medium", removed="medium"),
         "Each cuDNN release brings new heuristics and engines, so convolutions pick other algorithms.",
         "pin cuDNN (the nvidia-cudnn wheel or the system package) to the same version", R_CUDNN, weight=68,
         when=(HAS_GPU,), factor="F13", when_text="matters where a GPU is used"),
    Rule("nccl", "cuda.nccl", "version", VERSION_MED,
         "NCCL versions choose other all-reduce algorithms and channel counts, which reorder the summation of "
         "gradients.",
         "pin NCCL and set NCCL_ALGO/NCCL_PROTO on both sides", R_NCCL_PREC, weight=55, when=(MULTI_GPU,),
         factor="F14", when_text="matters for multi-GPU runs"),
    Rule("cublas", "cuda.cublas", "version", VERSION_MED,
         "cuBLAS results are bitwise reproducible only within one cuBLAS version.",
         "pin the nvidia-cublas wheel", R_CUBLAS, weight=60, factor="F12",
         when=(HAS_GPU,), when_text="matters where a GPU is used"),
    Rule("cuda-source", "cuda.runtime_source", "equal", LOW,
         "The CUDA libraries come from different places (pip wheels or the system), which often means "
         "different builds.",
         "install CUDA the same way on both sides", R_CUBLAS, weight=20, factor="F12",
         when=(HAS_GPU,), when_text="matters where a GPU is used"),
    Rule("cuda-nvcc", "cuda.nvcc", "version", LOW,
         "The system CUDA compiler builds C++/CUDA extensions (apex, custom ops) but not torch's own kernels.",
         "build extensions with the same CUDA toolkit", R_PTX, weight=15, factor="F12"),
    Rule("torch-hip", "torch.hip", "version", ANY,
         "A ROCm build of torch uses other BLAS/convolution libraries and launch geometry than a CUDA build.",
         "treat as a different platform and compare with tolerances", R_CUBLAS, weight=80, factor="F20"),

    # ---- precision and determinism settings (the replay hook's record, else the framework's defaults)
    Rule("torch-tf32-matmul", "precision.torch.backends.cuda.matmul.allow_tf32", "equal", ANY,
         "TF32 for float32 matmuls rounds inputs to a 10-bit mantissa (about 1e-3 relative error).",
         "set torch.backends.cuda.matmul.allow_tf32 to the same value on both sides", R_TF32, weight=98,
         when=(AMPERE, TF32_NOT_FORCED_OFF, TORCH_CUDA), factor="F03", when_text=TORCH_TF32_WHEN_TEXT),
    Rule("torch-matmul-precision", "precision.torch.float32_matmul_precision", "equal", ANY,
         "float32 matmul precision 'high' or 'medium' lets matmuls run in TF32 or bfloat16 instead of full float32.",
         "torch.set_float32_matmul_precision('highest') on both sides", R_MATMUL_PRECISION, weight=97,
         when=(AMPERE, TF32_NOT_FORCED_OFF, TORCH_CUDA), factor="F03", when_text=TORCH_TF32_WHEN_TEXT),
    Rule("torch-tf32-cudnn", "precision.torch.backends.cudnn.allow_tf32", "equal", ANY,
         "TF32 in cuDNN convolutions rounds inputs to a 10-bit mantissa; integers above 2048 are no longer exact.",
         "set torch.backends.cudnn.allow_tf32 to the same value on both sides", R_TF32, weight=96,
         when=(AMPERE, TF32_NOT_FORCED_OFF, TORCH_CUDA), factor="F04", when_text=TORCH_TF32_WHEN_TEXT),
    Rule("torch-fp32-precision", "precision.torch.backends.*fp32_precision", "equal", ANY,
         "torch 2.9's fp32_precision setting chooses TF32 or IEEE float32 per backend.",
         "set the same fp32_precision ('ieee' for full float32) on both sides", R_TF32, weight=96,
         when=(AMPERE, TF32_NOT_FORCED_OFF, TORCH_CUDA), factor="F03", when_text=TORCH_TF32_WHEN_TEXT),
    Rule("torch-reduced-precision-reduction", "precision.torch.backends.cuda.matmul.allow_*_reduced_precision_reduction",
         "equal", MED,
         "fp16/bf16 GEMMs may accumulate partial sums in reduced precision when this is allowed.",
         "set the flag to False on both sides when comparing fp16/bf16 runs", R_ACCURACY, weight=62,
         when=(HAS_GPU,), factor="F08", when_text="matters where a GPU is used"),
    Rule("cudnn-enabled", "precision.torch.backends.cudnn.enabled", "equal", S(changed="high", added="high",
                                                                                removed="high"),
         "With cuDNN disabled torch runs its own convolution kernels, with other algorithms and rounding.",
         "set torch.backends.cudnn.enabled the same on both sides", R_RANDOMNESS, weight=75, when=(HAS_GPU,),
         factor="F09", when_text="matters where a GPU is used"),
    Rule("cudnn-benchmark", "precision.torch.backends.cudnn.benchmark", "equal", MED,
         "cuDNN benchmark mode picks convolution algorithms by timing, which can differ between runs and machines.",
         "torch.backends.cudnn.benchmark = False on both sides", R_RANDOMNESS, weight=64, when=(HAS_GPU,),
         factor="F09", when_text="matters where a GPU is used"),
    Rule("cudnn-deterministic", "precision.torch.backends.cudnn.deterministic", "equal", MED,
         "Without the deterministic flag some cuDNN kernels use atomics and vary from run to run.",
         "torch.backends.cudnn.deterministic = True on both sides", R_RANDOMNESS, weight=63, when=(HAS_GPU,),
         factor="F10", when_text="matters where a GPU is used"),
    Rule("torch-deterministic-algorithms", "precision.torch.deterministic_algorithms*", "equal", MED,
         "torch.use_deterministic_algorithms decides whether nondeterministic kernels (index_add, scatter_add, "
         "embedding backward) may run.",
         "torch.use_deterministic_algorithms(True) and CUBLAS_WORKSPACE_CONFIG=:4096:8 on both sides",
         R_TORCH_DET, weight=63, factor="F11"),
    Rule("tf-tf32", "precision.tensorflow.tensor_float_32_execution", "equal", ANY,
         "TensorFlow runs float32 matmuls and convolutions in TF32 when this is enabled (the default from 2.4).",
         "tf.config.experimental.enable_tensor_float_32_execution(False) on both sides", R_TF_TF32, weight=96,
         when=(AMPERE, TF32_NOT_FORCED_OFF), factor="F06", when_text=TF32_WHEN_TEXT),
    Rule("tf-op-determinism", "precision.tensorflow.op_determinism", "equal", MED,
         "Without op determinism TensorFlow's GPU reductions, scatters and cuDNN kernels vary from run to run.",
         "tf.config.experimental.enable_op_determinism() on both sides", R_TF_DET, weight=60, factor="F39"),
    Rule("jax-matmul-precision", "precision.jax.default_matmul_precision", "equal", ANY,
         "JAX's default matmul precision decides whether float32 dots run in TF32 or bfloat16 passes.",
         "jax.config.update('jax_default_matmul_precision', 'highest') on both sides", R_JAX_PRECISION,
         weight=95, factor="F07"),
    Rule("jax-x64", "precision.jax.enable_x64", "equal", ANY,
         "With x64 disabled JAX silently computes in float32 what NumPy computes in float64.",
         "set JAX_ENABLE_X64 the same on both sides", R_JAX_PRECISION, weight=90, factor="F07"),
    Rule("torch-threads", "torch.num_threads", "equal", MED,
         "torch's intra-op thread count splits CPU reductions differently, changing the order of summation.",
         "torch.set_num_threads(N) or OMP_NUM_THREADS=N with the same N on both sides", R_CPU_THREADS, weight=55,
         when=(TORCH,), factor="F23", when_text="matters where torch runs on the CPU"),
    Rule("torch-cpu-capability", "torch.cpu_capability", "equal", MED,
         "torch dispatches its CPU kernels by vector ISA (default, AVX2, AVX-512), which changes results at ULP level.",
         "ATEN_CPU_CAPABILITY set to the same level on both sides", R_AVX512, weight=58, factor="F26"),

    # ---- environment variables that switch numerics
    Rule("env-nvidia-tf32-override", "env.NVIDIA_TF32_OVERRIDE", "equal", ANY,
         "NVIDIA_TF32_OVERRIDE=0 turns TF32 off in every NVIDIA library, whatever the framework asks for.",
         "set NVIDIA_TF32_OVERRIDE the same on both sides", R_TF32, weight=99, when=(AMPERE,), factor="F05",
         when_text="matters only on a GPU of compute capability 8.0 or newer"),
    Rule("env-torch-tf32-override", "env.TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "equal", ANY,
         "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 (set in NGC PyTorch containers) forces TF32 matmuls whatever the "
         "code sets.",
         "unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE in the image or set it identically on the host", R_TORCH_ENV,
         weight=99, when=(AMPERE, TF32_NOT_FORCED_OFF), factor="F05", when_text=TF32_WHEN_TEXT),
    Rule("env-hipblaslt-tf32", "env.HIPBLASLT_ALLOW_TF32", "equal", ANY,
         "HIPBLASLT_ALLOW_TF32 lets ROCm's hipBLASLt use TF32-like reduced precision for float32 GEMMs.",
         "set HIPBLASLT_ALLOW_TF32 the same on both sides", R_TORCH_ENV, weight=90, factor="F05/F20"),
    Rule("env-cublas-workspace", "env.CUBLAS_WORKSPACE_CONFIG", "equal", MED,
         "CUBLAS_WORKSPACE_CONFIG decides whether cuBLAS may use multi-stream workspaces that make results vary.",
         "CUBLAS_WORKSPACE_CONFIG=:4096:8 on both sides", R_CUBLAS, weight=58, when=(HAS_GPU,), factor="F11",
         when_text="matters where a GPU is used"),
    Rule("env-pythonhashseed", "env.PYTHONHASHSEED", "equal", MED,
         "PYTHONHASHSEED fixes or randomises string hashing, which orders sets (vocabularies, feature lists).",
         "PYTHONHASHSEED=0 in both launches; sort sets before iterating", R_HASHSEED, weight=66, factor="F42"),
    Rule("env-tf-determinism", "env.TF_*DETERMINISTIC*", "equal", MED,
         "TensorFlow's determinism variables decide whether GPU ops may use nondeterministic kernels.",
         "set the same TF_DETERMINISTIC_OPS / TF_CUDNN_DETERMINISTIC on both sides", R_TF_DET, weight=58,
         when=(TENSORFLOW,), factor="F39", when_text="matters where TensorFlow is installed"),
    Rule("env-tf-onednn", "env.TF_ENABLE_ONEDNN_OPTS", "equal", MED,
         "TF_ENABLE_ONEDNN_OPTS switches TensorFlow's CPU kernels to oneDNN, which TensorFlow warns gives "
         "slightly different numerical results.",
         "set TF_ENABLE_ONEDNN_OPTS the same on both sides (0 to turn oneDNN off)", R_TF_ONEDNN, weight=60,
         when=(TENSORFLOW,), factor="F27", when_text="matters where TensorFlow is installed"),
    Rule("env-tf-tf32", "env.TF_ENABLE_*TENSOR_OP_MATH_FP32", "equal", ANY,
         "These variables let TensorFlow's cuBLAS/cuDNN calls use tensor-op (reduced precision) math for float32.",
         "set them the same on both sides", R_TF_TF32, weight=90, when=(TENSORFLOW,), factor="F06",
         when_text="matters where TensorFlow is installed"),
    Rule("env-xla-flags", "env.*XLA_FLAGS", "equal", MED,
         "XLA_FLAGS switch XLA's determinism, autotuning and fast-math, which change JAX and TensorFlow numerics.",
         "set the same XLA_FLAGS on both sides", R_XLA_DET, weight=60, when=(AnyOf((JAX, TENSORFLOW)),),
         factor="F31/F40", when_text="matters where JAX or TensorFlow is installed"),
    Rule("env-jax", "env.JAX_*", "equal", ANY,
         "JAX_ variables such as JAX_DEFAULT_MATMUL_PRECISION and JAX_ENABLE_X64 change the arithmetic precision.",
         "set the same JAX_ variables on both sides", R_JAX_PRECISION, weight=92, when=(JAX,), factor="F07",
         when_text="matters where JAX is installed"),
    Rule("env-mkl-cbwr", "env.MKL_CBWR", "equal", MED,
         "MKL_CBWR pins MKL's code branch (conditional numerical reproducibility); without it MKL dispatches "
         "by CPU.",
         "MKL_CBWR=COMPATIBLE (or the same branch) on both sides", R_MKL_CNR, weight=64, when=(MKL,),
         factor="F24", when_text="matters only where MKL is the BLAS"),
    Rule("env-mkl-dispatch", "env.MKL_*CPU*", "equal", MED,
         "MKL_DEBUG_CPU_TYPE and MKL_ENABLE_INSTRUCTIONS change which kernels MKL dispatches to.",
         "set them the same on both sides", R_MKL_AMD, weight=60, when=(MKL,), factor="F25",
         when_text="matters only where MKL is the BLAS"),
    Rule("env-mkl-instructions", "env.MKL_ENABLE_INSTRUCTIONS", "equal", MED,
         "MKL_ENABLE_INSTRUCTIONS caps the instruction set MKL uses.",
         "set it the same on both sides", R_MKL_CNR, weight=60, when=(MKL,), factor="F25",
         when_text="matters only where MKL is the BLAS"),
    Rule("env-mkl-threads", "env.MKL_NUM_THREADS", "equal", MED,
         "MKL splits its reductions by thread count; Intel documents reproducibility only for a fixed count.",
         "set MKL_NUM_THREADS to the same value on both sides", R_MKL_REPRO, weight=56, when=(MKL,),
         factor="F23", when_text="matters only where MKL is the BLAS"),
    Rule("env-openblas-threads", "env.OPENBLAS_NUM_THREADS", "equal", MED,
         "OpenBLAS splits GEMM and reductions by thread count, so results change with it.",
         "set OPENBLAS_NUM_THREADS to the same value on both sides", R_OPENBLAS_ENV, weight=56, when=(OPENBLAS,),
         factor="F23", when_text="matters only where OpenBLAS is the BLAS"),
    Rule("env-openblas-coretype", "env.OPENBLAS_CORETYPE", "equal", MED,
         "OPENBLAS_CORETYPE picks the kernel family (Haswell, SkylakeX...) OpenBLAS uses.",
         "set OPENBLAS_CORETYPE to the same core on both sides", R_OPENBLAS_ISA, weight=60, when=(OPENBLAS,),
         factor="F22", when_text="matters only where OpenBLAS is the BLAS"),
    Rule("env-omp-threads", "env.OMP_NUM_THREADS", "equal", MED,
         "OMP_NUM_THREADS sets the thread count of OpenMP BLAS builds, torch's intra-op pool and scikit-learn "
         "estimators, which changes the order of summation.",
         "set OMP_NUM_THREADS to the same value on both sides (1 for strict runs)", R_MKL_REPRO, weight=57,
         factor="F23/F46"),
    Rule("env-thread-vars", "env.*_NUM_THREADS", "equal", LOW,
         "Thread counts of numerics libraries change how work and reductions are split.",
         "set the same thread variables on both sides", R_CPU_THREADS, weight=35, factor="F23"),
    Rule("env-aten-capability", "env.ATEN_CPU_CAPABILITY", "equal", MED,
         "ATEN_CPU_CAPABILITY caps the vector ISA of torch's CPU kernels.",
         "set ATEN_CPU_CAPABILITY the same on both sides", R_AVX512, weight=58, when=(TORCH,), factor="F26",
         when_text="matters where torch is installed"),
    Rule("env-onednn-isa", "env.*NN_MAX_CPU_ISA", "equal", MED,
         "ONEDNN_MAX_CPU_ISA caps the instruction set oneDNN generates kernels for (torch and TensorFlow CPU ops).",
         "set ONEDNN_MAX_CPU_ISA the same on both sides", R_ONEDNN, weight=58,
         when=(AnyOf((TORCH, TENSORFLOW)),), factor="F27", when_text="matters where torch or TensorFlow is installed"),
    Rule("env-onednn-fpmath", "env.ONEDNN_DEFAULT_FPMATH_MODE", "equal", ANY,
         "ONEDNN_DEFAULT_FPMATH_MODE lets oneDNN compute float32 in bfloat16 or TF32 on CPUs that have them.",
         "set ONEDNN_DEFAULT_FPMATH_MODE the same on both sides", R_ONEDNN, weight=85,
         when=(AnyOf((TORCH, TENSORFLOW)),), factor="F27", when_text="matters where torch or TensorFlow is installed"),
    Rule("env-numpy-cpu-features", "env.NPY_*_CPU_FEATURES", "equal", MED,
         "NPY_DISABLE_CPU_FEATURES / NPY_ENABLE_CPU_FEATURES change which SIMD paths NumPy's ufuncs take.",
         "set them the same on both sides", R_NPY_SIMD, weight=55, when=(NUMPY,), factor="F28",
         when_text="matters where NumPy is installed"),
    Rule("env-numpy-promotion", "env.NPY_PROMOTION_STATE", "equal", ANY,
         "NPY_PROMOTION_STATE switches NumPy 1.24-1.26 to NEP 50 promotion, which keeps float32 where float64 "
         "was produced.",
         "set NPY_PROMOTION_STATE the same on both sides", R_NEP50, weight=80, when=(NUMPY,), factor="F35",
         when_text="matters where NumPy is installed"),
    Rule("env-nccl", "env.NCCL_*", "equal", MED,
         "NCCL_ALGO, NCCL_PROTO and channel settings change the order in which gradients are summed.",
         "set the same NCCL_ variables on both sides", R_NCCL_ENV, weight=55, when=(MULTI_GPU,), factor="F14",
         when_text="matters for multi-GPU runs"),
    Rule("env-world-size", "env.*WORLD_SIZE", "equal", ANY,
         "The world size changes the effective batch, data sharding and BatchNorm statistics.",
         "replay with the same world size and per-device batch", R_WORLD, weight=90, factor="F15"),
    Rule("env-visible-devices", "env.*_VISIBLE_DEVICES", "equal", MED,
         "Which GPUs are visible decides how many devices (and which models) the run uses.",
         "set the same CUDA_VISIBLE_DEVICES on both sides", R_CUDA_ENV, weight=60, when=(HAS_GPU,),
         factor="F15", when_text="matters where a GPU is used"),
    Rule("env-ptx-jit", "env.CUDA_FORCE_PTX_JIT", "equal", MED,
         "Forcing PTX JIT makes the driver compile kernels instead of using the shipped SASS.",
         "unset CUDA_FORCE_PTX_JIT on both sides", R_PTX, weight=50, when=(HAS_GPU,), factor="F16",
         when_text="matters where a GPU is used"),
    Rule("env-inductor", "env.TORCHINDUCTOR_*", "equal", MED,
         "Inductor settings (fast math, autotuning) change the kernels torch.compile generates.",
         "set the same TORCHINDUCTOR_ variables on both sides", R_RANDOMNESS, weight=52, when=(TORCH,),
         factor="F18", when_text="matters where torch is installed"),
    Rule("env-locale", "env.*", "equal", LOW,
         "Time zone and locale change date parsing and locale-aware sorting, not numeric kernels.",
         "set TZ=UTC and LC_ALL=C.UTF-8 on both sides", R_LOCALE, weight=15, factor="F45",
         names=("TZ", "LANG", "LC_ALL", "LC_NUMERIC")),
    Rule("env-other", "env.*", "equal", LOW,
         "An environment variable read by a numerics library (CUDA, BLAS, OpenMP, a framework) differs.",
         "set it the same on both sides", R_TORCH_ENV, weight=25, factor="F05"),

    # ---- BLAS, OpenMP and the CPU
    Rule("blas-backend", "blas.backend", "set", MED,
         "Different BLAS libraries (MKL, OpenBLAS, Accelerate) use different kernels and blocking, so linear "
         "algebra differs and iterative solvers amplify it.",
         "install the same BLAS on both sides (the same numpy/scipy wheels or conda blas variant)",
         R_BLAS_BACKEND, weight=75, factor="F21"),
    Rule("blas-openblas-version", "blas.openblas.version", "version", VERSION_MED,
         "OpenBLAS releases change kernels and their CPU dispatch tables.",
         "install the same numpy/scipy wheels (they bundle OpenBLAS)", R_OPENBLAS_ISA, weight=50, factor="F21"),
    Rule("blas-mkl-version", "blas.mkl.version", "version", VERSION_MED,
         "MKL releases change kernels; Intel guarantees reproducibility only within one version.",
         "pin mkl to the same version", R_MKL_REPRO, weight=50, factor="F24"),
    Rule("blas-other-version", "blas.*.version", "version", VERSION_LOW,
         "BLAS releases change kernels.",
         "install the same BLAS version", R_BLAS_BACKEND, weight=40, factor="F21"),
    Rule("blas-threads", "blas.*.threads", "equal", MED,
         "The BLAS splits matrix products and reductions by its thread count, so results change with it.",
         "set the variable this BLAS reads (OPENBLAS_NUM_THREADS or MKL_NUM_THREADS) to the same value on both "
         "sides", "https://github.com/scikit-learn/scikit-learn/issues/18790", weight=74, factor="F23"),
    Rule("blas-threading-layer", "blas.threading_layer", "equal", MED,
         "The BLAS threading layer (OpenMP, pthreads, TBB) schedules reductions differently.",
         "install the same BLAS build on both sides", R_MKL_REPRO, weight=50, factor="F23"),
    Rule("blas-architecture", "blas.architecture", "equal", MED,
         "OpenBLAS picked a different kernel family for the CPU (for example Haswell vs SkylakeX).",
         "set OPENBLAS_CORETYPE to the same core on both sides", R_OPENBLAS_ISA, weight=66, factor="F22"),
    Rule("torch-build-config", "build.torch.*", "equal", MED,
         "torch built with another oneDNN or threading backend (OpenMP or native) runs other CPU kernels and "
         "splits reductions differently.",
         "install the same torch build on both sides", R_CPU_THREADS, weight=55, factor="F27"),
    Rule("openmp-runtime", "openmp.runtime", "set", LOW,
         "A different OpenMP runtime (GNU, Intel, LLVM) schedules threads differently.",
         "install the same wheels on both sides", R_MKL_REPRO, weight=30, factor="F23"),
    Rule("cpu-architecture", "cpu.architecture", "equal", ANY,
         "x86-64 and ARM run entirely different kernel families in every numerics library.",
         "replay on the same CPU architecture; compare with tolerances", R_BLAS_BACKEND, weight=84, factor="F29"),
    Rule("cpu-isa", "cpu.isa", "set", MED,
         "MKL, OpenBLAS, oneDNN, NumPy and torch dispatch kernels by CPU instruction set (AVX2, FMA, AVX-512, AMX), "
         "which changes rounding.",
         "cap the ISA on both sides: MKL_CBWR=AVX2, OPENBLAS_CORETYPE=Haswell, ATEN_CPU_CAPABILITY=avx2, "
         "ONEDNN_MAX_CPU_ISA=AVX2, NPY_DISABLE_CPU_FEATURES", R_AVX512, weight=69, when=(ISA_DISPATCH,),
         otherwise="low", factor="F22/F26/F28", when_text="matters where MKL, OpenBLAS, oneDNN or NumPy dispatch on it"),
    Rule("cpu-vendor-mkl", "cpu.vendor", "equal", MED,
         "MKL picks different (historically generic) code paths on AMD than on Intel CPUs.",
         "MKL_CBWR=AVX2 on both sides (MKL_DEBUG_CPU_TYPE=5 for old MKL)", R_MKL_AMD, weight=67, when=(MKL,),
         otherwise=None, factor="F25", when_text="matters where MKL is the BLAS"),
    Rule("cpu-vendor", "cpu.vendor", "equal", LOW,
         "CPUs of another vendor have other micro-architectures and instruction sets.",
         "replay on the same CPU family", R_AVX512, weight=40, factor="F25"),
    Rule("cpu-model-no-isa", "cpu.model_name", "equal", MED,
         "Another CPU model can select other BLAS and SIMD kernels (FMA, AVX2, AVX-512); the instruction sets "
         "are not known here.",
         "replay on the same CPU model, or cap the ISA in every library", R_OPENBLAS_ISA, weight=60,
         when=(Cond("cpu.isa", "unknown"),), otherwise=None, unless=("cpu.vendor",), factor="F22/F26"),
    Rule("cpu-model", "cpu.model_name", "equal", LOW,
         "Another CPU model of the same instruction set rarely changes kernels; it can change BLAS blocking.",
         "replay on the same CPU model", R_OPENBLAS_ISA, weight=30, unless=("cpu.isa", "cpu.vendor"),
         factor="F22"),
    Rule("cpu-usable-cores", "cpu.usable_cores", "equal", LOW,
         "A different number of usable cores changes the default thread counts of BLAS and OpenMP pools.",
         "pin the thread variables (OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS)", R_MKL_REPRO,
         weight=45, unless=("blas.*.threads",), factor="F23"),
    Rule("cpu-cores", "cpu.*_cores", "equal", LOW,
         "A different core count changes the default thread counts of BLAS and OpenMP pools.",
         "pin the thread variables", R_MKL_REPRO, weight=35, unless=("blas.*.threads", "cpu.usable_cores"),
         factor="F23"),

    # ---- OS, libc and Python
    Rule("libc-version", "os.libc_version", "version", S(major="medium", minor="medium", patch="low", other="medium",
                                                          added="low", removed="low"),
         "glibc's libm changed exp/log/pow/sin/cos between releases (2.28 rewrote them), which changes "
         "code that calls libm directly.",
         "replay on the same base image (same glibc)", R_GLIBC, weight=48, factor="F32"),
    Rule("libc", "os.libc", "equal", MED,
         "musl and glibc implement libm differently.",
         "use a glibc base image on both sides", R_GLIBC, weight=50, factor="F32"),
    Rule("os-distro", "os.distro", "equal", LOW,
         "Another distribution ships other system libraries (libm, system BLAS, CUDA packages).",
         "replay on the same base image", R_GLIBC, weight=20, factor="F32"),
    Rule("os-system", "os.system", "equal", MED,
         "Another operating system means other BLAS builds, libm and compilers in every wheel.",
         "compare on the same OS", R_BLAS_BACKEND, weight=55, factor="F21"),
    Rule("python-version", "python.version", "version",
         S(major="medium", minor="medium", patch="low", local="low", other="low", added="low", removed="low"),
         "The random module's algorithms and the interpreter's numeric code may change across Python versions.",
         "use the same Python version on both sides", R_PY_RANDOM, weight=45, factor="F42"),
    Rule("python-implementation", "python.implementation", "equal", MED,
         "Another Python implementation (PyPy) has other float formatting, hashing and C extensions.",
         "use the same implementation", R_PY_RANDOM, weight=45),
    Rule("python-hash-randomization", "python.hash_randomization", "equal", MED,
         "Hash randomization decides whether set and str-keyed orders change between launches.",
         "PYTHONHASHSEED=0 in both launches", R_HASHSEED, weight=60, unless=("env.PYTHONHASHSEED",), factor="F42"),
    Rule("git-commit", "git.commit", "equal", LOW,
         "The code itself differs (another commit).",
         "check out the same commit", R_GIT, weight=30),
    Rule("git-dirty", "git.d*", "equal", LOW,
         "The working tree has different uncommitted changes.",
         "commit or stash local changes before comparing", R_GIT, weight=25),

    # ---- packages: specific ones first, then by class
    Rule("pkg-torch", "pkg.torch", "package", VERSION_HIGH,
         "PyTorch does not promise reproducible results across releases: kernels, defaults (TF32 in 1.7 and "
         "1.12) and random streams change.",
         PIN, R_RANDOMNESS, weight=90, factor="F33/F34"),
    Rule("pkg-numpy-major", "pkg.numpy", "package", S(major="high"),
         "NumPy 2 changed scalar promotion (NEP 50): float32 stays float32 where NumPy 1 gave float64.",
         PIN, R_NEP50, weight=88, otherwise=None, factor="F35"),
    Rule("pkg-numpy", "pkg.numpy", "package", S(minor="medium", patch="low", local="low", other="medium",
                                                 added="medium", removed="medium"),
         "NumPy releases change SIMD ufunc kernels and Generator random streams.",
         PIN, R_NUMPY_REL, weight=70, factor="F28/F36"),
    Rule("pkg-scikit-learn", "pkg.scikit-learn", "package", VERSION_HIGH,
         "scikit-learn releases change estimator defaults and algorithms (KMeans n_init in 1.4, RandomForest "
         "n_estimators in 0.22), listed as 'Changed models'.",
         PIN + "; save estimator.get_params() with the results", R_SKLEARN, weight=86, factor="F38"),
    Rule("pkg-scipy", "pkg.scipy", "package", S(major="high", minor="medium", patch="low", local="low", other="medium",
                                                 added="medium", removed="medium"),
         "SciPy releases change solvers, their defaults and the OpenBLAS they bundle.",
         PIN, R_SCIPY_REL, weight=72, factor="F21"),
    Rule("pkg-jax", "pkg.jax*", "package", VERSION_HIGH,
         "JAX and jaxlib releases change XLA kernels, default precision and the PRNG implementation.",
         PIN, R_JAX_CHANGELOG, weight=86, factor="F07/F37"),
    Rule("pkg-tensorflow", "pkg.tensorflow*", "package", VERSION_HIGH,
         "TensorFlow releases change kernels and defaults (TF32 from 2.4, oneDNN on by default from 2.9).",
         PIN, R_TF_REL, weight=86, factor="F33"),
    Rule("pkg-frameworks", "pkg.*", "package", VERSION_HIGH,
         "A deep-learning framework release changes kernels and defaults.",
         PIN, R_RANDOMNESS, weight=84, factor="F33",
         names=("mxnet*", "paddlepaddle*", "onnxruntime*", "keras", "tf-keras", "torchvision",
                          "torchaudio", "flax", "optax", "xgboost", "lightgbm", "catboost", "mlx")),
    Rule("pkg-cuda-wheels", "pkg.*", "package", VERSION_MED,
         "The nvidia-* wheels are the CUDA libraries torch and JAX load (cuBLAS, cuDNN, NCCL); their versions "
         "change kernels.",
         PIN, R_CUBLAS, weight=66, factor="F12/F13",
         names=("nvidia-*", "cupy*", "triton", "pytorch-triton*", "tensorrt*")),
    Rule("pkg-blas-wheels", "pkg.*", "package", VERSION_MED,
         "These packages are the BLAS/OpenMP libraries numpy, scipy and torch call.",
         PIN, R_BLAS_BACKEND, weight=64, factor="F21/F24",
         names=("mkl", "mkl-*", "intel-openmp", "openblas", "scipy-openblas*", "libopenblas", "blas",
                          "libblas", "tbb", "blis", "numexpr", "numba", "llvmlite")),
    Rule("pkg-ml-adjacent", "pkg.*", "package", VERSION_MED,
         "Libraries on the numerics path (data pipelines, model code, image decoding) change defaults and "
         "preprocessing between releases.",
         PIN, R_PINNING, weight=50, factor="F33",
         names=("pandas", "transformers", "accelerate", "diffusers", "timm", "pytorch-lightning",
                          "lightning", "datasets", "tokenizers", "sentencepiece", "pillow", "opencv-*", "librosa",
                          "statsmodels", "gensim", "einops", "safetensors", "h5py", "sympy", "networkx",
                          "scikit-image", "albumentations", "kornia", "deepspeed", "apex", "flash-attn",
                          "xformers", "bitsandbytes", "peft", "evaluate", "torchmetrics")),
    Rule("pkg-other", "pkg.*", "package", S(major="low", minor="info", patch="info", local="info", other="info",
                                             added="info", removed="info"),
         "A package outside the numerics path; it changes results only if the workload's computation uses it.",
         PIN, R_PINNING, weight=10, factor="F33"),

    # ---- context: differences that do not change numerics (host vs container always differ here)
    Rule("context", "*", "equal", INFO,
         "Not known to change numerical results; shown for context.",
         "none needed", R_SYS, weight=0),
)


def markdown_table(rules: tuple[Rule, ...] = RULES) -> str:
    """The rule table of docs/explain.md, generated so the docs cannot drift from the rules."""

    def severity(rule: Rule) -> str:
        if set(rule.severity) == {"*"}:
            return rule.severity["*"]
        return ", ".join(f"{kind}: {level}" for kind, level in rule.severity.items())

    lines = ["| rule | fact | compare | severity by kind of change | applies when | catalog |",
             "| --- | --- | --- | --- | --- | --- |"]
    for rule in rules:
        names = f" ({', '.join(rule.names[:4])}{', …' if len(rule.names) > 4 else ''})" if rule.names else ""
        when = rule.when_text or ("see conditions" if rule.when else "always")
        if rule.when:
            when += f"; else {rule.otherwise}" if rule.otherwise else "; else the next rule"
        threshold = f" {rule.threshold:g}" if rule.threshold is not None else ""
        lines.append(f"| `{rule.id}` | `{rule.fact}{names}` | {rule.compare}{threshold} | {severity(rule)} | {when} "
                     f"| {rule.factor or '-'} |")
    return "\n".join(lines) + "\n"
