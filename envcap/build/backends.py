"""Build backends for the sandbox: what a source declares it needs, fetched as wheels and hash-checked.

Why on the host and with pip download: the sandbox has no network, so its backend (setuptools,
hatchling, ...) must be handed to it, and ``pip download --only-binary=:all:`` runs no package
code (a wheel is unpacked, never executed, and no sdist is accepted). Every file pip fetched is then
checked against the sha256 the index publishes for that release (``snapshot.hashes``, with the
user's pip settings), as the lock's own wheels are, before it enters the cache.

Why ``pyproject.toml`` is read from the archive, not from an extracted copy: an sdist is a
stranger's tar file (members named ``../../x``, links to ``/etc``, a 10 GB member); only the one
member ``<top>/pyproject.toml`` is read, in one pass, with limits on its size and on how far the
scan goes. Nothing is extracted and nothing is executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from envcap._subprocess import RunFailed, Runner, run
from envcap.build.reach import inside, real
from envcap.build.target import TargetPlatform
from envcap.errors import ArtifactError
from envcap.fs import atomic_write, sha256_file
from envcap.lock import Artifact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from envcap.build.wheelhouse import Wheelhouse
    from envcap.snapshot.hashes import Release

# What pip assumes for a source without [build-system] (PEP 518).
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")
MAX_PYPROJECT_BYTES = 256 << 10
MAX_MEMBERS = 50_000  # an sdist with more members than this is not read looking for its pyproject.toml
MAX_SCANNED_BYTES = 1 << 30  # nor one whose pyproject.toml comes after a gigabyte of other members
MAX_REQUIRES = 64
DOWNLOAD_TIMEOUT_S = 600


class ReleaseLookup(Protocol):
    """What an index publishes for pinned releases: ``snapshot.hashes.ArtifactResolver`` (tests pass a fake)."""

    def resolve(self, pins: Iterable[tuple[str, str]]) -> Mapping[tuple[str, str], Release]: ...


# -- [build-system] requires, read without extracting anything -------------------------------------
def parse_requires(data: bytes, what: str) -> tuple[str, ...]:
    """``[build-system] requires`` as normalised requirement strings (the default when there is none)."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArtifactError(f"the pyproject.toml of {what} cannot be read: {str(exc)[:200]}.",
                            hint="pin a wheel of it instead, or fix its pyproject.toml") from None
    system = document.get("build-system")
    if not isinstance(system, dict) or "requires" not in system:
        return DEFAULT_REQUIRES
    requires = system["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ArtifactError(f"the pyproject.toml of {what} gives [build-system] requires that is not a list of "
                            "strings.", hint="pin a wheel of it instead")
    if len(requires) > MAX_REQUIRES:
        raise ArtifactError(f"the pyproject.toml of {what} names {len(requires)} build requirements, more than the "
                            f"{MAX_REQUIRES} envcap fetches.", hint="pin a wheel of it instead")
    parsed = []
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise ArtifactError(f"the pyproject.toml of {what} names the build requirement {text[:100]!r}, which is "
                                "not a requirement.", hint="pin a wheel of it instead") from None
        if requirement.url:
            raise ArtifactError(f"the pyproject.toml of {what} names a build requirement by URL ({requirement.name}), "
                                "which no index can vouch for.", hint="pin a wheel of it instead")
        parsed.append(str(requirement))
    return tuple(sorted(set(parsed)))


