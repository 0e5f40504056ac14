"""envcap's fleet task: what one node runs (stdlib only, Python 3.8+, like the probe it starts).

Why a task script around the probe: a node must run more than one script (the probe, and with
``--fingerprint`` the fingerprint suite), either with its own interpreter or inside the snapshot's
image through the node's container runtime, and it must say which of these failed and why, all in one
answer that survives whatever else the node prints (a login banner, a task prolog). It runs every part
as a child of the same interpreter with the part's source on stdin (``python -``), so a part sees the
node as the user's job would, with none of envcap installed there.

It reads its configuration (JSON) from the command line envcap builds (``envcap.cluster.task``) and
prints one line: ``ENVCAP-FLEET-RESULT `` followed by base64 of the zlib-compressed JSON answer.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

MARKER = "ENVCAP-FLEET-RESULT "
RUNTIMES = ("docker", "podman")
STDERR_TAIL = 2000
HOST_ONLY = ("PYTHONPATH", "PYTHONHOME")  # the job's own sys.path, as `envcap snapshot` reads it


def container_runtime() -> Optional[str]:
    """The first container runtime on PATH, or None (the node cannot run images)."""
    for name in RUNTIMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def gpu_args(runtime: str) -> List[str]:
    """GPUs into the container where the node has NVIDIA's devices: docker's --gpus, podman's CDI name."""
    if not os.path.exists("/dev/nvidiactl"):
        return []
    if os.path.basename(runtime) == "podman":
        return ["--device", "nvidia.com/gpu=all"]
    return ["--gpus", "all"]


def container_argv(runtime: str, config: Dict[str, Any], image: str, name: str, args: List[str]) -> List[str]:
    argv = [runtime, "run", "--rm", "-i", "--pull=never", "--network=none", "--name", name,
            "--label", "io.envcap.managed=fleet"]
    for key, value in sorted(config.get("env", {}).items()):
        argv += ["-e", "%s=%s" % (key, value)]
    return argv + gpu_args(runtime) + [image, "python3", "-"] + args


def find_image(runtime: str, label: str) -> Optional[str]:
    """The newest image carrying ``label`` (``io.envcap.lock-digest=sha256:...``, as `envcap build` labels it)."""
    try:
        done = subprocess.run([runtime, "images", "--quiet", "--filter", "label=" + label], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    ids = done.stdout.decode("utf-8", "replace").split()
    return ids[0] if done.returncode == 0 and ids else None


def run_part(argv: List[str], source: str, timeout: float, cleanup: Optional[List[str]]) -> Dict[str, Any]:
    """One script, its source on stdin: its exit status, output and the tail of its errors, or why it did not run."""
    started = time.monotonic()
    env = {key: value for key, value in os.environ.items() if key not in HOST_ONLY}
    try:
        done = subprocess.run(argv, input=source.encode("utf-8"), capture_output=True, timeout=max(timeout, 0.1),
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        if cleanup:
            subprocess.run(cleanup, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
        return {"error": "timeout", "detail": "did not finish within %g s" % timeout}
    except OSError as exc:
        return {"error": "start", "detail": "%s could not start: %s" % (argv[0], exc.strerror or exc)}
    return {
        "rc": done.returncode,
        "stdout": done.stdout.decode("utf-8", "replace"),
        "stderr": done.stderr.decode("utf-8", "replace")[-STDERR_TAIL:],
        "seconds": round(time.monotonic() - started, 3),
    }


def main(config: Dict[str, Any]) -> int:
    deadline = time.monotonic() + float(config["timeout"])
    answer: Dict[str, Any] = {"host": socket.gethostname(), "python": sys.version.split()[0], "parts": {},
                              "runtime": None}
    runtime = image = None
    if config.get("image") or config.get("image_label"):
        runtime = container_runtime()
        answer["runtime"] = os.path.basename(runtime) if runtime else None
        if runtime is None:
            answer["error"] = "no-runtime"
            return emit(answer)
        image = config.get("image") or find_image(runtime, config["image_label"])
        if image is None:
            answer["error"] = "no-image"
            return emit(answer)
        answer["image"] = image
    for index, part in enumerate(config["parts"]):
        args = list(part.get("args", []))
        cleanup = None
        if runtime and image:
            name = "envcap-fleet-%s-%d-%d" % (config.get("token", "x"), os.getpid(), index)
            argv = container_argv(runtime, config, image, name, args)
            cleanup = [runtime, "rm", "-f", name]
        else:
            argv = [sys.executable, "-"] + args
        left = deadline - time.monotonic()
        if left <= 0:
            answer["parts"][part["name"]] = {"error": "timeout", "detail": "no time was left for it"}
            continue
        answer["parts"][part["name"]] = run_part(argv, part["source"], left, cleanup)
    return emit(answer)


def emit(answer: Dict[str, Any]) -> int:
    packed = base64.b64encode(zlib.compress(json.dumps(answer, separators=(",", ":")).encode("utf-8"), 6))
    sys.stdout.write("\n" + MARKER + packed.decode("ascii") + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        sys.exit(main(json.load(handle)))
