"""The snapshot: typed records, the schema version, canonical JSON and the content digest.

Why a typed model over the probe's raw JSON: ``build``, ``replay`` and ``diff`` read only this, so
a snapshot from the host, from a container, or parsed from a foreign report (``pip freeze``, the
text of ``collect_env``) is the same object. ``None`` always means "not known"; the reason, where
there is one, is in ``unavailable``. The format is described in docs/lockfile.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from envcap._serde import ShapeError, from_json, to_json
from envcap.errors import LockfileError

SCHEMA_VERSION = 1
LOCK_FILENAME = "envcap.lock.json"
# Fields that change between two captures of the same environment and so stay out of the digest.
# ``outputs`` and ``precision`` describe a run of the workload, not the environment: an image built
# from the lock must not be rebuilt because the workload wrote different numbers.
VOLATILE_FIELDS = ("captured_at", "digest", "outputs", "precision")


@dataclass(frozen=True)
class Unavailable:
    probe: str
    reason: str


@dataclass(frozen=True)
class Origin:
    """Where a distribution came from (PEP 610 ``direct_url.json``, or an index when absent)."""

    kind: str  # index | vcs | file | url | directory | editable | egg-info | conda | unknown
    url: str | None = None
    vcs: str | None = None
    commit: str | None = None
    requested_revision: str | None = None
    subdirectory: str | None = None
    sha256: str | None = None
    build: str | None = None  # a conda package's build string (py311h..._0, cuda12_mkl)


@dataclass(frozen=True)
class Artifact:
    """One installable file of a pinned release, with the hash pip checks."""

    filename: str
    sha256: str
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Distribution:
    name: str  # canonicalised (packaging.utils.canonicalize_name)
    version: str
    display_name: str | None = None
    location: str | None = None
    site: str | None = None  # site-packages | dist-packages | other
    metadata_format: str | None = None
    installer: str | None = None
    requested: bool | None = None
    origin: Origin | None = None
    index_url: str | None = None  # set for local-version builds (+cpu, +cu121) found on a extra index
    artifacts: tuple[Artifact, ...] = ()
    problems: tuple[str, ...] = ()
    shadowed: tuple[str, ...] = ()

    @property
    def reinstallable(self) -> bool:
        """Can pip fetch exactly this again by name and version from an index?"""
        kind = self.origin.kind if self.origin else "index"
        return kind == "index" and self.site != "dist-packages" and self.installer != "conda"


@dataclass(frozen=True)
class PythonEnv:
    version: str
    implementation: str | None = None
    implementation_version: str | None = None
    build: str | None = None
    compiler: str | None = None
    abi_tag: str | None = None
    interpreter_tag: str | None = None
    soabi: str | None = None
    platform: str | None = None
    machine: str | None = None
    bits: int | None = None
    executable: str | None = None
    prefix: str | None = None
    base_prefix: str | None = None
    is_venv: bool | None = None
    is_conda: bool | None = None
    hash_randomization: bool | None = None


@dataclass(frozen=True)
class PipConfig:
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class OsInfo:
    system: str | None = None
    kernel: str | None = None
    id: str | None = None
    version_id: str | None = None
    codename: str | None = None
    pretty_name: str | None = None
    libc: str | None = None
    libc_version: str | None = None
    container: str | None = None


@dataclass(frozen=True)
class Cpu:
    architecture: str | None = None
    vendor: str | None = None
    model_name: str | None = None
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    microcode: str | None = None
    arm_part: str | None = None
    logical_cores: int | None = None
    physical_cores: int | None = None
    affinity_cores: int | None = None
    cgroup_cpu_limit: float | None = None
    numeric_flags: tuple[str, ...] | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    compute_capability: str | None = None
    memory_total_bytes: int | None = None
    mig_mode: str | None = None
    ecc_mode: str | None = None
    uuid_sha256: str | None = None
    multiprocessor_count: int | None = None


@dataclass(frozen=True)
class Gpu:
    status: str  # ok | no-nvml | no-driver | no-gpu | error
    reason: str | None = None
    binding: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    devices: tuple[GpuDevice, ...] = ()


@dataclass(frozen=True)
class CudaComponent:
    version: str
    source: str  # pip | system | torch
    where: str | None = None


@dataclass(frozen=True)
class TorchBuild:
    """torch/version.py, read as text: the CUDA/HIP the wheel was built for."""

    version: str | None = None
    cuda: str | None = None
    hip: str | None = None
    debug: bool | None = None
    git_version: str | None = None


@dataclass(frozen=True)
class ToolVersion:
    path: str
    version: str | None = None


@dataclass(frozen=True)
class CudaStack:
    components: dict[str, CudaComponent] = field(default_factory=dict)  # cuda_runtime, cudnn, nccl, cublas
    torch: TorchBuild | None = None
    nvcc: ToolVersion | None = None
    toolkit_root: str | None = None
    toolkit_version: str | None = None  # the release (12.4.1), as nvidia/cuda tags name it; not cudart's 12.4.127


@dataclass(frozen=True)
class BlasLibrary:
    library: str  # openblas | mkl | blis | flexiblas | gomp | iomp5 | omp | tbb ...
    api: str  # blas | openmp | threading
    version: str | None = None
    shipped_by: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class DeclaredBlas:
    name: str
    version: str | None = None


@dataclass(frozen=True)
class ThreadPool:
    user_api: str | None = None
    internal_api: str | None = None
    version: str | None = None
    num_threads: int | None = None
    threading_layer: str | None = None
    architecture: str | None = None
    filepath: str | None = None


@dataclass(frozen=True)
class Blas:
    libraries: tuple[BlasLibrary, ...] = ()
    declared: dict[str, DeclaredBlas] = field(default_factory=dict)  # "numpy.blas" -> name, version
    threadpools: tuple[ThreadPool, ...] | None = None  # only with --deep


@dataclass(frozen=True)
class Toolchain:
    gcc: ToolVersion | None = None
    clang: ToolVersion | None = None
    cmake: ToolVersion | None = None
    nvcc: ToolVersion | None = None


@dataclass(frozen=True)
class GitState:
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    diff_sha256: str | None = None
    remote: str | None = None
    root: str | None = None


@dataclass(frozen=True)
class TorchRuntime:
    """torch's live answers, only from a deep probe (it imports torch)."""

    version: str | None = None
    cuda_available: bool | None = None
    arch_list: tuple[str, ...] | None = None
    cudnn: str | None = None
    nccl: str | None = None
    num_threads: int | None = None
    cpu_capability: str | None = None
    xnnpack: bool | None = None


