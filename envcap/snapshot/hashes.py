"""The files behind each pinned distribution, with their sha256, found without resolving anything.

Why not pip-compile: the versions are already decided (they are installed); only the hashes are
missing. pip-compile re-resolves the whole set and took 47 s on a 150-package venv; asking each
index's simple API (PEP 691 JSON, or the HTML form) for each pinned release, in parallel over
kept-alive connections, and hashing local wheels (pip's find-links) takes well under a second cold
and nothing warm: releases on an index are immutable, so every answer is cached under the user's
cache directory.

The sources are pip's own, read by ``envcap.net.pipconf``: the user's ``index-url`` replaces PyPI,
``extra-index-url`` and ``find-links`` add to it, ``no-index`` leaves only ``find-links``. As pip
merges the files of every source, so does this (a ``--require-hashes`` install accepts the file pip
picks only if its hash is in the lock). Local-version builds (``+cpu``, ``+cu121``) are the
exception: they are looked for on disk first, then on PyTorch's index, and the first source that
has them wins, as their index is large and rarely reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from envcap.fs import sha256_file
from envcap.lock.records import Artifact
from envcap.net import DEFAULT_POOL_SIZE, LOG, RequestFailed, redact, strip_credentials

if TYPE_CHECKING:
    from envcap.net import ClientConfig, Fetcher
    from envcap.net.pipconf import PipSettings

PYPI_SIMPLE = "https://pypi.org/simple"
# Where PyTorch publishes its local-version builds; a `+cu121` wheel is not on PyPI.
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYTORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio", "torchtext", "torchdata", "triton",
                            "pytorch-triton", "pytorch-triton-rocm", "torch-tensorrt", "fbgemm-gpu"})
CACHE_FORMAT = 2
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2")
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DECODER = json.JSONDecoder()

SourceKind = Literal["index", "links-dir", "links-page"]


@dataclass(frozen=True)
class Release:
    """What was found for one pinned release: its files, and the index a pip needs to find them."""

    name: str
    version: str
    artifacts: tuple[Artifact, ...]
    index_url: str | None = None
    source: str = ""  # where the hashes came from (for the warning when there are none)
    error: str | None = None  # why nothing was found, redacted: every source's answer


@dataclass(frozen=True)
class IndexDown:
    """An index that never answered during a resolve: a snapshot without it is not the user's lock."""

    index: str  # redacted
    proxy: str | None  # redacted; None: a direct connection
    reason: str


@dataclass(frozen=True)
class Source:
    label: str  # "pypi", "find-links", or the redacted URL
    kind: SourceKind
    location: str  # an index or page URL, or a folder


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


# -- the two forms of a simple page -------------------------------------------------------------
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
    """The PEP 503 form (and find-links pages): links whose fragment carries ``sha256=``."""
    parser = _LinkParser()
    parser.feed(html)
    found = []
    for href in parser.links:
        url, _, fragment = urllib.parse.urljoin(base_url, href).partition("#")
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        match = re.search(r"sha256=([0-9a-fA-F]{64})", fragment)
        if match and artifact_matches(filename, name, version):
            found.append(Artifact(filename=filename, sha256=match.group(1).lower(), url=strip_credentials(url)))
    return found


def artifacts_from_simple_json(base_url: str, text: str, name: str, version: str) -> list[Artifact]:
    """The PEP 691 form. Files of other releases are skipped before they are parsed when possible.

    Why: PyPI's pages list every file ever uploaded (pydantic-core: 15,000 files, 7 MB); decoding only
    the entries around this version's filenames is about three times faster than ``json.loads`` of
    the page, and parsing is what a cold snapshot spends its CPU on.
    """
    entries = _entries_near(text, _version_needles(version))
    if entries is None:
        data = json.loads(text)
        files = data.get("files") if isinstance(data, dict) else None
        entries = [e for e in files if isinstance(e, dict)] if isinstance(files, list) else []
    matches = _Matcher(name, version)
    found = []
    for entry in entries:
        filename, url, hashes, size = entry.get("filename"), entry.get("url"), entry.get("hashes"), entry.get("size")
        if not (isinstance(filename, str) and isinstance(url, str) and isinstance(hashes, dict)):
            continue
        sha = hashes.get("sha256")
        if not (isinstance(sha, str) and _SHA256.fullmatch(sha)) or not matches(filename):
            continue
        found.append(Artifact(filename=filename, sha256=sha.lower(), url=_absolute(base_url, url),
                              size=size if isinstance(size, int) and not isinstance(size, bool) else None))
    return found


