"""From a lock to a build plan: which base image, which Python, which ENV and labels. Pure.

Why separate from rendering: the choice of base image is the decision a reader wants explained
("why nvidia/cuda and not python-slim?"), and tests check it without any template. The choice is
made once, at snapshot time (``build_choices``), and recorded in the lock; later stages read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from packaging.version import InvalidVersion, Version

from envcap import __version__
from envcap.lock import BaseImage, BuildChoices, ImageFamily, Platform, Snapshot
from envcap.redact import public_source

DEFAULT_CODENAME = "bookworm"
# glibc of the Debian releases python:*-slim images are based on, and of the Ubuntu releases of
# nvidia/cuda images: wheels must fit the C library of the image that runs them.
DEBIAN_GLIBC = {"bullseye": "2.31", "bookworm": "2.36", "trixie": "2.41"}
UBUNTU_GLIBC = {"ubuntu20.04": "2.31", "ubuntu22.04": "2.35", "ubuntu24.04": "2.39"}
# Variables that describe the host's devices, not the computation: the engine sets them per run.
HOST_ONLY_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                           "LOCAL_WORLD_SIZE", "WORLD_SIZE", "LANG"})
REDACTED = "<redacted>"
VENV = "/opt/venv"


@dataclass(frozen=True)
class BuildPlan:
    family: ImageFamily
    base_image: str
    python_version: str
    python_image: str  # where the exact Python comes from (the base itself for python-slim)
    why: str
    hermetic: bool = True
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    has_vendored: bool = False
    venv: str = VENV
    user: str = "envcap"
    uid: int = 1000


def python_image(version: str, codename: str) -> str:
    return f"python:{version}-slim-{codename}"


def _cuda_version(snapshot: Snapshot) -> str | None:
    """The toolkit release for the nvidia/cuda tag (12.4.1); cudart's own version (12.4.127) is no tag.

    Without the toolkit's version.json only major.minor is known, and X.Y.0 (the GA release) has
    an image for every CUDA release.
    """
    if not snapshot.cuda:
        return None
    runtime = snapshot.cuda.components.get("cuda_runtime")
    if runtime is None or runtime.source != "system":
        return None
    release = snapshot.cuda.toolkit_version
    if release and len(release.split(".")) == 3:
        return release
    major_minor = runtime.version.split(".")[:2]
    return ".".join((major_minor + ["0"])[:2] + ["0"])


def _uses_pip_cuda(snapshot: Snapshot) -> bool:
    cuda = snapshot.cuda
    if cuda is None:
        return False
    if cuda.torch and cuda.torch.cuda:
        return True
    return any(c.source == "pip" for c in cuda.components.values())


def choose_base(snapshot: Snapshot) -> tuple[BaseImage, str]:
    """The official image for the lock's Python (nvidia/cuda for a system-CUDA GPU run), and its glibc."""
    version = snapshot.python.version if snapshot.python else "3.11"
    codename = DEFAULT_CODENAME
    if snapshot.os and snapshot.os.id == "debian" and snapshot.os.codename in DEBIAN_GLIBC:
        codename = snapshot.os.codename
    slim = python_image(version, codename)
    has_gpu = bool(snapshot.gpu and snapshot.gpu.devices)
    system_cuda = _cuda_version(snapshot)
    if has_gpu and system_cuda and not _uses_pip_cuda(snapshot):
        try:
            cuda_v = Version(system_cuda)
        except InvalidVersion:
            cuda_v = Version("12.0")
        # nvidia/cuda publishes ubuntu24.04 images from CUDA 12.5; Python from bookworm needs glibc >= 2.36.
        ubuntu = "ubuntu24.04" if cuda_v >= Version("12.5") else "ubuntu22.04"
        py_image = python_image(version, "bookworm" if ubuntu == "ubuntu24.04" else "bullseye")
        base = f"nvidia/cuda:{system_cuda}-cudnn-runtime-{ubuntu}"
        why = (f"the GPU run used the system CUDA {system_cuda} toolkit, so the image starts from {base} and "
               f"takes Python {version} from {py_image}")
        return BaseImage(reference=base, family="cuda", python_image=py_image, why=why), UBUNTU_GLIBC[ubuntu]
    if has_gpu:
        why = (f"CUDA comes from pip wheels and the driver from the host, so {slim} is enough; run it with "
               "GPUs passed through (envcap replay --gpus all)")
    else:
        why = f"a CPU environment: the official {slim} image with the same Python"
    return BaseImage(reference=slim, family="python-slim", python_image=slim, why=why), DEBIAN_GLIBC[codename]


