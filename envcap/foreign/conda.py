"""``conda list --export`` (``name=version=build``) and the tabular ``conda list``.

Why conda separately: conda environments carry their own CUDA toolkit, cuDNN and BLAS variant as
packages, so this report states facts a ``pip freeze`` cannot: ``blas=1.0=mkl`` names the BLAS,
``cudatoolkit=11.3.1`` the CUDA runtime, and the pytorch build string its CUDA and cuDNN. The same
reading serves the ``[conda]`` lines of a ``collect_env`` report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from envcap.foreign._common import dedupe, distribution, fail
from envcap.lock import (
    Blas,
    Cpu,
    CudaComponent,
    CudaStack,
    DeclaredBlas,
    Distribution,
    OsInfo,
    PythonEnv,
    Snapshot,
    TorchBuild,
)

EXPORT_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9._-]*)=([^=\s]+)=(\S+)$")
TABLE_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9._-]*)\s+(\S+)\s+(\S+)(?:\s+(\S+))?$")
PLATFORMS = {"linux-64": ("Linux", "x86_64"), "linux-aarch64": ("Linux", "aarch64"), "linux-ppc64le": ("Linux", "ppc64le"),
             "osx-64": ("Darwin", "x86_64"), "osx-arm64": ("Darwin", "aarch64"), "win-64": ("Windows", "x86_64")}
ALIASES = {"pytorch": "torch", "pytorch-gpu": "torch", "pytorch-cpu": "torch"}
TORCH_BUILD_RE = re.compile(r"cuda(\d+\.\d+)(?:.*?_cudnn(\d+(?:\.\d+)*))?")
BLAS_VARIANTS = ("mkl", "openblas", "blis", "accelerate", "netlib")
CUDA_PACKAGES = {"cudatoolkit": "cuda_runtime", "cuda-cudart": "cuda_runtime", "cuda-runtime": "cuda_runtime",
                 "cudnn": "cudnn", "nccl": "nccl"}

Row = tuple[str, str, str, int]  # name, version, build, line number


@dataclass
class CondaFacts:
    """What a list of conda packages states beyond names and versions."""

    dists: list[Distribution] = field(default_factory=list)
    components: dict[str, CudaComponent] = field(default_factory=dict)
    blas: DeclaredBlas | None = None
    torch_build: TorchBuild | None = None
    python: PythonEnv | None = None
    derived: list[str] = field(default_factory=list)


def looks_like(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith(("# platform:", "# packages in environment at")) for line in lines[:6]):
        return True
    if lines and re.match(r"^#\s*Name\s+Version\s+Build", lines[0]):
        return True
    content = [line for line in lines if not line.startswith("#")]
    return bool(content) and EXPORT_RE.match(content[0]) is not None


def interpret(rows: list[Row], origin: str) -> CondaFacts:
    facts = CondaFacts()
    for name, version, build, number in rows:
        name = ALIASES.get(name, name)
        facts.dists.append(distribution(name, version, installer="conda", origin=origin, line=number))
        if name == "python":
            facts.python = PythonEnv(version=version, implementation="pypy" if "pypy" in build else "cpython")
        elif name == "torch":
            _torch(facts, version, build)
        elif name in CUDA_PACKAGES:
            component = CUDA_PACKAGES[name]
            facts.components[component] = CudaComponent(version=version, source="conda", where=name)
            if component == "cudnn" and "cuda.components.cudnn" in facts.derived:
                facts.derived.remove("cuda.components.cudnn")  # stated outranks implied
        elif name in ("blas", "libblas"):
            variant = build.rsplit("_", 1)[-1]  # blas=1.0=mkl, libblas=3.9.0=16_linux64_openblas
            if variant in BLAS_VARIANTS:
                facts.blas = DeclaredBlas(name=variant)
    mkl = next((d.version for d in facts.dists if d.name == "mkl"), None)
    if facts.blas and facts.blas.name == "mkl" and mkl:
        facts.blas = DeclaredBlas(name="mkl", version=mkl)
    return facts


def _torch(facts: CondaFacts, version: str, build: str) -> None:
    """pytorch's build string names the CUDA and cuDNN it was built with (py3.9_cuda11.3_cudnn8.2.0_0)."""
    match = TORCH_BUILD_RE.search(build)
    if match:
        facts.torch_build = TorchBuild(version=version, cuda=match.group(1))
        facts.derived.append("cuda.torch.cuda")
        if match.group(2) and "cudnn" not in facts.components:
            facts.components["cudnn"] = CudaComponent(version=match.group(2), source="conda", where="pytorch build")
            facts.derived.append("cuda.components.cudnn")
    elif build.startswith("cpu") or "_cpu_" in build:
        facts.torch_build = TorchBuild(version=version, cuda=None)


def parse(text: str, origin: str) -> Snapshot:
    platform = None
    rows: list[Row] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = re.match(r"^#\s*platform:\s*(\S+)", line)
            platform = match.group(1) if match else platform
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
    facts = interpret(rows, origin)
    system, machine = PLATFORMS.get(platform or "", (None, None))
    return Snapshot(source="conda-list", python=facts.python, distributions=dedupe(facts.dists),
                    os=OsInfo(system=system) if system else None, cpu=Cpu(architecture=machine) if machine else None,
                    cuda=CudaStack(components=facts.components, torch=facts.torch_build)
                    if facts.components or facts.torch_build else None,
                    blas=Blas(declared={"conda.blas": facts.blas}) if facts.blas else None,
                    derived=tuple(dict.fromkeys(facts.derived)))
