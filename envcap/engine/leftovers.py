"""What a run that died with its engine leaves behind, and the sweep that removes it on a later run.

Why: when the engine is killed in the middle of a build or a replay, envcap cannot remove what it
started (the engine is gone), and once the engine is back the workload's container, the probe's
container, the classic builder's intermediate container and the images of the steps it had finished
are still there. Each container envcap starts carries ``io.envcap.owner`` naming the process that
started it; the builder's own containers cannot be labelled, so a build writes the ids its log names
into a small journal in the cache folder while it runs and deletes the journal when it ends with the
engine alive. ``sweep`` (at the start of every build and replay: one list call and one folder read)
removes the containers and journalled leftovers whose owner process is gone, and only those: an
owner on another host, in another PID namespace, or still running is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envcap import _log
from envcap.engine import OWNER_LABEL, ContainerEngine
from envcap.engine.errors import EngineError, EngineRefused

LOGGER = _log.get("engine")
JOURNALS = "leftovers"
JOURNAL_MAX_AGE_S = 30 * 24 * 3600  # a journal of an engine never used again is dropped after this
Verdict = Literal["alive", "gone", "unknown"]


@dataclass(frozen=True)
class Process:
    """One process, as far as a later run on any host can tell it apart from every other."""

    host: str
    pid: int
    start: str  # clock ticks after boot (/proc/PID/stat), so a reused PID is a different process
    boot: str  # the kernel's boot id: a process of an earlier boot is gone whatever its PID
    pidns: str  # the PID namespace: a PID means nothing in another one (envcap in a container)

    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}:{self.boot}:{self.pidns}"

    @classmethod
    def parse(cls, token: str) -> Process | None:
        parts = token.rsplit(":", 4)
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3], parts[4])


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (its start time), or None when there is no such process."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else "?"


def _pidns() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "?"
    return link.partition("[")[2].rstrip("]") or "?"


_THIS: dict[int, Process] = {}


def this_process() -> Process:
    """This process (read once per PID: a forked child is another owner)."""
    pid = os.getpid()
    if pid not in _THIS:
        _THIS[pid] = Process(host=socket.gethostname(), pid=pid, start=start_ticks(pid) or "?",
                             boot=_read("/proc/sys/kernel/random/boot_id")[:8] or "?", pidns=_pidns())
    return _THIS[pid]


def owner_label() -> dict[str, str]:
    """The label every container envcap starts carries (``DockerEngine`` puts it on)."""
    return {OWNER_LABEL: this_process().token()}


def judge(token: str, here: Process | None = None, ticks: Callable[[int], str | None] = start_ticks) -> Verdict:
    """Whether the process named by ``token`` is still running, as far as this process can tell.

    "unknown" (never swept) for another host or PID namespace and for what cannot be read; "gone"
    for an earlier boot, a PID no process has, or a PID that another process has taken since.
    """
    here = here or this_process()
    owner = Process.parse(token)
    if owner is None or owner.host != here.host or "?" in (owner.boot, here.boot):
        return "unknown"
    if owner.boot != here.boot:
        return "gone"
    if owner.pidns != here.pidns or "?" in (owner.pidns, owner.start):
        return "unknown"
    if owner.pid == here.pid:
        return "alive" if owner.start == here.start else "gone"
    now = ticks(owner.pid)
    if now is None:
        return "gone"
    return "alive" if now == owner.start else "gone"


# -- the build journal ----------------------------------------------------------------------------
def journal_dir() -> Path:
    from envcap.fs import cache_dir

    return cache_dir() / JOURNALS


class BuildJournal:
    """The ids a build's log names (intermediate containers, images of steps it made), on disk while it runs.

    Why on disk at once: if the engine and this process die together, the next run still finds
    them. Written only when a build names something (a file of a few lines); a journal that
    cannot be written costs the build nothing, only the later sweep.
    """

    def __init__(self, endpoint: str, folder: Path | None = None) -> None:
        self.endpoint = endpoint
        self.folder = folder
        self.path: Path | None = None
        self.broken = False

    def _open(self) -> Path | None:
        if self.path is None and not self.broken:
            folder = self.folder or journal_dir()
            path = folder / f"build-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
            header = {"endpoint": self.endpoint, "owner": this_process().token()}
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(header) + "\n", encoding="utf-8")
            except OSError as exc:
                LOGGER.debug("cannot keep the build journal %s: %s", path, exc)
                self.broken = True
                return None
            self.path = path
        return self.path

    def _add(self, kind: Literal["container", "image"], item_id: str) -> None:
        path = self._open()
        if path is None:
            return
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({kind: item_id}) + "\n")
        except OSError as exc:
            LOGGER.debug("cannot add to the build journal %s: %s", path, exc)

    def container(self, container_id: str) -> None:
        self._add("container", container_id)

    def image(self, image_id: str) -> None:
        self._add("image", image_id)

    def discard(self) -> None:
        """The build ended with the engine alive: its own cleanup (``forcerm``) removed what it started."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


