"""A small torch, over NumPy, with a fake CUDA device: enough of the API for the fingerprint's kernels.

Why: this machine has no GPU, and the GPU kernels (cuBLAS with TF32 on and off, cuDNN convolution, the CUDA
RNG) must still be exercised through the same interface as the real ones. The fake rounds matmul inputs to
TF32's 10-bit mantissa when TF32 is allowed on the "GPU", refuses a convolution unless cuDNN's algorithm
choice is pinned, and records the flags it saw, so tests can check what the kernels set and put back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FakeDtype:
    name: str

    def __str__(self) -> str:
        return f"torch.{self.name}"


class FakeTensor:
    def __init__(self, array: Any, device: str = "cpu", torch: FakeTorch | None = None) -> None:
        self.array = np.asarray(array)
        self.device = device
        self.torch = torch

    @property
    def dtype(self) -> FakeDtype:
        return FakeDtype(self.array.dtype.name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def _new(self, array: Any) -> FakeTensor:
        return FakeTensor(array, self.device, self.torch)

    def reshape(self, *shape: int) -> FakeTensor:
        return self._new(self.array.reshape(*shape))

    def to(self, device: str) -> FakeTensor:
        return FakeTensor(self.array, device, self.torch)

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return FakeTensor(self.array, "cpu", self.torch)

    def contiguous(self) -> FakeTensor:
        return self._new(np.ascontiguousarray(self.array))

    def numpy(self) -> Any:
        if self.torch is not None and not self.torch.numpy_available:
            raise RuntimeError("Numpy is not available")
        if self.device != "cpu":
            raise TypeError("can't convert cuda:0 device type tensor to numpy")
        return self.array

    def tolist(self) -> Any:
        return self.array.tolist()

    def __mul__(self, other: float) -> FakeTensor:
        return self._new((self.array * np.asarray(other, dtype=self.array.dtype)).astype(self.array.dtype))


def _tf32(array: Any) -> Any:
    """float32 rounded toward zero to TF32's 10 mantissa bits, as the tensor cores read it."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFFE000)
    return bits.view(np.float32)


@dataclass
class FakeGenerator:
    device: str = "cpu"
    seed: int = 0

    def manual_seed(self, seed: int) -> FakeGenerator:
        self.seed = seed
        self.state = np.random.default_rng(seed)
        return self


@dataclass
class FakeTorch:
    """``cuda``: whether a fake GPU is there; ``noisy``: matmul adds run-to-run noise (a flaky kernel)."""

    cuda_present: bool = True
    numpy_available: bool = True
    noisy: bool = False
    threads: int = 4
    __version__: str = "9.9.9+fake"
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.float32 = FakeDtype("float32")
        self.float64 = FakeDtype("float64")
        matmul = SimpleNamespace(allow_tf32=False)
        self.backends = SimpleNamespace(cuda=SimpleNamespace(matmul=matmul),
                                        cudnn=SimpleNamespace(allow_tf32=True, benchmark=True, deterministic=False))
        self.cuda = SimpleNamespace(is_available=lambda: self.cuda_present, get_device_name=lambda i: "Fake GPU",
                                    synchronize=lambda: None)
        self.nn = SimpleNamespace(functional=SimpleNamespace(conv2d=self._conv2d, layer_norm=self._layer_norm))
        self._noise = np.random.default_rng()

    # -- the API the kernels use
    def get_num_threads(self) -> int:
        return self.threads

    def tensor(self, values: Any, dtype: FakeDtype) -> FakeTensor:
        return FakeTensor(np.array(values, dtype=dtype.name), "cpu", self)

    def Generator(self, device: str = "cpu") -> FakeGenerator:  # noqa: N802 - torch's spelling
        return FakeGenerator(device)

    def matmul(self, a: FakeTensor, b: FakeTensor) -> FakeTensor:
        x, y = a.array, b.array
        if a.device == "cuda":
            self.seen.append({"kernel": "matmul", "allow_tf32": self.backends.cuda.matmul.allow_tf32})
            if self.backends.cuda.matmul.allow_tf32:
                x, y = _tf32(x), _tf32(y)
        out = np.matmul(x, y)
        if self.noisy:
            out = out + self._noise.standard_normal(out.shape).astype(out.dtype) * out.dtype.type(1e-3)
        return FakeTensor(out, a.device, self)

    def _conv2d(self, x: FakeTensor, w: FakeTensor, padding: int = 0) -> FakeTensor:
        cudnn = self.backends.cudnn
        if x.device == "cuda":
            self.seen.append({"kernel": "conv2d", "benchmark": cudnn.benchmark, "deterministic": cudnn.deterministic})
            if cudnn.benchmark or not cudnn.deterministic:
                raise RuntimeError("fake cuDNN: the algorithm choice is not pinned")
        summed = x.array.sum(axis=1, keepdims=True) * w.array.sum()
        return FakeTensor(summed.astype(x.array.dtype), x.device, self)

    def _layer_norm(self, x: FakeTensor, shape: tuple[int, ...]) -> FakeTensor:
        a = x.array
        out = (a - a.mean(axis=-1, keepdims=True)) / np.sqrt(a.var(axis=-1, keepdims=True) + np.float32(1e-5))
        return FakeTensor(out.astype(a.dtype), x.device, self)

    def softmax(self, x: FakeTensor, dim: int) -> FakeTensor:
        e = np.exp(x.array - x.array.max(axis=dim, keepdims=True))
        return FakeTensor((e / e.sum(axis=dim, keepdims=True)).astype(x.array.dtype), x.device, self)

    def randn(self, n: int, generator: FakeGenerator, device: str = "cpu") -> FakeTensor:
        return FakeTensor(generator.state.standard_normal(n).astype(np.float32), device, self)

    def rand(self, n: int, generator: FakeGenerator) -> FakeTensor:
        return FakeTensor(generator.state.random(n).astype(np.float32), "cpu", self)

    def cat(self, parts: list[FakeTensor]) -> FakeTensor:
        return FakeTensor(np.concatenate([p.array for p in parts]), parts[0].device, self)
