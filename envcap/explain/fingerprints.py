"""Comparing two measured kernel results: bit for bit, then by units in the last place (ULP).

Why its own comparison: every other fact is a claim (a version, a flag) and the rules say what it *could*
change; a fingerprint is a measurement, so a difference is evidence. How large it is decides what it means:
a few ULPs are another SIMD path or summation order, a different random stream or algorithm moves values
far beyond rounding. The two sides' samples sit at the same positions of the flattened result, so they
pair element by element.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

from envcap.explain.compare import Change
from envcap.lock import Fingerprint

FLOAT_FORMATS = {"float16": ("e", 16), "float32": ("f", 32), "float64": ("d", 64)}
INT_FORMATS = {"int8": "b", "uint8": "B", "int16": "h", "int32": "i", "int64": "q", "uint32": "I", "uint64": "Q",
               "bool": "?"}
EPSILON = {"float16": 2.0 ** -10, "float32": 2.0 ** -23, "float64": 2.0 ** -52}
# Below this many epsilons of the result's own scale a difference is rounding (another kernel, another
# summation order); above it the values moved (another algorithm, another random stream, a precision mode).
ROUNDING_LIMIT = 1024.0

KernelChange = Literal["rounding", "values", "threads", "added", "removed"]


@dataclass(frozen=True)
class KernelValue:
    """A fingerprint as a fact value: equal when the bits are; shown as its short hash."""

    fingerprint: Fingerprint

    def __str__(self) -> str:
        count = self.fingerprint.threads
        threads = f" ({count} thread{'s' if count != 1 else ''})" if count else ""
        return f"{self.fingerprint.sha256[:12]}{threads}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelValue) and other.fingerprint.sha256 == self.fingerprint.sha256

    def __hash__(self) -> int:
        return hash(self.fingerprint.sha256)

    def to_json(self) -> dict[str, object]:
        fp = self.fingerprint
        return {"sha256": fp.sha256, "dtype": fp.dtype, "shape": list(fp.shape), "threads": fp.threads}


@dataclass(frozen=True)
class Distance:
    """How far two results are apart, over the values both samples hold."""

    compared: int  # values paired (0: the samples cannot be paired)
    differing: int
    max_ulp: int | None  # None for integer results
    scaled: float | None  # the largest difference in epsilons of the larger side's largest magnitude
    whole: bool  # the samples are the whole results (not a subset)

    def text(self) -> str:
        if self.compared == 0:
            return "the results cannot be paired value by value"
        if self.differing == 0:
            return f"the {self.compared} sampled values are equal; the difference lies outside them"
        counted = f"{self.differing} of {self.compared}{'' if self.whole else ' sampled'} values differ"
        if self.max_ulp is None:
            return counted
        return f"largest ULP distance {self.max_ulp:,} ({counted})"


def _values(fp: Fingerprint) -> list[float] | list[int] | None:
    try:
        raw = bytes.fromhex(fp.sample)
    except ValueError:
        return None
    if fp.dtype in FLOAT_FORMATS:
        code, bits = FLOAT_FORMATS[fp.dtype]
        count = len(raw) // (bits // 8)
        return list(struct.unpack(f"<{count}{code}", raw[: count * bits // 8]))
    if fp.dtype in INT_FORMATS:
        code = INT_FORMATS[fp.dtype]
        size = struct.calcsize("<" + code)
        count = len(raw) // size
        return [int(v) for v in struct.unpack(f"<{count}{code}", raw[: count * size])]
    return None


def _ordered(value: float, dtype: str) -> int:
    """The float's bits as an integer that orders like the floats (so ULPs are a subtraction)."""
    code, bits = FLOAT_FORMATS[dtype]
    unsigned = {"e": "H", "f": "I", "d": "Q"}[code]
    raw = int(struct.unpack(f"<{unsigned}", struct.pack(f"<{code}", value))[0])
    sign = 1 << (bits - 1)
    return -(raw & (sign - 1)) if raw & sign else raw


def ulp_distance(a: float, b: float, dtype: str) -> int:
    if math.isnan(a) or math.isnan(b):
        return 0 if math.isnan(a) and math.isnan(b) else 1 << (FLOAT_FORMATS[dtype][1] - 1)
    return abs(_ordered(a, dtype) - _ordered(b, dtype))


def distance(a: Fingerprint, b: Fingerprint) -> Distance:
    """Pairs the two samples (same dtype, shape and sampling) and measures them."""
    va, vb = _values(a), _values(b)
    if (va is None or vb is None or a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape)
            or a.sampled != b.sampled or len(va) != len(vb)):
        return Distance(0, 0, None, None, whole=False)
    pairs = list(zip(va, vb, strict=True))
    differing = sum(1 for x, y in pairs if x != y and not (x != x and y != y))
    if a.dtype not in FLOAT_FORMATS:
        return Distance(len(pairs), differing, None, None, whole=not a.sampled)
    max_ulp = max((ulp_distance(float(x), float(y), a.dtype) for x, y in pairs), default=0)
    finite = [(float(x), float(y)) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    scale = max((max(abs(x), abs(y)) for x, y in finite), default=0.0)
    largest = max((abs(x - y) for x, y in finite), default=0.0)
    scaled = largest / (EPSILON[a.dtype] * scale) if scale > 0 else (0.0 if largest == 0 else math.inf)
    return Distance(len(pairs), differing, max_ulp, scaled, whole=not a.sampled)


def compare_kernels(a: object, b: object) -> Change | None:
    """The ``fingerprint`` comparison of explain's rules: None when the bits agree."""
    fa = a.fingerprint if isinstance(a, KernelValue) else None
    fb = b.fingerprint if isinstance(b, KernelValue) else None
    if fa is None and fb is None:
        return None
    if fa is None:
        return Change("added", "measured in B only (the library is missing from A, or the kernel failed there)", 0.3)
    if fb is None:
        return Change("removed", "measured in A only (the library is missing from B, or the kernel failed there)", 0.3)
    if fa.sha256 == fb.sha256:
        return None
    measured = distance(fa, fb)
    if fa.threads != fb.threads:
        return Change("threads", f"the kernel computes different bits at {fa.threads} and {fb.threads} threads; "
                                 f"{measured.text()}", 0.6)
    if measured.compared and measured.max_ulp is not None and measured.scaled is not None \
            and measured.scaled <= ROUNDING_LIMIT:
        return Change("rounding", f"measured: the kernel computes different bits, {measured.text()}", 0.7)
    return Change("values", f"measured: the kernel computes different values, {measured.text()}", 1.0)


def kernel_values(fingerprints: dict[str, Fingerprint]) -> dict[str, KernelValue]:
    """``fingerprint.<library>.<kernel>`` facts of one snapshot."""
    return {f"fingerprint.{name}": KernelValue(fp) for name, fp in fingerprints.items()}


__all__ = ["Distance", "KernelChange", "KernelValue", "compare_kernels", "distance", "kernel_values",
           "ulp_distance"]
