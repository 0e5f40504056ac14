"""The install step: the locked venv made in one network-less container, kept as an image.

Why not a multi-stage Dockerfile (``pip install`` in a builder stage, ``COPY --from=builder``): the
classic builder leaves that stage behind as an unlabelled, dangling image (0.6 GB for a scikit-learn
stack); it copies every wheel into the context and a layer first; and an image whose variables
changed ran the whole install again. Why not install into a host folder and ``COPY`` it: sending
the venv back through a build context and copying it again took half of a first build (8.6 s of
upload and 10.5 s of ``COPY`` for 300 MB, measured). Here a container of the base image, with the
wheels mounted read-only and no network, adds the image's user and installs the venv at its own
path; when it succeeds the engine commits it:

- the *install image* ``envcap-venv:<install digest>`` is the base plus the user and the venv:
  named, labelled, never dangling, shared by every image of the same packages;
- the final image adds variables and labels on top of it, with no ``RUN`` at all: a lock that
  differs in one variable rebuilds in well under a second.

The installer is uv when its wheel for the image can be fetched and hash-checked like any other
(``UV_VERSION``), else the image's own pip. Scratch files (uv's cache, pip's own venv) are made in
the container's /tmp and removed before the commit, so they never reach a layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envcap import _log
from envcap.build.target import TargetPlatform, wheel_rank
from envcap.build.wheelhouse import Wheelhouse, link_or_copy
from envcap.engine import (
    MANAGED_LABEL,
    Commit,
    ContainerEngine,
    ContainerFailed,
    ImageInfo,
    ImageMissing,
    Mount,
    RunSpec,
)
from envcap.errors import ArtifactError, BuildError, EnvcapError
from envcap.fs import cache_dir
from envcap.lock import Artifact

LOG = _log.get("build")
UV_VERSION = "0.13.9"
PURPOSE = "install"
# One read-only mount on a folder every base image has: a mount point that does not exist would be
# created in the container's layer and committed with it.
STAGE = "/mnt"
WHEELS, REQUIREMENTS, INSTALLER = f"{STAGE}/wheels", f"{STAGE}/requirements.txt", f"{STAGE}/installer"
InstallerKind = Literal["uv", "pip"]

# Run by /bin/sh in the image as root: $1 the installer, $2 the venv, $3 the user, $4 its uid.
# Neither the image's pip configuration nor any index is consulted; bytecode is compiled now, since
# the image's user cannot write it later.
SCRIPT = r"""set -eu
cd /tmp
export HOME=/tmp/envcap-home TMPDIR=/tmp PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CONFIG=1 UV_CACHE_DIR=/tmp/envcap-uv-cache UV_LINK_MODE=copy \
  UV_PYTHON_DOWNLOADS=never
