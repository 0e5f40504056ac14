"""The snapshot's typed records: what ``envcap.lock.json`` holds, field by field.

Why a typed model over the probe's raw JSON: ``build``, ``replay`` and ``diff`` read only this, so
a snapshot from the host, from a container, or parsed from a foreign report (``pip freeze``, the
text of ``collect_env``) is the same object. ``None`` always means "not known"; the reason, where
there is one, is in ``unavailable``. Closed sets are ``Literal`` types, which the reader
(``envcap._serde``) enforces. The format is described in docs/lockfile.md; reading, writing and
migrating it live in ``envcap.lock.codec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Version 2 records the build choices made at snapshot time (``build``); see codec.migrate.
SCHEMA_VERSION = 2
LOCK_FILENAME = "envcap.lock.json"

OriginKind = Literal["index", "vcs", "file", "url", "directory", "editable", "egg-info", "conda", "unknown"]
SiteKind = Literal["site-packages", "dist-packages", "other"]
GpuStatus = Literal["ok", "no-nvml", "no-driver", "no-gpu", "error"]
ComponentSource = Literal["pip", "system", "torch", "conda"]
LibraryApi = Literal["blas", "openmp", "threading"]
SnapshotSource = Literal["probe", "pip-freeze", "pip-list", "pip-inspect", "conda-list", "collect-env", "reconstructed",
                         "nvidia-smi"]
ImageFamily = Literal["python-slim", "cuda"]
Libc = Literal["glibc", "musl"]


@dataclass(frozen=True)
class Unavailable:
    probe: str
    reason: str


@dataclass(frozen=True)
class Origin:
    """Where a distribution came from (PEP 610 ``direct_url.json``, or an index when absent)."""

    kind: OriginKind
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
    site: SiteKind | None = None
    metadata_format: str | None = None
    installer: str | None = None
    requested: bool | None = None
    origin: Origin | None = None
    index_url: str | None = None  # set for local-version builds (+cpu, +cu121) found on a extra index
    artifacts: tuple[Artifact, ...] = ()
    problems: tuple[str, ...] = ()
    shadowed: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()  # installed with these extras, as inferred from what is installed

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
    status: GpuStatus
    reason: str | None = None
    binding: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    devices: tuple[GpuDevice, ...] = ()


@dataclass(frozen=True)
class CudaComponent:
    version: str
    source: ComponentSource
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
    library: str  # openblas | mkl | blis | flexiblas | gomp | iomp5 | omp | tbb ...: open, new ones appear
    api: LibraryApi
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
    """The workload's code: the commit, and what differs from ``base`` (.envcap/ left out).

    At snapshot time ``base`` is HEAD; a replay measures against the snapshot's commit, so two
    states hold the same code exactly when their ``diff_sha256`` agree (both None: no change).
    """

    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    diff_sha256: str | None = None
    remote: str | None = None
    root: str | None = None
    base: str | None = None
    changed_files: tuple[str, ...] = ()
    imports_changed: bool | None = None  # at replay: did the workload import a changed file (None: unknown)


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
class BaseImage:
    """The image the environment is rebuilt on, decided when the snapshot was taken.

    Why in the lock: ``envcap snapshot --base-image X`` must reach ``envcap build`` on another
    machine; generated files (the Dockerfile) are never read back, so the choice lives here.
    """

    reference: str  # python:3.11.7-slim-bookworm, or what --base-image named
    family: ImageFamily
    python_image: str  # where the exact Python comes from (the base itself for python-slim)
    given: bool = False  # named by `envcap snapshot --base-image`
    why: str = ""


@dataclass(frozen=True)
class Platform:
    """The interpreter and C library the image's wheels must fit, as known at snapshot time."""

    python_version: str
    implementation: str = "cpython"
    abi: str | None = None  # cp311, cp313t; None: cpXY
    arch: str = "x86_64"
    libc: Libc = "glibc"
    libc_version: str = "2.17"


@dataclass(frozen=True)
class BuildChoices:
    base: BaseImage
    platform: Platform


@dataclass(frozen=True)
class Snapshot:
    schema: int = SCHEMA_VERSION
    envcap_version: str | None = None
    captured_at: str | None = None
    digest: str | None = None
    source: SnapshotSource = "probe"  # foreign reports give partial snapshots
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
    build: BuildChoices | None = None  # None in foreign reports and in schema-1 locks (derived then)

    def distribution(self, name: str) -> Distribution | None:
        from packaging.utils import canonicalize_name

        wanted = canonicalize_name(name)
        for dist in self.distributions:
            if dist.name == wanted:
                return dist
        return None

    def with_digest(self) -> Snapshot:
        """This snapshot with ``digest`` set to the digest of its content (see envcap.lock.codec)."""
        from envcap.lock.codec import with_digest

        return with_digest(self)
