"""The flat view of a snapshot that rules read: ``"gpu.compute_capability" -> "8.0"``.

Why flat: rules name facts by dotted path and compare values; they should not know that the CUDA
runtime lives in ``snapshot.cuda.components["cuda_runtime"]`` or that torch reports cuDNN as
``8902``. This module is the one place that knows the Snapshot's shape.

A fact that is not in ``values`` is unknown. ``None`` as a value means known to be absent (an
environment variable that is unset, a package not installed, no GPU). Whole families are closed
when the source lists them completely: a probe sees every environment variable it records and every
installed distribution, a ``pip freeze`` every distribution, but ``collect_env`` lists only a few
packages, so there a missing package stays unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from envcap.explain.derive import cudnn_from_int
from envcap.lock import GitState, Snapshot

# Sources whose distribution list is complete (a package missing from it is not installed).
COMPLETE_PACKAGE_SOURCES = frozenset({"probe", "pip-freeze", "pip-list", "pip-inspect", "conda-list"})

# The hook's spellings are canonical; these are the API names people also use.
PRECISION_ALIASES = {
    "torch.get_float32_matmul_precision": "torch.float32_matmul_precision",
    "torch.are_deterministic_algorithms_enabled": "torch.deterministic_algorithms",
    "torch.is_deterministic_algorithms_warn_only_enabled": "torch.deterministic_algorithms_warn_only",
    "torch.backends.cudnn.conv.fp32_precision": "torch.backends.cudnn.fp32_precision",
    "tf.config.experimental.tensor_float_32_execution_enabled": "tensorflow.tensor_float_32_execution",
}

ARCHITECTURES = {"amd64": "x86_64", "AMD64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "ARM64": "aarch64"}
BLAS_FAMILIES = {
    "openblas": "openblas", "scipy-openblas": "openblas", "scipy_openblas": "openblas", "openblas64": "openblas",
    "mkl": "mkl", "mkl-rt": "mkl", "mkl_rt": "mkl", "mkl-sdl": "mkl", "intel-mkl": "mkl",
    "accelerate": "accelerate", "blis": "blis", "flexiblas": "flexiblas", "armpl": "armpl", "atlas": "atlas",
    "netlib": "netlib", "blas": "netlib", "cblas": "netlib",
}


@dataclass(frozen=True)
class FactView:
    values: dict[str, Any]
    derived: frozenset[str] = frozenset()
    closed: tuple[str, ...] = ()  # prefixes whose missing members are known absent (None)
    unknown: frozenset[str] = frozenset()  # members of a closed family that are nevertheless unknown
    source: str = "probe"

    def known(self, key: str) -> bool:
        if key in self.values:
            return True
        return key not in self.unknown and key.startswith(self.closed)

    def get(self, key: str) -> Any:
        return self.values.get(key)


def blas_family(name: str | None) -> str | None:
    if not name:
        return None
    key = name.strip().lower()
    if key in BLAS_FAMILIES:
        return BLAS_FAMILIES[key]
    for prefix, family in (("scipy-openblas", "openblas"), ("scipy_openblas", "openblas"), ("openblas", "openblas"),
                           ("mkl", "mkl"), ("accelerate", "accelerate"), ("blis", "blis"), ("flexiblas", "flexiblas")):
        if key.startswith(prefix):
            return family
    return key


def code_text(git: GitState) -> str:
    """The workload's code as one comparable value: the commit changes are measured against, and
    which files differ from it (``.envcap/`` left out, so committing a snapshot changes nothing)."""
    base = (git.base or git.commit or "no commit")[:12]
    if not git.diff_sha256:
        return f"{base} as committed"
    files = list(git.changed_files)
    shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    return f"{base} with changes to {shown or 'files'} (diff {git.diff_sha256[:12]})"


def facts_of(snapshot: Snapshot) -> FactView:
    """Every fact the snapshot states or implies, by path."""
    v: dict[str, Any] = {}
    derived: set[str] = set()
    probe = snapshot.source == "probe"

    py = snapshot.python
    if py:
        v["python.version"] = py.version
        _put(v, "python.implementation", py.implementation)
        _put(v, "python.hash_randomization", py.hash_randomization)
        _put(v, "python.executable", py.executable)
        _put(v, "python.prefix", py.prefix)

    o = snapshot.os
    if o:
        _put(v, "os.system", o.system)
        distro = f"{o.id} {o.version_id}" if o.id and o.version_id else o.pretty_name
        _put(v, "os.distro", distro)
        _put(v, "os.kernel", o.kernel)
        _put(v, "os.libc", o.libc)
        _put(v, "os.libc_version", o.libc_version)
        if probe:
            v["os.container"] = o.container

    c = snapshot.cpu
    if c:
        _put(v, "cpu.architecture", ARCHITECTURES.get(c.architecture or "", c.architecture))
        _put(v, "cpu.vendor", c.vendor)
        _put(v, "cpu.model_name", c.model_name)
        if c.numeric_flags is not None:
            v["cpu.isa"] = frozenset(c.numeric_flags)
        _put(v, "cpu.logical_cores", c.logical_cores)
        _put(v, "cpu.physical_cores", c.physical_cores)
        usable = usable_cores(snapshot)
        _put(v, "cpu.usable_cores", usable)
        _put(v, "cpu.memory_total_bytes", c.memory_total_bytes)

    _gpu_facts(snapshot, v)
    _cuda_facts(snapshot, v)
    _blas_facts(snapshot, v, derived)

    rt = snapshot.torch_runtime
    if rt:
        _put(v, "torch.cpu_capability", rt.cpu_capability)
        _put(v, "torch.num_threads", rt.num_threads)

    closed: list[str] = []
    if snapshot.env is not None:
        closed.append("env.")
        for variable, setting in snapshot.env.items():
            v[f"env.{variable}"] = setting

    for raw_key, flag in (snapshot.precision or {}).items():
        key = PRECISION_ALIASES.get(raw_key, raw_key)
        if key.endswith(".version"):
            continue  # the framework's version is a package fact
        v["torch.num_threads" if key == "torch.num_threads" else f"precision.{key}"] = flag

    for dist in snapshot.distributions:
        v[f"pkg.{dist.name}"] = dist.version
    if snapshot.source in COMPLETE_PACKAGE_SOURCES:
        closed.append("pkg.")

    g = snapshot.git
    if g:
        _put(v, "git.commit", g.commit)
        _put(v, "git.root", g.root)
        if g.commit is not None or g.base is not None:
            v["git.code"] = code_text(g)
        if g.imports_changed is not None:
            v["git.imports_changed"] = g.imports_changed

    for marker in snapshot.derived:
        derived.add(_fact_of_marker(marker))
    unknown = set()
    for item in snapshot.unavailable:
        if item.probe in derived:
            continue  # the report could not say, but what it implies could
        unknown.add(item.probe)
        v.pop(item.probe, None)
    return FactView(values=v, derived=frozenset(d for d in derived if d in v), closed=tuple(closed),
                    unknown=frozenset(unknown), source=snapshot.source)


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        values[key] = value


def _fact_of_marker(marker: str) -> str:
    if marker.startswith("gpu.devices[") and marker.endswith(".compute_capability"):
        return "gpu.compute_capability"
    if marker == "cuda.torch.cuda":
        return "torch.cuda_build"
    if marker.startswith("cuda.components."):
        return "cuda." + {"cuda_runtime": "runtime"}.get(marker.rsplit(".", 1)[1], marker.rsplit(".", 1)[1])
    if marker.startswith("precision."):
        key = marker[len("precision."):]
        return "precision." + PRECISION_ALIASES.get(key, key)
    return marker


def usable_cores(snapshot: Snapshot) -> int | None:
    """Cores the process may run on: the affinity set, capped by a cgroup CPU quota."""
    c = snapshot.cpu
    if c is None:
        return None
    cores = c.affinity_cores or c.logical_cores
    if cores is not None and c.cgroup_cpu_limit:
        cores = min(cores, max(1, math.ceil(c.cgroup_cpu_limit)))
    return cores


def _gpu_facts(snapshot: Snapshot, v: dict[str, Any]) -> None:
    gpu = snapshot.gpu
    if gpu is None:
        return
    _put(v, "gpu.driver", gpu.driver_version)
    _put(v, "gpu.cuda_driver", gpu.cuda_driver_version)
    if gpu.status == "error" and not gpu.devices:
        return  # NVML failed midway: whether there is a GPU is unknown
    # no-nvml counts as no GPU: libnvidia-ml ships with the driver beside libcuda, so where it cannot
    # load, no CUDA program can use a GPU either (a container started without the GPU runtime).
    devices = gpu.devices
    v["gpu.count"] = len(devices)
    if not devices:  # known to have none: no model, no compute capability (TF32 cannot apply)
        v["gpu.model"] = v["gpu.compute_capability"] = None
        return
    names = sorted({d.name for d in devices})
    v["gpu.model"] = " + ".join(names)
    ccs = [d.compute_capability for d in devices if d.compute_capability]
    if ccs and len(ccs) == len(devices):
        v["gpu.compute_capability"] = max(ccs, key=lambda cc: tuple(int(p) for p in cc.split(".") if p.isdigit()))
    sms = {d.multiprocessor_count for d in devices if d.multiprocessor_count}
    if sms:
        v["gpu.sm_count"] = min(sms)
    migs = {d.mig_mode for d in devices if d.mig_mode}
    if migs:
        v["gpu.mig_mode"] = " + ".join(sorted(migs))
    memory = devices[0].memory_total_bytes
    _put(v, "gpu.memory_total_bytes", memory)


CUDA_FACTS = {"cuda_runtime": "cuda.runtime", "cudnn": "cuda.cudnn", "nccl": "cuda.nccl", "cublas": "cuda.cublas"}


def _cuda_facts(snapshot: Snapshot, v: dict[str, Any]) -> None:
    stack = snapshot.cuda
    if stack:
        # envcap's probe looks everywhere a component can live, so one it did not find is known
        # absent (None), not unknown; a pasted report that does not mention it says nothing.
        searched = snapshot.source == "probe"
        for component, fact in CUDA_FACTS.items():
            comp = stack.components.get(component)
            if comp:
                v[fact] = comp.version
                if fact == "cuda.runtime":
                    v["cuda.runtime_source"] = comp.source
            elif searched:
                v[fact] = None
                if fact == "cuda.runtime":
                    v["cuda.runtime_source"] = None
        if stack.nvcc and stack.nvcc.version:
            v["cuda.nvcc"] = stack.nvcc.version
        elif searched:
            v["cuda.nvcc"] = None
        build = stack.torch
        if build and (build.version or build.cuda):
            v["torch.cuda_build"] = build.cuda  # None: a CPU build
            _put(v, "torch.hip", build.hip)
        elif searched and build is None:
            v["torch.cuda_build"] = None  # the probe reads torch/version.py whenever torch is installed
    rt = snapshot.torch_runtime
    if rt:
        cudnn = cudnn_from_int(rt.cudnn)
        if cudnn:
            v["cuda.cudnn"] = cudnn  # what torch loaded outranks what lies on disk
        _put(v, "cuda.nccl", rt.nccl)


def _blas_facts(snapshot: Snapshot, v: dict[str, Any], derived: set[str]) -> None:
    blas = snapshot.blas
    if blas is None:
        return
    families: set[str] = set()
    versions: dict[str, str] = {}
    for lib in blas.libraries:
        if lib.api == "blas":
            family = blas_family(lib.library)
            if family:
                families.add(family)
                if lib.version:
                    versions.setdefault(family, lib.version)
    for key, declared in blas.declared.items():
        if key.endswith(".blas"):
            family = blas_family(declared.name)
            if family:
                families.add(family)
                if declared.version and family not in versions:
                    versions[family] = declared.version
        elif not key.endswith(".lapack"):
            v[f"build.{key}"] = declared.name  # torch.onednn, torch.parallel: how a framework was built
    pools = [p for p in (blas.threadpools or ()) if p.user_api == "blas"]
    for pool in pools:
        family = blas_family(pool.internal_api)
        if family:
            families.add(family)
            if pool.version:
                versions[family] = pool.version
    v["blas.backend"] = frozenset(families)
    for family, version in versions.items():
        v[f"blas.{family}.version"] = version
    openmp = frozenset(lib.library for lib in blas.libraries if lib.api == "openmp")
    if blas.libraries:
        v["openmp.runtime"] = openmp
    layers = {p.threading_layer for p in pools if p.threading_layer}
    if layers:
        v["blas.threading_layer"] = " + ".join(sorted(layers))
    archs = {p.architecture for p in pools if p.architecture}
    if archs:
        v["blas.architecture"] = " + ".join(sorted(archs))
    measured = {blas_family(p.internal_api): p.num_threads for p in pools if p.num_threads}
    for family in sorted(families):
        threads = measured.get(family) or default_blas_threads(snapshot, family)
        if threads is not None:
            v[f"blas.{family}.threads"] = threads
            if family not in measured:
                derived.add(f"blas.{family}.threads")


# Which variables each BLAS reads for its thread count, in its own order of precedence, and whether
# its default is the physical (MKL) or the usable logical core count (OpenBLAS).
BLAS_THREAD_VARIABLES = {
    "openblas": (("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"), "logical"),
    "mkl": (("MKL_NUM_THREADS", "OMP_NUM_THREADS"), "physical"),
    "blis": (("BLIS_NUM_THREADS", "OMP_NUM_THREADS"), "one"),
    "accelerate": (("VECLIB_MAXIMUM_THREADS",), "logical"),
}


def default_blas_threads(snapshot: Snapshot, family: str) -> int | None:
    """The thread count a BLAS will pick, from the variables it reads, else its default."""
    spec = BLAS_THREAD_VARIABLES.get(family)
    if spec is None or snapshot.env is None:
        return None
    names, default = spec
    for name in names:
        raw = snapshot.env.get(name)
        if raw:
            first = raw.split(",")[0].strip()
            if first.isdigit():
                return int(first)
    if default == "one":
        return 1
    cores = usable_cores(snapshot)
    if default == "physical" and snapshot.cpu and snapshot.cpu.physical_cores:
        cores = min(cores or snapshot.cpu.physical_cores, snapshot.cpu.physical_cores)
    return cores


_HOW = {
    "gpu.compute_capability": "compute capability from the GPU's model name (NVIDIA's table)",
    "torch.cuda_build": "CUDA build from the torch version's tag (such as +cu121)",
    "cuda.cudnn": "cuDNN from the conda build string of pytorch",
}


def how_derived(fact: str) -> str:
    if fact.startswith("precision."):
        return "the default of the installed framework version, not a measured setting"
    if fact.startswith("blas.") and fact.endswith(".threads"):
        return "threads from the variables this BLAS reads, else its default (the core count)"
    return _HOW.get(fact, "inferred, not read")
