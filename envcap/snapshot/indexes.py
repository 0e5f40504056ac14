"""The pages of package indexes and find-links, read through envcap's one network layer.

Why apart from the resolver: the resolver decides which sources to ask and merges what they say;
this module knows how one source is asked: the simple page of an index (PEP 691 JSON or PEP 503
HTML, on disk or over HTTP), a find-links page, PyPI's per-release JSON, and which index never
answered.

PyPI's simple pages list every file ever uploaded, uncompressed where a mirror or proxy does not
gzip them: 49 MB for the 147 releases of the bench venv, most of a cold snapshot. PyPI's JSON API
answers one release (``/pypi/<project>/<version>/json``: its files and their sha256, kilobytes).
Where the index is PyPI, one release is asked that way first while the other workers read simple
pages; once an answer was usable, every later release is asked that way. An answer is used only
when it names files on files.pythonhosted.org that match the release as the simple page's filter
does; anything else (404, 5xx, garbage, other hosts, no match) sends that release to the simple
page. A 404 for a release the simple page then has, or any unusable answer, means the API is not
PyPI's own here (a mirror at pypi.org's name answers 404 to all): the rest of the resolve reads
only simple pages, having paid one request for finding out.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from packaging.utils import canonicalize_name

from envcap.net import LOG, RequestFailed, redact
from envcap.snapshot.sources import artifacts_from_release_json, artifacts_from_simple_html, artifacts_from_simple_json

if TYPE_CHECKING:
    from envcap.lock import Artifact
    from envcap.net import ClientConfig, Fetcher

SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
NO_FOLDER = "no such folder"
PYPI_HOSTS = frozenset({"pypi.org", "test.pypi.org"})


@dataclass(frozen=True)
class IndexDown:
    """An index that never answered during a resolve: a snapshot without it is not the user's lock."""

    index: str  # redacted
    proxy: str | None  # redacted; None: a direct connection
    reason: str


class _Health:
    """Whether an index has answered at all during this resolve, and its first failure if not."""

    def __init__(self) -> None:
        self.answered = False
        self.failure: RequestFailed | None = None


def release_json_url(index: str, project: str, version: str) -> str | None:
    """PyPI's JSON for one release, where ``index`` is PyPI's simple API (else None)."""
    parts = urllib.parse.urlsplit(index)
    if parts.scheme != "https" or parts.hostname not in PYPI_HOSTS or parts.path.rstrip("/") != "/simple" \
            or parts.username or parts.query:
        return None
    return f"https://{parts.netloc}/pypi/{project}/{urllib.parse.quote(version, safe='')}/json"


