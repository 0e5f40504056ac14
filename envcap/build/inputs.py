"""Everything that decides an image, known before downloading anything: the plan, the wheels, the digest.

Why split from the build itself: if the engine already has an image under this digest, the build
is over before a single file is read or sent. Reads the lock and asks the engine about base
images, never the live environment, and never the files ``envcap snapshot`` generated.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from envcap import __version__
from envcap.build.install import SCRIPT as INSTALL_SCRIPT
from envcap.build.install import install_digest
from envcap.build.reach import Reach
from envcap.build.target import TargetPlatform, check_fits, probe_platform, with_overrides
from envcap.build.wheels import WheelSet, choose, from_source_warning
from envcap.emit import generated_files, stale_outputs
from envcap.emit.dockerfile import (
    render_dockerfile,
    render_dockerignore,
    render_final_dockerfile,
    render_runtime_dockerfile,
)
from envcap.emit.plan import BuildPlan, choices_of, make_plan
from envcap.engine import BuildEvent, ContainerEngine, ImageInfo
from envcap.errors import LockfileError, UsageError
from envcap.lock import Snapshot, content_digest, digest_matches, load_snapshot, lock_path

DIGEST_FORMAT = 3  # 3: the install image (envcap-venv) and the final image are built apart
TAG_REPOSITORY = "envcap"
INSTALL_REPOSITORY = "envcap-venv"
RUNTIME_REPOSITORY = "envcap-runtime"
INSTALL_DIGEST_LABEL = "io.envcap.install-digest"
BUILD_DIGEST_LABEL = "io.envcap.build-digest"
CREATED_LABEL = "org.opencontainers.image.created"


@dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None  # overrides the lock's recorded base image
    online: bool = False
    tags: tuple[str, ...] = ()  # extra names for the image, besides the content tag
    target_python: str | None = None  # override what the image's Python is taken to be (3.11.2)
    target_glibc: str | None = None  # override the image's glibc (2.36)
    source_date_epoch: str | None = None  # SOURCE_DATE_EPOCH: the image's creation date label
    allow_paths: tuple[Path, ...] = ()  # local sources outside the lock's project that may be read (--allow-path)


@dataclass(frozen=True)
class BuildInputs:
    """Everything that decides the image, known before downloading anything."""

    lock_dir: Path
    snapshot: Snapshot
    plan: BuildPlan
    dockerfile: str
    dockerignore: str
    requirements: str  # requirements.lock as generated from the lock (used as is by --online builds)
    target: TargetPlatform
    wheels: WheelSet
    bases: dict[str, str]  # image reference -> id, for every FROM
    labels: dict[str, str]
    digest: str
    tag: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # said loudly: distributions built from source instead of their wheels
    install_digest: str = ""  # what decides the install image (packages, base, platform, installer)
    install_tag: str = ""  # envcap-venv:<install digest>
    runtime_dockerfile: str | None = None  # CUDA bases: Python copied onto the base, built before the install
    runtime_tag: str | None = None
    final_dockerfile: str = ""  # the image's own Dockerfile: settings on top of the install image


class BuildProgress(Protocol):
    """What the CLI shows while building; library code reports, never prints."""

    def stage(self, text: str) -> None: ...

    def downloads(self, files: int, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def build_event(self, event: BuildEvent) -> None: ...


class NoProgress:
    def stage(self, text: str) -> None:
        pass

    def downloads(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def build_event(self, event: BuildEvent) -> None:
        pass


def load_buildable(lock_dir: Path) -> tuple[Snapshot, list[str]]:
    """The lock as a build uses it, with its digest recomputed when it was edited by hand."""
    snapshot = load_snapshot(lock_dir)
    if snapshot.python is None:
        raise LockfileError(f"{lock_path(Path(lock_dir))} holds no Python facts, so no image can be built from it.",
                            hint="take the snapshot with `envcap snapshot` (a foreign report is not enough)")
    notes = []
    if not digest_matches(snapshot) or snapshot.digest is None:
        notes.append("envcap.lock.json was edited after the snapshot (its digest no longer matches its content)")
        snapshot = snapshot.with_digest()  # images are labelled with the digest of what they were built from
    return snapshot, notes


def ensure_image(engine: ContainerEngine, ref: str, progress: BuildProgress) -> ImageInfo:
    found = engine.image(ref)
    if found is not None:
        return found
    progress.stage(f"pulling {ref}")
    return engine.pull(ref)


def source_date(epoch: str | None) -> str | None:
    if epoch is None or epoch == "":
        return None
    try:
        moment = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970.",
                         hint="set it to an integer, e.g. $(git log -1 --format=%ct)") from None
    return moment.isoformat().replace("+00:00", "Z")


def decide_target(snapshot: Snapshot, plan: BuildPlan, engine: ContainerEngine, bases: dict[str, ImageInfo],
                  options: BuildOptions) -> tuple[TargetPlatform, list[str]]:
    """The platform the wheels must fit: the base image's own Python where it can be asked, else the lock's.

    nvidia/cuda images carry no Python of their own (it is copied in from the python image), so for
    them the lock's recorded platform (Ubuntu's glibc) is the answer.
    """
    recorded = choices_of(snapshot, options.base_image).platform
    if plan.family == "cuda" or (options.target_python and options.target_glibc):
        target = TargetPlatform.from_record(recorded, f"lock ({plan.base_image})")
    else:
        target = probe_platform(engine, bases[plan.base_image], plan.base_image)
    target = with_overrides(target, options.target_python, options.target_glibc)
    return target, check_fits(target, recorded, plan.base_image, overridden=bool(options.target_python))


def build_digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_tag(digest: str) -> str:
    return f"{TAG_REPOSITORY}:{digest.split(':', 1)[-1][:24]}"


def prepare(lock_dir: Path, engine: ContainerEngine, options: BuildOptions = BuildOptions(),
            progress: BuildProgress | None = None) -> BuildInputs:
    """Decides the image and its digest from the lock and the engine's base images, nothing else."""
    progress = progress or NoProgress()
    snapshot, notes = load_buildable(lock_dir)
    folder = lock_path(Path(lock_dir)).parent
    notes += stale_outputs(folder, generated_files(snapshot))
    hermetic = not options.online
    probe_plan = make_plan(snapshot, base_image=options.base_image, hermetic=hermetic)
    bases = {ref: ensure_image(engine, ref, progress)
             for ref in dict.fromkeys([probe_plan.python_image, probe_plan.base_image])}
    target, platform_notes = decide_target(snapshot, probe_plan, engine, bases, options)
    notes += platform_notes
    wheels = choose(snapshot, target, hermetic=hermetic, reach=Reach.for_lock(Path(lock_dir), options.allow_paths))
    notes += wheels.notes
    warnings = tuple(from_source_warning(c, target) for c in wheels.choices if c.build_from_sdist)
    plan = make_plan(snapshot, base_image=options.base_image, hermetic=hermetic, has_vendored=bool(wheels.vendored),
                     base_digest=bases[probe_plan.base_image].digest_of(probe_plan.base_image),
                     python_digest=bases[probe_plan.python_image].digest_of(probe_plan.python_image))
    dockerfile = render_dockerfile(plan)
    dockerignore = render_dockerignore()
    from envcap.emit.requirements import render_requirements_lock

    requirements = render_requirements_lock(snapshot)
    runtime_dockerfile = render_runtime_dockerfile(plan)
    base_ids = {ref: info.id for ref, info in bases.items()}
    runtime_tag = None
    if runtime_dockerfile is not None:
        runtime = install_digest({"format": DIGEST_FORMAT, "bases": base_ids, "dockerfile": runtime_dockerfile})
        runtime_tag = f"{RUNTIME_REPOSITORY}:{runtime.split(':', 1)[-1][:24]}"
    install = install_digest({
        "format": DIGEST_FORMAT, "envcap": __version__, "bases": base_ids, "runtime": runtime_dockerfile,
        "target": target.key(), "wheels": wheels.digest_items(),
        "hermetic": hermetic, "online-requirements": None if hermetic else requirements,
        "user": plan.user, "uid": plan.uid, "venv": plan.venv, "script": INSTALL_SCRIPT})
    install_tag = f"{INSTALL_REPOSITORY}:{install.split(':', 1)[-1][:24]}"
    final_dockerfile = render_final_dockerfile(plan, install_tag)
    created = source_date(options.source_date_epoch)
    labels = {BUILD_DIGEST_LABEL: "", "io.envcap.hermetic": "true" if hermetic else "false",
              "io.envcap.target": target.key()}
    if created:
        labels[CREATED_LABEL] = created
    payload = {
        "format": DIGEST_FORMAT,
        "envcap": __version__,
        "lock": content_digest(snapshot),
        "install": install,
        "dockerfile": final_dockerfile,
        "labels": labels,
    }
    digest = build_digest(payload)
    labels[BUILD_DIGEST_LABEL] = digest
    return BuildInputs(lock_dir=Path(lock_dir), snapshot=snapshot, plan=plan, dockerfile=dockerfile,
                       dockerignore=dockerignore, requirements=requirements, target=target, wheels=wheels,
                       bases={ref: info.id for ref, info in bases.items()}, labels=labels, digest=digest,
                       tag=content_tag(digest), notes=tuple(notes), warnings=warnings,
                       install_digest=install, install_tag=install_tag, runtime_dockerfile=runtime_dockerfile,
                       runtime_tag=runtime_tag,
                       final_dockerfile=final_dockerfile)


def find_cached(engine: ContainerEngine, inputs: BuildInputs) -> ImageInfo | None:
    found = engine.image(inputs.tag)
    if found is not None and found.labels.get(BUILD_DIGEST_LABEL) == inputs.digest:
        return found
    return None
