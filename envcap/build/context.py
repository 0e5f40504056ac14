"""The build context: the Dockerfile, the requirements pip installs, and every hash-checked wheel.

Why assembled on the host: every download is checked against the lock before anything is handed
to the engine (the first mismatch stops the build with the file's name), and the image then
installs with ``--no-index``: nothing inside the build reaches the network. Sources (sdists, local
projects, git commits) are never built here: ``fromsource`` builds them in the sandbox container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from envcap.build.fromsource import SourceBuilder
from envcap.build.inputs import BuildInputs, BuildProgress
from envcap.build.wheelhouse import FetchStats, Wheelhouse, link_or_copy
from envcap.engine import ContainerEngine
from envcap.fs import atomic_write, sha256_file


@dataclass
class ContextReport:
    stats: FetchStats = field(default_factory=FetchStats)
    wheels: int = 0
    built_from_sdist: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def context_requirements(inputs: BuildInputs, extra_hashes: dict[str, list[str]]) -> str:
    """The lock's pins for pip inside the build; wheels built from sdists add their own hash.

    Why a wheel built from a hash-checked sdist may be trusted: the sdist was checked against the
    lock on this host, and the wheel made from it is pinned by its own hash right here.
    """
    if not inputs.plan.hermetic:
        return inputs.requirements
    # Nothing here may change with the lock's variables (no lock digest): the install is keyed by its packages.
    lines = ["# requirements.lock as installed by `envcap build` (hermetic: every file is in wheels/).",
             f"# Wheels chosen for {inputs.target.describe()}."]
    for choice in inputs.wheels.choices:
        hashes = list(choice.allowed_hashes) + extra_hashes.get(choice.name, [])
        lines.append(f"{choice.name}=={choice.version} \\")
        for i, digest in enumerate(hashes):
            lines.append(f"    --hash=sha256:{digest}" + (" \\" if i < len(hashes) - 1 else ""))
    return "\n".join(lines) + "\n"


def source_builder(inputs: BuildInputs, engine: ContainerEngine, wheelhouse: Wheelhouse) -> SourceBuilder:
    """The sandbox runs the target's own Python image: the base itself, or the python image a cuda one copies."""
    ref = inputs.plan.python_image
    return SourceBuilder(engine, wheelhouse, image=inputs.bases.get(ref, ref), image_ref=ref, target=inputs.target)


def stage_wheels(inputs: BuildInputs, folder: Path, wheelhouse: Wheelhouse, progress: BuildProgress,
                 engine: ContainerEngine) -> tuple[ContextReport, str]:
    """``folder/wheels`` (and ``wheels/vendored``) with every hash-checked wheel, sources built in the
    sandbox; returns the report and the requirements pip or uv install them by."""
    report = ContextReport()
    sources = source_builder(inputs, engine, wheelhouse)
    wheels_dir = folder / "wheels"
    (wheels_dir / "vendored").mkdir(parents=True)
    extra_hashes: dict[str, list[str]] = {}
    if inputs.plan.hermetic:
        artifacts = [c.artifact for c in inputs.wheels.choices]
        progress.stage(f"fetching {len(artifacts)} files for {inputs.target.describe()}")
        progress.downloads(len(artifacts), sum(a.size or 0 for a in artifacts))
        paths = wheelhouse.fetch(artifacts, on_bytes=progress.advance, stats=report.stats)
        for choice in inputs.wheels.choices:
            path = paths[choice.artifact.sha256.lower()]
            if choice.build_from_sdist:
                progress.stage(f"building {choice.name} {choice.version} from its sdist in the sandbox")
                path = sources.from_sdist(choice.name, choice.version, path, choice.artifact.filename,
                                          choice.artifact.sha256)
                extra_hashes.setdefault(choice.name, []).append(sha256_file(path))
                report.built_from_sdist.append(f"{choice.name}=={choice.version}")
            link_or_copy(path, wheels_dir / path.name)
            report.wheels += 1
    for item in inputs.wheels.vendored:
        progress.stage(f"building {item.name} {item.version} ({item.kind}) into a wheel in the sandbox")
        path = sources.from_vendored(item)
        link_or_copy(path, wheels_dir / "vendored" / path.name)
    report.notes.extend(sources.notes)
    return report, context_requirements(inputs, extra_hashes)


def assemble_context(inputs: BuildInputs, folder: Path, wheelhouse: Wheelhouse, progress: BuildProgress,
                     engine: ContainerEngine) -> ContextReport:
    """A self-contained context any builder can build offline (``envcap build --context DIR``):
    the multi-stage Dockerfile, hash-checked wheels, vendored wheels, the requirements."""
    report, requirements = stage_wheels(inputs, folder, wheelhouse, progress, engine)
    atomic_write(folder / "Dockerfile", inputs.dockerfile)
    atomic_write(folder / ".dockerignore", inputs.dockerignore)
    atomic_write(folder / "requirements.lock", requirements)
    return report


__all__ = ["ContextReport", "assemble_context", "context_requirements", "source_builder", "stage_wheels"]