def _top_pyproject(name: str) -> bool:
    """``<top>/pyproject.toml``: the one member pip reads from an unpacked sdist."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return len(parts) == 2 and parts[1] == "pyproject.toml" and parts[0] != ".." and not name.startswith("/")


def _too_big(what: str) -> ArtifactError:
    return ArtifactError(f"the sdist of {what} is too large to look into for its pyproject.toml (more than "
                         f"{MAX_MEMBERS} members or {MAX_SCANNED_BYTES >> 20} MiB before it).",
                         hint="pin a wheel of it instead")


def _not_plain(what: str) -> ArtifactError:
    return ArtifactError(f"the pyproject.toml in the sdist of {what} is not a plain file of at most "
                         f"{MAX_PYPROJECT_BYTES >> 10} KiB (a link, a device, or too large).",
                         hint="pin a wheel of it instead; such an sdist is not what a build tool makes")


def requires_from_sdist(path: Path, what: str) -> tuple[str, ...]:
    """The build requirements of an sdist (.tar.gz, .tar.bz2, .tgz or .zip), read from its one member."""
    try:
        if path.name.endswith(".zip"):
            return _from_zip(path, what)
        return _from_tar(path, what)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ArtifactError(f"the sdist of {what} ({path.name}) is not a readable archive: {str(exc)[:200]}.",
                            hint="pin a wheel of it instead") from None


def _from_tar(path: Path, what: str) -> tuple[str, ...]:
    with tarfile.open(path, mode="r|*") as archive:  # a stream: one pass, no seeking back
        for count, member in enumerate(archive):
            if count >= MAX_MEMBERS or member.offset_data > MAX_SCANNED_BYTES:
                raise _too_big(what)
            if not _top_pyproject(member.name):
                continue
            if not member.isfile() or member.size > MAX_PYPROJECT_BYTES:
                raise _not_plain(what)
            handle = archive.extractfile(member)
            if handle is None:
                raise _not_plain(what)
            return parse_requires(handle.read(MAX_PYPROJECT_BYTES + 1), what)
    return DEFAULT_REQUIRES


def _from_zip(path: Path, what: str) -> tuple[str, ...]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _too_big(what)
        for info in infos:
            if not _top_pyproject(info.filename):
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: made on a system that records no type
            if info.is_dir() or kind not in (0, stat.S_IFREG) or info.file_size > MAX_PYPROJECT_BYTES:
                raise _not_plain(what)
            with archive.open(info) as handle:
                data = handle.read(MAX_PYPROJECT_BYTES + 1)
            if len(data) > MAX_PYPROJECT_BYTES:
                raise _not_plain(what)
            return parse_requires(data, what)
    return DEFAULT_REQUIRES


def requires_from_tree(root: Path, what: str) -> tuple[str, ...]:
    """The build requirements of a project folder; a pyproject.toml that links out of it counts as none."""
    path = root / "pyproject.toml"
    try:
        info = path.lstat()
    except OSError:
        return DEFAULT_REQUIRES
    if stat.S_ISLNK(info.st_mode) and not inside(real(path), real(root)):
        return DEFAULT_REQUIRES  # the staged copy leaves that link out too
    try:
        fd = os.open(real(path), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ArtifactError(f"the pyproject.toml of {what} is not a plain file.", hint="make it one")
            data = handle.read(MAX_PYPROJECT_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"cannot read the pyproject.toml of {what}: {exc.strerror or exc}.",
                            hint="check that folder's permissions") from None
    if len(data) > MAX_PYPROJECT_BYTES:
        raise ArtifactError(f"the pyproject.toml of {what} is larger than {MAX_PYPROJECT_BYTES >> 10} KiB.",
                            hint="that is not a project file envcap will read")
    return parse_requires(data, what)


# -- the backend's wheels --------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendSet:
    """The wheels a source's build needs, each in the wheelhouse under its (checked) sha256."""

    requires: tuple[str, ...]
    files: tuple[Artifact, ...]

    def key(self) -> str:
        """What the built wheel depends on: the exact files, by hash (never by name)."""
        return hashlib.sha256("\n".join(sorted(a.sha256 for a in self.files)).encode()).hexdigest()

    def requirements(self) -> str:
        """``name==version --hash=sha256:...`` per file, for ``pip install --require-hashes --no-deps``."""
        lines = []
        for artifact in sorted(self.files, key=lambda a: a.filename):
            name, version, _, _ = parse_wheel_filename(artifact.filename)
            lines.append(f"{name}=={version} --hash=sha256:{artifact.sha256}")
        return "".join(f"{line}\n" for line in lines)


def default_lookup() -> ReleaseLookup:
    """The index look-ups of ``envcap snapshot``, with the pip settings of the Python running envcap."""
    from envcap.fs import cache_dir
    from envcap.net.pipconf import read_pip_settings
    from envcap.snapshot.hashes import ArtifactResolver

    return ArtifactResolver.from_settings(cache_dir(), read_pip_settings(sys.prefix))


def pip_platform_args(platform: TargetPlatform) -> list[str]:
    major, minor = platform.major_minor
    short = {"cpython": "cp", "pypy": "pp"}.get(platform.implementation, platform.implementation[:2])
    args = ["--python-version", f"{major}.{minor}", "--implementation", short]
    if platform.implementation == "cpython":
        args += ["--abi", platform.abi or f"cp{major}{minor}"]
    for tag in platform.platforms():
        args += ["--platform", tag]
    return args


