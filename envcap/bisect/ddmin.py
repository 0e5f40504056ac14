"""Delta debugging (Zeller and Hildebrandt's ddmin): the smallest set of changes that still turns A into B.

Why ddmin and not a binary search: differences interact (scikit-learn 1.5 may only change the result together
with a new NumPy), a run can be neither A's nor B's (a partial set that crashes or prints something third),
and ddmin handles both: it needs only that applying everything gives B and applying nothing gives A, and it
returns a set from which no single change can be dropped without losing B's outputs (1-minimal).

Pure: the test is a callable; ``envcap.bisect.session`` runs the workload behind it, tests here use tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")
Outcome = Literal["A", "B", "other"]  # A's outputs, B's outputs, or neither (a crash, a third result, unstable)


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """``parts`` contiguous chunks of nearly equal size, in order."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return [c for c in chunks if c]


def ddmin(changes: Sequence[T], test: Callable[[frozenset[T]], Outcome]) -> tuple[T, ...]:
    """A 1-minimal subset of ``changes`` whose test is "B", given ``test(all) == "B"`` and ``test(empty) == "A"``.

    Tries each chunk alone, then each complement, doubling the granularity when neither reproduces B; an
    "other" outcome counts as not reproducing B (it is never taken as evidence either way).
    """
    current = list(changes)
    granularity = 2
    while len(current) >= 2:
        chunks = split(current, granularity)
        reduced = False
        for chunk in chunks:
            if test(frozenset(chunk)) == "B":
                current, granularity, reduced = chunk, 2, True
                break
        if not reduced and len(chunks) > 2:
            for chunk in chunks:
                complement = [c for c in current if c not in chunk]
                if test(frozenset(complement)) == "B":
                    current, granularity, reduced = complement, max(granularity - 1, 2), True
                    break
        if not reduced:
            if granularity >= len(current):
                break
            granularity = min(len(current), 2 * granularity)
    return tuple(current)


__all__ = ["Outcome", "ddmin", "split"]
