"""The cache of artifacts by sha256: fetched once, checked against the lock, shared by every build.

Why not ``pip download``: the lock already names every file with its URL and sha256, so nothing
needs resolving; pip would re-resolve, fetch one file at a time, and cannot be told "these exact
hashes, for that other interpreter" without a run per platform option set. Here the files are
fetched in parallel into a cache keyed by sha256, and every byte is hashed before it may enter a
build context. Wheels built from sdists or local projects (in the sandbox, ``fromsource``) are cached
here too, under a hash of what decides them. ``runner`` and ``python`` are the edges those builds
use on the host: ``pip download`` of build backends (wheels only) and ``git`` for VCS sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envcap._subprocess import Runner, run
from envcap.errors import ArtifactError
from envcap.lock import Artifact

if TYPE_CHECKING:
    from envcap.build.backends import ReleaseLookup
    from envcap.net import Downloader

DOWNLOAD_WORKERS = 8
STALE_PART_S = 3600
CHUNK = 1 << 20


def local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


@dataclass
class FetchStats:
    files: int = 0
    downloaded_bytes: int = 0
    reused: int = 0
    built: list[str] = field(default_factory=list)


class Wheelhouse:
    """Files by sha256 under ``root`` (``cache_dir()/wheels``); a file enters only after its hash matched."""

    def __init__(self, root: Path, *, workers: int = DOWNLOAD_WORKERS, timeout: float = 60.0,
                 runner: Runner = run, python: str = sys.executable, http: Downloader | None = None,
                 lookup: ReleaseLookup | None = None) -> None:
        self.root = Path(root)
        self.http = http
        self.lookup = lookup  # what the index publishes, to check sandbox backends (None: pip's settings)
        self.workers = workers
        self.timeout = timeout
        self.runner = runner
        self.python = python
        self._lock = threading.Lock()

    def path_for(self, artifact: Artifact) -> Path:
        sha = artifact.sha256.lower()
        return self.root / "sha256" / sha[:2] / sha / artifact.filename

    def fetch(self, artifacts: Sequence[Artifact], *, on_bytes: Callable[[int], None] | None = None,
              stats: FetchStats | None = None) -> dict[str, Path]:
        """Every artifact by sha256 -> a verified file in the cache; the first failure stops them all."""
        stats = stats if stats is not None else FetchStats()
        unique = {a.sha256.lower(): a for a in artifacts}
        results: dict[str, Path] = {}
        pending = []
        for sha, artifact in unique.items():
            path = self.path_for(artifact)
            # Files enter the cache only after their hash was checked, and pip checks it again inside
            # the build (--require-hashes); re-reading gigabytes of CUDA wheels here would add nothing.
            if path.is_file() and (artifact.size is None or path.stat().st_size == artifact.size):
                results[sha] = path
                stats.reused += 1
                if on_bytes and artifact.size:
                    on_bytes(artifact.size)
            else:
                pending.append(artifact)
        if pending:
            results.update(self._fetch_parallel(pending, on_bytes, stats))
        stats.files = len(results)
        return results

    def _fetch_parallel(self, pending: list[Artifact], on_bytes: Callable[[int], None] | None,
                        stats: FetchStats) -> dict[str, Path]:
        """Daemon workers, so that Ctrl-C returns at once instead of waiting for a slow server.

        The first failure stops the others at their next block; a download cut short leaves only a
        ``.part-`` file, which the next fetch into that folder removes.
        """
        stop = threading.Event()
        work: queue.SimpleQueue[Artifact] = queue.SimpleQueue()
        done: queue.SimpleQueue[tuple[str, Path | BaseException]] = queue.SimpleQueue()
        for artifact in pending:
            work.put(artifact)

        def worker() -> None:
            while not stop.is_set():
                try:
                    artifact = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((artifact.sha256.lower(), self._download(artifact, on_bytes, stop, stats)))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    done.put((artifact.sha256.lower(), exc))

        for index in range(max(1, min(self.workers, len(pending)))):
            threading.Thread(target=worker, name=f"envcap-fetch-{index}", daemon=True).start()
        results: dict[str, Path] = {}
        try:
            for _ in pending:
                while True:  # short waits: Ctrl-C is handled between them, whichever thread the signal hit
                    try:
                        sha, outcome = done.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
                if isinstance(outcome, BaseException):
                    raise outcome
                results[sha] = outcome
        finally:
            stop.set()
        return results

    def _download(self, artifact: Artifact, on_bytes: Callable[[int], None] | None, stop: threading.Event,
                  stats: FetchStats) -> Path:
        if not artifact.url:
            raise ArtifactError(f"the lock names no URL for {artifact.filename}, so it cannot be fetched.",
                                hint="take the snapshot again where that file's index is reachable")
        target = self.path_for(artifact)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            for stale in target.parent.glob(".part-*"):  # left by an interrupted fetch (not a running one)
                with contextlib.suppress(OSError):
                    if time.time() - stale.stat().st_mtime > STALE_PART_S:
                        stale.unlink()
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        except OSError as exc:
            raise ArtifactError(f"cannot write into the wheel cache {self.root}: {exc.strerror or exc}.",
                                hint="free some disk space, or point ENVCAP_CACHE_DIR at a writable folder") from None
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for block in self._open(artifact):
                    if stop.is_set():
                        raise ArtifactError("stopped", None)
                    digest.update(block)
                    out.write(block)
                    if on_bytes:
                        on_bytes(len(block))
                    with self._lock:
                        stats.downloaded_bytes += len(block)
            actual = digest.hexdigest()
            if actual != artifact.sha256.lower():
                raise ArtifactError(
                    f"{artifact.filename} does not match the lock: its sha256 is {actual}, the lock says "
                    f"{artifact.sha256}; nothing was built.",
                    hint="the file on the index or in the local folder changed since the snapshot; find out why "
                         "before trusting it, then take a new snapshot")
            os.replace(tmp_name, target)
            return target
        except OSError as exc:
            raise ArtifactError(f"cannot write {artifact.filename} into the wheel cache {self.root}: "
                                f"{exc.strerror or exc}.",
                                hint="free some disk space, or point ENVCAP_CACHE_DIR at a writable folder") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)

    def _open(self, artifact: Artifact) -> Iterable[bytes]:
        url = artifact.url or ""
        local = local_path(url)
        if local is not None:
            try:
                with open(local, "rb") as handle:
                    yield from iter(lambda: handle.read(CHUNK), b"")
            except OSError as exc:
                raise ArtifactError(f"cannot read {artifact.filename} from {local}: {exc.strerror or exc}.",
                                    hint="restore that local folder, or take a new snapshot") from None
            return
        from envcap.net import RequestFailed, redact

        try:
            yield from self._http().stream(url, CHUNK)
        except RequestFailed as exc:
            host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or redact(url)
            via = f" through the proxy {exc.proxy}" if exc.proxy else ""
            raise ArtifactError(f"cannot download {artifact.filename} from {host}{via}: {exc.reason}.",
                                hint="check the network or proxy (HTTPS_PROXY); files fetched once are reused from "
                                     "the cache") from None

    def _http(self) -> Downloader:
        """The shared client (envcap.net), made on the first download with the host's pip settings.

        Why the host's: the build runs here, so its proxy, CA bundle and credentials are the ones
        that reach the index; the lock records no credentials.
        """
        with self._lock:
            if self.http is None:
                from envcap.net.client import HttpClient
                from envcap.net.pipconf import read_pip_settings

                self.http = HttpClient(read_pip_settings(sys.prefix).client_config(timeout=self.timeout,
                                                                                  pool_size=self.workers))
            return self.http


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link from the cache when on one filesystem (no copy of a 2 GB wheel), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


__all__ = ["FetchStats", "Wheelhouse", "link_or_copy", "local_path"]
