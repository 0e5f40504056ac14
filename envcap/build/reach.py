"""How far a lock may reach on this disk: the project it belongs to, and folders the user allowed.

Why: a lock travels (a paper's repository, a bug report), and its local origins are paths written
by someone else. ``envcap build`` of a stranger's lock must not read ``/home/alice/.ssh`` because a
distribution claims to be installed from there; only folders inside the project that holds the lock
(the lock folder's parent, or the git work tree around it) are read, and others only when named
with ``--allow-path``. A project's own symlinks get the same rule: a link that leads out of the
project is not followed when its files are digested or copied into the build sandbox.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envcap.lock import lock_path

# Folders that are not part of a local project's source (build output, caches, environments).
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "build", "dist", ".tox", ".nox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules", ".envcap", ".eggs"})
EntryKind = Literal["file", "link"]


def real(path: Path | str) -> Path:
    """The path with every symlink resolved (only ``lstat`` on its components; no folder is listed)."""
    return Path(os.path.realpath(path))


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _git_top(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` with a ``.git`` (a work tree or a worktree's file)."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return None


def project_roots(lock_dir: Path) -> tuple[Path, ...]:
    """Where the lock's project lies: its folder's parent (PROJECT/.envcap -> PROJECT) and the git top level.

    ``/`` and the home folder itself are never a project: a lock at ``/x/envcap.lock.json`` or a
    dotfiles repository in ``$HOME`` would otherwise open the whole disk or home.
    """
    folder = real(lock_path(Path(lock_dir)).parent)
    too_wide = {Path("/")}
    with contextlib.suppress(RuntimeError, KeyError):
        too_wide.add(real(Path.home()))
    roots = [folder.parent if folder.parent != Path("/") else folder]
    top = _git_top(folder)
    if top is not None and top not in too_wide:
        roots.append(top)
    return tuple(dict.fromkeys(roots))


@dataclass(frozen=True)
class Reach:
    """The folders a build may read local sources from: the project's, and those given with --allow-path."""

    project: tuple[Path, ...]
    allowed: tuple[Path, ...] = ()

    @classmethod
    def for_lock(cls, lock_dir: Path, allow: Iterable[Path | str] = ()) -> Reach:
        return cls(project=project_roots(lock_dir), allowed=tuple(dict.fromkeys(real(Path(p)) for p in allow)))

    def allows(self, path: Path) -> bool:
        resolved = real(path)
        return any(inside(resolved, root) for root in (*self.project, *self.allowed))

    def refusal(self, what: str, path: Path | str) -> str:
        """The note for a distribution left out because its source lies outside the reach."""
        return (f"{what}: its source {path} lies outside the project {self.project[0]}, and envcap reads no folder "
                f"outside the project a lock belongs to; to build it anyway, add `envcap build --allow-path {path}`")


# -- a project's files, as digested and as copied into the sandbox ---------------------------------
@dataclass(frozen=True, order=True)
class TreeEntry:
    """A file of a local project, or a symlink that stays inside it (with its target relative to itself)."""

    relative: str  # posix path below the project folder
    kind: EntryKind
    link: str | None = None


@dataclass(frozen=True)
class ProjectTree:
    root: Path
    entries: tuple[TreeEntry, ...]
    skipped: tuple[str, ...] = ()  # symlinks that lead outside the project, never followed


def project_tree(root: Path) -> ProjectTree:
    """The project's source files, without build output and caches, and without following links out of it.

    A symlink is kept as a link when its target (fully resolved) stays inside the project; one that
    leads elsewhere (``secret.txt -> /etc/passwd``, ``data -> ../../other``) is skipped and named.
    Folders that are links are not descended into; special files (sockets, FIFOs) are passed over.
    """
    real_root = real(root)
    entries: list[TreeEntry] = []
    skipped: list[str] = []
    for folder, dirs, files in os.walk(root):
        linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info") and d not in linked)
        for name in sorted([*files, *linked]):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(folder, name)
            relative = Path(path).relative_to(root).as_posix()
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                entries.append(TreeEntry(relative, "file"))
            elif stat.S_ISLNK(mode):
                target = real(path)
                if inside(target, real_root):
                    entries.append(TreeEntry(relative, "link", os.path.relpath(target, real(folder))))
                else:
                    skipped.append(relative)
    return ProjectTree(root=Path(root), entries=tuple(sorted(entries)), skipped=tuple(skipped))


def stage_tree(tree: ProjectTree, dest: Path) -> None:
    """Copies the project's entries into ``dest`` (an empty folder): files linked or copied, links as links.

    Why hard links first: a project folder may hold large data files; the sandbox mounts the copy
    read-only, so sharing the inode costs nothing and risks nothing. A file is opened with
    ``O_NOFOLLOW``: one swapped for a symlink since the walk is not followed either.
    """
    for entry in tree.entries:
        target = dest / entry.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tree.root / entry.relative
        if entry.kind == "link":
            os.symlink(entry.link or ".", target)
            continue
        try:
            os.link(source, target, follow_symlinks=False)
            continue
        except OSError:
            pass
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # vanished or became a link since the walk
        with os.fdopen(fd, "rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        with contextlib.suppress(OSError):
            os.chmod(target, os.stat(source, follow_symlinks=False).st_mode & 0o755 | 0o600)


__all__ = ["SKIP_DIRS", "ProjectTree", "Reach", "TreeEntry", "inside", "project_roots", "project_tree", "real",
           "stage_tree"]
