"""Pre-flight: can this host run the locked environment at all? Answered before the workload starts.

Why: a driver too old for the locked CUDA runtime, or a GPU whose architecture the framework was
not compiled for, fails an hour into a run ("no kernel image is available for execution on the
device") or, worse, silently falls back to PTX JIT compilation. Each check here is a pure function
of the lock, the host's GPU facts and what the framework inside the image says about itself, so it
is tested without a GPU; the CLI raises ``PreflightError`` with the first failing check's sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envcap._serde import ShapeError, from_json
from envcap.errors import PreflightError
from envcap.lock import Gpu, Snapshot

# NVIDIA's "CUDA Toolkit and Corresponding Driver Versions" (CUDA release notes, table 3), Linux
# x86_64, the GA release of each major.minor: the driver a toolkit ships with and fully supports.
TOOLKIT_DRIVER: dict[str, str] = {
    "13.0": "580.65.06",
    "12.9": "575.51.03",
    "12.8": "570.26",
    "12.6": "560.28.03",
    "12.5": "555.42.02",
    "12.4": "550.54.14",
    "12.3": "545.23.06",
    "12.2": "535.54.03",
    "12.1": "530.30.02",
    "12.0": "525.60.13",
    "11.8": "520.61.05",
    "11.7": "515.43.04",
    "11.6": "510.39.01",
    "11.5": "495.29.05",
    "11.4": "470.42.01",
    "11.3": "465.19.01",
    "11.2": "460.27.03",
    "11.1": "455.23",
    "11.0": "450.36.06",
    "10.2": "440.33",
    "10.1": "418.39",
    "10.0": "410.48",
}
# The same notes, table 2: the oldest driver that runs any minor release of a CUDA major version
# through minor version compatibility (features needing a newer driver, such as JIT-compiling newer
# PTX, are then unavailable).
MINOR_COMPAT_DRIVER: dict[int, str] = {13: "580.65.06", 12: "525.60.13", 11: "450.80.02"}


@dataclass(frozen=True)
class PreflightCheck:
    name: str  # gpu-runtime | gpus | driver | arch
    status: str  # ok | warn | fail | skipped
    detail: str
    hint: str | None = None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def major_minor(version: str) -> str | None:
    parts = _version_tuple(version)
    return f"{parts[0]}.{parts[1]}" if len(parts) >= 2 else None


def locked_cuda_runtime(lock: Snapshot) -> str | None:
    """The CUDA runtime the locked environment loads: the runtime library, else what torch was built for."""
    if lock.cuda is None:
        return None
    runtime = lock.cuda.components.get("cuda_runtime")
    if runtime is not None and runtime.version:
        return runtime.version
    if lock.cuda.torch is not None and lock.cuda.torch.cuda:
        return lock.cuda.torch.cuda
    return None


def lock_uses_gpu(lock: Snapshot) -> bool:
    return bool(lock.gpu and lock.gpu.devices)


def check_gpu_runtime(*, gpus: bool, engine_has_runtime: bool, endpoint: str) -> PreflightCheck:
    if not gpus:
        return PreflightCheck("gpu-runtime", "skipped", "no GPUs are passed to the replay")
    if engine_has_runtime:
        return PreflightCheck("gpu-runtime", "ok", f"the engine at {endpoint} can pass GPUs through")
    return PreflightCheck(
        "gpu-runtime", "fail",
        f"the replay needs GPUs, but the engine at {endpoint} has no GPU runtime configured "
        "(no 'nvidia' runtime and no CDI devices)",
        hint="install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker`, "
             "then restart the engine; or replay on the CPU with --gpus none (results may then differ)")


def check_gpus_present(*, gpus: bool, host: Gpu | None) -> PreflightCheck:
    if not gpus:
        return PreflightCheck("gpus", "skipped", "no GPUs are passed to the replay")
    if host is not None and host.devices:
        names = ", ".join(sorted({d.name for d in host.devices}))
        return PreflightCheck("gpus", "ok", f"{len(host.devices)} GPU(s) on this host: {names}")
    why = f" ({host.status}: {host.reason})" if host is not None and host.reason else ""
    return PreflightCheck("gpus", "fail", f"the replay needs GPUs, but this host shows none{why}",
                          hint="run the replay on a host with an NVIDIA GPU and driver, or pass --gpus none to "
                               "replay on the CPU (results may then differ)")


def check_driver(lock: Snapshot, host: Gpu | None, *, gpus: bool) -> PreflightCheck:
    """The host driver against the locked CUDA runtime: NVIDIA's table, then the driver's own CUDA version."""
    runtime = locked_cuda_runtime(lock)
    if not gpus:
        return PreflightCheck("driver", "skipped", "no GPUs are passed to the replay")
    if runtime is None:
        return PreflightCheck("driver", "skipped", "the lock has no CUDA runtime to check the driver against")
    if host is None or not host.driver_version:
        return PreflightCheck("driver", "skipped", "the host's driver version could not be read")
    wanted = major_minor(runtime)
    driver = _version_tuple(host.driver_version)
    upgrade = ("upgrade the host's NVIDIA driver, or snapshot an environment built for an older CUDA "
               "(for example a torch wheel for an older cuXYZ index)")
    if wanted is not None:
        major = int(wanted.split(".")[0])
        full = TOOLKIT_DRIVER.get(wanted)
        compat = MINOR_COMPAT_DRIVER.get(major)
        if full is not None and driver >= _version_tuple(full):
            return PreflightCheck("driver", "ok", f"driver {host.driver_version} supports the locked CUDA "
                                  f"{runtime} (needs {full})")
        if compat is not None and driver >= _version_tuple(compat):
            return PreflightCheck(
                "driver", "warn",
                f"driver {host.driver_version} runs the locked CUDA {runtime} only through minor version "
                f"compatibility ({full or 'a newer driver'} fully supports it): PTX newer than the driver cannot "
                "be JIT-compiled", hint=upgrade)
        if full is not None or compat is not None:
            needed = compat or full
            return PreflightCheck(
                "driver", "fail",
                f"the NVIDIA driver {host.driver_version} is too old for the locked CUDA runtime {runtime}, "
                f"which needs driver {needed} or newer", hint=upgrade)
    # A CUDA version newer than this table: the driver says which CUDA it supports.
    supported = major_minor(host.cuda_driver_version or "")
    if supported is None or wanted is None:
        return PreflightCheck("driver", "skipped", f"no minimum driver is known for CUDA {runtime}")
    have, need = _version_tuple(supported), _version_tuple(wanted)
    if have >= need:
        return PreflightCheck("driver", "ok", f"driver {host.driver_version} supports CUDA {supported} "
                              f"and the lock needs {wanted}")
    if have[0] == need[0]:
        return PreflightCheck("driver", "warn", f"driver {host.driver_version} supports CUDA {supported}; the "
                              f"locked {runtime} runs through minor version compatibility", hint=upgrade)
    return PreflightCheck("driver", "fail", f"the NVIDIA driver {host.driver_version} supports CUDA up to "
                          f"{supported}, older than the locked CUDA runtime {runtime}", hint=upgrade)


def _sm(capability: str) -> tuple[int, int] | None:
    parts = _version_tuple(capability)
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def _parse_arch(entry: str) -> tuple[str, int, int] | None:
    """``sm_86`` -> ("sm", 8, 6); ``compute_90`` -> ("compute", 9, 0); arch-specific ``sm_90a`` -> None."""
    kind, _, number = entry.partition("_")
    if kind not in ("sm", "compute") or not number.isdigit() or len(number) < 2:
        return None
    return kind, int(number[:-1]), int(number[-1])


def check_arch(host: Gpu | None, arch_list: Sequence[str] | None, *, gpus: bool,
               framework: str = "torch") -> PreflightCheck:
    """Every GPU's compute capability against the architectures the framework in the image was built for.

    A cubin for sm_XY runs on devices X.Z with Z >= Y (same major); otherwise PTX (``compute_XY``)
    for an older architecture can be JIT-compiled by the driver, which works but compiles at start
    and may round differently; neither means "no kernel image is available".
    """
    if not gpus:
        return PreflightCheck("arch", "skipped", "no GPUs are passed to the replay")
    if arch_list is None:
        return PreflightCheck("arch", "skipped", f"no architecture list was available from {framework} in the image")
    if host is None or not host.devices:
        return PreflightCheck("arch", "skipped", "the host's GPUs could not be read")
    parsed = [p for p in (_parse_arch(a) for a in arch_list) if p is not None]
    if not parsed:
        return PreflightCheck("arch", "fail", f"{framework} in the image was built without CUDA, so it cannot use "
                              "the GPUs passed to the replay",
                              hint="snapshot an environment with a CUDA build of the framework, or pass --gpus none")
    shown = " ".join(arch_list)
    jit = []
    for device in host.devices:
        cc = _sm(device.compute_capability or "")
        if cc is None:
            continue
        binary = any(kind == "sm" and major == cc[0] and minor <= cc[1] for kind, major, minor in parsed)
        if binary:
            continue
        ptx = any(kind == "compute" and (major, minor) <= cc for kind, major, minor in parsed)
        label = f"GPU {device.index} ({device.name}, compute capability {device.compute_capability})"
        if ptx:
            jit.append(label)
            continue
        return PreflightCheck(
            "arch", "fail", f"{label} is not among the architectures {framework} in the image was built for "
            f"({shown})", hint=f"use a {framework} build that includes sm_{cc[0]}{cc[1]}, or replay on a GPU of "
                               "the snapshot's architecture")
    if jit:
        return PreflightCheck("arch", "warn", f"{'; '.join(jit)} will run kernels JIT-compiled from PTX by the "
                              f"driver ({framework} was built for {shown}): slower start, and results may differ",
                              hint="use a build with native kernels for this GPU")
    return PreflightCheck("arch", "ok", f"every GPU's architecture is among {framework}'s ({shown})")


def run_checks(lock: Snapshot, *, gpus: bool, engine_has_runtime: bool, endpoint: str, host: Gpu | None,
               arch_list: Sequence[str] | None) -> tuple[PreflightCheck, ...]:
    runtime = check_gpu_runtime(gpus=gpus, engine_has_runtime=engine_has_runtime, endpoint=endpoint)
    return (runtime, check_gpus_present(gpus=gpus, host=host), check_driver(lock, host, gpus=gpus),
            check_arch(host, arch_list, gpus=gpus))


def first_failure(checks: Sequence[PreflightCheck]) -> PreflightError | None:
    for check in checks:
        if check.status == "fail":
            return PreflightError(f"pre-flight check failed: {check.detail}.", hint=check.hint)
    return None


def host_gpu() -> Gpu:
    """This host's GPUs through NVML, read by the probe's own reader (pynvml, else ctypes), in-process.

    Why in-process: it takes milliseconds, where a second probe process or container would take
    most of a second; and it is the same code that wrote the lock's ``gpu`` section.
    """
    from envcap.probe._probe import gpu_facts

    facts = gpu_facts()
    try:
        return from_json(Gpu, facts)
    except ShapeError as exc:
        return Gpu(status="error", reason=f"unexpected NVML answer ({exc})")
