"""The files behind each pinned distribution, with their sha256, found without resolving anything.

Why not pip-compile: the versions are already decided (they are installed); only the hashes are
missing. pip-compile re-resolves the whole set and took 47 s on a 150-package venv; asking the
index's JSON API for each pinned release, in parallel over kept-alive connections, and reading
local wheels (pip's find-links) takes a few seconds cold and nothing warm: releases on an index are
immutable, so every answer is cached under the user's cache directory.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from envcap.fs import sha256_file
from envcap.lock import Artifact

PYPI_SIMPLE = "https://pypi.org/simple"
# Where PyTorch publishes its local-version builds; a `+cu121` wheel is not on PyPI.
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYTORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio", "torchtext", "torchdata", "triton",
                            "pytorch-triton", "pytorch-triton-rocm", "torch-tensorrt", "fbgemm-gpu"})
CACHE_FORMAT = 1
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2")


@dataclass(frozen=True)
class Release:
    """What was found for one pinned release: its files, and the index a pip needs to find them."""

    name: str
    version: str
    artifacts: tuple[Artifact, ...]
    index_url: str | None = None
    source: str = ""  # where the hashes came from (for the warning when there are none)
    error: str | None = None


def local_index_for(name: str, version: str) -> str | None:
    """The extra index that serves a local-version build (``2.3.0+cu121``), or None for public ones."""
    if "+" not in version or canonicalize_name(name) not in PYTORCH_FAMILY:
        return None
    local = version.split("+", 1)[1]
    if re.fullmatch(r"cpu|cu\d+|rocm[\d.]+|xpu", local):
        return f"{PYTORCH_INDEX}/{local}"
    return None


def artifact_matches(filename: str, name: str, version: str) -> bool:
    try:
        if filename.endswith(".whl"):
            wheel_name, wheel_version, _, _ = parse_wheel_filename(filename)
        else:
            wheel_name, wheel_version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return False
    try:
        return wheel_name == canonicalize_name(name) and wheel_version == Version(version)
    except InvalidVersion:
        return False




if TYPE_CHECKING:
    import http.client


class _KeepAlive:
    """One persistent HTTPS connection per (thread, host): the TLS handshake dominates otherwise."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.local = threading.local()

    def get(self, url: str, accept: str = "application/json") -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":  # a simple index on disk: a folder per project, index.html inside
            local = Path(urllib.parse.unquote(parts.path))
            if local.is_dir():
                local = local / "index.html"
            try:
                return 200, local.read_bytes()
            except FileNotFoundError:
                return 404, b""
        if parts.scheme not in ("https", "http"):
            return 404, b""
        import http.client  # only on a cache miss: it costs a noticeable part of a warm snapshot
        conns: dict[tuple[str, str], http.client.HTTPConnection] = getattr(self.local, "conns", None) or {}
        self.local.conns = conns
        key = (parts.scheme, parts.netloc)
        path = parts.path + ("?" + parts.query if parts.query else "")
        for attempt in range(2):
            conn = conns.get(key)
            if conn is None:
                cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                conn = cls(parts.netloc, timeout=self.timeout)
                conns[key] = conn
            try:
                conn.request("GET", path, headers={"Accept": accept, "User-Agent": "envcap",
                                                   "Accept-Encoding": "identity"})
                response = conn.getresponse()
                body = response.read()
                if response.status in (301, 302, 307, 308) and response.getheader("Location"):
                    return self.get(urllib.parse.urljoin(url, response.getheader("Location") or ""), accept)
                return response.status, body
            except (OSError, http.client.HTTPException):
                conn.close()
                conns.pop(key, None)
                if attempt:
                    raise
        raise OSError("unreachable")  # pragma: no cover


def _http_exception() -> type[Exception]:
    import http.client

    return http.client.HTTPException


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for key, value in attrs:
                if key == "href" and value:
                    self.links.append(value)


def artifacts_from_simple_html(base_url: str, html: str, name: str, version: str) -> list[Artifact]:
    parser = _LinkParser()
    parser.feed(html)
    found = []
    for href in parser.links:
        url, _, fragment = urllib.parse.urljoin(base_url, href).partition("#")
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        match = re.search(r"sha256=([0-9a-f]{64})", fragment)
        if match and artifact_matches(filename, name, version):
            found.append(Artifact(filename=filename, sha256=match.group(1), url=url))
    return found