def _arch(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def build_choices(snapshot: Snapshot, base_image: str | None = None) -> BuildChoices:
    """The base image and target platform, as ``envcap snapshot`` records them in the lock.

    A given ``base_image`` is taken as is; its C library is not known until the image is asked, so
    the platform then carries the captured machine's glibc and ``envcap build`` checks the image.
    Schema-1 locks, which predate the record, get the same answer from here.
    """
    chosen, glibc = choose_base(snapshot)
    py = snapshot.python
    os_info = snapshot.os
    if base_image:
        chosen = BaseImage(reference=base_image, family="python-slim", python_image=base_image, given=True,
                           why=f"--base-image {base_image} was given")
        glibc = os_info.libc_version if os_info and os_info.libc_version else "2.17"
    machine = (py.machine if py and py.machine else None) or (snapshot.cpu.architecture if snapshot.cpu else None)
    platform = Platform(
        python_version=py.version if py else "3",
        implementation=(py.implementation or "cpython") if py else "cpython",
        abi=py.abi_tag if py and py.abi_tag and py.abi_tag.startswith("cp") else None,
        arch=_arch(machine or "x86_64"),
        libc="musl" if os_info and os_info.libc == "musl" else "glibc",
        libc_version=glibc if not (os_info and os_info.libc == "musl") else (os_info.libc_version or "1.2"),
    )
    return BuildChoices(base=chosen, platform=platform)


def choices_of(snapshot: Snapshot, base_override: str | None = None) -> BuildChoices:
    """What the lock recorded (or a schema-1 lock implies), with ``envcap build --base-image`` on top."""
    recorded = snapshot.build or build_choices(snapshot)
    if not base_override or base_override == recorded.base.reference:
        return recorded
    return replace(recorded, base=BaseImage(reference=base_override, family="python-slim",
                                            python_image=base_override, given=True,
                                            why=f"--base-image {base_override} was given to envcap build"))


def image_env(snapshot: Snapshot) -> dict[str, str]:
    env = {}
    for name, value in sorted((snapshot.env or {}).items()):
        if name in HOST_ONLY_ENV or REDACTED in value or "\n" in value or "\r" in value:
            continue  # host-specific, secret, or not expressible on a Dockerfile line (replay passes it)
        env[name] = value
    return env


def image_labels(snapshot: Snapshot, base: BaseImage) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": "envcap replay environment",
        "org.opencontainers.image.description": "Rebuilt by envcap from envcap.lock.json",
        "io.envcap.version": __version__,
        "io.envcap.lock-digest": snapshot.digest or "",
        "io.envcap.base-image": base.reference,
    }
    if snapshot.git and snapshot.git.commit:
        labels["org.opencontainers.image.revision"] = snapshot.git.commit
        labels["io.envcap.source-commit"] = snapshot.git.commit
    source = public_source(snapshot.git.remote) if snapshot.git else None
    if source:  # an http(s) URL only: no user names, tokens or host paths in an image's labels
        labels["org.opencontainers.image.source"] = source
    if snapshot.python:
        labels["io.envcap.python"] = snapshot.python.version
    return labels


def make_plan(snapshot: Snapshot, *, base_image: str | None = None, hermetic: bool = True,
              has_vendored: bool = False) -> BuildPlan:
    """The plan for the lock's recorded choices; ``base_image`` is an override given to ``envcap build``."""
    base = choices_of(snapshot, base_image).base
    return BuildPlan(family=base.family, base_image=base.reference, python_version=snapshot.python.version
                     if snapshot.python else "unknown", python_image=base.python_image, why=base.why,
                     hermetic=hermetic, env=image_env(snapshot), labels=image_labels(snapshot, base),
                     has_vendored=has_vendored)
