"""The sandbox: one network-less container that turns a source (sdist, project folder) into a wheel.

Why a container and not the host: building an sdist or a project runs its ``setup.py`` or build
backend, which is code from whoever wrote the lock. Here it runs in the target's own Python image
(so the wheel also fits the image's Python and glibc), with no network, as the invoking user's
uid:gid, with the source and the backend's wheels mounted read-only and one empty output folder
writable; the container is labelled and removed afterwards. What it leaves in the output folder is
taken only if it is one plain wheel file of the right project that the image can install.
"""

from __future__ import annotations

import collections
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from envcap.build.target import TargetPlatform, wheel_rank
from envcap.engine import MANAGED_LABEL, ContainerEngine, ContainerFailed, ImageMissing, Mount, OutputStream, RunSpec
from envcap.errors import ArtifactError, BuildError

PURPOSE_LABEL = "io.envcap.purpose"
PURPOSE = "sandbox-build"
SRC, BACKEND, OUT = "/envcap/src", "/envcap/backend", "/envcap/out"
BUILD_LIMIT_S = 3600  # inside the container, where coreutils' timeout exists
LOG_TAIL_BYTES = 64 << 10
TAIL_LINES = 6
SourceMode = Literal["sdist", "tree"]

# Run by /bin/sh in the image; the variable parts come as arguments ($1 mode, $2 entry), never as text
# pasted into the script. pip reads no configuration of the image (PIP_CONFIG_FILE=/dev/null), installs
# only the hash-pinned backend wheels, and builds without isolation (no index: the backend is there).
SCRIPT = r"""set -eu
export HOME=/tmp/envcap-home TMPDIR=/tmp PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$HOME"
limit() { if command -v timeout >/dev/null 2>&1; then timeout "$ENVCAP_LIMIT" "$@"; else "$@"; fi; }
python3 -m venv /tmp/envcap-backend
if [ -s /envcap/backend/requirements.txt ]; then
  /tmp/envcap-backend/bin/pip install --no-cache-dir --no-index --find-links /envcap/backend \
    --require-hashes --no-deps -r /envcap/backend/requirements.txt
fi
if [ "$1" = sdist ]; then
  source="/envcap/src/$2"
else
  cp -RP /envcap/src /tmp/envcap-src
  source="/tmp/envcap-src/$2"
fi
echo "envcap-sandbox: building $2"
limit /tmp/envcap-backend/bin/pip wheel --no-cache-dir --no-index --no-build-isolation --no-deps \
  --use-pep517 --wheel-dir /envcap/out "$source"
"""


@dataclass(frozen=True)
class SandboxJob:
    """One build: which project, from where, in which image, into which folder."""

    name: str
    version: str
    image: str  # the image id (the target's own Python image)
    image_ref: str  # its name, for messages
    source_dir: Path  # mounted read-only at /envcap/src
    mode: SourceMode
    entry: str  # the sdist's file name, or the project's folder below source_dir ("." for the top)
    backend_dir: Path  # the backend's wheels and requirements.txt, mounted read-only
    out_dir: Path  # empty; the only writable mount
    user: str  # "uid:gid" of the invoking user

    @property
    def what(self) -> str:
        return f"{self.name} {self.version}"


def invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


def run_spec(job: SandboxJob) -> RunSpec:
    return RunSpec(
        image=job.image, command=(), entrypoint=("/bin/sh", "-c", SCRIPT, "envcap-sandbox", job.mode, job.entry),
        user=job.user, network_disabled=True, workdir="/tmp",
        env={"ENVCAP_LIMIT": str(BUILD_LIMIT_S)},
        mounts=(Mount(str(job.source_dir), SRC, read_only=True), Mount(str(job.backend_dir), BACKEND, read_only=True),
                Mount(str(job.out_dir), OUT, read_only=False)),
        labels={MANAGED_LABEL: "true", PURPOSE_LABEL: PURPOSE})


