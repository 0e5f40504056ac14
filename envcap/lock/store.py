"""Finding and reading a saved lock by folder or file; every failure is one LockfileError."""

from __future__ import annotations

from pathlib import Path

from envcap.errors import LockfileError
from envcap.lock.codec import digest_matches, loads
from envcap.lock.records import LOCK_FILENAME, Snapshot

MAX_LOCK_BYTES = 64 << 20


def find_lock_folder(start: Path, name: str = ".envcap") -> Path | None:
    """The nearest ``name`` folder holding a lock, from ``start`` up to the file system's root."""
    for folder in (start, *start.parents):
        candidate = folder / name
        if (candidate / LOCK_FILENAME).is_file():
            return candidate
    return None


def project_root(cwd: Path, lock_folder: Path) -> Path:
    """The folder a replay mounts: the git work tree around here, else the folder holding the lock's
    folder when here is inside it, else here."""
    for folder in (cwd, *cwd.parents):
        if (folder / ".git").exists():
            return folder
    holder = lock_folder.absolute().parent
    if cwd == holder or holder in cwd.parents:
        return holder
    return cwd


def lock_path(location: Path) -> Path:
    return location / LOCK_FILENAME if location.is_dir() or not location.suffix else location


def load_snapshot(location: Path) -> Snapshot:
    """Reads DIR/envcap.lock.json or the file itself; every failure is one LockfileError."""
    path = lock_path(Path(location))
    if not path.exists():
        raise LockfileError(f"no snapshot at {path}.",
                            hint="run `envcap snapshot` first, or pass the folder that holds envcap.lock.json")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_LOCK_BYTES + 1)
    except OSError as exc:
        raise LockfileError(f"cannot read {path}: {exc.strerror or exc}.",
                            hint="check the file's permissions") from None
    if len(raw) > MAX_LOCK_BYTES:
        raise LockfileError(f"{path} is larger than {MAX_LOCK_BYTES >> 20} MiB, too large for an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LockfileError(f"{path} is not UTF-8 text, so it is not an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`") from None
    return loads(text, origin=str(path))


def load_lock(location: Path) -> Snapshot:
    """The snapshot as ``build`` and ``replay`` use it: its digest is that of its content.

    A lock edited by hand keeps its old ``digest`` field; images are found and labelled by digest,
    so trusting the stale one would run the image of the lock as it was before the edit.
    """
    snapshot = load_snapshot(location)
    return snapshot if digest_matches(snapshot) and snapshot.digest else snapshot.with_digest()