class ArtifactResolver:
    """Finds the artifacts of pinned releases: cache, local wheels, then the indexes, in parallel."""

    def __init__(
        self,
        cache_root: Path,
        *,
        find_links: Sequence[str] = (),
        extra_indexes: Sequence[str] = (),
        offline: bool = False,
        workers: int = 16,
        timeout: float = 20.0,
    ) -> None:
        self.cache_root = Path(cache_root) / "artifacts"
        self.find_links = [Path(link.removeprefix("file://")) for link in find_links
                           if not link.startswith(("http://", "https://"))]
        self.extra_indexes = list(extra_indexes)
        self.offline = offline
        self.workers = workers
        self.http = _KeepAlive(timeout)
        self._local_files: dict[str, list[Path]] | None = None
        self._lock = threading.Lock()

    # -- cache ------------------------------------------------------------------------------
    def _cache_path(self, name: str, version: str) -> Path:
        safe_version = re.sub(r"[^A-Za-z0-9.+!_-]", "_", version)
        return self.cache_root / canonicalize_name(name) / f"{safe_version}.json"

    def _cached(self, name: str, version: str) -> Release | None:
        try:
            data = json.loads(self._cache_path(name, version).read_text("utf-8"))
            if data.get("format") != CACHE_FORMAT:
                return None
            return Release(name=name, version=version, index_url=data.get("index_url"),
                           source=data.get("source", "cache"),
                           artifacts=tuple(Artifact(**a) for a in data["artifacts"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, release: Release) -> None:
        if not release.artifacts:
            return  # a miss may be a passing network fault; ask again next time
        path = self._cache_path(release.name, release.version)
        payload = {"format": CACHE_FORMAT, "index_url": release.index_url, "source": release.source,
                   "artifacts": [a.__dict__ for a in release.artifacts]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(payload, sort_keys=True), "utf-8")
            os.replace(tmp, path)
        except OSError:
            pass

    # -- sources ----------------------------------------------------------------------------
    def _local_index(self) -> dict[str, list[Path]]:
        with self._lock:
            if self._local_files is None:
                files: dict[str, list[Path]] = {}
                for folder in self.find_links:
                    try:
                        entries = list(os.scandir(folder))
                    except OSError:
                        continue
                    for entry in entries:
                        if entry.name.endswith(ARCHIVE_SUFFIXES):
                            key = canonicalize_name(re.split(r"-\d", entry.name, maxsplit=1)[0])
                            files.setdefault(key, []).append(Path(entry.path))
                self._local_files = files
            return self._local_files

    def _from_find_links(self, name: str, version: str) -> list[Artifact]:
        found = []
        for path in self._local_index().get(canonicalize_name(name), []):
            if artifact_matches(path.name, name, version):
                found.append(Artifact(filename=path.name, sha256=sha256_file(path), url=path.resolve().as_uri(),
                                      size=path.stat().st_size))
        return found

    def _from_simple(self, index: str, name: str, version: str) -> list[Artifact]:
        url = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
        status, body = self.http.get(url, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.5")
        if status != 200:
            return []
        text = body.decode("utf-8", "replace")
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            found = []
            for entry in data.get("files", []):
                sha = (entry.get("hashes") or {}).get("sha256")
                if sha and artifact_matches(entry.get("filename", ""), name, version):
                    found.append(Artifact(filename=entry["filename"], sha256=sha,
                                          url=urllib.parse.urljoin(url, entry["url"]), size=entry.get("size")))
            return found
        return artifacts_from_simple_html(url, text, name, version)

    def resolve_one(self, name: str, version: str) -> Release:
        cached = self._cached(name, version)
        if cached is not None:
            return cached
        local_index = local_index_for(name, version)
        errors = []
        # (label, index URL); None stands for the local find-links folders. A local-version build
        # (+cpu) is looked for on disk first: its index is rarely reachable. Any other release takes the
        # index's full file list, and local wheels (hashed only then) fill in when no index has it.
        indexes: list[tuple[str, str | None]] = []
        if not self.offline:
            indexes.append((local_index, local_index) if local_index else ("pypi", PYPI_SIMPLE))
            indexes += [(index, index) for index in self.extra_indexes]
        local: list[tuple[str, str | None]] = [("find-links", None)]
        for source, index_url in (local + indexes) if local_index else (indexes + local):
            try:
                if index_url is None:
                    found = self._from_find_links(name, version)
                else:
                    found = self._from_simple(index_url, name, version)
            except (OSError, ValueError, KeyError, TypeError, AttributeError, _http_exception()) as exc:
                # an index that answers with the wrong shape is one more source that did not help
                errors.append(f"{source}: {exc}")
                continue
            if not found:
                continue
            release = Release(name=name, version=version, artifacts=tuple(sorted(found, key=lambda a: a.filename)),
                              index_url=local_index, source=source)
            self._store(release)
            return release
        return Release(name=name, version=version, artifacts=(), index_url=local_index,
                       error="; ".join(errors) or "no index or local folder has this release")

    def _resolve_pin(self, pin: tuple[str, str]) -> Release:
        return self.resolve_one(*pin)

    def resolve(self, pins: Iterable[tuple[str, str]],
                progress: Callable[[Release], None] | None = None,
                on_pending: Callable[[int], None] | None = None) -> dict[tuple[str, str], Release]:
        """Cached releases at once; the rest in parallel. ``on_pending`` hears how many need the
        network (before they are fetched), ``progress`` each one as it arrives."""
        pins = list(dict.fromkeys(pins))
        results: dict[tuple[str, str], Release] = {}
        pending = []
        for name, version in pins:
            cached = self._cached(name, version)
            if cached is not None:
                results[(name, version)] = cached
            else:
                pending.append((name, version))
        if on_pending:
            on_pending(len(pending))
        if pending:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(self.workers, len(pending))) as pool:
                for release in pool.map(self._resolve_pin, pending):
                    results[(release.name, release.version)] = release
                    if progress:
                        progress(release)
        return results

