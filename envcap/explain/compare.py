"""The four ways a rule compares one fact between two environments.

Why a closed set: a rule names its comparison by string (``"version"``), so the rule table stays
plain data that can be read, tested and printed; the code that knows how to compare lives here once.

- ``equal``: any difference counts (``changed``; ``added``/``removed`` when one side has no value).
- ``version`` / ``package``: which part of the version changed (``major``, ``minor``, ``patch``,
  ``local`` for a build tag such as ``+cu121``, ``other`` when a version cannot be parsed), and the
  direction. ``version`` compares at the precision both sides state ("11.1" equals "11.1.105": a
  report that prints two parts says nothing about the third); ``package`` compares exactly.
- ``set``: members added and removed (CPU feature flags, BLAS backends).
- ``threshold``: whether the two values fall on different sides of a limit (compute capability 8.0,
  where TF32 starts); a plain numeric difference is ``changed``.
- ``fingerprint``: two measured kernel results (``rounding``, ``values``, ``threads``; see
  ``envcap.explain.fingerprints``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

COMPARISONS = ("equal", "version", "package", "set", "threshold", "fingerprint")


@dataclass(frozen=True)
class Change:
    """What differs: a kind that selects the rule's severity, and a short text for the report."""

    kind: str
    text: str
    magnitude: float = 0.0  # 0..1, orders findings of one rule (a major change before a patch)


def show(value: Any) -> str:
    """A value as a person reads it; ``None`` is "none" (unset, not installed, no GPU)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (frozenset, set, tuple, list)):
        return ", ".join(sorted(str(v) for v in value)) or "none"
    return str(value)


def parse_version(value: Any) -> Version | None:
    if value is None:
        return None
    try:
        return Version(str(value).strip())
    except InvalidVersion:
        return None


def compare(how: str, a: Any, b: Any, threshold: float | None = None) -> Change | None:
    """The change from ``a`` to ``b``, or None when the rule sees no difference."""
    if how == "equal":
        return _equal(a, b)
    if how == "version":
        return _version(a, b, tolerate_precision=True)
    if how == "package":
        return _version(a, b, tolerate_precision=False)
    if how == "set":
        return _set(a, b)
    if how == "threshold":
        return _threshold(a, b, threshold)
    if how == "fingerprint":  # measured kernel results: bits, then ULPs (explain.fingerprints)
        from envcap.explain.fingerprints import compare_kernels

        return compare_kernels(a, b)
    raise ValueError(f"unknown comparison {how!r}; expected one of {', '.join(COMPARISONS)}")


def _equal(a: Any, b: Any) -> Change | None:
    if a == b:
        return None
    # The report shows both values beside the finding; the text adds nothing for a plain difference.
    if a is None:
        return Change("added", "", 0.5)
    if b is None:
        return Change("removed", "", 0.5)
    return Change("changed", "", 0.5)


PARTS = ("major", "minor", "patch")


def _version(a: Any, b: Any, *, tolerate_precision: bool) -> Change | None:
    if a == b:
        return None
    if a is None:
        return Change("added", f"not installed in A, {b} in B", 0.6)
    if b is None:
        return Change("removed", f"{a} in A, not installed in B", 0.6)
    va, vb = parse_version(a), parse_version(b)
    if va is None or vb is None:
        return Change("other", f"{a} → {b}", 0.5)
    ra, rb = va.release, vb.release
    if tolerate_precision:
        n = min(len(ra), len(rb))
        ra, rb = ra[:n], rb[:n]
    else:
        n = max(len(ra), len(rb))
        ra, rb = ra + (0,) * (n - len(ra)), rb + (0,) * (n - len(rb))
    direction = "upgrade" if vb > va else "downgrade"
    for index, (pa, pb) in enumerate(zip(ra, rb, strict=False)):
        if pa != pb:
            part = PARTS[min(index, 2)]
            return Change(part, f"{part} {direction} {a} → {b}", 1.0 - 0.3 * min(index, 2))
    if va.local != vb.local:
        return Change("local", f"build {va.local or 'without tag'} → {vb.local or 'without tag'} ({a} → {b})", 0.4)
    if (va.pre, va.post, va.dev) != (vb.pre, vb.post, vb.dev):
        if tolerate_precision and (va.pre, va.post, va.dev) == (None, None, None) and len(va.release) < len(vb.release):
            return None
        return Change("patch", f"pre/post-release {direction} {a} → {b}", 0.3)
    return None  # equal at the precision both sides state


def _as_set(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, Iterable):
        return frozenset(str(v) for v in value)
    return frozenset((str(value),))


def _set(a: Any, b: Any) -> Change | None:
    sa, sb = _as_set(a), _as_set(b)
    added, removed = sorted(sb - sa), sorted(sa - sb)
    if not added and not removed:
        return None
    parts = []
    if added:
        parts.append("only B has " + ", ".join(added))
    if removed:
        parts.append("only A has " + ", ".join(removed))
    kind = "changed" if added and removed else "added" if added else "removed"
    return Change(kind, "; ".join(parts), min(1.0, 0.4 + 0.1 * (len(added) + len(removed))))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        version = parse_version(value)
        if version is None or not version.release:
            return None
        major, minor = (version.release + (0,))[:2]
        return major + minor / 10.0


def _threshold(a: Any, b: Any, limit: float | None) -> Change | None:
    if a == b:
        return None
    na, nb = _number(a), _number(b)
    if na is None or nb is None:
        return _equal(a, b)
    if na == nb:
        return None
    if limit is not None and (na >= limit) != (nb >= limit):
        above = "B" if nb >= limit else "A"
        return Change("crossed", f"{show(a)} → {show(b)} (only {above} is at or above {limit:g})", 1.0)
    return Change("changed", f"{show(a)} → {show(b)}", 0.5)
