"""The explain rules for measured kernel results (``fingerprint.<library>.<kernel>``): data, tried first.

Why first: every other rule reads a claim (a version, a flag, a CPU feature) and says what it could change;
a fingerprint that differs is a measurement that the two environments compute different bits. Its severity
follows the size of the difference (``envcap.explain.fingerprints``): values that moved beyond rounding rank
high, a few ULPs medium, and a kernel measured on one side only is information.
"""

from __future__ import annotations

from envcap.explain.rules._common import (
    R_AVX512,
    R_CUBLAS,
    R_NPY_SIMD,
    R_OPENBLAS_ISA,
    R_RANDOMNESS,
    Rule,
    S,
)

MEASURED = S(values="high", rounding="medium", threads="medium", added="info", removed="info")

FINGERPRINT_RULES: tuple[Rule, ...] = (
    Rule("fingerprint-gpu", "fingerprint.*", "fingerprint", MEASURED,
         "A GPU kernel computes different bits here: another GPU model or SM count (other cuBLAS/cuDNN kernels and "
         "CUDA random streams), other CUDA libraries, or TF32 on one side.",
         "replay on the same GPU model with the same CUDA wheels; NVIDIA_TF32_OVERRIDE=0 on both sides "
         "(envcap replay --match sets the original's TF32 settings)", R_CUBLAS, weight=100,
         names=("torch.cuda_*", "torch.cudnn_*"), factor="F01/F02/F03"),
    Rule("fingerprint-rng", "fingerprint.*", "fingerprint", MEASURED,
         "A seeded random stream draws other numbers here, so everything seeded from it (initial weights, "
         "shuffles, samples) differs.",
         "install the same numpy/torch version on both sides (their stream algorithms change between releases)",
         R_RANDOMNESS, weight=99, names=("*.random_*", "*.rng_*"), factor="F34/F37"),
    Rule("fingerprint-blas", "fingerprint.*", "fingerprint", MEASURED,
         "Linear algebra computes different bits here: another BLAS/LAPACK kernel family (CPU dispatch, "
         "OPENBLAS_CORETYPE, MKL_ENABLE_INSTRUCTIONS), another BLAS version, or another thread count in a "
         "threaded kernel.",
         "install the same numpy/scipy/torch wheels and cap the BLAS to the same core on both sides "
         "(envcap replay --match sets OPENBLAS_CORETYPE and the thread counts of the original)", R_OPENBLAS_ISA,
         weight=98, names=("*.gemm_*", "*.dot_*", "*.solve_*", "*.svd_*", "*.eigh_*", "*.expm_*", "*.matmul_*"),
         factor="F21/F22/F23"),
    Rule("fingerprint-simd", "fingerprint.*", "fingerprint", MEASURED,
         "Element-wise math or a reduction computes different bits here: NumPy or torch dispatched another SIMD "
         "path (AVX-512 against AVX2), or libm differs.",
         "cap the SIMD dispatch on both sides (NPY_DISABLE_CPU_FEATURES, ATEN_CPU_CAPABILITY; envcap replay "
         "--match derives them from the original CPU)", R_NPY_SIMD, weight=98,
         names=("*.exp_*", "*.log_*", "*.power_*", "*.sin_*", "*.tanh_*", "*.sum_*", "*.cumsum_*", "*.softmax_*",
                "*.layer_norm_*", "*.special_*"), factor="F22/F28"),
    Rule("fingerprint-other", "fingerprint.*", "fingerprint", MEASURED,
         "A measured kernel computes different bits in the two environments.",
         "make the library versions, CPU dispatch and thread counts the same (envcap replay --match)", R_AVX512,
         weight=97),
)
