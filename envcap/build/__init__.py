"""``envcap build``: from a saved lock to an image, content-addressed, hermetic by default.

The flow is split where the cost is: ``inputs.prepare`` decides everything that makes the image
(plan, Dockerfile, target platform, the exact file of every distribution) from the lock and the
engine's base images alone, and digests it; if the engine already has an image under that digest,
the build is over before a single file is read or sent. Only otherwise are files fetched and
hash-checked (``wheelhouse``), a context assembled (``context``) and handed to the engine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envcap.build.context import ContextReport, assemble_context, context_requirements, stage_wheels
from envcap.build.inputs import (
    BUILD_DIGEST_LABEL,
    CREATED_LABEL,
    INSTALL_DIGEST_LABEL,
    BuildInputs,
    BuildOptions,
    BuildProgress,
    NoProgress,
    build_digest,
    content_tag,
    find_cached,
    prepare,
    source_date,
)
from envcap.build.install import PIP, choose_installer, install_spec, install_venv
from envcap.build.target import probe_platform
from envcap.build.wheelhouse import Wheelhouse
from envcap.engine import MANAGED_LABEL, Commit, ContainerEngine, ImageInfo
from envcap.engine.leftovers import sweep
from envcap.errors import UsageError
from envcap.fs import atomic_write, cache_dir
from envcap.lock.validate import IMAGE_REFERENCE

PURPOSE_LABEL = "io.envcap.purpose"


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str
    tags: tuple[str, ...]
    cached: bool
    digest: str
    base_image: str
    target: str
    hermetic: bool
    wheels: int = 0
    downloaded_bytes: int = 0
    reused_files: int = 0
    built_from_sdist: tuple[str, ...] = ()
    vendored: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # distributions built from source instead of their wheels, said loudly
    seconds: float = 0.0
    install_image: str = ""  # envcap-venv:<digest>, the packages' image this one is built on
    packages_reused: bool = False  # the install image existed: only the settings layer was built

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image_id, "tag": self.tag, "tags": list(self.tags), "cached": self.cached,
                "digest": self.digest, "base_image": self.base_image, "target": self.target,
                "hermetic": self.hermetic, "wheels": self.wheels, "downloaded_bytes": self.downloaded_bytes,
                "reused_files": self.reused_files, "built_from_sdist": list(self.built_from_sdist),
                "vendored": list(self.vendored), "left_out": list(self.left_out), "notes": list(self.notes),
                "warnings": list(self.warnings), "seconds": round(self.seconds, 3),
                "install_image": self.install_image, "packages_reused": self.packages_reused}


# -- the whole build -----------------------------------------------------------------------------
def check_reference(ref: str) -> None:
    """A --tag the engine would refuse is refused before a build, not after it (Docker's grammar)."""
    if "@" in ref or not IMAGE_REFERENCE.fullmatch(ref):
        raise UsageError(f"--tag {ref!r} is not a valid image name.",
                         hint="use lowercase letters, digits and . _ - in the name, then an optional :tag "
                              "(for example --tag team/train:v1)")


def build(lock_dir: Path, engine: ContainerEngine, options: BuildOptions = BuildOptions(), *,
          progress: BuildProgress | None = None, wheelhouse: Wheelhouse | None = None,
          clock: Callable[[], float] = time.monotonic) -> BuildResult:
    """Builds the image of ``lock_dir`` unless the engine already has it under the same digest.

    Two images: the install image (base + the locked venv, installed in a network-less container,
    see ``envcap.build.install``), shared by every lock with the same packages, and the image itself,
    which only adds the lock's variables and labels to it.
    """
    started = clock()
    for extra in options.tags:
        check_reference(extra)
    progress = progress or NoProgress()
    sweep(engine)  # what a build or replay that died with this engine left there (one list call)
    inputs = prepare(lock_dir, engine, options, progress)
    cached = find_cached(engine, inputs)
    if cached is not None:
        for extra in options.tags:
            engine.tag(cached.id, extra)
        return _result(inputs, cached.id, True, options, ContextReport(), clock() - started)
    wheelhouse = wheelhouse or Wheelhouse(cache_dir() / "wheels")
    contexts = cache_dir() / "contexts"  # beside the wheel cache, so wheels are hard-linked, not copied
    contexts.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ctx-", dir=contexts))
    try:
        report = ContextReport()
        installed = find_install_image(engine, inputs)
        if installed is None:
            report = make_install_image(inputs, folder, wheelhouse, progress, engine)
        progress.stage("building the image")
        final = folder / "final"
        final.mkdir()
        atomic_write(final / "Dockerfile", inputs.final_dockerfile)
        info = engine.build(final, tag=inputs.tag, labels=inputs.labels, on_event=progress.build_event,
                            network_disabled=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for extra in options.tags:
        engine.tag(info.id, extra)
    return replace(_result(inputs, info.id, False, options, report, clock() - started),
                   packages_reused=installed is not None)


@dataclass(frozen=True)
class ContextResult:
    folder: Path
    wheels: int
    digest: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"context": str(self.folder), "wheels": self.wheels, "digest": self.digest, "notes": list(self.notes),
                "warnings": list(self.warnings)}


def write_context(lock_dir: Path, engine: ContainerEngine, out: Path, options: BuildOptions = BuildOptions(), *,
                  progress: BuildProgress | None = None, wheelhouse: Wheelhouse | None = None) -> ContextResult:
    """``envcap build --context OUT``: a self-contained build context any builder builds offline.

    Why: CI systems build with BuildKit, kaniko or buildah, not through envcap; they get the same
    hash-checked wheels and the multi-stage Dockerfile that installs them with ``--no-index``.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--context {out} is not an empty folder.", hint="pass a new or empty folder")
    progress = progress or NoProgress()
    inputs = prepare(lock_dir, engine, options, progress)
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = assemble_context(inputs, out, wheelhouse or Wheelhouse(cache_dir() / "wheels"), progress, engine)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left to be built
        raise
    return ContextResult(folder=out, wheels=report.wheels, digest=inputs.digest,
                         notes=tuple(inputs.notes) + tuple(report.notes), warnings=inputs.warnings)


def find_install_image(engine: ContainerEngine, inputs: BuildInputs) -> ImageInfo | None:
    found = engine.image(inputs.install_tag)
    if found is not None and found.labels.get(INSTALL_DIGEST_LABEL) == inputs.install_digest:
        return found
    return None


def make_install_image(inputs: BuildInputs, folder: Path, wheelhouse: Wheelhouse, progress: BuildProgress,
                       engine: ContainerEngine) -> ContextReport:
    """Wheels fetched and checked, installed by a network-less container, which the engine commits."""
    report, requirements = stage_wheels(inputs, folder / "stage", wheelhouse, progress, engine)
    atomic_write(folder / "stage" / "requirements.txt", requirements if inputs.plan.hermetic else inputs.requirements)
    plan = inputs.plan
    start_from = runtime_image(inputs, folder, progress, engine)
    count = len(inputs.wheels.choices) + len(inputs.wheels.vendored)
    # The installer is not part of the install digest: uv and pip install the same files; uv is faster.
    installer = choose_installer(wheelhouse, inputs.target) if plan.hermetic else PIP
    progress.stage(f"installing {count} distributions with {installer.describe()} in a "
                   f"{'network-less ' if plan.hermetic else ''}container, kept as {inputs.install_tag}")
    repository, _, tag = inputs.install_tag.partition(":")
    labels = {MANAGED_LABEL: "true", INSTALL_DIGEST_LABEL: inputs.install_digest, PURPOSE_LABEL: "packages",
              "io.envcap.target": inputs.target.key(), "io.envcap.installer": installer.identity}
    spec = install_spec(image=start_from, stage=folder / "stage", venv=plan.venv, installer=installer,
                        user=plan.user, uid=plan.uid, commit=Commit(repository, tag, labels), network=not plan.hermetic)
    install_venv(engine, spec, plan.python_image)
    return report


def runtime_image(inputs: BuildInputs, folder: Path, progress: BuildProgress, engine: ContainerEngine) -> str:
    """Where the install starts: the base itself, or for CUDA bases the base with the exact Python copied in."""
    if inputs.runtime_dockerfile is None or inputs.runtime_tag is None:
        return inputs.bases.get(inputs.plan.base_image, inputs.plan.base_image)
    if engine.image(inputs.runtime_tag) is None:
        progress.stage(f"copying Python {inputs.plan.python_version} onto {inputs.plan.base_image}")
        context = folder / "runtime"
        context.mkdir()
        atomic_write(context / "Dockerfile", inputs.runtime_dockerfile)
        engine.build(context, tag=inputs.runtime_tag, on_event=progress.build_event, network_disabled=True,
                     labels={MANAGED_LABEL: "true", PURPOSE_LABEL: "runtime"})
    return inputs.runtime_tag


def _result(inputs: BuildInputs, image_id: str, cached: bool, options: BuildOptions, report: ContextReport,
            seconds: float) -> BuildResult:
    return BuildResult(
        image_id=image_id, tag=inputs.tag, tags=(inputs.tag, *options.tags), cached=cached, digest=inputs.digest,
        base_image=inputs.plan.base_image, target=inputs.target.describe(), hermetic=inputs.plan.hermetic,
        wheels=report.wheels, downloaded_bytes=report.stats.downloaded_bytes, reused_files=report.stats.reused,
        built_from_sdist=tuple(report.built_from_sdist),
        vendored=tuple(f"{v.name}=={v.version} ({v.kind})" for v in inputs.wheels.vendored),
        left_out=inputs.wheels.left_out, notes=(*inputs.notes, *report.notes), warnings=inputs.warnings,
        seconds=seconds, install_image=inputs.install_tag)


__all__ = ["BUILD_DIGEST_LABEL", "CREATED_LABEL", "BuildInputs", "BuildOptions", "BuildProgress", "BuildResult",
           "ContextResult", "NoProgress", "assemble_context", "build", "build_digest", "check_reference",
           "content_tag", "context_requirements", "find_cached", "prepare", "probe_platform", "source_date",
           "write_context"]
