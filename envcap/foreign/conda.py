"""``conda list --export`` (``name=version=build``) and the tabular ``conda list``.

Why conda separately: conda environments carry their own CUDA toolkit, cuDNN and BLAS variant as
packages, so this report states facts a ``pip freeze`` cannot: ``blas=1.0=mkl`` names the BLAS,
``cudatoolkit=11.3.1`` the CUDA runtime, and the pytorch build string its CUDA and cuDNN.
"""

from __future__ import annotations

import re

from envcap.foreign._common import dedupe, distribution, fail
from envcap.model import Blas, Cpu, CudaComponent, CudaStack, DeclaredBlas, OsInfo, PythonEnv, Snapshot, TorchBuild

EXPORT_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9._-]*)=([^=\s]+)=(\S+)$")
TABLE_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9._-]*)\s+(\S+)\s+(\S+)(?:\s+(\S+))?$")
PLATFORMS = {"linux-64": ("Linux", "x86_64"), "linux-aarch64": ("Linux", "aarch64"), "linux-ppc64le": ("Linux", "ppc64le"),
             "osx-64": ("Darwin", "x86_64"), "osx-arm64": ("Darwin", "arm64"), "win-64": ("Windows", "x86_64")}
ALIASES = {"pytorch": "torch", "pytorch-gpu": "torch", "pytorch-cpu": "torch"}
TORCH_BUILD_RE = re.compile(r"cuda(\d+\.\d+)(?:.*?_cudnn(\d+(?:\.\d+)*))?")
BLAS_VARIANTS = ("mkl", "openblas", "blis", "accelerate", "netlib")


def looks_like(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith(("# platform:", "# packages in environment at")) for line in lines[:6]):
        return True
    if lines and re.match(r"^#\s*Name\s+Version\s+Build", lines[0]):
        return True
    content = [line for line in lines if not line.startswith("#")]
    return bool(content) and EXPORT_RE.match(content[0]) is not None


def parse(text: str, origin: str) -> Snapshot:
    platform = None
    rows: list[tuple[str, str, str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = re.match(r"^#\s*platform:\s*(\S+)", line)
            if match:
                platform = match.group(1)
            continue
        if line.startswith("@EXPLICIT") or "://" in line:
            raise fail(f"{origin} is a `conda list --explicit` file of URLs; expected `conda list --export` output.",
                       hint="run `conda list --export > env.txt` in the environment")
        match = EXPORT_RE.match(line) or TABLE_RE.match(line)
        if not match:
            raise fail(f"{origin} line {number} ({line[:40]!r}) is not a `name=version=build` entry: expected "
                       "`conda list --export` output (is the file cut short?).")
        rows.append((match.group(1), match.group(2), match.group(3), number))
    if not rows:
        raise fail(f"{origin} lists no packages: expected `conda list --export` output.")

    dists = []
    components: dict[str, CudaComponent] = {}
    declared: dict[str, DeclaredBlas] = {}
    torch_build = None
    python = None
    derived: list[str] = []
    for name, version, build, number in rows:
        name = ALIASES.get(name, name)
        if name == "python":
            python = PythonEnv(version=version, implementation="cpython" if "pypy" not in build else "pypy")
        if name == "torch":
            match = TORCH_BUILD_RE.search(build)
            if match:
                torch_build = TorchBuild(version=version, cuda=match.group(1))
                derived.append("cuda.torch.cuda")
                if match.group(2):
                    components.setdefault("cudnn", CudaComponent(version=match.group(2), source="conda",
                                                                 where="pytorch build"))
                    derived.append("cuda.components.cudnn")
            elif build.startswith("cpu") or "_cpu_" in build:
                torch_build = TorchBuild(version=version, cuda=None)
        if name in ("cudatoolkit", "cuda-cudart", "cuda-runtime"):
            components["cuda_runtime"] = CudaComponent(version=version, source="conda", where=name)
        if name == "cudnn":
            components["cudnn"] = CudaComponent(version=version, source="conda", where=name)
            if "cuda.components.cudnn" in derived:
                derived.remove("cuda.components.cudnn")
        if name == "nccl":
            components["nccl"] = CudaComponent(version=version, source="conda", where=name)
        if name == "blas" and build in BLAS_VARIANTS:
            declared["conda.blas"] = DeclaredBlas(name=build)
        if name == "libblas":
            variant = build.rsplit("_", 1)[-1]
            if variant in BLAS_VARIANTS:
                declared["conda.blas"] = DeclaredBlas(name=variant)
        if name == "mkl":
            declared.setdefault("conda.mkl", DeclaredBlas(name="mkl", version=version))
        dists.append(distribution(name, version, installer="conda", origin=origin, line=number))
    system, machine = PLATFORMS.get(platform or "", (None, None))
    # "conda.mkl" only says MKL is installed, not that numpy uses it; the blas variant says that.
    blas_declared = {k: v for k, v in declared.items() if k == "conda.blas"}
    if "conda.blas" in declared and declared["conda.blas"].name == "mkl" and "conda.mkl" in declared:
        blas_declared["conda.blas"] = DeclaredBlas(name="mkl", version=declared["conda.mkl"].version)
    return Snapshot(source="conda-list", python=python, distributions=dedupe(dists),
                    os=OsInfo(system=system) if system else None, cpu=Cpu(architecture=machine) if machine else None,
                    cuda=CudaStack(components=components, torch=torch_build) if components or torch_build else None,
                    blas=Blas(declared=blas_declared) if blas_declared else None, derived=tuple(dict.fromkeys(derived)))
