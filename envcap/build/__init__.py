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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcap.build.context import ContextReport, assemble_context, context_requirements
from envcap.build.inputs import (
    BUILD_DIGEST_LABEL,
    CREATED_LABEL,
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
from envcap.build.target import probe_platform
from envcap.build.wheelhouse import Wheelhouse
from envcap.engine import ContainerEngine
from envcap.engine.leftovers import sweep
from envcap.errors import UsageError
from envcap.fs import cache_dir
from envcap.lock.validate import IMAGE_REFERENCE


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

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image_id, "tag": self.tag, "tags": list(self.tags), "cached": self.cached,
                "digest": self.digest, "base_image": self.base_image, "target": self.target,
                "hermetic": self.hermetic, "wheels": self.wheels, "downloaded_bytes": self.downloaded_bytes,
                "reused_files": self.reused_files, "built_from_sdist": list(self.built_from_sdist),
                "vendored": list(self.vendored), "left_out": list(self.left_out), "notes": list(self.notes),
                "warnings": list(self.warnings), "seconds": round(self.seconds, 3)}


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
    """Builds the image of ``lock_dir`` unless the engine already has it under the same digest."""
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
        report = assemble_context(inputs, folder, wheelhouse, progress, engine)
        progress.stage("building the image")
        info = engine.build(folder, tag=inputs.tag, labels=inputs.labels, on_event=progress.build_event)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for extra in options.tags:
        engine.tag(info.id, extra)
    return _result(inputs, info.id, False, options, report, clock() - started)


def _result(inputs: BuildInputs, image_id: str, cached: bool, options: BuildOptions, report: ContextReport,
            seconds: float) -> BuildResult:
    return BuildResult(
        image_id=image_id, tag=inputs.tag, tags=(inputs.tag, *options.tags), cached=cached, digest=inputs.digest,
        base_image=inputs.plan.base_image, target=inputs.target.describe(), hermetic=inputs.plan.hermetic,
        wheels=report.wheels, downloaded_bytes=report.stats.downloaded_bytes, reused_files=report.stats.reused,
        built_from_sdist=tuple(report.built_from_sdist),
        vendored=tuple(f"{v.name}=={v.version} ({v.kind})" for v in inputs.wheels.vendored),
        left_out=inputs.wheels.left_out, notes=(*inputs.notes, *report.notes), warnings=inputs.warnings,
        seconds=seconds)


__all__ = ["BUILD_DIGEST_LABEL", "CREATED_LABEL", "BuildInputs", "BuildOptions", "BuildProgress", "BuildResult",
           "NoProgress", "assemble_context", "build", "build_digest", "check_reference", "content_tag",
           "context_requirements", "find_cached", "prepare", "probe_platform", "source_date"]
