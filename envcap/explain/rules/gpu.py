"""The explain rules for the GPU and the CUDA stack: data, tried in order (see ``_common`` for the rule types)."""

from __future__ import annotations

from envcap.explain.rules._common import (
    ANY,
    DISABLE_TF32,
    HAS_GPU,
    LOW,
    MED,
    MULTI_GPU,
    R_CUBLAS,
    R_CUDNN,
    R_GPU_RNG,
    R_NCCL_PREC,
    R_PTX,
    R_TF32,
    R_WORLD,
    TF32_NOT_FORCED_OFF,
    TF32_ON,
    VERSION_MED,
    Rule,
    S,
)

GPU_RULES: tuple[Rule, ...] = (
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

)
