"""What a rebuild does with each installed distribution: pin it by hash, vendor it, or leave it out.

Why one policy: requirements.lock, pylock.toml, the warnings of a snapshot and the wheels of a
build must agree on every distribution; each asks ``dispose`` instead of deciding on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from envcap.lock.records import Distribution, Snapshot

# pip, setuptools and wheel are pinned like everything else: a different pip in the image is a
# different installer, and setuptools' pkg_resources is imported by training code.

DispositionKind = Literal["pinned", "url", "vendored", "missing", "conda"]


@dataclass(frozen=True)
class Disposition:
    """What envcap does with one distribution when it rebuilds the environment."""

    dist: Distribution
    kind: DispositionKind
    note: str | None = None  # the sentence for the snapshot's warnings (None: nothing to say)


def dispose(dist: Distribution) -> Disposition:
    origin = dist.origin.kind if dist.origin else "index"
    where = dist.origin.url if dist.origin and dist.origin.url else dist.location
    if origin in ("editable", "directory"):
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} is installed from the local folder "
                           f"{where}{' (editable)' if origin == 'editable' else ''}: `envcap build` builds it into "
                           "a wheel on the host and installs that in the image; it is not in requirements.lock.")
    if origin == "conda":
        return Disposition(dist, "conda")  # one warning for all of them: see conda_note
    if origin == "vcs":
        commit = dist.origin.commit if dist.origin else None
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} comes from {where} at commit "
                           f"{commit or 'unknown'}: `envcap build` builds that commit into a wheel on the host; "
                           "it is not in requirements.lock (pip cannot hash-check a repository).")
    if origin in ("url", "file") and dist.origin and dist.origin.sha256:
        return Disposition(dist, "url")  # a local wheel too: pinned by its hash, fetched and checked like any
    if origin == "file":
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} was installed from the local file {where} "
                           "without a recorded hash: `envcap build` copies that file into the image if it still "
                           "exists; it is not in requirements.lock.")
    if origin == "url":
        return Disposition(dist, "missing", f"{dist.name} {dist.version} was installed from {where} without a "
                           "recorded hash: it is left out of requirements.lock; install it by hand.")
    if not dist.artifacts:
        return Disposition(dist, "missing", f"{dist.name} {dist.version} was not found on any index or local "
                           "folder, so no hash could be pinned: it is left out of requirements.lock and the image.")
    if dist.site == "other":
        return Disposition(dist, "pinned", f"{dist.name} {dist.version} was found outside site-packages, in "
                           f"{dist.location} (a --target folder or PYTHONPATH); the image installs the same version "
                           "from the index into its virtual environment instead.")
    if dist.site == "dist-packages" or dist.installer == "conda":
        source = "the system package manager (dist-packages)" if dist.site == "dist-packages" else "conda"
        return Disposition(dist, "pinned", f"{dist.name} {dist.version} was installed by {source}; the lock pins "
                           "the same version from the index, whose build may differ.")
    return Disposition(dist, "pinned")


def conda_note(snapshot: Snapshot) -> str | None:
    """One sentence for every conda package without Python metadata (an environment has dozens)."""
    libraries = [d for d in snapshot.distributions if d.origin is not None and d.origin.kind == "conda"]
    if not libraries:
        return None
    shown = ", ".join(f"{d.name} {d.version}" for d in libraries[:8])
    more = f" and {len(libraries) - 8} more" if len(libraries) > 8 else ""
    return (f"{len(libraries)} conda packages without Python metadata ({shown}{more}) are recorded for comparison "
            "but not rebuilt: the image takes its libraries (BLAS, CUDA) from pip wheels; recreate them with "
            "conda where the exact build matters.")


def dispositions(snapshot: Snapshot) -> list[Disposition]:
    return [dispose(d) for d in sorted(snapshot.distributions, key=lambda d: d.name)]


def local_indexes(snapshot: Snapshot) -> list[str]:
    return sorted({d.index_url for d in snapshot.distributions if d.index_url})


def pins(snapshot: Snapshot, kinds: Iterable[str] = ("pinned",)) -> list[tuple[str, str]]:
    wanted = set(kinds)
    return [(i.dist.name, i.dist.version) for i in dispositions(snapshot) if i.kind in wanted]