class BackendFetcher:
    """``pip download --only-binary=:all:`` for the sandbox's Python, every file checked against the index."""

    def __init__(self, wheelhouse: Wheelhouse, *, runner: Runner = run, python: str = sys.executable,
                 lookup: ReleaseLookup | None = None) -> None:
        self.wheelhouse = wheelhouse
        self.runner = runner
        self.python = python
        self._lookup = lookup

    def lookup(self) -> ReleaseLookup:
        if self._lookup is None:
            self._lookup = default_lookup()
        return self._lookup

    def _memo(self, requires: Sequence[str], platform: TargetPlatform) -> Path:
        key = hashlib.sha256(json.dumps([list(requires), platform.key()]).encode()).hexdigest()
        return self.wheelhouse.root / "backends" / key[:2] / f"{key}.json"

    def _remembered(self, memo: Path, requires: tuple[str, ...]) -> BackendSet | None:
        try:
            entries = json.loads(memo.read_text("utf-8"))
            files = tuple(Artifact(filename=str(f), sha256=str(s)) for f, s in entries["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        for artifact in files:
            try:
                parse_wheel_filename(artifact.filename)
            except InvalidWheelFilename:
                return None
            if os.path.basename(artifact.filename) != artifact.filename or \
                    not self.wheelhouse.path_for(artifact).is_file():
                return None
        return BackendSet(requires, files)

    def fetch(self, requires: tuple[str, ...], platform: TargetPlatform, what: str) -> BackendSet:
        """The wheels of ``requires`` (and their dependencies) for ``platform``, in the cache, checked."""
        if not requires:
            return BackendSet((), ())
        memo = self._memo(requires, platform)
        known = self._remembered(memo, requires)
        if known is not None:
            return known
        self.wheelhouse.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="backend-", dir=self.wheelhouse.root) as tmp:
            argv = [self.python, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check",
                    "--no-input", "--dest", tmp, *pip_platform_args(platform), "--", *requires]
            try:
                done = self.runner(argv, timeout=DOWNLOAD_TIMEOUT_S)
            except RunFailed as exc:
                raise ArtifactError(f"cannot fetch the build backend of {what} ({', '.join(requires)}): {exc}.",
                                    hint="make sure pip works for the Python envcap runs under") from None
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[-600:]
                raise ArtifactError(
                    f"cannot fetch the build backend of {what} ({', '.join(requires)}) as wheels for "
                    f"{platform.describe()}: {tail or 'pip download failed'}.",
                    hint="check the network and pip's index settings; a backend published only as an sdist is never "
                         f"fetched (that would run its code): pin a wheel of {what}, or use --online")
            files = self._check(Path(tmp), what)
        atomic_write(memo, json.dumps({"requires": list(requires), "platform": platform.key(),
                                       "files": [[a.filename, a.sha256] for a in files]}))
        return BackendSet(requires, files)

    def _check(self, folder: Path, what: str) -> tuple[Artifact, ...]:
        """Each downloaded wheel against the index's published sha256, then into the cache by that hash."""
        found: list[tuple[Path, str, str]] = []
        for path in sorted(folder.iterdir()):
            try:
                parsed = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                raise ArtifactError(f"pip download left {path.name!r} while fetching the build backend of {what}, "
                                    "which is not a wheel.", hint="report this; nothing was built") from None
            if not stat.S_ISREG(path.lstat().st_mode):
                raise ArtifactError(f"pip download left {path.name} as something other than a file.",
                                    hint="report this; nothing was built")
            found.append((path, canonicalize_name(parsed[0]), str(parsed[1])))
        releases = self.lookup().resolve([(name, version) for _, name, version in found])
        files = []
        for path, name, version in found:
            actual = sha256_file(path)
            release = releases.get((name, version))
            published = {a.filename: a.sha256.lower() for a in (release.artifacts if release else ())}
            if published.get(path.name) != actual:
                seen = "publishes another sha256 for it" if path.name in published else "does not list it"
                raise ArtifactError(
                    f"{path.name}, fetched to build {what}, cannot be vouched for: the index {seen} (this file's "
                    f"sha256 is {actual}); nothing was built.",
                    hint="find out why pip was served a file the index does not publish (a find-links folder, a "
                         "proxy) before trusting it")
            artifact = Artifact(filename=path.name, sha256=actual)
            target = self.wheelhouse.path_for(artifact)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            files.append(artifact)
        return tuple(files)


__all__ = ["DEFAULT_REQUIRES", "BackendFetcher", "BackendSet", "ReleaseLookup", "parse_requires",
           "pip_platform_args", "requires_from_sdist", "requires_from_tree"]
