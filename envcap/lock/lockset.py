"""Writing the lock set (the lock and its generated files) so that it is replaced as a whole or not at all.

The layout inside the snapshot folder:

    .sets/<generation>/   every file of one snapshot, written, synced, never changed afterwards
    .current              a symlink to the generation in force, switched by one rename(2)
    envcap.lock.json ...  symlinks to .current/<name>; other tools and people open these

Why: renaming five files one after another leaves two snapshots side by side when the process is
killed between renames (seen 4 times in 6). Here every name resolves through ``.current``, so a
reader sees the old set or the new one, whatever moment a SIGKILL, a full disk or a concurrent
snapshot picks. An older folder of plain files is taken over without a moment where its names
disagree (each plain file becomes a symlink into a generation of its own old contents first).
Concurrent writers are serialised with a lock file; the last one wins, whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from envcap.errors import OutputError
from envcap.fs import file_mode, fsync_dir

SETS = ".sets"
CURRENT = ".current"
LOCK_FILE = ".envcap-write.lock"
KEEP_GENERATIONS = 2  # the one in force and the one before it (a reader may still have it open)


def _error(path: Path, exc: OSError, doing: str) -> OutputError:
    return OutputError(f"cannot {doing} {path}: {exc.strerror or exc}; the previous snapshot is left as it was.",
                       hint="free some disk space, fix the folder's permissions, or choose another folder with --out")


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """One snapshot writes into a folder at a time (others wait); the lock dies with its process."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _error(folder, exc, "write into") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_generation(target: Path, files: Mapping[str, str | bytes], folders: Mapping[str, Path]) -> None:
    staging = target.with_name(target.name + ".partial")
    staging.mkdir(parents=True)
    mode = file_mode()
    for name, data in files.items():
        payload = data.encode("utf-8") if isinstance(data, str) else data
        fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    for name, source in folders.items():
        os.replace(source, staging / name)  # staged beside the folder by the caller: a rename, not a copy
    fsync_dir(staging)
    os.replace(staging, target)
    fsync_dir(target.parent)


def _symlink_over(link: Path, target: str) -> None:
    """``link`` becomes a symlink to ``target`` in one rename (never missing in between)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(target, temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _adopt_plain_files(folder: Path, names: list[str]) -> None:
    """An older folder of plain files: give them a generation of their own, so each name can become a
    symlink that still shows the old contents until the switch."""
    plain = [n for n in names if (folder / n).is_file() and not (folder / n).is_symlink()]
    if not plain or (folder / CURRENT).is_symlink():
        return
    old = folder / SETS / f"adopted-{time.time_ns()}"
    old.mkdir(parents=True)
    for name in plain:
        try:
            os.link(folder / name, old / name)
        except OSError:
            shutil.copy2(folder / name, old / name)
    fsync_dir(old)
    _symlink_over(folder / CURRENT, f"{SETS}/{old.name}")


def write_lock_set(folder: Path, files: Mapping[str, str | bytes], *, folders: Mapping[str, Path] | None = None,
                   generation: str) -> None:
    """Replaces the lock set in ``folder`` by ``files`` (and staged ``folders``), whole, or raises OutputError."""
    folders = dict(folders or {})
    names = sorted([*files, *folders])
    with writer_lock(folder):
        sets = folder / SETS
        target = sets / generation
        try:
            _sweep_partials(sets)
            _write_generation(target, files, folders)
        except OSError as exc:
            shutil.rmtree(target.with_name(target.name + ".partial"), ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            raise _error(folder, exc, "write the snapshot into") from None
        try:
            _adopt_plain_files(folder, names)
            for name in names:
                link = folder / name
                wanted = f"{CURRENT}/{name}"
                if link.is_symlink() and os.readlink(link) == wanted:
                    continue
                if link.is_dir() and not link.is_symlink() and name not in folders:
                    raise IsADirectoryError(21, "a folder of that name is in the way", str(link))
                if link.is_dir() and not link.is_symlink():
                    _retire_folder(link, sets)
                _symlink_over(link, wanted)
            _symlink_over(folder / CURRENT, f"{SETS}/{generation}")  # the switch: one rename
            fsync_dir(folder)
            _drop_dangling(folder)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise _error(folder, exc, "switch the snapshot in") from None
        _prune(sets, keep=generation)


def _drop_dangling(folder: Path) -> None:
    """A name the new set lacks (outputs/ of an earlier native run) would point at nothing: remove it."""
    for entry in folder.iterdir():
        if entry.is_symlink() and os.readlink(entry).startswith(f"{CURRENT}/") and not entry.exists():
            with contextlib.suppress(OSError):
                entry.unlink()


def _retire_folder(path: Path, sets: Path) -> None:
    """A plain folder (an older layout's outputs/) moves into an adopted generation, out of the way."""
    current = path.parent / CURRENT
    if current.is_symlink():
        home = (path.parent / os.readlink(current))
        if not (home / path.name).exists():
            os.replace(path, home / path.name)
            return
    os.replace(path, sets / f"retired-{path.name}-{time.time_ns()}")


def _sweep_partials(sets: Path) -> None:
    """What a killed writer left (a half-written generation, a temporary symlink) is never in force: remove it."""
    for entry in sets.parent.glob(".*.link"):
        with contextlib.suppress(OSError):
            entry.unlink()
    if not sets.is_dir():
        return
    for entry in sets.iterdir():
        if entry.name.endswith(".partial"):
            shutil.rmtree(entry, ignore_errors=True)


def _prune(sets: Path, keep: str) -> None:
    try:
        entries = sorted((e for e in sets.iterdir() if e.name != keep), key=lambda e: e.stat().st_mtime,
                         reverse=True)
    except OSError:
        return
    for entry in entries[KEEP_GENERATIONS - 1:]:
        shutil.rmtree(entry, ignore_errors=True)


def new_generation(digest: str | None) -> str:
    """Sortable, unique per writer: time, the lock's digest, the process."""
    short = (digest or "sha256:none").split(":", 1)[-1][:12]
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{short}-{os.getpid()}-{time.time_ns() % 10**9:09d}"


__all__ = ["CURRENT", "LOCK_FILE", "SETS", "new_generation", "write_lock_set", "writer_lock"]
