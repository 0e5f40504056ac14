"""From a snapshot to a build plan: which base image, which Python, which ENV and labels. Pure.

Why separate from rendering: the choice of base image is the decision a reader wants explained
("why nvidia/cuda and not python-slim?"), and tests check it without any template.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from envcap import __version__
from envcap.lock import Snapshot

DEFAULT_CODENAME = "bookworm"
DEBIAN_CODENAMES = ("bullseye", "bookworm", "trixie")
# Variables that describe the host's devices, not the computation: the engine sets them per run.
HOST_ONLY_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                           "LOCAL_WORLD_SIZE", "WORLD_SIZE", "LANG"})
REDACTED = "<redacted>"
VENV = "/opt/venv"


@dataclass(frozen=True)
class BuildPlan:
    family: str  # python-slim | cuda
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


def choose_base(snapshot: Snapshot) -> tuple[str, str, str, str]:
    """Returns (family, base image, python image, why)."""
    version = snapshot.python.version if snapshot.python else "3.11"
    codename = DEFAULT_CODENAME
    if snapshot.os and snapshot.os.id == "debian" and snapshot.os.codename in DEBIAN_CODENAMES:
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
        py_codename = "bookworm" if ubuntu == "ubuntu24.04" else "bullseye"
        base = f"nvidia/cuda:{system_cuda}-cudnn-runtime-{ubuntu}"
        return ("cuda", base, python_image(version, py_codename),
                f"the GPU run used the system CUDA {system_cuda} toolkit, so the image starts from {base} and "
                f"takes Python {version} from {python_image(version, py_codename)}")
    if has_gpu:
        why = (f"CUDA comes from pip wheels and the driver from the host, so {slim} is enough; run it with "
               "GPUs passed through (envcap replay --gpus all)")
    else:
        why = f"a CPU environment: the official {slim} image with the same Python"
    return ("python-slim", slim, slim, why)


def image_env(snapshot: Snapshot) -> dict[str, str]:
    env = {}
    for name, value in sorted((snapshot.env or {}).items()):
        if name in HOST_ONLY_ENV or REDACTED in value or "\n" in value or "\r" in value:
            continue  # host-specific, secret, or not expressible on a Dockerfile line (replay passes it)
        env[name] = value
    return env


def image_labels(snapshot: Snapshot) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": "envcap replay environment",
        "org.opencontainers.image.description": "Rebuilt by envcap from envcap.lock.json",
        "io.envcap.version": __version__,
        "io.envcap.lock-digest": snapshot.digest or "",
    }
    if snapshot.git and snapshot.git.commit:
        labels["org.opencontainers.image.revision"] = snapshot.git.commit
        labels["io.envcap.source-commit"] = snapshot.git.commit
    if snapshot.git and snapshot.git.remote:
        labels["org.opencontainers.image.source"] = snapshot.git.remote
    if snapshot.python:
        labels["io.envcap.python"] = snapshot.python.version
    return labels


def make_plan(snapshot: Snapshot, *, base_image: str | None = None, hermetic: bool = True,
              has_vendored: bool = False) -> BuildPlan:
    family, base, py_image, why = choose_base(snapshot)
    if base_image:
        family, base, py_image, why = "python-slim", base_image, base_image, f"--base-image {base_image} was given"
        labels_extra = {"io.envcap.base-image": base_image}
    else:
        labels_extra = {"io.envcap.base-image": base}
    labels = image_labels(snapshot) | labels_extra
    return BuildPlan(family=family, base_image=base, python_version=snapshot.python.version if snapshot.python
                     else "unknown", python_image=py_image, why=why, hermetic=hermetic, env=image_env(snapshot),
                     labels=labels, has_vendored=has_vendored)
