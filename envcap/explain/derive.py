"""Facts a report implies but does not print, filled in and marked as derived.

Why: a pasted ``nvidia-smi -q`` names the GPU but not its compute capability; a ``pip freeze``
names ``torch==2.1.0+cu121`` but not the CUDA it was built for; nobody's report says whether TF32
was on. The rules need those facts, so they are inferred here from published tables, and each one is
listed in ``Snapshot.derived`` so the report can say which values were read and which inferred.
Nothing is guessed: a name that matches no table entry, or a version without a build tag, stays
unknown.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from envcap.explain.compare import parse_version
from envcap.lock import CudaStack, Snapshot, TorchBuild

CC_TABLE_URL = "https://developer.nvidia.com/cuda-gpus"

# NVIDIA's published compute capabilities (CC_TABLE_URL), matched on the upper-cased product name.
# Order matters: the first match wins, so specific names come before the families that contain them.
# Ambiguous names (a bare "TITAN X": the GeForce GTX one is Maxwell 5.2, the NVIDIA one Pascal 6.1) stay unknown.
COMPUTE_CAPABILITY: tuple[tuple[str, str], ...] = (
    (r"\bGH200\b|\bH200\b|\bH100\b|\bH800\b|\bH20\b", "9.0"),
    (r"\bGB200\b|\bB200\b|\bB100\b", "10.0"),
    (r"RTX PRO \d+ BLACKWELL|\bRTX 50[5-9]0\b", "12.0"),
    (r"\bRTX \d{4} ADA\b|\bL40S?\b|\bL4\b|\bL20\b|\bRTX 40[5-9]0\b", "8.9"),
    (r"\bORIN\b", "8.7"),
    (r"\bA100\b|\bA800\b|\bA30\b", "8.0"),
    (r"\bA10G?\b|\bA40\b|\bA16\b|\bA2\b|\bRTX A\d{4}\b|\bRTX 30[5-9]0\b", "8.6"),
    (r"\bXAVIER\b", "7.2"),
    (r"\bT4\b|\bRTX 20[6-8]0\b|\bGTX 16[5-6]0\b|\bTITAN RTX\b|\bQUADRO RTX [3-8]000\b|\bT(?:400|600|1000|1200)\b",
     "7.5"),
    (r"\bV100\b|\bTITAN V\b|\bGV100\b", "7.0"),
    (r"\bP100\b", "6.0"),
    (r"\bP40\b|\bP4\b|\bGTX 10[5-8]0\b|\bTITAN XP\b|\bTITAN X \(PASCAL\)|\bQUADRO P\d{3,4}\b", "6.1"),
    (r"\bGTX 9[5-8]0\b|\bGTX TITAN X\b|\bM40\b|\bM60\b|\bM6000\b", "5.2"),
    (r"\bGTX 750\b|\bM10\b", "5.0"),
    (r"\bK80\b", "3.7"),
    (r"\bK40\b|\bK20X?\b|\bGTX 780\b|\bGTX TITAN(?: BLACK| Z)?$", "3.5"),
)
_CC_PATTERNS = tuple((re.compile(pattern), cc) for pattern, cc in COMPUTE_CAPABILITY)

TF_TF32_KEY = "tensorflow.tensor_float_32_execution"


def compute_capability(name: str | None) -> str | None:
    """The compute capability NVIDIA publishes for a product name, or None when not certain."""
    if not name:
        return None
    upper = " ".join(name.upper().replace("-", " ").split())
    for pattern, cc in _CC_PATTERNS:
        if pattern.search(upper):
            return cc
    return None


def cuda_from_local_tag(version: str | None) -> tuple[bool, str | None]:
    """``2.1.0+cu121`` -> (True, "12.1"); ``+cpu`` -> (True, None); no tag -> (False, None)."""
    parsed = parse_version(version)
    if parsed is None or parsed.local is None:
        return False, None
    local = parsed.local
    if local == "cpu":
        return True, None
    match = re.fullmatch(r"cu(\d{2,3})", local)
    if not match:
        return False, None
    digits = match.group(1)
    return True, f"{digits[:-1]}.{digits[-1]}"


def torch_tf32_defaults(version: str | None) -> dict[str, Any]:
    """The TF32 switches a fresh interpreter has for a torch version (PyTorch's CUDA notes).

    TF32 arrived in 1.7 on for both matmul and cuDNN; 1.12 turned it off for matmul
    (``float32_matmul_precision`` 'highest') and left it on for cuDNN convolutions.
    """
    parsed = parse_version(version)
    if parsed is None:
        return {}
    release = parsed.release + (0, 0)
    major_minor = release[:2]
    if major_minor < (1, 7):
        return {"torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": False}
    if major_minor < (1, 12):
        return {"torch.backends.cuda.matmul.allow_tf32": True, "torch.backends.cudnn.allow_tf32": True}
    return {"torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": True,
            "torch.float32_matmul_precision": "highest"}


def tensorflow_tf32_default(version: str | None) -> bool | None:
    """TensorFlow enables TF32 by default from 2.4 (``enable_tensor_float_32_execution`` docs)."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    return (parsed.release + (0, 0))[:2] >= (2, 4)


def torch_version(snapshot: Snapshot) -> str | None:
    dist = snapshot.distribution("torch")
    if dist:
        return dist.version
    if snapshot.cuda and snapshot.cuda.torch and snapshot.cuda.torch.version:
        return snapshot.cuda.torch.version
    if snapshot.torch_runtime and snapshot.torch_runtime.version:
        return snapshot.torch_runtime.version
    return None


def enrich(snapshot: Snapshot) -> Snapshot:
    """Fills in what the snapshot implies, marking each filled fact in ``derived``; idempotent."""
    derived = list(snapshot.derived)
    changes: dict[str, Any] = {}

    gpu = snapshot.gpu
    if gpu and gpu.devices:
        devices = []
        for dev in gpu.devices:
            cc = None if dev.compute_capability else compute_capability(dev.name)
            if cc:
                dev = replace(dev, compute_capability=cc)
                derived.append(f"gpu.devices[{dev.index}].compute_capability")
            devices.append(dev)
        if devices != list(gpu.devices):
            changes["gpu"] = replace(gpu, devices=tuple(devices))

    version = torch_version(snapshot)
    build = snapshot.cuda.torch if snapshot.cuda else None
    if version and (build is None or (build.cuda is None and build.version is None)):
        tagged, cuda = cuda_from_local_tag(version)
        if tagged:
            stack = snapshot.cuda or CudaStack()
            changes["cuda"] = replace(stack, torch=TorchBuild(version=version, cuda=cuda))
            derived.append("cuda.torch.cuda")

    if snapshot.precision is None:
        defaults = dict(torch_tf32_defaults(version)) if version else {}
        tf = snapshot.distribution("tensorflow") or snapshot.distribution("tensorflow-gpu") \
            or snapshot.distribution("tensorflow-cpu")
        tf32 = tensorflow_tf32_default(tf.version) if tf else None
        if tf32 is not None:
            defaults[TF_TF32_KEY] = tf32
        if defaults:
            changes["precision"] = defaults
            derived.extend(f"precision.{key}" for key in sorted(defaults))

    if not changes:
        return snapshot
    return replace(snapshot, derived=tuple(dict.fromkeys(derived)), **changes)


def cudnn_from_int(value: str | int | None) -> str | None:
    """torch reports cuDNN as an integer: 8902 is 8.9.2, 90100 is 9.1.0 (cuDNN 9 widened the fields)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit():
        return text or None
    number = int(text)
    if number >= 10000:
        return f"{number // 10000}.{(number % 10000) // 100}.{number % 100}"
    return f"{number // 1000}.{(number % 1000) // 100}.{number % 100}"