mkdir -p "$HOME"
useradd --no-log-init --create-home --uid "$4" --shell /bin/sh "$3"
if [ "$1" = uv ]; then
  /mnt/installer/uv venv --python "$(command -v python3)" "$2"
  /mnt/installer/uv pip install --python "$2/bin/python" --no-index --find-links /mnt/wheels \
    --find-links /mnt/wheels/vendored --require-hashes --no-deps --compile-bytecode \
    -r /mnt/requirements.txt
  if [ -d /mnt/wheels/vendored ] && ls /mnt/wheels/vendored/*.whl >/dev/null 2>&1; then
    /mnt/installer/uv pip install --python "$2/bin/python" --no-index --no-deps --compile-bytecode \
      /mnt/wheels/vendored/*.whl
  fi
else
  python3 -m venv /tmp/envcap-pip
  python3 -m venv --without-pip "$2"
  /tmp/envcap-pip/bin/pip --python "$2/bin/python" install --no-cache-dir --no-index \
    --find-links /mnt/wheels --require-hashes --no-deps -r /mnt/requirements.txt
  if [ -d /mnt/wheels/vendored ] && ls /mnt/wheels/vendored/*.whl >/dev/null 2>&1; then
    /tmp/envcap-pip/bin/pip --python "$2/bin/python" install --no-cache-dir --no-index --no-deps \
      /mnt/wheels/vendored/*.whl
  fi
fi
rm -rf /tmp/envcap-home /tmp/envcap-uv-cache /tmp/envcap-pip
"""


@dataclass(frozen=True)
class Installer:
    kind: InstallerKind
    folder: Path | None = None  # holds the uv binary (mounted read-only); None for pip
    identity: str = "pip"  # what decides its result: part of the install digest

    def describe(self) -> str:
        return f"uv {UV_VERSION}" if self.kind == "uv" else "the image's pip"


PIP = Installer("pip")


def choose_installer(wheelhouse: Wheelhouse, target: TargetPlatform, *, offline: bool = False) -> Installer:
    """uv when its wheel for the image's platform can be fetched and hash-checked, else the image's pip.

    Why uv: installing a scikit-learn stack from wheels takes it about a second where pip takes tens;
    why a fallback: an air-gapped host whose cache lacks uv must still build (slower).
    """
    try:
        return _uv(wheelhouse, target, offline=offline)
    except (EnvcapError, OSError, zipfile.BadZipFile, KeyError) as exc:
        LOG.debug("uv is not available (%s): the image's pip installs", exc)
        return PIP


def _uv(wheelhouse: Wheelhouse, target: TargetPlatform, *, offline: bool) -> Installer:
    folder = cache_dir() / "installers" / f"uv-{UV_VERSION}-{target.arch}-{target.libc}"
    binary = folder / "uv"
    marker = folder / "wheel.sha256"
    if binary.is_file() and marker.is_file():
        return Installer("uv", folder, f"uv:{marker.read_text('utf-8').strip()}")
    if offline:
        raise ArtifactError("uv is not in the cache and --offline asks for no network", None)
    from envcap.build.backends import default_lookup

    release = default_lookup().resolve([("uv", UV_VERSION)]).get(("uv", UV_VERSION))
    if release is None or not release.artifacts:
        raise ArtifactError(f"no index has uv {UV_VERSION}", None)
    artifact = _best_wheel(release.artifacts, target)
    [path] = wheelhouse.fetch([artifact]).values()
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        folder.mkdir(parents=True, exist_ok=True)
        staged = folder / ".uv.partial"
        with archive.open(member) as source, open(staged, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    staged.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(staged, binary)
    marker.write_text(artifact.sha256 + "\n", "utf-8")
    return Installer("uv", folder, f"uv:{artifact.sha256}")


def _best_wheel(artifacts: tuple[Artifact, ...], target: TargetPlatform) -> Artifact:
    """uv's wheels are py3-none-<platform>: the best one for the image's platform."""
    ranks = {tag: i for i, tag in enumerate(target.tags())}
    fitting = [(rank, a.filename, a) for a in artifacts if a.filename.endswith(".whl")
               for rank in [wheel_rank(a.filename, ranks)] if rank is not None]
    if not fitting:
        raise ArtifactError(f"uv {UV_VERSION} has no wheel for {target.describe()}", None)
    return min(fitting, key=lambda item: (item[0], item[1]))[2]


def install_digest(payload: dict[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def install_spec(*, image: str, stage: Path, venv: str, installer: Installer, user: str, uid: int, commit: Commit,
                 network: bool = False) -> RunSpec:
    """Root inside a container with no network and read-only inputs: it can only write its own layer.

    ``stage`` holds ``wheels/`` and ``requirements.txt``; the installer's binary is linked in beside them.
    """
    if installer.folder is not None:
        binary = stage / "installer" / "uv"
        link_or_copy(installer.folder / "uv", binary)
        binary.chmod(0o755)
    mounts = (Mount(str(stage), STAGE, read_only=True),)
    return RunSpec(image=image, command=(), entrypoint=("/bin/sh", "-c", SCRIPT, "envcap-install", installer.kind, venv,
                                                        user, str(uid)),
                   user="0:0", network_disabled=not network, mounts=mounts, commit=commit,
                   labels={MANAGED_LABEL: "true", "io.envcap.purpose": PURPOSE})


def install_venv(engine: ContainerEngine, spec: RunSpec, image_ref: str) -> ImageInfo:
    """Runs the install container and returns the image committed from it; a failure is one sentence
    with the installer's last words."""
    output = bytearray()

    def keep(chunk: bytes, stream: str) -> None:
        output.extend(chunk)
        del output[:-(32 << 10)]

    try:
        done = engine.run(spec, on_output=keep)
    except (ContainerFailed, ImageMissing) as exc:
        raise BuildError(f"cannot start the install container from {image_ref}: {exc.message}",
                         hint="the image needs /bin/sh and python3 (with the venv module); choose another with "
                              "--base-image") from None
    output.extend(done.stdout + done.stderr)  # an engine that does not stream gives it all at the end
    if done.exit_code != 0:
        lines = [line.strip() for line in bytes(output).decode("utf-8", "replace").splitlines() if line.strip()]
        raise BuildError(f"installing the locked packages into the image failed (exit {done.exit_code}): "
                         f"{' | '.join(lines[-4:])[-800:] or 'no output'}.",
                         hint="run `envcap build -v` to see every step; a wheel that does not fit the image's Python "
                              "or glibc is the usual cause (--base-image, --target-python)")
    if done.committed is None:
        raise BuildError(f"the engine did not keep the installed packages of {image_ref} as an image.",
                         hint="check the engine's log and try again")
    return done.committed


__all__ = [
    "INSTALLER",
    "PIP",
    "PURPOSE",
    "REQUIREMENTS",
    "SCRIPT",
    "STAGE",
    "UV_VERSION",
    "WHEELS",
    "Installer",
    "choose_installer",
    "install_digest",
    "install_spec",
    "install_venv",
]
