"""Local, editable, file and VCS installs: what pip cannot fetch again by name, built into wheels.

Why its own module: these are the distributions whose source is on the user's disk (or in a
repository), so deciding when they changed (a tree digest) and how they reach the image are
questions apart from the index's wheels.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envcap.build.wheelhouse import local_path
from envcap.errors import ArtifactError
from envcap.fs import sha256_file
from envcap.lock import Snapshot
from envcap.lock.disposition import dispositions

# Folders that are not part of a local project's source (build output, caches, environments).
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "build", "dist", ".tox", ".nox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules", ".envcap", ".eggs"})
HASH_WHOLE_FILE_BELOW = 16 << 20
VendoredKind = Literal["directory", "editable", "vcs", "file"]


@dataclass(frozen=True)
class Vendored:
    """A local, editable, VCS or file install: built into a wheel on the host, installed without hashes."""

    name: str
    version: str
    kind: VendoredKind
    source: str  # a path, or a pip requirement (git+URL@commit)
    identity: str  # what decides the wheel: a tree digest, a commit, a file hash


def vendored(snapshot: Snapshot) -> tuple[list[Vendored], list[str]]:
    """(local sources to build into wheels, "name==version: why" for what the image will not have)."""
    found: list[Vendored] = []
    left_out: list[str] = []
    for item in dispositions(snapshot):
        dist = item.dist
        origin = dist.origin
        if item.kind == "missing":
            left_out.append(f"{dist.name}=={dist.version}: {item.note or 'no hash could be pinned'}")
            continue
        if item.kind != "vendored" or origin is None:
            continue
        if origin.kind == "vcs" and origin.url and origin.commit:
            url = origin.url if "+" in origin.url.split("://", 1)[0] else f"{origin.vcs or 'git'}+{origin.url}"
            source = f"{url}@{origin.commit}" + (f"#subdirectory={origin.subdirectory}" if origin.subdirectory else "")
            found.append(Vendored(dist.name, dist.version, "vcs", source, f"vcs:{source}"))
            continue
        path = local_path(origin.url or dist.location or "")
        if origin.subdirectory and path is not None:
            path = path / origin.subdirectory
        if path is None or not path.exists():
            raise ArtifactError(
                f"{dist.name} {dist.version} was installed from {origin.url or dist.location}, which no longer exists "
                "on this machine, so it cannot be built into the image.",
                hint="restore that folder or file, or uninstall it and take a new snapshot")
        if path.is_dir():
            found.append(Vendored(dist.name, dist.version, "editable" if origin.kind == "editable" else "directory",
                                     str(path), f"tree:{tree_digest(path)}"))
        else:
            found.append(Vendored(dist.name, dist.version, "file", str(path),
                                     f"file:{origin.sha256 or sha256_file(path)}"))
    return found, left_out


def tree_digest(root: Path) -> str:
    """A digest of a local project's source files (not its build output), to know when to rebuild it.

    Large files count by size and modification time: hashing a dataset that sits in the project
    folder on every build would cost more than the build.
    """
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            relative = path.relative_to(root).as_posix()
            if stat.st_size < HASH_WHOLE_FILE_BELOW:
                content = sha256_file(path)
            else:
                content = f"{stat.st_size}:{stat.st_mtime_ns}"
            digest.update(f"{relative}\0{content}\n".encode())
    return digest.hexdigest()
