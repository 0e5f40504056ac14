"""Which file of every pinned distribution goes into the image, decided from the lock alone.

Why before any download: the choice (and so the image digest) must be known from the lock and the
target platform, so an unchanged rebuild is a single image lookup that reads no wheel.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from envcap.build.target import TargetPlatform, wheel_rank
from envcap.build.vendor import Vendored, vendored
from envcap.errors import ArtifactError, LockfileError
from envcap.lock import Artifact, Distribution, Snapshot
from envcap.lock.disposition import dispositions
from envcap.lock.validate import archive_matches

SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclass(frozen=True)
class Choice:
    """One distribution's file for the image: a wheel as is, or an sdist to build into one."""

    name: str
    version: str
    artifact: Artifact
    build_from_sdist: bool = False
    allowed_hashes: tuple[str, ...] = ()  # every hash the lock pins for this release (the context keeps them all)


@dataclass(frozen=True)
class WheelSet:
    target: TargetPlatform
    choices: tuple[Choice, ...]
    vendored: tuple[Vendored, ...] = ()
    left_out: tuple[str, ...] = ()  # "name==version: why" for distributions the image will not have

    def digest_items(self) -> dict[str, list[list[str]]]:
        """The files and local sources, as the image digest sees them (hashes, never paths)."""
        return {"files": [[c.name, c.version, c.artifact.filename, c.artifact.sha256,
                           "sdist" if c.build_from_sdist else "wheel"] for c in self.choices],
                "vendored": [[v.name, v.version, v.kind, v.identity] for v in self.vendored]}


def pinned_artifacts(dist: Distribution, kind: str) -> list[Artifact]:
    """The files a pinned distribution may be installed from: its index files, or its one URL."""
    if kind == "url" and dist.origin and dist.origin.url and dist.origin.sha256:
        filename = urllib.parse.unquote(dist.origin.url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1])
        if "/" in filename or filename.startswith(".") or not archive_matches(filename, dist):
            raise LockfileError(f"{dist.name} {dist.version} is pinned to {dist.origin.url}, whose file name is not "
                                "a wheel or sdist of that release.",
                                hint="a lock may come from anyone: take a fresh snapshot of the environment")
        return [Artifact(filename=filename, sha256=dist.origin.sha256, url=dist.origin.url)]
    return list(dist.artifacts)


def choose(snapshot: Snapshot, target: TargetPlatform, *, hermetic: bool = True) -> WheelSet:
    """Picks every file without downloading anything, so the image digest is known before any I/O.

    Not hermetic (``--online``): pip picks the files inside the build; only local sources are vendored.
    """
    ranks = {tag: i for i, tag in enumerate(target.tags())}
    choices = []
    for item in dispositions(snapshot) if hermetic else ():
        if item.kind not in ("pinned", "url"):
            continue
        dist = item.dist
        artifacts = pinned_artifacts(dist, item.kind)
        allowed = tuple(sorted({a.sha256.lower() for a in artifacts}))
        wheels = [(rank, a.filename, a) for a in artifacts if a.filename.endswith(".whl")
                  for rank in [wheel_rank(a.filename, ranks)] if rank is not None]
        if wheels:
            best = min(wheels, key=lambda entry: (entry[0], entry[1]))[2]
            choices.append(Choice(dist.name, dist.version, best, False, allowed))
            continue
        sdists = sorted((a for a in artifacts if a.filename.endswith(SDIST_SUFFIXES)), key=lambda a: a.filename)
        if sdists:
            choices.append(Choice(dist.name, dist.version, sdists[0], True, allowed))
            continue
        raise ArtifactError(
            f"{dist.name} {dist.version} has no wheel for the image's platform ({target.describe()}) and no sdist: "
            f"the lock lists only {', '.join(sorted(a.filename for a in artifacts))}.",
            hint="choose a base image whose Python and glibc fit those wheels (--base-image), override the target "
                 "with --target-python/--target-glibc, or let the build fetch from the index with --online")
    local, left_out = vendored(snapshot)
    return WheelSet(target=target, choices=tuple(choices), vendored=tuple(local), left_out=tuple(left_out))


__all__ = ["SDIST_SUFFIXES", "Choice", "WheelSet", "choose", "pinned_artifacts"]
