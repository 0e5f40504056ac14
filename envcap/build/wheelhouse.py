"""The wheels an image needs, chosen for the image's platform, fetched once, checked against the lock.

Why not ``pip download``: the lock already names every file with its URL and sha256, so nothing
needs resolving; pip would re-resolve, fetch one file at a time, and cannot be told "these exact
hashes, for that other interpreter" without a run per platform option set. Here the choice per
distribution is the best wheel for the target's tags (``packaging.tags``, the order pip uses), the
files are fetched in parallel into a cache keyed by sha256 (shared by every build), and every byte
is hashed before it may enter a build context. Distributions without a fitting wheel are built from
their (hash-checked) sdist on the host; local and VCS installs are built into wheels and vendored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
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

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from envcap._subprocess import RunFailed, Runner, run
from envcap.errors import ArtifactError, LockfileError
from envcap.lock.records import Artifact, Distribution, Snapshot
from envcap.fs import sha256_file

if TYPE_CHECKING:
    from envcap.net import Downloader

# The oldest glibc each architecture's manylinux tags go down to (manylinux1 is glibc 2.5).
MANYLINUX_FLOOR = {"x86_64": 5, "i686": 5}
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")
# Folders that are not part of a local project's source (build output, caches, environments).
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "build", "dist", ".tox", ".nox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules", ".envcap", ".eggs"})
HASH_WHOLE_FILE_BELOW = 16 << 20
DOWNLOAD_WORKERS = 8
STALE_PART_S = 3600
CHUNK = 1 << 20


# -- the target platform ------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetPlatform:
    """The interpreter and C library wheels must fit: the image's, not the host's."""

    python_version: str  # 3.11.2
    arch: str = "x86_64"
    libc: str = "glibc"  # glibc | musl
    libc_version: str = "2.17"
    implementation: str = "cpython"
    abi: str | None = None  # cp311 (cp313t for a free-threaded build); None: cpXY
    source: str = "lock"  # where these facts come from: lock, base image probe, override

    @property
    def major_minor(self) -> tuple[int, int]:
        parts = [int(p) for p in re.findall(r"\d+", self.python_version)[:2]]
        return (parts[0], parts[1]) if len(parts) == 2 else (3, 0)

    def platforms(self) -> list[str]:
        return platform_tags(self.libc, self.libc_version, self.arch)

    def tags(self) -> list[Tag]:
        """Most preferred first, as pip orders them for this interpreter."""
        version = self.major_minor
        platforms = self.platforms()
        if self.implementation == "cpython":
            abi = self.abi or f"cp{version[0]}{version[1]}"
            head = list(cpython_tags(python_version=version, abis=[abi], platforms=platforms))
            interpreter = f"cp{version[0]}{version[1]}"
        else:
            short = {"pypy": "pp", "graalpy": "graalpy"}.get(self.implementation, self.implementation[:2])
            interpreter = f"{short}{version[0]}{version[1]}"
            head = list(generic_tags(interpreter=interpreter, abis=[self.abi] if self.abi else None,
                                     platforms=platforms))
        return head + list(compatible_tags(python_version=version, interpreter=interpreter, platforms=platforms))

    def key(self) -> str:
        """What decides the wheel choice, as one string (part of the image digest)."""
        return f"{self.implementation}-{'.'.join(map(str, self.major_minor))}-{self.abi or ''}-{self.arch}-" \
               f"{self.libc}-{self.libc_version}"

    def describe(self) -> str:
        abi = self.abi or f"cp{self.major_minor[0]}{self.major_minor[1]}"
        return f"Python {self.python_version} ({abi}), {self.libc} {self.libc_version}, {self.arch}"


def platform_tags(libc: str, libc_version: str, arch: str) -> list[str]:
    """manylinux/musllinux platform tags from the newest the C library allows down to the oldest."""
    numbers = [int(p) for p in re.findall(r"\d+", libc_version)[:2]] or [2, 17]
    major, minor = (numbers + [0])[:2]
    tags: list[str] = []
    if libc == "musl":
        tags = [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
    else:
        floor = MANYLINUX_FLOOR.get(arch, 17)
        for m in range(minor, floor - 1, -1):
            tags.append(f"manylinux_{major}_{m}_{arch}")
            legacy = LEGACY_MANYLINUX.get((major, m))  # 2010 and 1 exist only where the floor reaches them
            if legacy:
                tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def platform_from_snapshot(snapshot: Snapshot) -> TargetPlatform:
    """The lock's own interpreter and C library: the fallback when the image cannot be asked."""
    py = snapshot.python
    os_info = snapshot.os
    version = py.version if py else "3"
    machine = (py.machine if py and py.machine else None) or (snapshot.cpu.architecture if snapshot.cpu else None)
    return TargetPlatform(
        python_version=version,
        arch=_arch(machine or "x86_64"),
        libc="musl" if os_info and os_info.libc == "musl" else "glibc",
        libc_version=(os_info.libc_version if os_info and os_info.libc_version else "2.17"),
        implementation=(py.implementation or "cpython") if py else "cpython",
        abi=py.abi_tag if py and py.abi_tag and py.abi_tag.startswith("cp") else None,
        source="lock",
    )


