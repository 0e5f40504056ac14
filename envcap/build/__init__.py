"""``envcap build``: from a saved lock to an image, content-addressed, hermetic by default.

The flow is split where the cost is: ``prepare`` decides everything that makes the image (plan,
Dockerfile, target platform, the exact file of every distribution) from the lock and the engine's
metadata alone, and digests it; if the engine already has an image under that digest, the build
is over before a single file is read or sent. Only otherwise does ``build`` download, hash-check,
assemble a context and hand it to the engine. Reads the lock, never the live environment.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from envcap import __version__
from envcap.engine import BuildEvent, ContainerEngine, ImageInfo, RunSpec
from envcap.errors import BuildError, LockfileError, OutputError, ReplayError, UsageError
from envcap.lock import Snapshot, content_digest, digest_matches
from envcap.fs import atomic_write, cache_dir
from envcap.emit.plan import BuildPlan, make_plan
from envcap.emit.dockerfile import render_dockerfile, render_dockerignore
from envcap.lock import load_snapshot, lock_path
from envcap.build.wheelhouse import (
    FetchStats,
    RequirementsLock,
    TargetPlatform,
    Wheelhouse,
    WheelSet,
    choose,
    link_or_copy,
    parse_requirements_lock,
    platform_from_snapshot,
)

DIGEST_FORMAT = 1
TAG_REPOSITORY = "envcap"
BUILD_DIGEST_LABEL = "io.envcap.build-digest"
CREATED_LABEL = "org.opencontainers.image.created"
# glibc of the Ubuntu releases nvidia/cuda images are based on (the wheels must fit the oldest part).
UBUNTU_GLIBC = {"ubuntu20.04": "2.31", "ubuntu22.04": "2.35", "ubuntu24.04": "2.39"}
# Asked inside the base image: what its python3 is, for choosing wheels (cached by image id).
PLATFORM_SCRIPT = (
    "import json, platform, sys, sysconfig\n"
    "libc, libc_version = platform.libc_ver()\n"
    "print(json.dumps({'version': platform.python_version(), 'implementation': sys.implementation.name,\n"
    "                  'soabi': sysconfig.get_config_var('SOABI'), 'machine': platform.machine(),\n"
    "                  'libc': libc, 'libc_version': libc_version}))\n"
)


@dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None
    online: bool = False
    tags: tuple[str, ...] = ()  # extra names for the image, besides the content tag
    target_python: str | None = None  # override what the image's Python is taken to be (3.11.2)
    target_glibc: str | None = None  # override the image's glibc (2.36)
    source_date_epoch: str | None = None  # SOURCE_DATE_EPOCH: the image's creation date label


@dataclass(frozen=True)
class BuildInputs:
    """Everything that decides the image, known before downloading anything."""

    lock_dir: Path
    snapshot: Snapshot
    requirements: RequirementsLock
    plan: BuildPlan
    dockerfile: str
    dockerignore: str
    target: TargetPlatform
    wheels: WheelSet
    bases: dict[str, str]  # image reference -> id, for every FROM
    labels: dict[str, str]
    digest: str
    tag: str
    notes: tuple[str, ...] = ()


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
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image_id, "tag": self.tag, "tags": list(self.tags), "cached": self.cached,
                "digest": self.digest, "base_image": self.base_image, "target": self.target,
                "hermetic": self.hermetic, "wheels": self.wheels, "downloaded_bytes": self.downloaded_bytes,
                "reused_files": self.reused_files, "built_from_sdist": list(self.built_from_sdist),
                "vendored": list(self.vendored), "left_out": list(self.left_out), "notes": list(self.notes),
                "seconds": round(self.seconds, 3)}


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


# -- deciding ------------------------------------------------------------------------------------
def load_inputs(lock_dir: Path) -> tuple[Snapshot, RequirementsLock]:
    """The lock set's two files; the live environment is never looked at."""
    snapshot = load_snapshot(lock_dir)  # its stored digest as written: prepare() tells if it was edited
    folder = lock_path(Path(lock_dir)).parent
    req_path = folder / "requirements.lock"
    try:
        text = req_path.read_text("utf-8")
    except FileNotFoundError:
        raise LockfileError(f"{req_path} is missing; `envcap build` installs exactly what it pins.",
                            hint="run `envcap snapshot` again to write the whole lock set") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"cannot read {req_path}: {exc}.", hint="check the file's permissions") from None
    if snapshot.python is None:
        raise LockfileError(f"{lock_path(Path(lock_dir))} holds no Python facts, so no image can be built from it.",
                            hint="take the snapshot with `envcap snapshot` (a foreign report is not enough)")
    return snapshot, parse_requirements_lock(text, origin=str(req_path))


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


