"""The numeric fingerprint of the replay's image, measured beside the workload and compared with the snapshot's.

Why in a replay: the explain rules say which differences *could* change results; the fingerprint says which
kernels *do* compute different bits in the image, on this machine, with the workload's environment (the
lock's variables and, with ``--match``, the original's thread counts and ISA caps). A lock without a
fingerprint has nothing to compare with, so the suite runs only when the lock has one, or when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from envcap.engine import ContainerEngine, RunSpec
from envcap.explain.fingerprints import KernelValue, compare_kernels
from envcap.lock import Fingerprint
from envcap.probe.fingerprint import FingerprintRun, fingerprint_source, parse_fingerprint_output
from envcap.replay.container_probe import BackgroundJob


@dataclass(frozen=True)
class KernelDifference:
    kernel: str  # numpy.exp_f64 (the fact fingerprint.numpy.exp_f64)
    kind: str  # rounding | values | threads | added | removed
    detail: str  # with the largest ULP distance where both results are available


@dataclass(frozen=True)
class FingerprintSection:
    """The replay's kernels against the snapshot's."""

    compared: int  # kernels measured on both sides
    identical: int
    differences: tuple[KernelDifference, ...] = ()
    seconds: float | None = None  # the suite inside the container
    note: str | None = None  # why nothing was compared (the lock has none, the image could not run it)


def fingerprint_in_container(engine: ContainerEngine, spec: RunSpec, *, image: str) -> FingerprintRun:
    """The suite on the image's python3, with the workload's environment, mounts and GPUs."""
    result = engine.run(replace(spec, command=("python3", "-"), stdin_data=fingerprint_source().encode("utf-8"),
                                tty=False, interactive=False))
    return parse_fingerprint_output(result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"),
                                    result.exit_code, f"python3 in the image {image}")


def fingerprint_job(engine: ContainerEngine, spec: RunSpec, *, image: str) -> BackgroundJob[FingerprintRun]:
    return BackgroundJob(lambda: fingerprint_in_container(engine, spec, image=image), "envcap-replay-fingerprint",
                         "the image's numeric fingerprint could not be taken")


def section(snapshot: dict[str, Fingerprint] | None, replayed: FingerprintRun | None,
            problem: str | None = None) -> FingerprintSection:
    if replayed is None:
        return FingerprintSection(0, 0, note=problem or "the replay's fingerprint was not taken")
    if snapshot is None:
        return FingerprintSection(0, 0, seconds=replayed.total_seconds,
                                  note="the snapshot has no fingerprint to compare with (take it with "
                                       "`envcap snapshot --fingerprint`); the replay's is saved with its lock")
    differences = []
    both = 0
    for kernel in sorted(set(snapshot) | set(replayed.kernels)):
        a, b = snapshot.get(kernel), replayed.kernels.get(kernel)
        if a is not None and b is not None:
            both += 1
        change = compare_kernels(KernelValue(a) if a else None, KernelValue(b) if b else None)
        if change is not None:
            differences.append(KernelDifference(kernel, change.kind, change.text))
    identical = both - sum(1 for d in differences if d.kind not in ("added", "removed"))
    return FingerprintSection(compared=both, identical=identical, differences=tuple(differences),
                              seconds=replayed.total_seconds)


def render_lines(part: FingerprintSection) -> list[str]:
    """The report's lines for the fingerprint (text and Markdown use the same sentences)."""
    if part.note:
        return [f"Numeric fingerprint: {part.note}."]
    timing = f" ({part.seconds:.1f} s in the image)" if part.seconds is not None else ""
    differing = [d for d in part.differences if d.kind not in ("added", "removed")]
    head = (f"Numeric fingerprint: {part.compared} kernels compared, {part.identical} compute the same bits"
            f"{', ' + str(len(differing)) + ' differ' if differing else ''}{timing}.")
    return [head] + [f"  {d.kind:8} fingerprint.{d.kernel}: {d.detail}" for d in part.differences]


__all__ = ["FingerprintSection", "KernelDifference", "fingerprint_in_container", "fingerprint_job", "render_lines",
           "section"]