@dataclass(frozen=True)
class OutputFingerprint:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    schema: int = SCHEMA_VERSION
    envcap_version: str | None = None
    captured_at: str | None = None
    digest: str | None = None
    source: str = "probe"  # probe | pip-freeze | collect-env | ... (foreign reports give partial snapshots)
    python: PythonEnv | None = None
    distributions: tuple[Distribution, ...] = ()
    pip_config: PipConfig | None = None
    os: OsInfo | None = None
    cpu: Cpu | None = None
    gpu: Gpu | None = None
    cuda: CudaStack | None = None
    blas: Blas | None = None
    toolchain: Toolchain | None = None
    env: dict[str, str] | None = None
    git: GitState | None = None
    torch_runtime: TorchRuntime | None = None
    precision: dict[str, str | bool | int | float | None] | None = None  # precision/determinism flags the workload left (replay hook)
    outputs: tuple[OutputFingerprint, ...] | None = None
    derived: tuple[str, ...] = ()  # facts filled in by inference, not read (e.g. compute capability by name)
    unavailable: tuple[Unavailable, ...] = ()
    warnings: tuple[str, ...] = ()

    def distribution(self, name: str) -> Distribution | None:
        from packaging.utils import canonicalize_name

        wanted = canonicalize_name(name)
        for dist in self.distributions:
            if dist.name == wanted:
                return dist
        return None

    def with_digest(self) -> Snapshot:
        return replace(self, digest=content_digest(self))


def now_utc() -> str:
    """The timestamp format of ``captured_at`` (and of replay reports): UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    data = to_json(snapshot)
    assert isinstance(data, dict)
    return data


def canonical_json(data: Any) -> str:
    """Sorted keys, fixed separators, a final newline: the same facts give the same bytes."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _digest_of(data: dict[str, Any]) -> str:
    stable = {k: v for k, v in data.items() if k not in VOLATILE_FIELDS}
    payload = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def content_digest(snapshot: Snapshot) -> str:
    return _digest_of(snapshot_to_dict(snapshot))


def dumps(snapshot: Snapshot) -> str:
    """Canonical JSON with the digest of exactly what is written (one conversion, not three)."""
    data = snapshot_to_dict(snapshot)
    data["digest"] = _digest_of(data)
    return canonical_json(data)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Brings an older schema up to SCHEMA_VERSION; the one place that knows old shapes."""
    return data  # schema 1 is the first; later versions add steps here


def loads(text: str, origin: str = "the lock") -> Snapshot:
    """Parses a lock, checking the schema before anything else."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LockfileError(
            f"{origin} is not valid JSON ({exc}).",
            hint="run `envcap snapshot` again to write a fresh lock",
        ) from None
    if not isinstance(data, dict):
        raise LockfileError(f"{origin} is not an envcap lock (its top level is not an object).",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise LockfileError(f"{origin} has no integer 'schema' field, so it is not an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    if schema > SCHEMA_VERSION:
        raise LockfileError(
            f"{origin} uses lock schema {schema}, newer than the {SCHEMA_VERSION} this envcap reads.",
            hint="upgrade envcap (pip install -U envcap)",
        )
    if schema < 1:
        raise LockfileError(f"{origin} has an invalid schema number {schema}.",
                            hint="run `envcap snapshot` again to write a fresh lock")
    try:
        snapshot = from_json(Snapshot, migrate(data))
    except ShapeError as exc:
        raise LockfileError(f"{origin} is damaged: {exc}.",
                            hint="run `envcap snapshot` again, or restore the file from version control") from None
    except RecursionError:
        raise LockfileError(f"{origin} is damaged: it nests too deeply.",
                            hint="run `envcap snapshot` again") from None
    if snapshot.python is None and snapshot.source == "probe":
        raise LockfileError(f"{origin} is damaged: it holds no 'python' section.",
                            hint="run `envcap snapshot` again")
    return snapshot


def digest_matches(snapshot: Snapshot) -> bool:
    return snapshot.digest is None or snapshot.digest == content_digest(snapshot)
