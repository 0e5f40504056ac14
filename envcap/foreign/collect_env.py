"""The text of ``python -m torch.utils.collect_env``, the report PyTorch's issue template asks for.

Why it matters: it is the most common environment description in public bug reports, so
``envcap diff`` can compare two pasted reports, or a report with a snapshot. It states torch's
version and CUDA build, the GPUs, the driver, the system cuDNN, the CPU (lscpu) and a few packages;
everything else stays unknown. Formats from PyTorch 1.0 to today are read.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from envcap.foreign._common import collected, dedupe, distribution, fail
from envcap.foreign.conda import Row, interpret
from envcap.lock import (
    Blas,
    Cpu,
    CudaComponent,
    CudaStack,
    Distribution,
    Gpu,
    GpuDevice,
    OsInfo,
    PythonEnv,
    Snapshot,
    Toolchain,
    ToolVersion,
    TorchBuild,
    Unavailable,
)

SOURCE: Final = "collect-env"
KEYS = ("PyTorch version", "Is debug build", "CUDA used to build PyTorch", "ROCM used to build PyTorch", "OS",
        "GCC version", "Clang version", "CMake version", "Libc version", "Python version", "Python platform",
        "Is CUDA available", "CUDA runtime version", "CUDA_MODULE_LOADING set to", "GPU models and configuration",
        "Nvidia driver version", "cuDNN version", "HIP runtime version", "MIOpen runtime version",
        "Is XNNPACK available", "CPU", "Versions of relevant libraries")
KEY_RE = re.compile(r"^(" + "|".join(re.escape(k) for k in KEYS) + r"):\s*(.*)$")
LIB_RE = re.compile(r"^\[(pip3?|conda)\]\s+(.*)$")
GPU_RE = re.compile(r"^GPU (\d+):\s*(.+?)\s*$")
CUDNN_FILE_RE = re.compile(r"libcudnn\.so\.(\d+(?:\.\d+){0,2})\b")
DISTRO_RE = re.compile(r"^(Ubuntu) (\d+\.\d+)|^(Debian) GNU/Linux (\d+)|^(CentOS) Linux (\d+)|^(Fedora) .*?(\d+)")
PLATFORM_RE = re.compile(r"^(Linux|Darwin|macOS|Windows)-(.+?)-(x86_64|aarch64|arm64|AMD64|i686|ppc64le|s390x)\b")


def looks_like(text: str) -> bool:
    return bool(re.search(r"^PyTorch version:", text, re.MULTILINE)) or text.lstrip().startswith(
        "Collecting environment information")


def parse(text: str, origin: str) -> Snapshot:
    fields: dict[str, str] = {}
    gpus: list[GpuDevice] = []
    cudnn_files: list[str] = []
    cpu: dict[str, str] = {}
    libs: list[tuple[str, str, int]] = []
    block = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().strip("`").rstrip()
        if not line:
            if block in ("gpu", "cudnn"):
                block = None
            continue
        match = KEY_RE.match(line)
        if match:
            key, value = match.group(1), match.group(2).strip()
            fields.setdefault(key, value)
            block = {"GPU models and configuration": "gpu", "cuDNN version": "cudnn", "CPU": "cpu",
                     "Versions of relevant libraries": "libs"}.get(key)
            if block == "gpu" and value:
                gpu = GPU_RE.match(value)
                if gpu:
                    gpus.append(GpuDevice(index=int(gpu.group(1)), name=gpu.group(2)))
            if block == "cudnn":
                cudnn_files += CUDNN_FILE_RE.findall(value)
            continue
        if block == "gpu":
            gpu = GPU_RE.match(line)
            if gpu:
                gpus.append(GpuDevice(index=int(gpu.group(1)), name=gpu.group(2)))
        elif block == "cudnn":
            cudnn_files += CUDNN_FILE_RE.findall(line)
        elif block == "cpu":
            pair = re.match(r"^([A-Za-z][A-Za-z0-9 ()/_-]*?)\s*[:=]\s*(.*)$", line)
            if pair:
                cpu.setdefault(pair.group(1).strip(), pair.group(2).strip())
        elif block == "libs":
            lib = LIB_RE.match(line)
            if lib:
                libs.append((lib.group(1), lib.group(2).strip(), number))
    if "PyTorch version" not in fields:
        raise fail(f"{origin} has no 'PyTorch version:' line, so it is not the output of "
                   "`python -m torch.utils.collect_env`.")
    if "Versions of relevant libraries" not in fields:
        raise fail(f"{origin} looks like `python -m torch.utils.collect_env` output but ends before its "
                   "'Versions of relevant libraries:' section: the report is cut short.",
                   hint="paste the whole output of `python -m torch.utils.collect_env`")
    return _snapshot(fields, gpus, cudnn_files, cpu, libs, origin)


def _snapshot(fields: dict[str, str], gpus: list[GpuDevice], cudnn_files: list[str], cpu: dict[str, str],
              libs: list[tuple[str, str, int]], origin: str) -> Snapshot:
    torch_version = collected(fields.get("PyTorch version"))
    pip_dists, conda_rows = _libraries(libs, origin)
    conda = interpret(conda_rows, origin)
    unavailable: list[Unavailable] = []
    torch_build = _torch_build(fields, torch_version)
    from_conda = False  # the CUDA build implied by the conda pytorch build string, where not stated
    if torch_version and torch_build is None:
        if conda.torch_build is not None:
            torch_build, from_conda = replace(conda.torch_build, version=torch_version), True
        else:
            unavailable.append(Unavailable("torch.cuda_build", "collect_env could not say which CUDA built torch"))
    derived = [d for d in conda.derived if d != "cuda.torch.cuda" or from_conda]
    components = dict(conda.components)
    if "cudnn" not in components:
        cudnn = _system_cudnn(collected(fields.get("cuDNN version")), cudnn_files)
        if cudnn:
            components["cudnn"] = cudnn
    # collect_env's "CUDA runtime version" is the system nvcc's, not the runtime torch loads.
    runtime = collected(fields.get("CUDA runtime version"))
    nvcc = ToolVersion(path="nvcc", version=runtime) if runtime and re.match(r"^\d+(\.\d+)*$", runtime) else None
    dists = ([distribution("torch", torch_version, origin=origin)] if torch_version else []) + pip_dists + conda.dists
    platform_match = PLATFORM_RE.match(fields.get("Python platform", ""))
    toolchain = Toolchain(gcc=_tool("gcc", fields.get("GCC version")), clang=_tool("clang", fields.get("Clang version")),
                          cmake=_tool("cmake", fields.get("CMake version")))
    cuda = CudaStack(components=components, torch=torch_build, nvcc=nvcc) \
        if components or torch_build or nvcc else None
    return Snapshot(source=SOURCE, python=_python(fields, platform_match), distributions=dedupe(dists),
                    os=_os(fields, platform_match), cpu=_cpu(cpu), gpu=_gpu(fields, gpus), cuda=cuda,
                    blas=Blas(declared={"conda.blas": conda.blas}) if conda.blas else None, toolchain=toolchain,
                    derived=tuple(dict.fromkeys(derived)), unavailable=tuple(unavailable))


def _libraries(libs: list[tuple[str, str, int]], origin: str) -> tuple[list[Distribution], list[Row]]:
    """``[pip3] name==version`` lines and ``[conda] name version build channel`` rows."""
    pip_dists: list[Distribution] = []
    conda_rows: list[Row] = []
    for kind, rest, number in libs:
        if rest.lower().startswith("could not collect"):
            continue
        if kind.startswith("pip"):
            name, sep, version = rest.partition("==")
            if sep:
                pip_dists.append(distribution(name, version, installer="pip", origin=origin, line=number))
            continue
        parts = rest.split()
        if len(parts) >= 2:  # a name and a version at least
            conda_rows.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "", number))
    return pip_dists, conda_rows


def _torch_build(fields: dict[str, str], torch_version: str | None) -> TorchBuild | None:
    """What "CUDA used to build PyTorch" states: a version, "None" (a CPU build), or nothing known."""
    if not torch_version:
        return None
    stated = fields.get("CUDA used to build PyTorch")
    debug = _bool(fields.get("Is debug build"))
    if collected(stated) is not None:
        return TorchBuild(version=torch_version, cuda=collected(stated), debug=debug,
                          hip=collected(fields.get("ROCM used to build PyTorch")))
    if stated is not None and stated.strip().lower() == "none":
        return TorchBuild(version=torch_version, cuda=None, debug=debug)
    return None


def _system_cudnn(text: str | None, files: list[str]) -> CudaComponent | None:
    """cuDNN as a version, or as the one version among the libcudnn.so files collect_env lists."""
    versions = sorted(set(files))
    if len(versions) == 1:
        return CudaComponent(version=versions[0], source="system", where="libcudnn")
    if text and re.match(r"^\d+(\.\d+)+$", text):
        return CudaComponent(version=text, source="system")
    return None


def _gpu(fields: dict[str, str], gpus: list[GpuDevice]) -> Gpu | None:
    driver = collected(fields.get("Nvidia driver version"))
    if gpus:
        return Gpu(status="ok", binding=SOURCE, driver_version=driver, devices=tuple(gpus))
    if driver or "GPU models and configuration" in fields:
        return Gpu(status="error", reason="collect_env listed no GPU model", binding=SOURCE, driver_version=driver)
    return None


def _python(fields: dict[str, str], platform_match: re.Match[str] | None) -> PythonEnv | None:
    text = fields.get("Python version", "")
    match = re.match(r"^(\d+\.\d+(?:\.\d+)?)", text)
    if not match:
        return None
    bits = re.search(r"\((\d+)-bit runtime\)", text)
    return PythonEnv(version=match.group(1), bits=int(bits.group(1)) if bits else None,
                     machine=platform_match.group(3) if platform_match else None)


def _bool(value: str | None) -> bool | None:
    text = (value or "").strip().lower()
    return True if text in ("true", "yes") else False if text in ("false", "no") else None


def _tool(name: str, value: str | None) -> ToolVersion | None:
    text = collected(value)
    if not text:
        return None
    found = re.findall(r"(\d+\.\d+(?:\.\d+)?)", text)
    return ToolVersion(path=name, version=found[-1] if found else None)


def _os(fields: dict[str, str], platform_match: re.Match[str] | None) -> OsInfo | None:
    text = collected(fields.get("OS"))
    libc = collected(fields.get("Libc version"))
    if not text and not libc and not platform_match:
        return None
    pretty = re.sub(r"\s*\((x86_64|aarch64|arm64|AMD64|ppc64le|s390x|i686)\)$", "", text or "") or None
    os_id = version_id = None
    if pretty:
        match = DISTRO_RE.match(pretty)
        if match:
            groups = [g for g in match.groups() if g]
            os_id, version_id = groups[0].lower(), groups[1]
    libc_name = libc_version = None
    if libc and "-" in libc:
        libc_name, _, libc_version = libc.partition("-")
    system = platform_match.group(1) if platform_match else None
    if system == "macOS":
        system = "Darwin"
    kernel = platform_match.group(2) if platform_match and system == "Linux" else None
    return OsInfo(system=system, kernel=kernel, id=os_id, version_id=version_id, pretty_name=pretty,
                  libc=libc_name, libc_version=libc_version)


WINDOWS_ARCH = {"9": "x86_64", "12": "aarch64", "0": "x86"}


def _cpu(cpu: dict[str, str]) -> Cpu | None:
    if not cpu:
        return None
    from envcap.probe._probe import NUMERIC_FLAGS

    def number(key: str) -> int | None:
        value = cpu.get(key, "")
        return int(value) if value.isdigit() else None

    arch = cpu.get("Architecture")
    if arch in WINDOWS_ARCH:
        arch = WINDOWS_ARCH[arch]
    flags = cpu.get("Flags")
    numeric = tuple(sorted({f for f in flags.split() if f in NUMERIC_FLAGS})) if flags else None
    cores, sockets = number("Core(s) per socket"), number("Socket(s)")
    physical = cores * sockets if cores and sockets else number("NumberOfCores")
    return Cpu(architecture=arch, vendor=cpu.get("Vendor ID") or cpu.get("Manufacturer"),
               model_name=cpu.get("Model name") or cpu.get("Name"), logical_cores=number("CPU(s)")
               or number("NumberOfLogicalProcessors"), physical_cores=physical, numeric_flags=numeric)
