"""The per-release cache of hash look-ups: releases on an index are immutable, so answers are kept.

One folder per set of sources holds a few JSON files, each a batch of releases
``{"name==version": {"index_url", "source", "artifacts"}}``. Why batches and not a file per release:
creating a file or a folder cost about 1 ms on the bench machine's disk, a third of a cold
snapshot, and a warm snapshot reads one or two files instead of 150. Writers never rewrite a file
(a new batch each time, renamed into place), so concurrent snapshots cannot corrupt each other;
a damaged file counts as empty.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

CACHE_FORMAT = 2
MAX_BATCHES = 8  # batch files per folder before they are merged into one


class ReleaseCache:
    """The entries of one folder, read once, and a way to add a batch (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._entries: dict[str, object] | None = None
        self._lock = threading.Lock()

    def entries(self) -> dict[str, object]:
        with self._lock:
            if self._entries is None:
                self._entries = read_batches(self.folder)[0]
            return self._entries

    def is_empty(self) -> bool:
        """True when no batch was ever written here (a first snapshot with these sources); reads nothing."""
        try:
            return not any(self.folder.glob("*.json"))
        except OSError:
            return True

    def get(self, key: str) -> dict[str, object] | None:
        entry = self.entries().get(key)
        return entry if isinstance(entry, dict) else None

    def add(self, batch: Mapping[str, object]) -> None:
        """One new batch file; a disk that refuses it only costs the next snapshot a look-up."""
        if not batch:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_batch(self.folder, batch)
            self.entries().update(batch)
            if sum(1 for _ in self.folder.glob("*.json")) > MAX_BATCHES:
                compact(self.folder)
        except OSError:
            pass


def read_batches(folder: Path) -> tuple[dict[str, object], list[Path]]:
    """Every release in the folder's batch files, and the files read; damaged files count as empty."""
    entries: dict[str, object] = {}
    files: list[Path] = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return entries, files
    for path in paths:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        files.append(path)
        if isinstance(data, dict) and data.get("format") == CACHE_FORMAT and isinstance(data.get("releases"), dict):
            entries.update(data["releases"])
    return entries, files


def write_batch(folder: Path, batch: Mapping[str, object]) -> None:
    name = f"{time.time_ns():x}-{os.getpid()}-{threading.get_ident():x}"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "releases": batch}, sort_keys=True), "utf-8")
    os.replace(tmp, folder / f"{name}.json")


def compact(folder: Path) -> None:
    """Merges the batch files into one; another process's file written meanwhile is kept (not read)."""
    entries, files = read_batches(folder)
    write_batch(folder, entries)
    for path in files:
        try:
            path.unlink()
        except OSError:
            pass


__all__ = ["CACHE_FORMAT", "MAX_BATCHES", "ReleaseCache", "compact", "read_batches", "write_batch"]
