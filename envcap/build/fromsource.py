"""Wheels from sources (sdists, project folders, git commits), built in the sandbox and cached by hashes.

Why one place for all three: they differ only in how the source reaches the sandbox (an sdist file
as is, a project folder copied without its build output or links leading out of it, a commit
exported by git); what the wheel depends on is the same for all and makes its cache key: the
source's hash (sdist sha256, tree digest, commit), the target platform and the exact backend files.
A name never makes a path: the cache folder is that key's hash, and the wheel's own file name is
checked before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from envcap.build.backends import BackendFetcher, BackendSet, parse_requires, requires_from_sdist, requires_from_tree
from envcap.build.reach import project_tree, stage_tree
from envcap.build.sandbox import SandboxJob, SourceMode, build_in_sandbox, check_wheel, invoking_user
from envcap.build.target import TargetPlatform, probe_platform
from envcap.build.vcs import export_commit
from envcap.build.vendor import Vendored
from envcap.build.wheelhouse import Wheelhouse, link_or_copy
from envcap.engine import ContainerEngine, ImageInfo
from envcap.errors import ArtifactError
from envcap.fs import atomic_write, file_mode, sha256_file

Stager = Callable[[Path], tuple[SourceMode, str]]  # fills the empty source folder; (mode, entry) for the sandbox


class SourceBuilder:
    """Builds sources into wheels for ``target`` in a sandbox from ``image`` (the target's own Python image)."""

    def __init__(self, engine: ContainerEngine, wheelhouse: Wheelhouse, *, image: str, image_ref: str,
                 target: TargetPlatform, user: str | None = None) -> None:
        self.engine = engine
        self.wheelhouse = wheelhouse
        self.image = image
        self.image_ref = image_ref
        self.target = target
        self.user = user or invoking_user()
        self.backends = BackendFetcher(wheelhouse, runner=wheelhouse.runner, python=wheelhouse.python,
                                       lookup=wheelhouse.lookup)
        self.notes: list[str] = []
        self._sandbox_platform: TargetPlatform | None = None

    @property
    def root(self) -> Path:
        return self.wheelhouse.root

    def sandbox_platform(self) -> TargetPlatform:
        """The sandbox image's own Python and glibc: its backend's wheels must install there."""
        if self._sandbox_platform is None:
            self._sandbox_platform = probe_platform(self.engine, ImageInfo(id=self.image), self.image_ref)
        return self._sandbox_platform

    # -- the three kinds of source ---------------------------------------------------------------
    def from_sdist(self, name: str, version: str, sdist: Path, filename: str, sha256: str) -> Path:
        """An sdist already checked against the lock (by ``sha256``), built into a wheel."""
        requires = requires_from_sdist(sdist, f"{name} {version}")

        def stage(folder: Path) -> tuple[SourceMode, str]:
            link_or_copy(sdist, folder / filename)
            return "sdist", filename

        return self._build(name, version, f"sdist:{sha256.lower()}", requires, stage)

    def from_vendored(self, item: Vendored) -> Path:
        what = f"{item.name} {item.version}"
        if item.kind == "vcs":
            return self._from_vcs(item)
        path = Path(item.source)
        if item.kind == "file":
            expected = item.identity.removeprefix("file:")
            if sha256_file(path) != expected.lower():
                raise ArtifactError(f"{path} no longer matches the lock for {what} (its sha256 changed).",
                                    hint="restore that file, or take a new snapshot")
            if path.name.endswith(".whl"):
                check_wheel(path.name, item.name, item.version, self.target, f"the local file {path}")
                return path
            return self.from_sdist(item.name, item.version, path, path.name, expected)
        tree = project_tree(path)

        def stage(folder: Path) -> tuple[SourceMode, str]:
            stage_tree(tree, folder)
            return "tree", "."

        return self._build(item.name, item.version, item.identity, requires_from_tree(path, what), stage)

    def _from_vcs(self, item: Vendored) -> Path:
        what = f"{item.name} {item.version}"
        entry = item.subdirectory or "."
        memo = self.root / "requires" / f"{hashlib.sha256(item.identity.encode()).hexdigest()}.toml"
        try:
            requires: tuple[str, ...] | None = parse_requires(memo.read_bytes(), what)
        except (OSError, ArtifactError):
            requires = None

        def stage(folder: Path) -> tuple[SourceMode, str]:
            skipped = export_commit(self.wheelhouse.runner, item.source, item.commit or "", folder, what)
            self.notes.extend(f"{item.name}=={item.version}: {name} in its repository is a link leading outside it, "
                              "or an odd file, and was left out" for name in skipped[:20])
            if not (folder / entry).is_dir():
                raise ArtifactError(f"the repository of {what} has no folder {entry} at {item.commit}.",
                                    hint="take a new snapshot")
            return "tree", entry

        return self._build(item.name, item.version, item.identity, requires, stage, memo=memo)

    # -- the build -------------------------------------------------------------------------------
    def _build(self, name: str, version: str, identity: str, requires: tuple[str, ...] | None, stage: Stager,
               *, memo: Path | None = None) -> Path:
        what = f"{name} {version}"
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sandbox-", dir=self.root) as tmp:
            work = Path(tmp)
            source = work / "src"
            source.mkdir()
            staged: tuple[SourceMode, str] | None = None
            if requires is None:  # a commit not seen before: its pyproject.toml is known once it is exported
                staged = stage(source)
                requires = requires_from_tree(source / staged[1], what)
                if memo is not None:
                    atomic_write(memo, _requires_toml(requires))
            backend = self.backends.fetch(requires, self.sandbox_platform(), what)
            key = hashlib.sha256(json.dumps([identity, self.target.key(), backend.key()]).encode()).hexdigest()
            folder = self.root / "built" / key[:2] / key
            existing = sorted(folder.glob("*.whl")) if folder.is_dir() else []
            if existing:
                return existing[0]
            if staged is None:
                staged = stage(source)
            job = SandboxJob(name=name, version=version, image=self.image, image_ref=self.image_ref,
                             source_dir=source, mode=staged[0], entry=staged[1],
                             backend_dir=self._backend_folder(work / "backend", backend), out_dir=work / "out",
                             user=self.user)
            job.out_dir.mkdir()
            wheel = build_in_sandbox(self.engine, job, self.target)
            return _keep(wheel, folder)

    def _backend_folder(self, folder: Path, backend: BackendSet) -> Path:
        folder.mkdir()
        for artifact in backend.files:
            link_or_copy(self.wheelhouse.path_for(artifact), folder / artifact.filename)
        (folder / "requirements.txt").write_text(backend.requirements(), "utf-8")
        return folder


def _requires_toml(requires: tuple[str, ...]) -> str:
    """The memo of a commit's build requirements, in the one format ``parse_requires`` reads."""
    return "[build-system]\nrequires = [" + ", ".join(json.dumps(r) for r in requires) + "]\n"


def _keep(wheel: Path, folder: Path) -> Path:
    """Copies the sandbox's wheel into the cache, reading it without following links (it was checked)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / wheel.name
    fd = os.open(wheel, os.O_RDONLY | os.O_NOFOLLOW)
    out_fd, partial = tempfile.mkstemp(prefix=".part-", dir=folder)  # two builds of one source may race here
    try:
        with os.fdopen(fd, "rb") as src, os.fdopen(out_fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(partial, file_mode())  # mkstemp makes 0600; the cache follows the umask
        os.replace(partial, final)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return final


__all__ = ["SourceBuilder"]