def probe_platform(engine: ContainerEngine, image: ImageInfo, ref: str) -> TargetPlatform:
    """The base image's own Python and C library, asked once per image id and cached."""
    cache_file = cache_dir() / "bases" / f"{image.id.split(':')[-1]}.json"
    try:
        facts = json.loads(cache_file.read_text("utf-8"))
    except (OSError, ValueError):
        facts = None
    if not isinstance(facts, dict):
        try:
            done = engine.run(RunSpec(image=image.id, command=(), entrypoint=("python3", "-c", PLATFORM_SCRIPT),
                                      network_disabled=True, labels={"io.envcap.purpose": "platform-probe"}))
        except ReplayError as exc:
            raise BuildError(f"cannot run python3 in the base image {ref}: {exc.message}",
                             hint="the base image needs python3 and python3-venv; choose another with --base-image") \
                from None
        try:
            facts = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
            assert isinstance(facts, dict)
        except (ValueError, IndexError, AssertionError):
            raise BuildError(f"python3 in the base image {ref} did not describe itself (exit {done.exit_code}).",
                             hint="the base image needs a working python3 and python3-venv") from None
        with contextlib.suppress(OutputError):  # a cache that cannot be written only costs time
            atomic_write(cache_file, json.dumps(facts, sort_keys=True))
    soabi = str(facts.get("soabi") or "")
    version = str(facts.get("version") or "3")
    implementation = str(facts.get("implementation") or "cpython")
    abi = None
    if implementation == "cpython":
        major_minor = "".join(version.split(".")[:2])
        threaded = soabi.startswith(f"cpython-{major_minor}t")
        abi = f"cp{major_minor}{'t' if threaded else ''}"
    libc = "glibc" if facts.get("libc") == "glibc" else "musl" if "musl" in soabi else "glibc"
    libc_version = str(facts.get("libc_version") or ("1.2" if libc == "musl" else "2.17"))
    return TargetPlatform(python_version=version, arch=str(facts.get("machine") or "x86_64"), libc=libc,
                          libc_version=libc_version, implementation=implementation, abi=abi,
                          source=f"base image {ref}")


def target_platform(snapshot: Snapshot, plan: BuildPlan, engine: ContainerEngine, bases: dict[str, ImageInfo],
                    options: BuildOptions) -> tuple[TargetPlatform, list[str]]:
    """Whose Python the wheels must fit: the image's, asked from the base image where it has it."""
    notes: list[str] = []
    lock_target = platform_from_snapshot(snapshot)
    if options.target_python and options.target_glibc:
        target = replace(lock_target, python_version=options.target_python, libc_version=options.target_glibc,
                         abi=None, source="--target-python/--target-glibc")
    elif plan.family == "cuda":
        ubuntu = next((u for u in UBUNTU_GLIBC if u in plan.base_image), None)
        target = replace(lock_target, libc_version=UBUNTU_GLIBC[ubuntu] if ubuntu else lock_target.libc_version,
                         source=f"lock and {plan.base_image}")
    else:
        target = probe_platform(engine, bases[plan.base_image], plan.base_image)
    if options.target_python and not options.target_glibc:
        target = replace(target, python_version=options.target_python, abi=None, source=target.source + ", override")
    if options.target_glibc and not options.target_python:
        target = replace(target, libc_version=options.target_glibc, source=target.source + ", override")
    lock_version = lock_target.python_version
    if target.major_minor != lock_target.major_minor and not options.target_python:
        raise BuildError(
            f"the base image {plan.base_image} has Python {target.python_version}, but the lock was captured with "
            f"Python {lock_version}: its wheels cannot be installed there.",
            hint=f"choose a base image with Python {'.'.join(map(str, lock_target.major_minor))} (--base-image)")
    if target.python_version != lock_version:
        notes.append(f"the image's Python is {target.python_version}; the lock was captured with {lock_version}")
    return target, notes