class _Matcher:
    """``artifact_matches`` for one release, remembered per (name, version) part of a wheel's filename.

    Why: a release of numpy has 70 wheels whose names differ only in their tags; parsing each
    filename whole with packaging cost a third of a cold snapshot's CPU time.
    """

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.seen: dict[tuple[str, str], bool] = {}

    def __call__(self, filename: str) -> bool:
        if not filename.endswith(".whl"):
            return artifact_matches(filename, self.name, self.version)
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return False
        key = (parts[0], parts[1])
        known = self.seen.get(key)
        if known is None:
            known = self.seen[key] = artifact_matches(f"{parts[0]}-{parts[1]}-py3-none-any.whl", self.name,
                                                      self.version)
        return known


def _absolute(base_url: str, url: str) -> str:
    """The file's URL without credentials; absolute ones (PyPI's) skip the cost of urljoin."""
    if url.startswith(("https://", "http://")) and "@" not in url:
        return url
    return strip_credentials(urllib.parse.urljoin(base_url, url))


def _version_needles(version: str) -> list[str]:
    """How the version can be spelled in a filename (as given, normalised, wheel-escaped)."""
    spellings = [version, version.replace("-", "_")]
    try:
        spellings.append(str(Version(version)))
    except InvalidVersion:
        pass
    return [f"-{s}" for s in dict.fromkeys(spellings)]


def _entries_near(text: str, needles: Sequence[str]) -> list[dict[str, object]] | None:
    """The file objects that hold a needle, decoded alone; None when unsure (the caller parses all).

    From each hit, the enclosing object is found by decoding from the nearest ``{`` before it,
    then the one before that, until an object with a ``filename`` spans the hit.
    """
    root = text.find("{")
    entries: dict[int, dict[str, object]] = {}
    hits = 0
    for needle in needles:
        position = text.find(needle)
        while position != -1:
            hits += 1
            start = position
            for _ in range(8):
                start = text.rfind("{", 0, start)
                if start <= root:
                    return None
                try:
                    value, end = _DECODER.raw_decode(text, start)
                except ValueError:
                    continue
                if end > position and isinstance(value, dict) and "filename" in value:
                    entries[start] = value
                    position = end - 1
                    break
            else:
                return None
            position = text.find(needle, position + 1)
    return list(entries.values()) if hits else None


# -- the resolver -------------------------------------------------------------------------------
class _Health:
    """Whether an index has answered at all during this resolve, and its first failure if not."""

    def __init__(self) -> None:
        self.answered = False
        self.failure: RequestFailed | None = None