class IndexPages:
    """Thread-safe; one per resolve. The HTTP client is made on the first request."""

    def __init__(self, client: Fetcher | None = None, client_config: ClientConfig | None = None) -> None:
        self._client = client
        self._client_config = client_config
        self._health: dict[str, _Health] = {}
        self._listings: dict[str, frozenset[str] | Literal[False] | None] = {}
        # index -> True once its release JSON was usable, False once it let us down, PROBING while the
        # first release is asked; absent: not known yet
        self._release_api: dict[str, bool | Literal["probing"]] = {}
        self._lock = threading.Lock()

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

    def fetch(self, index: str, url: str, accept: str = SIMPLE_ACCEPT) -> tuple[int, bytes, str]:
        """(status, body, final URL) of one page; an index that never answered is not asked again."""
        health = self._health.get(index)
        if health is None:
            with self._lock:
                health = self._health.setdefault(index, _Health())
        if health.failure is not None and not health.answered:
            raise health.failure
        try:
            response = self.client().get(url, accept=accept)
        except RequestFailed as exc:
            if exc.no_answer and health.failure is None:
                health.failure = exc  # a race keeps one of two equivalent failures: either will do
            raise
        health.answered = True
        return response.status, response.body, response.url

    def from_index(self, index: str, name: str, version: str) -> list[Artifact]:
        project = canonicalize_name(name)
        url = f"{index.rstrip('/')}/{project}/"
        if index.startswith("file:"):
            listed = self._folder_listing(index)
            if listed is None:
                raise RequestFailed("local", index, NO_FOLDER)
            if project not in listed:
                return []
        api = release_json_url(index, project, version)
        found = self._from_release_json(index, api, name, version) if api and self._may_ask(index) else None
        if found:
            return found
        artifacts: list[Artifact] = []
        try:
            artifacts = self._from_simple_page(index, url, name, version)
        finally:  # after a 404 from the release JSON, the simple page decides what it meant
            if found is not None:
                self._settle(index, False if artifacts else None, f"{name} {version}: a 404, yet its simple page "
                             "has the release")
        return artifacts

    def _from_simple_page(self, index: str, url: str, name: str, version: str) -> list[Artifact]:
        status, body, final = self.fetch(index, url)
        if status == 404:
            return []
        if status != 200:
            raise RequestFailed("status", url, f"HTTP {status}", status=status)
        if body.lstrip().startswith(b"{"):
            return artifacts_from_simple_json(final, body, name, version)
        return artifacts_from_simple_html(final, body.decode("utf-8", "replace"), name, version)

    def _may_ask(self, index: str) -> bool:
        """Ask the release JSON: it has worked here, or nobody is finding out yet (then this one does)."""
        with self._lock:
            state = self._release_api.get(index)
            if state is None:
                self._release_api[index] = "probing"
                return True
            return state is True

    def _settle(self, index: str, works: bool | None, why: str = "") -> None:
        """What one answer showed: usable (True), unusable (False, for good), or nothing either way (None)."""
        with self._lock:
            state = self._release_api.get(index)
            if state is False or (works is None and state is True):
                return
            if works is None:
                self._release_api.pop(index, None)
                return
            self._release_api[index] = works
        if not works:
            LOG.debug("%s: simple pages only from now on (the release JSON failed for %s)", redact(index), why)

    def _from_release_json(self, index: str, url: str, name: str, version: str) -> list[Artifact] | None:
        """The release's files from PyPI's JSON API; [] (a 404) or None (unusable) sends it to the simple page."""
        try:
            status, body, final = self.fetch(index, url, accept="application/json")
        except RequestFailed as exc:
            if exc.no_answer:
                self._settle(index, None)
                raise  # the simple page is on the same host: it would not answer either
            self._settle(index, False, f"{name} {version}: {exc.reason}")
            return None
        if status == 404:
            return []
        found = artifacts_from_release_json(final, body, name, version) if status == 200 else None
        if found:
            self._settle(index, True)
        else:
            self._settle(index, False, f"{name} {version}: HTTP {status}" if status != 200 else
                         f"{name} {version}: no files of the release on files.pythonhosted.org")
        return found or None

    def _folder_listing(self, index: str) -> frozenset[str] | None:
        """The projects of a simple index on disk, listed once (None: no such folder).

        Why: asking the disk for each of 150 projects, most of them absent from a small local
        index, cost more system calls than the whole network part of a cold snapshot.
        """
        listed = self._listings.get(index, False)
        if listed is False:
            try:
                names = os.listdir(urllib.parse.unquote(urllib.parse.urlsplit(index).path))
            except OSError as exc:
                LOG.debug("local index %s skipped: %s", redact(index), exc.strerror or exc)
                listed = None
            else:
                listed = frozenset(canonicalize_name(n) for n in names)
            self._listings[index] = listed
        return listed

    def from_page(self, location: str, name: str, version: str) -> list[Artifact]:
        """A find-links page (HTML), on disk or over HTTP."""
        if location.startswith("file:"):
            with open(urllib.parse.unquote(urllib.parse.urlsplit(location).path), encoding="utf-8",
                      errors="replace") as handle:
                return artifacts_from_simple_html(location, handle.read(), name, version)
        status, body, final = self.fetch(location, location)
        if status != 200:
            raise RequestFailed("status", location, f"HTTP {status}", status=status)
        return artifacts_from_simple_html(final, body.decode("utf-8", "replace"), name, version)


__all__ = ["NO_FOLDER", "SIMPLE_ACCEPT", "IndexDown", "IndexPages", "release_json_url"]