def build_digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_tag(digest: str) -> str:
    return f"{TAG_REPOSITORY}:{digest.split(':', 1)[-1][:24]}"


def prepare(lock_dir: Path, engine: ContainerEngine, options: BuildOptions = BuildOptions(),
            progress: BuildProgress | None = None) -> BuildInputs:
    """Decides the image and its digest: reads the lock and asks the engine about base images, nothing else."""
    progress = progress or NoProgress()
    snapshot, requirements = load_inputs(lock_dir)
    notes: list[str] = []
    if not digest_matches(snapshot) or snapshot.digest is None:
        notes.append("envcap.lock.json was edited after the snapshot (its digest no longer matches its content)")
        snapshot = snapshot.with_digest()  # images are labelled with the digest of what they were built from
    hermetic = not options.online
    probe_plan = make_plan(snapshot, base_image=options.base_image, hermetic=hermetic)
    bases = {ref: ensure_image(engine, ref, progress)
             for ref in dict.fromkeys([probe_plan.python_image, probe_plan.base_image])}
    target, platform_notes = target_platform(snapshot, probe_plan, engine, bases, options)
    notes += platform_notes
    wheels = choose(requirements, snapshot, target, hermetic=hermetic)
    plan = make_plan(snapshot, base_image=options.base_image, hermetic=hermetic, has_vendored=bool(wheels.vendored))
    dockerfile = render_dockerfile(plan)
    dockerignore = render_dockerignore()
    created = source_date(options.source_date_epoch)
    labels = {BUILD_DIGEST_LABEL: "", "io.envcap.hermetic": "true" if hermetic else "false",
              "io.envcap.target": target.key()}
    if created:
        labels[CREATED_LABEL] = created
    payload = {
        "format": DIGEST_FORMAT,
        "envcap": __version__,
        "lock": content_digest(snapshot),
        "requirements": hashlib.sha256(requirements.text.encode("utf-8")).hexdigest(),
        "dockerfile": dockerfile,
        "dockerignore": dockerignore,
        "bases": {ref: info.id for ref, info in bases.items()},
        "target": target.key(),
        "wheels": wheels.digest_items(),
        "labels": labels,
    }
    digest = build_digest(payload)
    labels[BUILD_DIGEST_LABEL] = digest
    return BuildInputs(lock_dir=Path(lock_dir), snapshot=snapshot, requirements=requirements, plan=plan,
                       dockerfile=dockerfile, dockerignore=dockerignore, target=target, wheels=wheels,
                       bases={ref: info.id for ref, info in bases.items()}, labels=labels, digest=digest,
                       tag=content_tag(digest), notes=tuple(notes))


def find_cached(engine: ContainerEngine, inputs: BuildInputs) -> ImageInfo | None:
    found = engine.image(inputs.tag)
    if found is not None and found.labels.get(BUILD_DIGEST_LABEL) == inputs.digest:
        return found
    return None


# -- assembling the context ----------------------------------------------------------------------
@dataclass
class ContextReport:
    stats: FetchStats = field(default_factory=FetchStats)
    wheels: int = 0
    built_from_sdist: list[str] = field(default_factory=list)


