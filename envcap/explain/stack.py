"""Is the software stack the same: every package, Python, the BLAS libraries and (on a GPU) CUDA's?

Why in explain: it is a summary of the same facts the rules compare (``facts.facts_of``), for the
line a replay report opens with; a second, hand-written walk over the snapshots would drift from
what the ranked findings say.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from envcap.explain.compare import show
from envcap.explain.facts import facts_of
from envcap.lock import Snapshot

STACK_FACTS = ("pkg.*", "python.version", "blas.*.version")
# CUDA's libraries count only where a GPU could load them; pip's CUDA wheels are packages already.
GPU_STACK_FACTS = ("cuda.runtime", "cuda.cudnn", "cuda.nccl", "cuda.cublas")


def stack_verdict(a: Snapshot, b: Snapshot | None) -> tuple[bool | None, str]:
    """(identical?, a sentence): None when either side has no probe facts to compare."""
    if a.python is None or b is None or b.python is None:
        return None, "the snapshot or the replay has no probe facts"
    fa, fb = facts_of(a), facts_of(b)
    gpu_run = bool((a.gpu and a.gpu.devices) or (b.gpu and b.gpu.devices))
    patterns = STACK_FACTS + (GPU_STACK_FACTS if gpu_run else ())
    keys = sorted(k for k in set(fa.values) | set(fb.values) if any(fnmatchcase(k, p) for p in patterns))
    differing = [k for k in keys if fa.get(k) != fb.get(k)]
    if not differing:
        packages = sum(1 for k in keys if k.startswith("pkg."))
        return True, f"{packages} distributions, Python {a.python.version}, CUDA and BLAS libraries match"
    shown = ", ".join(f"{k} {_or_absent(fa.get(k))} → {_or_absent(fb.get(k))}" for k in differing[:5])
    more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
    return False, shown + more


def _or_absent(value: object) -> str:
    return "absent" if value is None else show(value)