def _arch(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def wheel_rank(filename: str, ranks: dict[Tag, int]) -> int | None:
    """The position of the wheel's best tag in the target's order (lower is better), None if none fits."""
    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        return None
    positions = [ranks[t] for t in wheel_tags if t in ranks]
    return min(positions) if positions else None


# -- requirements.lock --------------------------------------------------------------------------
@dataclass(frozen=True)
class LockedRequirement:
    name: str  # canonical
    version: str | None
    hashes: tuple[str, ...]
    url: str | None = None  # for ``name @ url`` lines
    line: str = ""


@dataclass(frozen=True)
class RequirementsLock:
    requirements: tuple[LockedRequirement, ...]
    options: tuple[str, ...] = ()  # --extra-index-url etc., kept for --online builds
    text: str = ""


def parse_requirements_lock(text: str, origin: str = "requirements.lock") -> RequirementsLock:
    """The subset envcap writes: ``name==version`` or ``name @ url``, each with ``--hash`` options."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            logical.append(" ".join(buffer.split()))
        buffer = ""
    if buffer.strip():
        logical.append(" ".join(buffer.split()))
    requirements: list[LockedRequirement] = []
    options: list[str] = []
    for line in logical:
        if line.startswith("-"):
            options.append(line)
            continue
        hashes = tuple(re.findall(r"--hash[= ]sha256:([0-9a-fA-F]{64})", line))
        spec = re.sub(r"\s*--hash[= ]\S+", "", line).strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;]+)(?:\s*;.*)?", spec)
        url_match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*@\s*(\S+)(?:\s*;.*)?", spec)
        if match:
            requirements.append(LockedRequirement(canonicalize_name(match.group(1)), match.group(2),
                                                  tuple(h.lower() for h in hashes), line=line))
        elif url_match:
            requirements.append(LockedRequirement(canonicalize_name(url_match.group(1)), None,
                                                  tuple(h.lower() for h in hashes), url=url_match.group(2), line=line))
        else:
            raise LockfileError(f"{origin} has a line envcap cannot read: {line[:120]!r}.",
                                hint="regenerate it with `envcap snapshot`; envcap writes name==version lines "
                                     "with --hash options")
        if not hashes:
            raise LockfileError(f"{origin} pins {spec} without a --hash, so it cannot be checked.",
                                hint="regenerate it with `envcap snapshot`")
    return RequirementsLock(tuple(requirements), tuple(options), text)


# -- what goes into wheels/ ---------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """One distribution's file for the image: a wheel as is, or an sdist to build on the host."""

    name: str
    version: str
    artifact: Artifact
    build_from_sdist: bool = False
    allowed_hashes: tuple[str, ...] = ()  # the lock's hashes for this pin (the context keeps them all)


@dataclass(frozen=True)
class Vendored:
    """A local, editable, VCS or file install: built into a wheel on the host, installed without hashes."""

    name: str
    version: str
    kind: str  # directory | editable | vcs | file
    source: str  # a path, or a pip requirement (git+URL@commit)
    identity: str  # what decides the wheel: a tree digest, a commit, a file hash


@dataclass(frozen=True)
class WheelSet:
    target: TargetPlatform
    choices: tuple[Choice, ...]
    vendored: tuple[Vendored, ...] = ()
    left_out: tuple[str, ...] = ()  # "name==version: why" for distributions the image will not have

    def digest_items(self) -> dict[str, list[list[str]]]:
        """The files and local sources, as the image digest sees them (hashes, never paths)."""
        return {"files": [[c.name, c.version, c.artifact.filename, c.artifact.sha256,
                           "sdist" if c.build_from_sdist else "wheel"] for c in self.choices],
                "vendored": [[v.name, v.version, v.kind, v.identity] for v in self.vendored]}


def choose(lock: RequirementsLock, snapshot: Snapshot, target: TargetPlatform, *, hermetic: bool = True) -> WheelSet:
    """Picks every file without downloading anything, so the image digest is known before any I/O.

    Not hermetic (``--online``): pip picks the files inside the build; only local sources are vendored.
    """
    ranks = {tag: i for i, tag in enumerate(target.tags())}
    choices = []
    for req in lock.requirements if hermetic else ():
        dist = snapshot.distribution(req.name)
        artifacts = _artifacts_for(req, dist)
        if not artifacts:
            raise LockfileError(
                f"requirements.lock pins {req.name}{'==' + req.version if req.version else ''} with hashes that "
                "envcap.lock.json lists no file for.",
                hint="requirements.lock and envcap.lock.json must come from the same `envcap snapshot`; run it again")
        version = req.version or (dist.version if dist else "")
        wheels = [(rank, a.filename, a) for a in artifacts if a.filename.endswith(".whl")
                  for rank in [wheel_rank(a.filename, ranks)] if rank is not None]
        if wheels:
            best = min(wheels, key=lambda item: (item[0], item[1]))[2]
            choices.append(Choice(req.name, version, best, False, req.hashes))
            continue
        sdists = sorted((a for a in artifacts if a.filename.endswith(SDIST_SUFFIXES)), key=lambda a: a.filename)
        if sdists:
            choices.append(Choice(req.name, version, sdists[0], True, req.hashes))
            continue
        raise ArtifactError(
            f"{req.name} {version} has no wheel for the image's platform ({target.describe()}) and no sdist: the "
            f"lock lists only {', '.join(sorted(a.filename for a in artifacts))}.",
            hint="choose a base image whose Python and glibc fit those wheels (--base-image), override the target "
                 "with --target-python/--target-glibc, or let the build fetch from the index with --online")
    vendored, left_out = _vendored(snapshot)
    return WheelSet(target=target, choices=tuple(choices), vendored=tuple(vendored), left_out=tuple(left_out))


def _artifacts_for(req: LockedRequirement, dist: Distribution | None) -> list[Artifact]:
    if req.url:
        filename = urllib.parse.unquote(req.url.split("#", 1)[0].rsplit("/", 1)[-1])
        return [Artifact(filename=filename, sha256=h, url=req.url) for h in req.hashes[:1]]
    if dist is None:
        return []
    wanted = set(req.hashes)
    return [a for a in dist.artifacts if a.sha256.lower() in wanted]


def _vendored(snapshot: Snapshot) -> tuple[list[Vendored], list[str]]:
    from envcap.emit.requirements import dispositions

    vendored: list[Vendored] = []
    left_out: list[str] = []
    for item in dispositions(snapshot):
        dist = item.dist
        origin = dist.origin
        if item.kind == "missing":
            left_out.append(f"{dist.name}=={dist.version}: {item.note or 'no hash could be pinned'}")
            continue
        if item.kind != "vendored" or origin is None:
            continue
        if origin.kind == "vcs" and origin.url and origin.commit:
            url = origin.url if "+" in origin.url.split("://", 1)[0] else f"{origin.vcs or 'git'}+{origin.url}"
            source = f"{url}@{origin.commit}" + (f"#subdirectory={origin.subdirectory}" if origin.subdirectory else "")
            vendored.append(Vendored(dist.name, dist.version, "vcs", source, f"vcs:{source}"))
            continue
        path = _local_path(origin.url or dist.location or "")
        if origin.subdirectory and path is not None:
            path = path / origin.subdirectory
        if path is None or not path.exists():
            raise ArtifactError(
                f"{dist.name} {dist.version} was installed from {origin.url or dist.location}, which no longer exists "
                "on this machine, so it cannot be built into the image.",
                hint="restore that folder or file, or uninstall it and take a new snapshot")
        if path.is_dir():
            vendored.append(Vendored(dist.name, dist.version, "editable" if origin.kind == "editable" else "directory",
                                     str(path), f"tree:{tree_digest(path)}"))
        else:
            vendored.append(Vendored(dist.name, dist.version, "file", str(path),
                                     f"file:{origin.sha256 or sha256_file(path)}"))
    return vendored, left_out


def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


def tree_digest(root: Path) -> str:
    """A digest of a local project's source files (not its build output), to know when to rebuild it.

    Large files count by size and modification time: hashing a dataset that sits in the project
    folder on every build would cost more than the build.
    """
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            relative = path.relative_to(root).as_posix()
            if stat.st_size < HASH_WHOLE_FILE_BELOW:
                content = sha256_file(path)
            else:
                content = f"{stat.st_size}:{stat.st_mtime_ns}"
            digest.update(f"{relative}\0{content}\n".encode())
    return digest.hexdigest()




# -- the cache ----------------------------------------------------------------------------------
@dataclass
class FetchStats:
    files: int = 0
    downloaded_bytes: int = 0
    reused: int = 0
    built: list[str] = field(default_factory=list)


class Wheelhouse:
    """Files by sha256 under ``root`` (``cache_dir()/wheels``); a file enters only after its hash matched."""

    def __init__(self, root: Path, *, workers: int = DOWNLOAD_WORKERS, timeout: float = 60.0,
                 runner: Runner = run, python: str = sys.executable, http: Downloader | None = None) -> None:
        self.root = Path(root)
        self.http = http
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
        local = _local_path(url)
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

    # -- wheels built on the host -----------------------------------------------------------------
    def built_wheel(self, key: str, source: str, name: str, target: TargetPlatform) -> Path:
        """``pip wheel --no-deps`` of ``source`` on the host, cached under ``key``; must fit the target."""
        folder = self.root / "built" / hashlib.sha256(f"{key}|{target.key()}".encode()).hexdigest()[:32]
        existing = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        if existing:
            return existing[0]
        with tempfile.TemporaryDirectory(prefix="envcap-wheel-", dir=self.root if self.root.is_dir() else None) as tmp:
            argv = [self.python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--no-cache-dir",
                    "--wheel-dir", tmp, source]
            try:
                done = self.runner(argv, timeout=1800)
            except RunFailed as exc:
                raise ArtifactError(f"cannot build {name} into a wheel on this machine: {exc}.",
                                    hint="make sure pip works for the Python envcap runs under") from None
            if done.returncode != 0:
                tail = " | ".join(line for line in (done.stderr or done.stdout).strip().splitlines()[-3:])
                raise ArtifactError(f"building {name} into a wheel on this machine failed: {tail or 'no output'}.",
                                    hint="install what its build needs (a compiler, headers), or use --online to "
                                         "build it inside the image")
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise ArtifactError(f"pip built no wheel for {name}.",
                                    hint="run the pip wheel command by hand to see why")
            wheel = wheels[0]
            ranks = {tag: i for i, tag in enumerate(target.tags())}
            if wheel_rank(wheel.name, ranks) is None:
                raise ArtifactError(
                    f"{name} built on this machine gives {wheel.name}, which the image ({target.describe()}) cannot "
                    "install.",
                    hint="run envcap under the image's Python version, or use --online to build it inside the image")
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / wheel.name
            shutil.copyfile(wheel, folder / f".{wheel.name}.tmp")
            os.replace(folder / f".{wheel.name}.tmp", final)
            return final


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link from the cache when on one filesystem (no copy of a 2 GB wheel), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


__all__ = ["Choice", "FetchStats", "LockedRequirement", "RequirementsLock", "TargetPlatform",
           "Vendored", "WheelSet", "Wheelhouse", "choose", "link_or_copy", "parse_requirements_lock",
           "platform_from_snapshot", "platform_tags", "tree_digest", "wheel_rank"]