def context_requirements(inputs: BuildInputs, extra_hashes: dict[str, list[str]]) -> str:
    """The lock's requirements for pip inside the build; wheels built on the host add their own hash.

    Why a wheel built from a hash-checked sdist may be trusted: the sdist was checked against the
    lock on this host, and the wheel made from it is pinned by its own hash right here.
    """
    if not inputs.plan.hermetic:
        return inputs.requirements.text
    lines = ["# requirements.lock as installed by `envcap build` (hermetic: every file is in wheels/).",
             f"# Lock digest {inputs.snapshot.digest}; wheels chosen for {inputs.target.describe()}."]
    versions = {c.name: c.version for c in inputs.wheels.choices}
    for req in inputs.requirements.requirements:
        hashes = list(req.hashes) + extra_hashes.get(req.name, [])
        version = req.version or versions.get(req.name, "")
        lines.append(f"{req.name}=={version} \\")
        for i, digest in enumerate(hashes):
            lines.append(f"    --hash=sha256:{digest}" + (" \\" if i < len(hashes) - 1 else ""))
    return "\n".join(lines) + "\n"


def assemble_context(inputs: BuildInputs, folder: Path, wheelhouse: Wheelhouse,
                     progress: BuildProgress) -> ContextReport:
    """Writes the build context: Dockerfile, requirements, hash-checked wheels, vendored wheels.

    Every download is checked against the lock before anything is handed to the engine; the first
    mismatch stops the build with the file's name.
    """
    report = ContextReport()
    wheels_dir = folder / "wheels"
    wheels_dir.mkdir(parents=True)
    extra_hashes: dict[str, list[str]] = {}
    if inputs.plan.hermetic:
        artifacts = [c.artifact for c in inputs.wheels.choices]
        progress.stage(f"fetching {len(artifacts)} files for {inputs.target.describe()}")
        progress.downloads(len(artifacts), sum(a.size or 0 for a in artifacts))
        paths = wheelhouse.fetch(artifacts, on_bytes=progress.advance, stats=report.stats)
        for choice in inputs.wheels.choices:
            path = paths[choice.artifact.sha256.lower()]
            if choice.build_from_sdist:
                progress.stage(f"building {choice.name} {choice.version} from its sdist on this machine")
                path = wheelhouse.built_wheel(f"sdist:{choice.artifact.sha256}", str(path), choice.name,
                                              inputs.target)
                from envcap.fs import sha256_file

                extra_hashes.setdefault(choice.name, []).append(sha256_file(path))
                report.built_from_sdist.append(f"{choice.name}=={choice.version}")
            link_or_copy(path, wheels_dir / path.name)
            report.wheels += 1
    for item in inputs.wheels.vendored:
        progress.stage(f"building {item.name} {item.version} ({item.kind}) into a wheel")
        path = wheelhouse.built_wheel(item.identity, item.source, item.name, inputs.target)
        link_or_copy(path, wheels_dir / "vendored" / path.name)
    atomic_write(folder / "Dockerfile", inputs.dockerfile)
    atomic_write(folder / ".dockerignore", inputs.dockerignore)
    atomic_write(folder / "requirements.lock", context_requirements(inputs, extra_hashes))
    return report


# -- the whole build -----------------------------------------------------------------------------
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
IMAGE_REFERENCE = re.compile(rf"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?")


def check_reference(ref: str) -> None:
    """A --tag the engine would refuse is refused before a build, not after it (Docker's grammar)."""
    if not IMAGE_REFERENCE.fullmatch(ref):
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
        report = assemble_context(inputs, folder, wheelhouse, progress)
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
        left_out=inputs.wheels.left_out, notes=inputs.notes, seconds=seconds)


__all__ = ["BuildInputs", "BuildOptions", "BuildProgress", "BuildResult", "NoProgress", "assemble_context", "build",
           "build_digest", "content_tag", "context_requirements", "find_cached", "prepare", "probe_platform",
           "source_date", "target_platform"]
