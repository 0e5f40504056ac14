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
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from packaging.utils import canonicalize_name

from envcap.lock import Artifact
from envcap.net import DEFAULT_POOL_SIZE, LOG, RequestFailed, redact, strip_credentials
from envcap.snapshot.cache import ReleaseCache
from envcap.snapshot.indexes import NO_FOLDER, IndexDown, IndexPages
from envcap.snapshot.sources import (
    PYTORCH_INDEX,
    artifact_matches,
    artifacts_from_files,
    artifacts_from_simple_html,
    artifacts_from_simple_json,
    file_size,
    local_index_for,
    scan_folders,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from envcap.net import ClientConfig, Fetcher
    from envcap.net.pipconf import PipSettings

PYPI_SIMPLE = "https://pypi.org/simple"

NOT_FOUND = "no index or local folder has this release"  # Release.error when every source answered

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
class Source:
    label: str  # "pypi", "find-links", or the redacted URL
    kind: SourceKind
    location: str  # an index or page URL, or a folder


def default_workers() -> int:
    """Parallel look-ups: enough to hide each request's latency, few enough not to fight for the CPU.

    Measured on the 2-core bench machine against a nearby mirror: 16 threads cost 20 % more CPU
    and wall time than 4 to 8 (TLS reads and page parsing contend for the GIL); far from the index,
    latency wins and more connections help. Four per core, at most DEFAULT_POOL_SIZE.
    """
    return max(4, min(DEFAULT_POOL_SIZE, 4 * (os.cpu_count() or 1)))


# -- the resolver -------------------------------------------------------------------------------
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
        workers: int | None = None,
        client: Fetcher | None = None,
        client_config: ClientConfig | None = None,
    ) -> None:
        from envcap.net.pipconf import is_secure_origin

        self.cache_root = Path(cache_root) / "artifacts"
        self.offline = offline
        self.workers = workers or default_workers()
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
        self.pages = IndexPages(client, client_config)  # how each index and find-links page is asked
        self._local_files: dict[str, list[Path]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[tuple[str, str], Future[Release]] = {}
        self._written: set[tuple[str, str]] = set()
        self._from_cache: dict[tuple[str, str], Release] = {}  # by _key: releases read from the cache
        self._lock = threading.Lock()
        key = json.dumps([[strip_credentials(i) for i in self.indexes], [s.location for s in self.links]])
        self._cache = ReleaseCache(self.cache_root / hashlib.sha256(key.encode()).hexdigest()[:16])

    @classmethod
    def from_settings(cls, cache_root: Path, settings: PipSettings, *, offline: bool = False,
                      workers: int | None = None, client: Fetcher | None = None) -> ArtifactResolver:
        """pip's settings as pip uses them: the index, the extra ones, find-links, no-index, and how to connect."""
        return cls(cache_root, index_url=settings.index_url, extra_indexes=settings.extra_index_urls,
                   find_links=settings.find_links, no_index=settings.no_index, trusted_hosts=settings.trusted_hosts,
                   offline=offline, workers=workers, client=client,
                   client_config=settings.client_config(pool_size=workers or default_workers()))

    # -- cache (envcap.snapshot.cache: one folder per set of sources) --------------------------
    def cache_is_empty(self) -> bool:
        """Nothing was ever cached for these sources: every pin will need a look-up."""
        return self._cache.is_empty()

    def preload(self, pins: Iterable[tuple[str, str]]) -> None:
        """Reads the cache and builds the releases of these pins now (a warm snapshot does this while
        its probe runs: 2,400 artifacts cost 6 ms that would otherwise follow the probe)."""
        for pin in pins:
            self._cached(*pin)

    def _cached(self, name: str, version: str) -> Release | None:
        key = _key(name, version)
        known = self._from_cache.get(key)
        if known is None:
            known = self._read_cached(*key)
            if known is None:
                return None
            self._from_cache[key] = known
        return replace(known, name=name)

    def _read_cached(self, project: str, version: str) -> Release | None:
        entry = self._cache.get(f"{project}=={version}")
        artifacts = entry.get("artifacts") if entry is not None else None
        if entry is None or not isinstance(artifacts, list):
            return None
        try:
            return Release(name=project, version=version, index_url=_text(entry.get("index_url")),
                           source=_text(entry.get("source")) or "cache",
                           artifacts=tuple(Artifact(**a) for a in artifacts))
        except (TypeError, AttributeError):
            return None

    def _store(self, *releases: Release) -> None:
        """Found releases only: a miss may be a passing network fault; ask again next time."""
        self._cache.add({f"{canonicalize_name(r.name)}=={r.version}": {
            "index_url": r.index_url, "source": r.source, "artifacts": [a.__dict__ for a in r.artifacts]}
            for r in releases if r.artifacts})

    # -- the sources ----------------------------------------------------------------------------
    def unreachable(self) -> list[IndexDown]:
        """The indexes that were asked and never answered (refused, unresolvable, proxy, TLS, timeout)."""
        return self.pages.unreachable()

    def _local_index(self) -> dict[str, list[Path]]:
        with self._lock:
            if self._local_files is None:
                self._local_files = scan_folders(s.location for s in self.links if s.kind == "links-dir")
            return self._local_files

    def _from_folders(self, name: str, version: str) -> list[Artifact]:
        return artifacts_from_files(self._local_index().get(canonicalize_name(name), []), name, version)

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
            return self.pages.from_page(source.location, name, version)
        return self.pages.from_index(source.location, name, version)

    def resolve_one(self, name: str, version: str, *, store: bool = True) -> Release:
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
                if exc.kind == "local" and exc.reason == NO_FOLDER:
                    # a configured folder that is not there: pip passes over it too (with a warning)
                    LOG.debug("%s: %s", source.label, NO_FOLDER)
                else:
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
                           error="; ".join(errors) or NOT_FOUND)
        release = Release(name=name, version=version, artifacts=tuple(sorted(found.values(), key=lambda a: a.filename)),
                          index_url=local_index, source=first_source)
        if store:
            self._store(release)
        return release

    def _resolve_pin(self, pin: tuple[str, str]) -> Release:
        return self.resolve_one(*pin, store=False)

    def prefetch(self, pins: Iterable[tuple[str, str]]) -> int:
        """Starts looking up the pins not in the cache, in the background; returns how many.

        Why: a snapshot knows most pins (from the venv's dist-info folder names) before the probe
        has answered; looking them up meanwhile takes the probe's time off a cold snapshot.
        ``resolve`` then waits for these instead of asking again.
        """
        entries = self._cache.entries()
        wanted = [pin for pin in dict.fromkeys(_key(*p) for p in pins)
                  if pin not in self._futures and f"{pin[0]}=={pin[1]}" not in entries]
        if not wanted:
            return 0
        from concurrent.futures import ThreadPoolExecutor

        # Releases with local files to hash go first: hashing a 200 MB torch wheel started last
        # was the tail of every cold snapshot; started first, it overlaps the index requests.
        local = self._local_index()
        wanted.sort(key=lambda pin: -sum(file_size(p) for p in local.get(canonicalize_name(pin[0]), ())))
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="envcap-hashes")
            for pin in wanted:
                self._futures[pin] = self._pool.submit(self._resolve_pin, pin)
        return len(wanted)

    def resolve(self, pins: Iterable[tuple[str, str]],
                progress: Callable[[Release], None] | None = None,
                on_pending: Callable[[int], None] | None = None) -> dict[tuple[str, str], Release]:
        """Cached releases at once; the rest in parallel. ``on_pending`` hears how many need the
        network (before they are fetched), ``progress`` each one as it arrives."""
        pins = list(dict.fromkeys(pins))
        results: dict[tuple[str, str], Release] = {}
        pending = []
        for pin in pins:
            if _key(*pin) not in self._futures:
                cached = self._cached(*pin)
                if cached is not None:
                    results[pin] = cached
                    continue
            pending.append(pin)
        self.prefetch(pending)
        if on_pending:
            on_pending(len(pending))
        try:
            for pin in pending:
                release = replace(self._futures[_key(*pin)].result(), name=pin[0], version=pin[1])
                results[pin] = release
                if progress:
                    progress(release)
        except BaseException:
            self.close()
            raise
        self._flush()
        return results

    def _flush(self) -> None:
        """Writes what the workers found, once they are done: 150 small writes from 16 busy threads
        each waited for the GIL several times and held up the requests behind them."""
        with self._lock:
            done = [pin for pin, future in self._futures.items() if future.done() and pin not in self._written]
            self._written.update(done)
        releases = []
        for pin in done:
            future = self._futures[pin]
            if not future.cancelled() and future.exception() is None:
                releases.append(future.result())
        self._store(*releases)

    def close(self) -> None:
        """Stops the lookups not yet started (after a failure elsewhere, or Ctrl-C); keeps what was found."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            self._flush()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _key(name: str, version: str) -> tuple[str, str]:
    """One lookup per release however its name is spelled (``scikit_learn`` from a folder, ``scikit-learn``)."""
    return canonicalize_name(name), version


__all__ = [
    "NOT_FOUND",
    "PYPI_SIMPLE",
    "PYTORCH_INDEX",
    "ArtifactResolver",
    "IndexDown",
    "Release",
    "Source",
    "artifact_matches",
    "artifacts_from_simple_html",
    "artifacts_from_simple_json",
    "default_workers",
    "local_index_for",
]
