"""Where the files of a pinned release and their sha256 are read: simple pages and local folders.

Why a module of its own: these are pure readers of what an index or a folder says, kept apart from
the resolver's concurrency and caching; each takes text or paths and gives ``Artifact`` records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import AnyStr

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from envcap.lock.records import Artifact
from envcap.net import LOG, strip_credentials

ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2")
# Where PyTorch publishes its local-version builds; a `+cu121` wheel is not on PyPI.
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYTORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio", "torchtext", "torchdata", "triton",
                            "pytorch-triton", "pytorch-triton-rocm", "torch-tensorrt", "fbgemm-gpu"})
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DECODER = json.JSONDecoder()


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


def artifacts_from_simple_json(base_url: str, text: str | bytes, name: str, version: str) -> list[Artifact]:
    """The PEP 691 form, as text or as the bytes served. Files of other releases are skipped before
    they are parsed when possible.

    Why: PyPI's pages list every file ever uploaded (pydantic-core: 15,000 files, 7 MB); decoding only
    the entries around this version's filenames is about three times faster than ``json.loads`` of
    the page, and parsing is what a cold snapshot spends its CPU on. Given bytes, only those entries
    are even decoded to text (49 MB of pages cost a cold snapshot 30 ms to decode whole).
    """
    needles = _version_needles(version)
    entries = _entries_near(text, needles)
    if entries is None:
        data = json.loads(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
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


PYPI_FILES = "https://files.pythonhosted.org/"


def artifacts_from_release_json(base_url: str, body: bytes, name: str, version: str) -> list[Artifact] | None:
    """PyPI's JSON for one release (``/pypi/<project>/<version>/json``): its ``urls`` read as the simple
    page's files are, or None where the answer is not that (not JSON, no list of files, a file anywhere
    but files.pythonhosted.org: then the lock would not record what the simple page says).

    ``base_url`` is where the answer came from; PyPI's file URLs are absolute and used as given.
    """
    try:
        data = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return None
    files = data.get("urls") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return None
    matches = _Matcher(name, version)
    found = []
    for entry in files:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(url, str) or not url.startswith(PYPI_FILES) \
                or _absolute(base_url, url) != url:
            return None
        filename, digests, size = entry.get("filename"), entry.get("digests"), entry.get("size")
        sha = digests.get("sha256") if isinstance(digests, dict) else None
        if not (isinstance(filename, str) and isinstance(sha, str) and _SHA256.fullmatch(sha)) or not matches(filename):
            continue
        found.append(Artifact(filename=filename, sha256=sha.lower(), url=url,
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


def _entries_near(page: str | bytes, needles: Sequence[str]) -> list[dict[str, object]] | None:
    """The file objects that hold a needle, decoded alone; None when unsure (the caller parses all).

    From each hit, the enclosing object is found by decoding from the nearest ``{`` before it,
    then the one before that, until an object with a ``filename`` spans the hit. On bytes, each
    candidate is decoded from a window that grows until it holds the whole object, and a page that
    is not plain ASCII is parsed whole (an offset in text is then one in bytes).
    """
    if isinstance(page, bytes):
        try:
            return _scan(page, [needle.encode("utf-8") for needle in needles], b"{", _decode_object_at)
        except _NotAscii:
            return None
    return _scan(page, needles, "{", _DECODER.raw_decode)


def _scan(page: AnyStr, tokens: Sequence[AnyStr], brace: AnyStr,
          decode: Callable[[AnyStr, int], tuple[object, int]]) -> list[dict[str, object]] | None:
    root = page.find(brace)
    entries: dict[int, dict[str, object]] = {}
    hits = 0
    for token in tokens:
        position = page.find(token)
        while position != -1:
            hits += 1
            start = position
            for _ in range(8):
                start = page.rfind(brace, 0, start)
                if start <= root:
                    return None
                try:
                    value, end = decode(page, start)
                except ValueError:
                    continue
                if end > position and isinstance(value, dict) and "filename" in value:
                    entries[start] = value
                    position = end - 1
                    break
            else:
                return None
            position = page.find(token, position + 1)
    return list(entries.values()) if hits else None


class _NotAscii(Exception):
    """A window with non-ASCII bytes: the caller decodes the whole page instead."""


def _decode_object_at(page: bytes, start: int) -> tuple[object, int]:
    """The JSON value that starts at ``start`` and the byte offset after it (ValueError: none there)."""
    size = 4096
    while True:
        window = page[start:start + size]
        if not window.isascii():
            raise _NotAscii
        try:
            value, end = _DECODER.raw_decode(window.decode("ascii"))
        except ValueError:
            if start + size >= len(page):
                raise
            size *= 8  # the object is longer than the window (or broken: the whole rest will say)
            continue
        return value, start + end


def local_index_for(name: str, version: str) -> str | None:
    """The extra index that serves a local-version build (``2.3.0+cu121``), or None for public ones."""
    if "+" not in version or canonicalize_name(name) not in PYTORCH_FAMILY:
        return None
    local = version.split("+", 1)[1]
    if re.fullmatch(r"cpu|cu\d+|rocm[\d.]+|xpu", local):
        return f"{PYTORCH_INDEX}/{local}"
    return None


def scan_folders(folders: Iterable[str]) -> dict[str, list[Path]]:
    """The archives in pip's find-links folders, by canonical project name (a missing folder is skipped)."""
    files: dict[str, list[Path]] = {}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            LOG.debug("find-links folder %s skipped: %s", folder, exc.strerror or exc)
            continue
        for entry in entries:
            if entry.name.endswith(ARCHIVE_SUFFIXES):
                key = canonicalize_name(re.split(r"-\d", entry.name, maxsplit=1)[0])
                files.setdefault(key, []).append(Path(entry.path))
    return files


def artifacts_from_files(paths: Iterable[Path], name: str, version: str) -> list[Artifact]:
    """Local archives of this release, each hashed (the only way to pin a file on disk)."""
    return [Artifact(filename=path.name, sha256=sha256_big(path), url=path.resolve().as_uri(),
                     size=path.stat().st_size)
            for path in paths if artifact_matches(path.name, name, version)]


def sha256_big(path: Path) -> str:
    """sha256 in 16 MiB reads: each read and update gives the GIL back, and with 16 threads parsing
    pages, taking it again costs up to 5 ms; 1 MiB blocks made a 200 MB wheel's hash take 0.6 s
    instead of 0.1 s during a cold snapshot."""
    digest = hashlib.sha256()
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = [
    "ARCHIVE_SUFFIXES",
    "PYTORCH_FAMILY",
    "PYTORCH_INDEX",
    "artifact_matches",
    "artifacts_from_files",
    "artifacts_from_release_json",
    "artifacts_from_simple_html",
    "artifacts_from_simple_json",
    "file_size",
    "local_index_for",
    "scan_folders",
    "sha256_big",
]