class _Tail:
    """The last bytes of the build's log: a hostile build may print gigabytes; only its end is kept."""

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.lock = threading.Lock()

    def __call__(self, chunk: bytes, stream: OutputStream) -> None:
        with self.lock:
            self.chunks.append(chunk)
            self.size += len(chunk)
            while self.size > LOG_TAIL_BYTES and len(self.chunks) > 1:
                self.size -= len(self.chunks.popleft())

    def lines(self) -> list[str]:
        with self.lock:
            text = b"".join(self.chunks)[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
        return [line.strip() for line in text.splitlines() if line.strip()]


def failure_lines(lines: list[str], count: int = TAIL_LINES) -> list[str]:
    """The lines that say why: the failing step's own output where pip framed it, else the log's end.

    pip ends a failed build with boilerplate ("note: This is an issue with the package...", "hint:
    See above"); the compiler's or setup.py's last words are in the "[n lines of output]" block
    before it, under the "... did not run successfully." heading (marked with a multiplication sign).
    """
    ends = [i for i, line in enumerate(lines) if line == "[end of output]"]
    if not ends:
        return [line[:200] for line in lines[-count:]]
    starts = [i for i in range(ends[-1]) if line_opens_block(lines[i])]
    start = starts[-1] if starts else max(0, ends[-1] - count - 1)
    heading = next((line for line in reversed(lines[:start]) if line.startswith("×")), None)
    block = [line.lstrip("│ ").strip()[:200] for line in lines[start + 1:ends[-1]]][-count:]
    return ([heading.lstrip("× ")] if heading else []) + block


def line_opens_block(line: str) -> bool:
    return line.endswith("lines of output]") or line.endswith("line of output]")


def build_in_sandbox(engine: ContainerEngine, job: SandboxJob, target: TargetPlatform) -> Path:
    """Runs the build; returns the one wheel it left in ``job.out_dir`` (checked), or says why not."""
    tail = _Tail()
    try:
        done = engine.run(run_spec(job), on_output=tail)
    except (ContainerFailed, ImageMissing) as exc:
        raise BuildError(f"cannot start the build sandbox for {job.what} from {job.image_ref}: {exc.message}",
                         hint="the sandbox runs the image's /bin/sh and python3 -m venv; choose a base image that has "
                              "both (--base-image)") from None
    if done.stdout or done.stderr:  # an engine that does not stream gives the whole output at the end
        tail(done.stdout + done.stderr, "stdout")
    if done.exit_code != 0:
        lines = " | ".join(failure_lines(tail.lines()))[-1000:]
        why = "it ran out of memory" if done.oom_killed else f"exit {done.exit_code}"
        raise ArtifactError(
            f"building {job.what} from source in the network-less sandbox failed ({why}): {lines or 'no output'}.",
            hint=f"pin a wheel of {job.name} for the image's platform, use a base image with compilers and headers "
                 "(--base-image), or let pip build it inside the image build with --online")
    return take_wheel(job, target)


def take_wheel(job: SandboxJob, target: TargetPlatform) -> Path:
    """The one plain ``.whl`` file of this project in the output folder, and one the image can install.

    Why so strict: the folder was writable by the build, so it may hold a symlink to a host file
    (``x.whl -> /etc/shadow``) or a wheel of some other project; neither may enter the image.
    """
    names = sorted(os.listdir(job.out_dir))
    wheels = [n for n in names if n.endswith(".whl")]
    if len(wheels) != 1:
        raise ArtifactError(f"the sandbox build of {job.what} left {len(wheels)} wheels instead of one "
                            f"({', '.join(wheels[:4]) or 'none'}).",
                            hint="build it by hand in a container to see why, or pin a wheel of it")
    wheel = job.out_dir / wheels[0]
    if not stat.S_ISREG(os.lstat(wheel).st_mode):
        raise ArtifactError(f"the sandbox build of {job.what} left {wheels[0]} as a link or special file, not a wheel; "
                            "it is not used.", hint="that project's build is hostile or broken; pin a wheel of it")
    check_wheel(wheels[0], job.name, job.version, target, f"the sandbox build ({job.image_ref})")
    return wheel


def check_wheel(filename: str, name: str, version: str, target: TargetPlatform, made_by: str) -> None:
    """A wheel of this project (by its file name) that the image can install."""
    try:
        wheel_name, _, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        raise ArtifactError(f"{made_by} of {name} {version} gives {filename!r}, which is not a wheel's name.",
                            hint="pin a wheel of it instead") from None
    if wheel_name != canonicalize_name(name):
        raise ArtifactError(f"{made_by} of {name} {version} gives a wheel of another project ({filename}).",
                            hint="check that the lock names the right project; pin a wheel of it instead")
    ranks = {tag: i for i, tag in enumerate(target.tags())}
    if wheel_rank(filename, ranks) is None:
        raise ArtifactError(
            f"{made_by} of {name} {version} gives {filename}, which the image ({target.describe()}) cannot install.",
            hint="choose a base image whose Python matches the lock (--base-image), or pin a wheel of it")

__all__ = ["PURPOSE", "PURPOSE_LABEL", "SCRIPT", "SandboxJob", "build_in_sandbox", "check_wheel", "failure_lines",
           "invoking_user", "run_spec", "take_wheel"]