@dataclass(frozen=True)
class Journal:
    path: Path
    endpoint: str
    owner: str
    containers: tuple[str, ...]
    images: tuple[str, ...]


def read_journal(path: Path) -> Journal | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])
        items = [json.loads(line) for line in lines[1:] if line.strip()]
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    containers = tuple(str(i["container"]) for i in items if isinstance(i, dict) and "container" in i)
    images = tuple(str(i["image"]) for i in items if isinstance(i, dict) and "image" in i)
    return Journal(path, str(header.get("endpoint", "")), str(header.get("owner", "")), containers, images)


# -- the sweep ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Swept:
    containers: tuple[str, ...] = ()  # removed, or already gone (a journal names what the builder may have removed)
    images: tuple[str, ...] = ()


def sweep(engine: ContainerEngine, *, folder: Path | None = None, here: Process | None = None,
          ticks: Callable[[int], str | None] = start_ticks) -> Swept:
    """Removes what runs whose owner process is gone left on this engine; never raises for it.

    A sweep that fails (the engine refuses, or stops answering) leaves the rest for the next run:
    the command that follows meets the engine's state itself and says so.
    """
    removed: list[str] = []
    images: list[str] = []

    def remove(container_id: str) -> None:
        try:
            engine.remove_container(container_id)
        except EngineRefused as exc:  # one the engine cannot remove now (a busy mount): left for the next run
            LOGGER.debug("cannot remove %s: %s", container_id[:12], exc.message)
            return
        removed.append(container_id)

    try:
        for found in engine.find_containers(OWNER_LABEL):
            if judge(found.labels.get(OWNER_LABEL, ""), here, ticks) == "gone":
                remove(found.id)
        for journal in _journals(folder or journal_dir()):
            if journal.endpoint != engine.endpoint or judge(journal.owner, here, ticks) != "gone":
                continue
            for container_id in journal.containers:
                remove(container_id)
            for image_id in reversed(journal.images):  # the newest first: its parents are then unused
                with contextlib.suppress(EngineRefused):
                    if engine.remove_leftover_image(image_id):
                        images.append(image_id)
            with contextlib.suppress(OSError):
                journal.path.unlink()
    except EngineError as exc:  # the engine went away meanwhile: the command that follows will say so
        LOGGER.debug("sweep of %s stopped: %s", engine.endpoint, exc.message)
    if removed or images:
        LOGGER.info("swept %d container(s) and %d image(s) from %s, left by envcap runs that ended before they "
                    "could remove them", len(removed), len(images), engine.endpoint)
    return Swept(tuple(removed), tuple(images))


def _journals(folder: Path) -> list[Journal]:
    try:
        paths = sorted(folder.glob("build-*.jsonl"))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            if time.time() - path.stat().st_mtime > JOURNAL_MAX_AGE_S:
                path.unlink()  # of an engine not used for a month: what is left there is docker's to prune
                continue
        except OSError:
            continue
        journal = read_journal(path)
        if journal is not None:  # an unreadable one may be one being written right now
            found.append(journal)
    return found
