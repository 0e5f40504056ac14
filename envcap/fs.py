"""Where envcap keeps caches and how it writes files without ever leaving half of one."""

from __future__ import annotations

import os
from pathlib import Path

from envcap.errors import OutputError


def cache_dir() -> Path:
    """``ENVCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/envcap``, else ``~/.cache/envcap``.

    Always absolute: folders under it are bind-mounted into containers, and engines refuse relative paths.
    """
    explicit = os.environ.get("ENVCAP_CACHE_DIR")
    if explicit:
        return Path(explicit).absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "envcap").absolute()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (wheels and outputs can be gigabytes)."""
    import hashlib  # here, as tempfile below: `envcap snapshot` loads this module before starting its probe

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_mode() -> int:
    """The mode a new file gets under this process's umask (read from /proc, so no thread races)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return 0o666 & ~current


def fsync_dir(folder: Path) -> None:
    """A rename is durable only once its folder is synced."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Writes to a temporary file in the same folder, syncs it, then renames it over ``path``.

    The file gets the mode the umask gives (not a fixed 0644); on any failure (a full or read-only
    disk) the temporary file is removed, so nothing half-written is left.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    import tempfile

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
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}.",
            hint="free some disk space or choose another folder with --out",
        ) from None