class ArtifactResolver:
    """Finds the artifacts of pinned releases: cache, then every source of pip's, in parallel."""

    def __init__(
        self,
        cache_root: Path,
        *,
        index_url: str | None = None,
        extra_indexes: Sequence[str] = (),
        find_links: Sequence[str] = (),
        no_index: bool = False,
        trusted_hosts: Sequence[str] = (),
        offline: bool = False,
        workers: int = DEFAULT_POOL_SIZE,
        client: Fetcher | None = None,
        client_config: ClientConfig | None = None,
    ) -> None:
        from envcap.net.pipconf import is_secure_origin

        self.cache_root = Path(cache_root) / "artifacts"
        self.offline = offline
        self.workers = workers
        self.notes: list[str] = []  # sentences for the snapshot's warnings
        self.configured_index = index_url
        indexes = [] if no_index else [index_url or PYPI_SIMPLE, *extra_indexes]
        self.indexes: list[str] = []
        for index in dict.fromkeys(indexes):
            if is_secure_origin(index, trusted_hosts):
                self.indexes.append(index)
            else:
                self.notes.append(f"pip ignores the index {redact(index)} (plain http to a host not in "
                                  "trusted-host), and so did envcap.")
        self.links: list[Source] = []
        for link in find_links:
            if link.startswith(("http://", "https://")):
                self.links.append(Source(redact(link), "links-page", link))
            else:
                path = Path(urllib.parse.unquote(urllib.parse.urlsplit(link).path) if link.startswith("file:")
                            else os.path.expanduser(link))
                self.links.append(Source("find-links", "links-dir" if not path.is_file() else "links-page",
                                         str(path) if not path.is_file() else path.resolve().as_uri()))
        self._client = client
        self._client_config = client_config
        self._health: dict[str, _Health] = {}
        self._local_files: dict[str, list[Path]] | None = None
        self._lock = threading.Lock()
        key = json.dumps([[strip_credentials(i) for i in self.indexes], [s.location for s in self.links]])
        self._cache_key = hashlib.sha256(key.encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls, cache_root: Path, settings: PipSettings, *, offline: bool = False,
                      workers: int = DEFAULT_POOL_SIZE, client: Fetcher | None = None) -> ArtifactResolver:
        """pip's settings as pip uses them: the index, the extra ones, find-links, no-index, and how to connect."""
        return cls(cache_root, index_url=settings.index_url, extra_indexes=settings.extra_index_urls,
                   find_links=settings.find_links, no_index=settings.no_index, trusted_hosts=settings.trusted_hosts,
                   offline=offline, workers=workers, client=client,
                   client_config=settings.client_config(pool_size=workers))

    # -- cache ------------------------------------------------------------------------------
    def _cache_path(self, name: str, version: str) -> Path:
        safe_version = re.sub(r"[^A-Za-z0-9.+!_-]", "_", version)
        return self.cache_root / self._cache_key / canonicalize_name(name) / f"{safe_version}.json"

    def _cached(self, name: str, version: str) -> Release | None:
        try:
            data = json.loads(self._cache_path(name, version).read_text("utf-8"))
            if data.get("format") != CACHE_FORMAT:
                return None
            return Release(name=name, version=version, index_url=data.get("index_url"),
                           source=data.get("source", "cache"),
                           artifacts=tuple(Artifact(**a) for a in data["artifacts"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
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

    # -- the network ------------------------------------------------------------------------
    def client(self) -> Fetcher:
        """The HTTP client, made on the first cache miss (a warm snapshot never imports urllib3)."""
        with self._lock:
            if self._client is None:
                from envcap.net.client import HttpClient

                self._client = HttpClient(self._client_config)
            return self._client

    def unreachable(self) -> list[IndexDown]:
        """The indexes that were asked and never answered (refused, unresolvable, proxy, TLS, timeout)."""
        with self._lock:
            down = [(index, h.failure) for index, h in self._health.items() if h.failure and not h.answered]
        return [IndexDown(index=redact(index), proxy=failure.proxy, reason=failure.reason) for index, failure in down]

    def _fetch(self, index: str, url: str) -> tuple[int, str, str]:
        """(status, body, final URL) of one page; an index that never answered is not asked again."""
        with self._lock:
            health = self._health.setdefault(index, _Health())
            if health.failure is not None and not health.answered:
                raise health.failure
        try:
            response = self.client().get(url, accept=SIMPLE_ACCEPT)
        except RequestFailed as exc:
            if exc.no_answer:
                with self._lock:
                    health.failure = health.failure or exc
            raise
        with self._lock:
            health.answered = True
        return response.status, response.body.decode("utf-8", "replace"), response.url

    # -- sources ----------------------------------------------------------------------------
    def _local_index(self) -> dict[str, list[Path]]:
        with self._lock:
            if self._local_files is None:
                files: dict[str, list[Path]] = {}
                for source in self.links:
                    if source.kind != "links-dir":
                        continue
                    try:
                        entries = list(os.scandir(source.location))
                    except OSError as exc:
                        LOG.debug("find-links folder %s skipped: %s", source.location, exc.strerror or exc)
                        continue
                    for entry in entries:
                        if entry.name.endswith(ARCHIVE_SUFFIXES):
                            key = canonicalize_name(re.split(r"-\d", entry.name, maxsplit=1)[0])
                            files.setdefault(key, []).append(Path(entry.path))
                self._local_files = files
            return self._local_files

    def _from_folders(self, name: str, version: str) -> list[Artifact]:
        found = []
        for path in self._local_index().get(canonicalize_name(name), []):
            if artifact_matches(path.name, name, version):
                found.append(Artifact(filename=path.name, sha256=sha256_file(path), url=path.resolve().as_uri(),
                                      size=path.stat().st_size))
        return found

    def _from_index(self, index: str, name: str, version: str) -> list[Artifact]:
        url = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
        if index.startswith("file:") and not Path(urllib.parse.unquote(urllib.parse.urlsplit(index).path)).is_dir():
            raise RequestFailed("local", index, "no such folder")
        status, text, final = self._fetch(index, url)
        if status == 404:
            return []
        if status != 200:
            raise RequestFailed("status", url, f"HTTP {status}", status=status)
        if text.lstrip().startswith("{"):
            return artifacts_from_simple_json(final, text, name, version)
        return artifacts_from_simple_html(final, text, name, version)

    def _from_page(self, source: Source, name: str, version: str) -> list[Artifact]:
        if source.location.startswith("file:"):
            path = Path(urllib.parse.unquote(urllib.parse.urlsplit(source.location).path))
            return artifacts_from_simple_html(source.location, path.read_text("utf-8", "replace"), name, version)
        status, text, final = self._fetch(source.location, source.location)
        if status != 200:
            raise RequestFailed("status", source.location, f"HTTP {status}", status=status)
        return artifacts_from_simple_html(final, text, name, version)

    def _sources(self, name: str, version: str) -> tuple[list[Source], bool]:
        """Where to look, in order, and whether the first source that has the release ends the search."""
        local_index = local_index_for(name, version)
        network = not self.offline
        # --offline: no request leaves the machine, but indexes and pages on disk are still read
        indexes = [Source("pypi" if i == PYPI_SIMPLE else redact(i), "index", i) for i in self.indexes
                   if network or i.startswith("file:")]
        links = [s for s in self.links if network or s.kind == "links-dir" or s.location.startswith("file:")]
        if local_index is None:
            return indexes + links, False
        # A +cpu build: disk first, then PyTorch's index and the user's own (PyPI has no local versions).
        if not self.indexes:  # no-index
            return links, True
        extra = [s for s in indexes if s.location != PYPI_SIMPLE]
        return links + ([Source(local_index, "index", local_index)] if network else []) + extra, True

    def _look(self, source: Source, name: str, version: str) -> list[Artifact]:
        if source.kind == "links-dir":
            return self._from_folders(name, version)
        if source.kind == "links-page":
            return self._from_page(source, name, version)
        return self._from_index(source.location, name, version)

    def resolve_one(self, name: str, version: str) -> Release:
        cached = self._cached(name, version)
        if cached is not None:
            return cached
        sources, first_wins = self._sources(name, version)
        found: dict[str, Artifact] = {}
        errors: list[str] = []
        first_source = ""
        for source in sources:
            try:
                artifacts = self._look(source, name, version)
            except RequestFailed as exc:
                errors.append(f"{source.label}: {exc.reason}")
                continue
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                # an index that answers with the wrong shape is one more source that did not help
                errors.append(f"{source.label}: {redact(str(exc))[:200]}")
                continue
            for artifact in artifacts:
                found.setdefault(artifact.sha256, artifact)
            if artifacts and not first_source:
                first_source = source.label
                if first_wins:
                    break
        local_index = local_index_for(name, version)
        if not found:
            return Release(name=name, version=version, artifacts=(), index_url=local_index,
                           error="; ".join(errors) or "no index or local folder has this release")
        release = Release(name=name, version=version, artifacts=tuple(sorted(found.values(), key=lambda a: a.filename)),
                          index_url=local_index, source=first_source)
        self._store(release)
        return release

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


__all__ = ["PYPI_SIMPLE", "PYTORCH_INDEX", "ArtifactResolver", "IndexDown", "Release", "Source",
           "artifact_matches", "artifacts_from_simple_html", "artifacts_from_simple_json", "local_index_for"]
