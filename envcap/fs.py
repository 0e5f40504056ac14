"""Where envcap keeps caches and how it writes files without ever leaving half of one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from envcap.errors import OutputError


def cache_dir() -> Path:
    """``ENVCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/envcap``, else ``~/.cache/envcap``."""
    explicit = os.environ.get("ENVCAP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "envcap"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (wheels and outputs can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Writes to a temporary file in the same folder, then renames it over ``path``."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write into {path.parent}: {exc.strerror or exc}.",
            hint="choose a writable folder with --out, or fix its permissions",
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}.",
            hint="free some disk space or choose another folder with --out",
        ) from None


def atomic_write_many(files: Mapping[Path, str | bytes]) -> None:
    """Writes every file to a temporary name first; renames only when all were written, and undoes
    the renames already made when a later one fails.

    Why: a snapshot is several files that must agree (the Dockerfile names the lock's digest);
    a failure halfway must leave the previous set, not a mix.
    """
    staged: list[tuple[str, Path]] = []
    backups: list[str] = []
    renamed: list[tuple[Path, str | None]] = []  # (target, backup of what it replaced)
    try:
        for path, data in files.items():
            path = Path(path)
            if path.is_dir():
                raise OutputError(f"cannot write {path}: a folder of that name is in the way.",
                                  hint="remove or rename that folder, or choose another --out")
            payload = data.encode("utf-8") if isinstance(data, str) else data
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                os.chmod(tmp, 0o644)
            except OSError as exc:
                raise OutputError(
                    f"cannot write into {path.parent}: {exc.strerror or exc}.",
                    hint="choose a writable folder with --out, or fix its permissions",
                ) from None
            staged.append((tmp, path))
        try:
            for tmp, path in staged:
                backup = None
                if path.exists():
                    backup = f"{tmp}.previous"
                    os.link(path, backup)
                    backups.append(backup)
                os.replace(tmp, path)
                renamed.append((path, backup))
        except OSError as exc:
            for path, backup in reversed(renamed):
                try:
                    if backup is None:
                        os.unlink(path)
                    else:
                        os.replace(backup, path)
                except OSError:
                    pass
            raise OutputError(f"cannot replace {path}: {exc.strerror or exc}; the previous files were kept.",
                              hint="check the folder's permissions and free space, or choose another --out") from None
        staged = []
    finally:
        for leftover in [tmp for tmp, _ in staged] + backups:
            try:
                os.unlink(leftover)
            except OSError:
                pass
