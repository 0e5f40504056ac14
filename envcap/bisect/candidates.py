"""What differs between A and B, sorted into what a bisect can vary here and what it cannot.

Three kinds can be varied on this machine: package versions (an image of A's lock with some of B's
releases), environment variables (set or unset at run time, no rebuild), and, through the same plan as
``replay --match``, each side's thread counts and ISA caps (also variables). Everything else explain finds
(the GPU, the driver, the Python version that decides the base image, the CPU itself) is listed as untested,
with its severity, and never guessed at.

Differences are grouped where they only make sense together (every thread-count variable is one group,
every ISA cap another), and ddmin works on the groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from envcap.emit.plan import HOST_ONLY_ENV, REDACTED
from envcap.lock import Cpu, Distribution, Snapshot
from envcap.replay.match import ISA_VARIABLES, THREAD_VARIABLES
from envcap.replay.match import plan as match_plan

DifferenceKind = Literal["package", "env", "threads", "isa"]
THREAD_NAMES = (*THREAD_VARIABLES, "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS", "VECLIB_MAXIMUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
ISA_NAMES = (*ISA_VARIABLES, "MKL_CBWR", "DNNL_MAX_CPU_ISA", "NPY_ENABLE_CPU_FEATURES", "MKL_DEBUG_CPU_TYPE")
# Facts a bisect varies through the thread variables (with --match, each side's default counts are set).
HARDWARE = ("gpu.", "cpu.", "cuda.", "os.")  # listed as untested even where explain rates them as context
THREAD_FACTS = ("blas.*.threads", "torch.num_threads", "cpu.usable_cores", "cpu.logical_cores", "cpu.physical_cores")


@dataclass(frozen=True)
class Difference:
    fact: str  # pkg.scikit-learn, env.OMP_NUM_THREADS
    a: str | None  # None: absent on that side (not installed, unset)
    b: str | None
    kind: DifferenceKind

    @property
    def name(self) -> str:
        return self.fact.split(".", 1)[1]


@dataclass(frozen=True)
class Group:
    """What ddmin applies or not, as one: a package, a variable, or all thread counts or ISA caps."""

    label: str
    differences: tuple[Difference, ...]


@dataclass(frozen=True)
class Untested:
    fact: str
    a: str
    b: str
    severity: str
    why: str


@dataclass(frozen=True)
class Candidates:
    groups: tuple[Group, ...]
    untested: tuple[Untested, ...]
    env_a: dict[str, str]  # the variables A's runs get (A's lock, and its matched threads and caps)
    env_b: dict[str, str]
    baked_a: frozenset[str]  # variables A's image sets itself (ENV): unsetting one needs `env -u`
    matched: bool


def run_env(snapshot: Snapshot, host: Cpu | None, match: bool) -> dict[str, str]:
    """The variables a run of this side gets: its lock's (not the device choice, never a redacted one), then,
    with ``match``, the thread counts and ISA caps of its original machine."""
    env = {k: v for k, v in (snapshot.env or {}).items() if k not in HOST_ONLY_ENV and REDACTED not in v}
    if match:
        env |= match_plan(snapshot, host).env
    return env


def _kind(variable: str) -> DifferenceKind:
    if variable in THREAD_NAMES or variable.endswith("_NUM_THREADS"):
        return "threads"
    return "isa" if variable in ISA_NAMES else "env"


def package_differences(a: Snapshot, b: Snapshot) -> tuple[list[Difference], list[Untested]]:
    ours: dict[str, Distribution] = {d.name: d for d in a.distributions}
    theirs: dict[str, Distribution] = {d.name: d for d in b.distributions}
    found, untested = [], []
    for name in sorted(set(ours) | set(theirs)):
        da, db = ours.get(name), theirs.get(name)
        va, vb = (da.version if da else None), (db.version if db else None)
        if va == vb:
            continue
        fact = f"pkg.{name}"
        if db is not None and not (db.reinstallable and db.artifacts):
            untested.append(Untested(fact, va or "absent", vb or "absent", "unranked",
                                     f"B's {name} cannot be installed again from an index (no pinned files), so it "
                                     "cannot be put into A's image"))
            continue
        found.append(Difference(fact, va, vb, "package"))
    return found, untested


def env_differences(env_a: dict[str, str], env_b: dict[str, str], a: Snapshot, b: Snapshot) -> tuple[
        list[Difference], list[Untested]]:
    found, untested = [], []
    for name in sorted(set(env_a) | set(env_b)):
        if env_a.get(name) != env_b.get(name):
            found.append(Difference(f"env.{name}", env_a.get(name), env_b.get(name), _kind(name)))
    for name in sorted(set(a.env or {}) | set(b.env or {})):
        va, vb = (a.env or {}).get(name), (b.env or {}).get(name)
        if va == vb or name in env_a or name in env_b:  # equal, or varied above
            continue
        why = ("it chooses devices, which the engine decides for a run" if name in HOST_ONLY_ENV
               else "its value is a credential the lock does not keep")
        untested.append(Untested(f"env.{name}", va or "unset", vb or "unset", "unranked", why))
    return found, untested


def group(differences: Iterable[Difference]) -> tuple[Group, ...]:
    groups: list[Group] = []
    threads = [d for d in differences if d.kind == "threads"]
    caps = [d for d in differences if d.kind == "isa"]
    for difference in differences:
        if difference.kind in ("package", "env"):
            groups.append(Group(difference.name, (difference,)))
    if threads:
        groups.append(Group("thread counts", tuple(threads)))
    if caps:
        groups.append(Group("ISA caps", tuple(caps)))
    return tuple(groups)


def candidates(a: Snapshot, b: Snapshot, host: Cpu | None, *, match: bool = True) -> Candidates:
    """Every difference between A and B: grouped where it can be varied here, listed where it cannot."""
    from envcap.explain import diff
    from envcap.explain.compare import show

    env_a, env_b = run_env(a, host, match), run_env(b, host, match)
    packages, untested = package_differences(a, b)
    variables, untested_env = env_differences(env_a, env_b, a, b)
    differences = packages + variables
    groups = group(differences)
    varied = {d.fact for d in differences} | {u.fact for u in untested + untested_env}
    covered = [*varied]
    if match or any(d.kind == "threads" for d in differences):
        covered += THREAD_FACTS
    if match and _isa_emulated(a, b, host):
        covered.append("cpu.isa")
    others = []
    for finding in diff(a, b).findings:
        if finding.fact.startswith("fingerprint.") or (finding.severity == "info" and not finding.fact.startswith(
                HARDWARE)):
            continue  # fingerprints are effects to explain, not causes; context (paths) cannot change results
        if any(fnmatchcase(finding.fact, pattern) for pattern in covered):
            continue
        others.append(Untested(finding.fact, show(finding.a), show(finding.b), finding.severity, _why_untested(finding.fact)))
    return Candidates(groups=groups, untested=tuple(untested + untested_env + others), env_a=env_a, env_b=env_b,
                      baked_a=frozenset(a.env or {}), matched=match)


def _isa_emulated(a: Snapshot, b: Snapshot, host: Cpu | None) -> bool:
    """Both sides' instruction sets are within this CPU's, so caps can play either side."""
    flags = [s.cpu.numeric_flags if s.cpu else None for s in (a, b)]
    if host is None or host.numeric_flags is None or any(f is None for f in flags):
        return False
    here = set(host.numeric_flags)
    return all(set(f or ()) <= here for f in flags)


def _why_untested(fact: str) -> str:
    if fact.startswith("gpu.") or fact.startswith("cuda."):
        return "it is the GPU or its driver and CUDA stack, which this machine has as it is"
    if fact == "python.version":
        return "the Python version decides the base image; a bisect varies packages and variables on A's image"
    if fact.startswith(("os.", "python.")):
        return "it comes with the base image or the host's kernel, which a bisect keeps as A's"
    if fact.startswith("cpu."):
        return "it is the CPU itself; only what software can cap was varied"
    if fact.startswith("git."):
        return "the code is the mounted working tree, the same in every run"
    return "envcap cannot vary it on this machine"


__all__ = ["THREAD_FACTS", "Candidates", "Difference", "DifferenceKind", "Group", "Untested", "candidates", "group",
           "run_env"]
