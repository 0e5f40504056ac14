"""Local, editable, file and VCS installs: what pip cannot fetch again by name, built into wheels.

Why its own module: these are the distributions whose source is on the user's disk (or in a
repository), so deciding when they changed (a tree digest), whether the lock may reach them at all
(``reach``) and how they reach the image are questions apart from the index's wheels. They are
built in the sandbox (``sandbox``), never on the host.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from envcap.build.reach import SKIP_DIRS, Reach, project_tree
from envcap.build.wheelhouse import local_path
from envcap.errors import ArtifactError
from envcap.fs import sha256_file
from envcap.lock import Distribution, Snapshot
from envcap.lock.disposition import dispositions

HASH_WHOLE_FILE_BELOW = 16 << 20
GIT_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Where git may fetch from: file:// only after the reach check (below); never ext:: or other helpers.
GIT_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
VendoredKind = Literal["directory", "editable", "vcs", "file"]


@dataclass(frozen=True)
class Vendored:
    """A local, editable, VCS or file install: built into a wheel in the sandbox, installed without hashes."""

    name: str
    version: str
    kind: VendoredKind
    source: str  # a local path, or for vcs the repository URL git fetches (without git+)
    identity: str  # what decides the wheel: a tree digest, a commit, a file hash
    commit: str | None = None  # vcs: the locked commit, fetched exactly
    subdirectory: str | None = None  # vcs: the project's folder inside the repository


@dataclass(frozen=True)
class VendoredSet:
    found: tuple[Vendored, ...] = ()
    left_out: tuple[str, ...] = ()  # "name==version: why"
    notes: tuple[str, ...] = field(default_factory=tuple)


def vendored(snapshot: Snapshot, reach: Reach | None = None) -> VendoredSet:
    """Local sources to build into wheels, what the image will not have and why, and notes on the way.

    ``reach`` None: anything on this disk (only for callers that are not building a stranger's lock).
    """
    found: list[Vendored] = []
    left_out: list[str] = []
    notes: list[str] = []
    for item in dispositions(snapshot):
        dist = item.dist
        origin = dist.origin
        what = f"{dist.name}=={dist.version}"
        if item.kind == "missing":
            left_out.append(f"{what}: {item.note or 'no hash could be pinned'}")
            continue
        if item.kind != "vendored" or origin is None:
            continue
        if origin.kind == "vcs":
            entry = _vcs(dist, reach, left_out)
            if entry is not None:
                found.append(entry)
            continue
        path = local_path(origin.url or dist.location or "")
        if origin.subdirectory and path is not None:
            path = path / origin.subdirectory
        if path is not None and reach is not None and not reach.allows(path):
            left_out.append(reach.refusal(what, path))
            continue
        if path is None or not path.exists():
            raise ArtifactError(
                f"{dist.name} {dist.version} was installed from {origin.url or dist.location}, which no longer exists "
                "on this machine, so it cannot be built into the image.",
                hint="restore that folder or file, or uninstall it and take a new snapshot")
        if path.is_dir():
            digest, skipped = tree_digest_and_skipped(path)
            notes.extend(f"{what}: the symlink {link} in {path} leads outside the project and is left out of its "
                         "wheel" for link in skipped)
            found.append(Vendored(dist.name, dist.version, "editable" if origin.kind == "editable" else "directory",
                                  str(path), f"tree:{digest}"))
        else:
            found.append(Vendored(dist.name, dist.version, "file", str(path),
                                  f"file:{origin.sha256 or sha256_file(path)}"))
    return VendoredSet(tuple(found), tuple(left_out), tuple(notes))


def _vcs(dist: Distribution, reach: Reach | None, left_out: list[str]) -> Vendored | None:
    """A git checkout at its locked commit, or a note saying why it cannot be fetched."""
    origin = dist.origin
    assert origin is not None
    what = f"{dist.name}=={dist.version}"
    scheme, plus, rest = (origin.url or "").partition("+")
    url = rest if plus and "://" not in scheme else origin.url or ""
    vcs = origin.vcs or (scheme if plus and "://" not in scheme else "git")
    if vcs != "git":
        left_out.append(f"{what}: it comes from a {vcs} repository, and envcap fetches only git repositories; "
                        "install it by hand in the image")
        return None
    if not origin.commit or not GIT_COMMIT.fullmatch(origin.commit):
        left_out.append(f"{what}: the lock records no full commit id for {url or 'its repository'}, so the exact "
                        "source cannot be fetched; take the snapshot again from a clean checkout")
        return None
    if not url.startswith(GIT_SCHEMES):
        left_out.append(f"{what}: its repository URL is not https, http, ssh, git or file, so git is not asked "
                        "to fetch it")
        return None
    if url.startswith("file://"):
        path = local_path(url)
        if reach is not None and path is not None and not reach.allows(path):
            left_out.append(reach.refusal(what, path))
            return None
    identity = f"vcs:git:{url}@{origin.commit}" + (f"#{origin.subdirectory}" if origin.subdirectory else "")
    return Vendored(dist.name, dist.version, "vcs", url, identity, commit=origin.commit,
                    subdirectory=origin.subdirectory)


def tree_digest_and_skipped(root: Path) -> tuple[str, tuple[str, ...]]:
    """A digest of a local project's source (not its build output), and the links left out of it.

    Large files count by size and modification time: hashing a dataset that sits in the project
    folder on every build would cost more than the build. Links that stay inside count by their
    target; links that lead out of the project are not followed (``reach.project_tree``).
    """
    tree = project_tree(root)
    digest = hashlib.sha256()
    for entry in tree.entries:
        if entry.kind == "link":
            digest.update(f"{entry.relative}\0link:{entry.link}\n".encode())
            continue
        path = root / entry.relative
        try:
            info = path.lstat()
            content = sha256_file(path) if info.st_size < HASH_WHOLE_FILE_BELOW else \
                f"{info.st_size}:{info.st_mtime_ns}"
        except OSError:
            continue
        digest.update(f"{entry.relative}\0{content}\n".encode())
    return digest.hexdigest(), tree.skipped


def tree_digest(root: Path) -> str:
    return tree_digest_and_skipped(root)[0]


__all__ = ["GIT_COMMIT", "SKIP_DIRS", "Vendored", "VendoredSet", "tree_digest", "tree_digest_and_skipped",
           "vendored"]
