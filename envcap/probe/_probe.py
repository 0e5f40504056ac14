"""envcap's probe: gathers the facts of the interpreter it runs in and prints them as JSON.

Why one stdlib-only file: it must run unchanged inside any interpreter that envcap describes (the
host venv, another venv reached with ``--python``, the replay container) where envcap itself is not
installed. Its output is the raw material of ``envcap.lock.records.Snapshot``; it never imports torch,
numpy or anything else heavy unless ``--deep`` asks for a live view.

Every reader returns data or records why it could not (``unavailable``); a probe never crashes on
a broken environment: a fact it cannot read is reported as unknown, with the reason.

Usage: python _probe.py [--cache FILE] [--deep] [--cwd DIR] [--skip-git] [--search-path]
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import sys
import sysconfig

# Types for mypy only. `typing` is never imported when the probe runs: it costs 2-7 ms on 3.8-3.13 and the
# warm snapshot is benchmarked against `pip inspect`. With `from __future__ import annotations` every
# annotation stays a string, so the names below need not exist at run time; mypy treats a block under a
# name TYPE_CHECKING as always taken. Nothing defined here may be used outside an annotation.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    import subprocess
    from typing import (
        Any,
        Callable,
        Dict,
        Iterable,
        List,
        Mapping,
        Optional,
        Protocol,
        Sequence,
        Set,
        Tuple,
        TypedDict,
        TypeVar,
        Union,
    )

    T = TypeVar("T")

    class Unavailable(TypedDict):
        probe: str
        reason: str

    class PythonFacts(TypedDict):
        version: str
        implementation: str
        implementation_version: str
        build: str
        compiler: str
        abi_tag: Optional[str]
        interpreter_tag: str
        soabi: Optional[str]
        platform: str
        machine: str
        bits: int
        executable: str
        prefix: str
        base_prefix: str
        is_venv: bool
        is_conda: bool
        hash_randomization: bool

    class Origin(TypedDict, total=False):
        """How a distribution got there; ``kind`` and ``url`` always, the rest by kind."""

        kind: str  # vcs, editable, directory, file, url, index, egg-info, conda
        url: Optional[str]
        vcs: Optional[str]  # vcs
        commit: Optional[str]  # vcs
        requested_revision: Optional[str]  # vcs
        subdirectory: Optional[str]  # vcs, editable, directory
        sha256: Optional[str]  # file, url
        build: str  # conda

    class _Distribution(TypedDict):
        name: str  # canonical
        display_name: str
        version: str
        location: Optional[str]  # None: a conda package without a dist-info
        site: Optional[str]
        metadata_format: str
        installer: Optional[str]
        requested: Optional[bool]
        origin: Origin

    class Distribution(_Distribution, total=False):
        problems: List[str]
        shadowed: List[str]  # later copies on sys.path, which importlib never reaches
        extras: List[str]  # extras it was most likely installed with (every requirement of each is here)

    class CondaPackage(TypedDict):
        name: str
        display_name: str
        version: str
        build: str

    class PipConfig(TypedDict):
        index_url: Optional[str]
        extra_index_urls: List[str]
        find_links: List[str]
        no_index: bool
        sources: List[str]

    class OsFacts(TypedDict):
        system: str
        kernel: str
        id: Optional[str]
        version_id: Optional[str]
        codename: Optional[str]
        pretty_name: Optional[str]
        libc: Optional[str]
        libc_version: Optional[str]
        container: Optional[str]

    class CpuFacts(TypedDict):
        architecture: str
        vendor: Optional[str]
        model_name: Optional[str]
        family: Optional[int]
        model: Optional[int]
        stepping: Optional[int]
        microcode: Optional[str]
        arm_part: Optional[str]
        logical_cores: Optional[int]
        physical_cores: Optional[int]
        affinity_cores: Optional[int]
        cgroup_cpu_limit: Optional[float]
        numeric_flags: List[str]
        memory_total_bytes: Optional[int]

    class Nvml(Protocol):
        """What the GPU reader asks of an NVML binding: pynvml, CtypesNvml or a test's fake."""

        def nvmlInit(self) -> None: ...
        def nvmlShutdown(self) -> None: ...
        def nvmlSystemGetDriverVersion(self) -> Union[str, bytes]: ...
        def nvmlSystemGetCudaDriverVersion_v2(self) -> int: ...
        def nvmlDeviceGetCount(self) -> int: ...
        def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
        def nvmlDeviceGetName(self, handle: Any) -> Union[str, bytes]: ...
        def nvmlDeviceGetUUID(self, handle: Any) -> Union[str, bytes]: ...
        def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> Tuple[int, int]: ...
        def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # has .total, in bytes
        def nvmlDeviceGetMigMode(self, handle: Any) -> Sequence[int]: ...  # (current, pending)
        def nvmlDeviceGetEccMode(self, handle: Any) -> Sequence[int]: ...  # (current, pending)

    class GpuDevice(TypedDict):
        index: int
        name: str
        compute_capability: Optional[str]
        memory_total_bytes: Optional[int]
        mig_mode: Optional[str]
        ecc_mode: Optional[str]
        uuid_sha256: Optional[str]
        multiprocessor_count: Optional[int]

    class GpuFacts(TypedDict):
        status: str  # ok, no-nvml, no-driver, no-gpu, error
        reason: Optional[str]
        binding: Optional[str]
        driver_version: Optional[str]
        cuda_driver_version: Optional[str]
        devices: List[GpuDevice]

    class Component(TypedDict):
        version: str
        source: str  # pip or system
        where: str

    PyValue = Union[str, bool, None]  # a value of torch/version.py: a string, True, False or None

    class TorchBuild(TypedDict):
        version: PyValue
        cuda: PyValue
        hip: PyValue
        debug: PyValue
        git_version: PyValue

    class ToolVersion(TypedDict):
        path: str
        version: Optional[str]

    class CudaFacts(TypedDict):
        components: Dict[str, Component]
        torch: Optional[TorchBuild]
        nvcc: Optional[ToolVersion]
        toolkit_version: Optional[str]
        toolkit_root: Optional[str]

    class BlasLibrary(TypedDict):
        library: str
        api: str
        version: Optional[str]
        shipped_by: str
        filename: str

    class Declared(TypedDict):
        name: str
        version: Optional[str]

    Threadpools = List[Dict[str, Any]]  # threadpoolctl's records, as it gives them

    class BlasFacts(TypedDict):
        libraries: List[BlasLibrary]
        declared: Dict[str, Declared]
        threadpools: Optional[Threadpools]

    class _TorchRuntime(TypedDict):
        version: str
        cuda_available: Optional[bool]
        arch_list: Optional[List[str]]
        cudnn: Optional[str]
        nccl: Optional[str]
        num_threads: int
        cpu_capability: Optional[str]

    class TorchRuntime(_TorchRuntime, total=False):
        xnnpack: bool

    class Toolchain(TypedDict):
        gcc: Optional[ToolVersion]
        clang: Optional[ToolVersion]
        cmake: Optional[ToolVersion]
        nvcc: Optional[ToolVersion]

    class GitFacts(TypedDict):
        commit: Optional[str]
        branch: Optional[str]
        dirty: bool
        diff_sha256: Optional[str]
        root: Optional[str]
        remote: Optional[str]
        base: Optional[str]  # the commit the diff is taken against (HEAD, or the snapshot's at replay)
        changed_files: List[str]  # files that differ from ``base``, .envcap/ left out

    class Options(TypedDict):
        cache: Optional[str]
        deep: bool
        cwd: str
        skip_git: bool
        search_path: bool

    class HostFacts(TypedDict):
        """The sections the machine decides, whatever the interpreter: the kernel, the CPU, the GPUs."""

        os: Optional[OsFacts]
        cpu: Optional[CpuFacts]
        gpu: Optional[GpuFacts]

    class Facts(TypedDict):
        """The probe's whole answer; a section is None when its reader failed (see ``unavailable``)."""

        probe_version: int
        python: Optional[PythonFacts]
        distributions: List[Distribution]
        pip_config: Optional[PipConfig]
        os: Optional[OsFacts]
        cpu: Optional[CpuFacts]
        gpu: Optional[GpuFacts]
        cuda: Optional[CudaFacts]
        blas: Optional[BlasFacts]
        toolchain: Optional[Toolchain]
        env: Optional[Dict[str, str]]
        git: Optional[GitFacts]
        torch_runtime: Optional[TorchRuntime]
        unavailable: List[Unavailable]

    class SearchedFacts(Facts, total=False):
        search_path: List[str]  # with --search-path: the folders read for distributions (sys.path)


PROBE_VERSION = 2  # bump when a cached reading changes shape or meaning

UNAVAILABLE: List[Unavailable] = []


def note_unavailable(probe: str, reason: object) -> None:
    UNAVAILABLE.append({"probe": probe, "reason": redact_text(str(reason))[:300]})


def _sha256_hex(data: bytes) -> str:
    """hashlib, imported when first needed: loading OpenSSL cost every probe 2.5 ms, and most need no hash."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def read_text(path: str, limit: int = 1 << 20) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


def run(argv: List[str], timeout: float = 10.0, cwd: Optional[str] = None) -> Optional[str]:
    """Runs argv (a list, never a shell line); returns stdout or None when it cannot run."""
    import subprocess  # here: most warm probes start no process, and the module cost each 4 ms

    try:
        done = subprocess.run(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")


def which(name: str) -> Optional[str]:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, name)
        if folder and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# ----------------------------------------------------------------------------------------- cache


class FileCache:
    """Maps (purpose, file path, size, mtime) to a value read from that file.

    Why: versions hidden inside large shared libraries (an OpenBLAS build string, a compiler's
    banner) cost tens of milliseconds to find; a warm snapshot must not pay that twice.
    """

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.entries: Dict[str, Optional[str]] = {}
        self.dirty = False
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                if isinstance(loaded, dict) and loaded.get("probe_version") == PROBE_VERSION:
                    entries = loaded.get("entries", {})
                    # a file of the right version but the wrong shape is as good as none
                    self.entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def key(purpose: str, path: str) -> Optional[str]:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return "%s|%s|%d|%d" % (purpose, path, st.st_size, st.st_mtime_ns)

    def get_or_compute(self, purpose: str, path: str, compute: Callable[[], Optional[str]]) -> Optional[str]:
        key = self.key(purpose, path)
        if key is not None and key in self.entries:
            return self.entries[key]
        value = compute()
        if key is not None:
            self.entries[key] = value
            self.dirty = True
        return value

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = "%s.%d.tmp" % (self.path, os.getpid())
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"probe_version": PROBE_VERSION, "entries": self.entries}, handle)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time next run


# ---------------------------------------------------------------------------------------- python


def python_facts() -> PythonFacts:
    impl = sys.implementation
    version = "%d.%d.%d" % sys.version_info[:3]
    if sys.version_info.releaselevel != "final":
        version += {"alpha": "a", "beta": "b", "candidate": "rc"}.get(
            sys.version_info.releaselevel, sys.version_info.releaselevel
        ) + str(sys.version_info.serial)
    abiflags = getattr(sys, "abiflags", "")
    interpreter_tag = {"cpython": "cp", "pypy": "pp"}.get(impl.name, impl.name[:2])
    nodot = "%d%d" % sys.version_info[:2]
    conda_meta = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
    return {
        "version": version,
        "implementation": impl.name,
        "implementation_version": "%d.%d.%d" % tuple(impl.version[:3]),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "abi_tag": (interpreter_tag + nodot + abiflags) if impl.name == "cpython" else None,
        "interpreter_tag": interpreter_tag + nodot,
        "soabi": sysconfig.get_config_var("SOABI"),
        "platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "bits": 64 if sys.maxsize > 2**32 else 32,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "is_venv": sys.prefix != sys.base_prefix,
        "is_conda": conda_meta,
        "hash_randomization": bool(sys.flags.hash_randomization),
    }


# ------------------------------------------------------------------------------- distributions

DIST_INFO_RE = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.(?P<kind>dist-info|egg-info)$")


_NAME_SEPARATORS_RE = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    return _NAME_SEPARATORS_RE.sub("-", name).lower()


REQUIREMENT_NAME_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
EXTRA_MARKER_RE = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


# The first letters of header names other than Name, Version and Requires-Dist (no other character
# folds to n, v or r in lower(), and a letter is never stripped as whitespace).
_OTHER_HEADER_INITIALS = frozenset("abcdefghijklmopqstuwxyzABCDEFGHIJKLMOPQSTUWXYZ")


def parse_metadata_headers(text: str, requires: Optional[List[Tuple[str, Optional[str]]]] = None) -> Dict[str, str]:
    """The few RFC 822 headers we need; email.parser is slower and trips on broken files.

    ``requires``, when given, receives (name, extra or None) of each Requires-Dist: what the
    extras and the roots of a uv-made venv are inferred from.
    """
    headers: Dict[str, str] = {}
    # Only the header block is split (the description after it is most of the file), and lines that
    # start with another ASCII letter (Classifier:, Summary:...) are passed over at once: 147
    # METADATA files cost a warm probe 10 ms before.
    end = text.find("\n\n")
    for line in (text[:end + 1] if end != -1 else text).splitlines():
        if line[:1] in _OTHER_HEADER_INITIALS:
            continue
        if not line.strip():
            break
        if line[:1] in " \t" or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("name", "version") and key not in headers:
            headers[key] = value.strip()
        elif key == "requires-dist" and requires is not None:
            name = REQUIREMENT_NAME_RE.match(value)
            if name:
                extra = EXTRA_MARKER_RE.search(value)
                requires.append((canonical_name(name.group(1)), canonical_name(extra.group(1)) if extra else None))
    return headers


def origin_from_direct_url(data: Dict[str, Any]) -> Origin:
    """Turns a PEP 610 direct_url.json into envcap's origin record."""
    url = data.get("url")
    if not isinstance(url, str):
        raise ValueError("direct_url.json has no url")
    if "vcs_info" in data:
        vcs = data["vcs_info"] or {}
        return {
            "kind": "vcs", "url": strip_credentials(url), "vcs": vcs.get("vcs"),
            "commit": vcs.get("commit_id"), "requested_revision": vcs.get("requested_revision"),
            "subdirectory": data.get("subdirectory"),
        }
    if "dir_info" in data:
        editable = bool((data["dir_info"] or {}).get("editable"))
        return {"kind": "editable" if editable else "directory", "url": strip_credentials(url),
                "subdirectory": data.get("subdirectory")}
    if "archive_info" in data:
        info = data["archive_info"] or {}
        digest = None
        hashes = info.get("hashes") or {}
        if isinstance(hashes, dict) and "sha256" in hashes:
            digest = hashes["sha256"]
        elif isinstance(info.get("hash"), str) and info["hash"].startswith("sha256="):
            digest = info["hash"].split("=", 1)[1]
        kind = "file" if url.startswith("file:") else "url"
        return {"kind": kind, "url": strip_credentials(url), "sha256": digest}
    return {"kind": "url", "url": strip_credentials(url)}


def site_kind(folder: str) -> str:
    base = os.path.basename(folder.rstrip(os.sep))
    if base in ("site-packages", "dist-packages"):
        return base
    return "other"


def conda_packages(prefix: str) -> List[CondaPackage]:
    """Packages of a conda environment that have no dist-info (mkl, cudatoolkit, cudnn, openblas...).

    conda-meta holds one ``name-version-build.json`` per package; the file names alone say enough,
    so none is opened. Python packages conda installed also have a dist-info, read as usual.
    """
    try:
        entries = os.listdir(os.path.join(prefix, "conda-meta"))
    except OSError:
        return []
    found: List[CondaPackage] = []
    for entry in sorted(entries):
        if not entry.endswith(".json") or entry.count("-") < 2:
            continue
        name, version, build = entry[:-5].rsplit("-", 2)
        found.append({"name": canonical_name(name), "display_name": name, "version": version, "build": build})
    return found


def merge_conda(dists: List[Distribution], conda: List[CondaPackage]) -> List[Distribution]:
    """Adds conda's non-Python packages as distributions of origin 'conda' (never pip-installable)."""
    known = {d["name"] for d in dists} | {"python"}  # the interpreter is described in its own section
    for package in conda:
        if package["name"] in known:
            continue
        dists.append({"name": package["name"], "display_name": package["display_name"],
                      "version": package["version"], "installer": "conda", "requested": None,
                      "location": None, "site": None, "metadata_format": "conda-meta",
                      "origin": {"kind": "conda", "url": None, "build": package["build"]}})
    return dists


def distributions_facts(paths: Iterable[str]) -> List[Distribution]:
    """Scans every dist-info/egg-info on the target's sys.path, first one wins (as importlib does)."""
    seen: Dict[str, Distribution] = {}
    ordered: List[Distribution] = []
    requirements: Dict[str, List[Tuple[str, Optional[str]]]] = {}
    for folder in paths:
        if not folder or not os.path.isdir(folder):
            continue
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for entry in entries:
            match = DIST_INFO_RE.match(entry)
            if not match:
                continue
            meta_dir = os.path.join(folder, entry)
            requires: List[Tuple[str, Optional[str]]] = []
            record = read_distribution(folder, meta_dir, match, requires)
            key = record["name"]
            if key in seen:
                seen[key].setdefault("shadowed", []).append(meta_dir)
                continue
            seen[key] = record
            requirements[key] = requires
            ordered.append(record)
    infer_requests(ordered, requirements)
    return ordered


def infer_requests(dists: List[Distribution], requirements: Dict[str, List[Tuple[str, Optional[str]]]]) -> None:
    """Two things pip's markers do not say, inferred from the dependency graph.

    - The extras a requested distribution was installed with (``requests[socks]``): each extra whose
      every requirement is installed. REQUESTED records no extras at all.
    - What the user asked for in a venv made by uv, which marks every package REQUESTED: the roots,
      those no other installed distribution requires.
    """
    installed = {d["name"] for d in dists}
    needed = {name for reqs in requirements.values() for name, extra in reqs if extra is None}
    uv = [d for d in dists if d["installer"] == "uv"]
    if len(uv) > 1 and all(d["requested"] for d in uv):
        for dist in uv:
            dist["requested"] = dist["name"] not in needed
    for dist in dists:
        if not dist["requested"]:
            continue
        groups: Dict[str, List[str]] = {}
        for name, extra in requirements.get(dist["name"], []):
            if extra is not None:
                groups.setdefault(extra, []).append(name)
        extras = sorted(extra for extra, names in groups.items() if names and all(n in installed for n in names))
        if extras:
            dist["extras"] = extras


def read_distribution(folder: str, meta_dir: str, match: re.Match[str],
                      requires: Optional[List[Tuple[str, Optional[str]]]] = None) -> Distribution:
    kind = match.group("kind")
    problems: List[str] = []
    headers: Dict[str, str] = {}
    if os.path.isdir(meta_dir):
        text = read_text(os.path.join(meta_dir, "METADATA" if kind == "dist-info" else "PKG-INFO"), 65536)
    else:
        text = read_text(meta_dir, 65536)  # a bare .egg-info file
    if text is None:
        problems.append("no METADATA file")
    else:
        headers = parse_metadata_headers(text, requires)
    name = headers.get("name") or match.group("name")
    version = headers.get("version") or match.group("version")
    if "version" not in headers:
        problems.append("METADATA names no version; took it from the folder name")
    record: Distribution = {
        "name": canonical_name(name),
        "display_name": name,
        "version": version,
        "location": folder,
        "site": site_kind(folder),
        "metadata_format": kind,
        "installer": None,
        "requested": None,
        "origin": {"kind": "index", "url": None},  # unless direct_url.json or the format says otherwise
    }
    if kind == "dist-info":
        installer = read_text(os.path.join(meta_dir, "INSTALLER"), 256)
        record["installer"] = installer.strip() if installer else None
        record["requested"] = os.path.exists(os.path.join(meta_dir, "REQUESTED"))
        direct = read_text(os.path.join(meta_dir, "direct_url.json"), 65536)
        if direct is not None:
            try:
                record["origin"] = origin_from_direct_url(json.loads(direct))
            except (ValueError, AttributeError, TypeError) as exc:
                problems.append("unreadable direct_url.json: %s" % exc)
    else:
        record["origin"] = {"kind": "egg-info", "url": None}
    if problems:
        record["problems"] = problems
    return record


# ------------------------------------------------------------------------------------------ pip

PIP_CONFIG_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")


def pip_config_facts() -> PipConfig:
    """pip's index settings as pip would see them (files in pip's order, then PIP_* variables)."""
    import configparser

    home = os.path.expanduser("~")
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = ["/etc/pip.conf"] + [os.path.join(d, "pip", "pip.conf") for d in xdg_dirs]
    files += [
        os.path.join(os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config")), "pip", "pip.conf"),
        os.path.join(home, ".pip", "pip.conf"),
        os.path.join(sys.prefix, "pip.conf"),
    ]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(os.environ["PIP_CONFIG_FILE"])
    settings: Dict[str, str] = {}
    sources: List[str] = []
    for path in files:
        if not os.path.isfile(path):
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            # Never the parser's message: it quotes the offending line, which may hold a password.
            note_unavailable("pip-config", "%s could not be read as a pip config file (%s)" % (path, type(exc).__name__))
            continue
        used = False
        for section in ("global", "install", "download"):
            if not parser.has_section(section):
                continue
            for key in PIP_CONFIG_KEYS:
                if parser.has_option(section, key):
                    settings[key] = parser.get(section, key)
                    used = True
        if used:
            sources.append(path)
    for key in PIP_CONFIG_KEYS:
        env_name = "PIP_" + key.upper().replace("-", "_")
        if env_name in os.environ:
            settings[key] = os.environ[env_name]
            sources.append("env:" + env_name)

    def urls(key: str) -> List[str]:
        return [strip_credentials(u) for u in settings.get(key, "").split() if u]

    index_urls = urls("index-url")
    return {
        "index_url": index_urls[0] if index_urls else None,
        "extra_index_urls": urls("extra-index-url"),
        "find_links": urls("find-links"),
        "no_index": settings.get("no-index", "").lower() in ("1", "true", "yes", "on"),
        "sources": sources,
    }


# ------------------------------------------------------------------------------------------- os


def parse_os_release(text: Optional[str]) -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in (text or "").splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def in_container() -> Optional[str]:
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    cgroup = read_text("/proc/1/cgroup", 65536) or ""
    for marker in ("docker", "kubepods", "containerd", "lxc"):
        if marker in cgroup:
            return marker
    # lower case by systemd's container interface (podman, systemd-nspawn set it so)
    if os.environ.get("container"):  # noqa: SIM112
        return os.environ["container"]  # noqa: SIM112
    return None


def os_facts() -> OsFacts:
    release = parse_os_release(read_text("/etc/os-release") or read_text("/usr/lib/os-release"))
    libc_name, libc_version = platform.libc_ver()
    if not libc_version:
        try:
            confstr = os.confstr("CS_GNU_LIBC_VERSION") or ""
            libc_name, _, libc_version = confstr.partition(" ")
        except (ValueError, OSError, AttributeError):
            pass
    uname = platform.uname()
    return {
        "system": uname.system,
        "kernel": uname.release,
        "id": release.get("ID"),
        "version_id": release.get("VERSION_ID"),
        "codename": release.get("VERSION_CODENAME"),
        "pretty_name": release.get("PRETTY_NAME"),
        "libc": libc_name or None,
        "libc_version": libc_version or None,
        "container": in_container(),
    }


# ------------------------------------------------------------------------------------------ cpu

NUMERIC_FLAGS = (
    "sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512_vbmi2", "avx512_bitalg",
    "avx512_vpopcntdq", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    # aarch64 "Features"
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "fphp", "sme",
)


def cgroup_cpu_limit() -> Optional[float]:
    text = read_text("/sys/fs/cgroup/cpu.max")
    if text:
        quota, _, period = text.strip().partition(" ")
        if quota != "max" and period:
            try:
                return round(int(quota) / int(period), 3)
            except ValueError:
                return None
        return None
    v1_quota = read_text("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    v1_period = read_text("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    try:
        if v1_quota and v1_period and int(v1_quota) > 0:
            return round(int(v1_quota) / int(v1_period), 3)
    except ValueError:
        pass
    return None


def cpu_facts() -> CpuFacts:
    text = read_text("/proc/cpuinfo", 4 << 20) or ""
    first: Dict[str, str] = {}
    physical: Set[Tuple[str, str]] = set()
    for block in text.split("\n\n"):
        fields: Dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if not fields:
            continue
        if not first:
            first = fields
        if "physical id" in fields and "core id" in fields:
            physical.add((fields["physical id"], fields["core id"]))
    flags = set((first.get("flags") or first.get("Features") or "").split())
    if "pni" in flags:  # Linux names SSE3 "pni" (Prescott New Instructions)
        flags.add("sse3")
    meminfo = read_text("/proc/meminfo") or ""
    memory = None
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    if match:
        memory = int(match.group(1)) * 1024
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    if not first:
        note_unavailable("cpu", "/proc/cpuinfo is not readable")

    def as_int(key: str) -> Optional[int]:
        try:
            return int(first[key], 0)
        except (KeyError, ValueError):
            return None

    return {
        "architecture": platform.machine(),
        "vendor": first.get("vendor_id") or first.get("CPU implementer"),
        "model_name": first.get("model name") or first.get("Model") or first.get("Hardware"),
        "family": as_int("cpu family"),
        "model": as_int("model"),
        "stepping": as_int("stepping"),
        "microcode": first.get("microcode"),
        "arm_part": first.get("CPU part"),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "affinity_cores": affinity,
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "numeric_flags": sorted(f for f in flags if f in NUMERIC_FLAGS),
        "memory_total_bytes": memory,
    }


# ------------------------------------------------------------------------------------------ gpu

NVML_ERROR_NAMES = {
    1: "uninitialized", 2: "invalid argument", 3: "not supported", 4: "no permission",
    9: "driver not loaded", 12: "library not found", 13: "function not found",
    17: "GPU is lost", 999: "unknown error",
}


class CtypesNvml:
    """The handful of NVML calls envcap needs, over ctypes, for interpreters without pynvml.

    Mirrors pynvml's names and return shapes so one reader serves both.
    """

    class NVMLError(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(NVML_ERROR_NAMES.get(code, "NVML error %d" % code))
            self.value = code

    def __init__(self) -> None:
        import ctypes  # here, not at the top: an interpreter built without _ctypes still gets a probe

        self.ctypes = ctypes
        self.lib: Optional[ctypes.CDLL] = None

    def _call(self, name: str, *args: Any) -> None:
        fn = getattr(self.lib, name, None)
        if fn is None:
            raise self.NVMLError(13)
        code = fn(*args)
        if code != 0:
            raise self.NVMLError(code)

    def nvmlInit(self) -> None:
        ctypes = self.ctypes
        for candidate in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
            try:
                self.lib = ctypes.CDLL(candidate)
                break
            except OSError:
                continue
        if self.lib is None:
            raise self.NVMLError(12)
        self._call("nvmlInit_v2")

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")

    def _string(self, name: str, *args: Any) -> str:
        buf = self.ctypes.create_string_buffer(256)
        self._call(name, *(args + (buf, self.ctypes.c_uint(256))))
        return buf.value.decode("utf-8", "replace")

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._string("nvmlSystemGetDriverVersion")

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        value = self.ctypes.c_int()
        self._call("nvmlSystemGetCudaDriverVersion_v2", self.ctypes.byref(value))
        return value.value

    def nvmlDeviceGetCount(self) -> int:
        value = self.ctypes.c_uint()
        self._call("nvmlDeviceGetCount_v2", self.ctypes.byref(value))
        return value.value

    def nvmlDeviceGetHandleByIndex(self, index: int) -> ctypes.c_void_p:
        handle = self.ctypes.c_void_p()
        self._call("nvmlDeviceGetHandleByIndex_v2", self.ctypes.c_uint(index), self.ctypes.byref(handle))
        return handle

    def nvmlDeviceGetName(self, handle: ctypes.c_void_p) -> str:
        return self._string("nvmlDeviceGetName", handle)

    def nvmlDeviceGetUUID(self, handle: ctypes.c_void_p) -> str:
        return self._string("nvmlDeviceGetUUID", handle)

    def nvmlDeviceGetCudaComputeCapability(self, handle: ctypes.c_void_p) -> Tuple[int, int]:
        major, minor = self.ctypes.c_int(), self.ctypes.c_int()
        self._call("nvmlDeviceGetCudaComputeCapability", handle,
                   self.ctypes.byref(major), self.ctypes.byref(minor))
        return major.value, minor.value

    def nvmlDeviceGetMemoryInfo(self, handle: ctypes.c_void_p) -> ctypes.Structure:
        import ctypes  # already loaded by __init__; a class statement needs the module by name

        class Memory(ctypes.Structure):
            _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                        ("used", ctypes.c_ulonglong)]

        memory = Memory()
        self._call("nvmlDeviceGetMemoryInfo", handle, self.ctypes.byref(memory))
        return memory

    def _pair(self, name: str, handle: ctypes.c_void_p) -> Tuple[int, int]:
        current, pending = self.ctypes.c_uint(), self.ctypes.c_uint()
        self._call(name, handle, self.ctypes.byref(current), self.ctypes.byref(pending))
        return current.value, pending.value

    def nvmlDeviceGetMigMode(self, handle: ctypes.c_void_p) -> Tuple[int, int]:
        return self._pair("nvmlDeviceGetMigMode", handle)

    def nvmlDeviceGetEccMode(self, handle: ctypes.c_void_p) -> Tuple[int, int]:
        return self._pair("nvmlDeviceGetEccMode", handle)

    def nvmlDeviceGetMultiprocessorCount(self, handle: ctypes.c_void_p) -> int:  # not in NVML; kept for the same shape
        raise self.NVMLError(3)


def load_nvml() -> Tuple[Nvml, str]:
    """pynvml (nvidia-ml-py) when the target has it, else the ctypes shim above."""
    try:
        import pynvml

        return pynvml, "pynvml"
    except Exception:  # noqa: BLE001 - a broken pynvml must not end the probe
        return CtypesNvml(), "ctypes"


def text_of(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def gpu_facts(nvml: Optional[Nvml] = None, binding: Optional[str] = None) -> GpuFacts:
    """Driver and devices through NVML; 'no NVML', 'no driver' and 'no GPU' are facts, not errors."""
    if nvml is None:
        nvml, binding = load_nvml()
    result: GpuFacts = {"status": "ok", "reason": None, "binding": binding, "driver_version": None,
              "cuda_driver_version": None, "devices": []}
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVML raises its own error types
        text = text_of(exc)
        code = getattr(exc, "value", None)
        library_missing = code == 12 or "not found" in text.lower()
        result["status"] = "no-nvml" if library_missing else "no-driver"
        result["reason"] = "NVML could not start: %s" % text
        return result
    try:
        result["driver_version"] = text_of(nvml.nvmlSystemGetDriverVersion())
        try:
            raw = nvml.nvmlSystemGetCudaDriverVersion_v2()
            result["cuda_driver_version"] = "%d.%d" % (raw // 1000, (raw % 1000) // 10)
        except Exception as exc:  # noqa: BLE001
            note_unavailable("gpu.cuda_driver_version", text_of(exc))
        count = nvml.nvmlDeviceGetCount()
        for index in range(count):
            result["devices"].append(gpu_device(nvml, index))
        if count == 0:
            result["status"] = "no-gpu"
            result["reason"] = "NVML reports no GPU"
    except Exception as exc:  # noqa: BLE001
        result["status"] = "error"
        result["reason"] = "NVML failed: %s" % text_of(exc)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return result


def gpu_device(nvml: Nvml, index: int) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    device: GpuDevice = {"index": index, "name": text_of(nvml.nvmlDeviceGetName(handle)), "compute_capability": None,
                         "memory_total_bytes": None, "mig_mode": None, "ecc_mode": None, "uuid_sha256": None,
                         "multiprocessor_count": None}

    def attempt(field: str, fn: Callable[[], T]) -> Optional[T]:
        """fn's answer, or None (the field's unknown value) with the reason noted."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one missing field must not lose the device
            note_unavailable("gpu[%d].%s" % (index, field), text_of(exc))
            return None

    device["compute_capability"] = attempt(
        "compute_capability", lambda: "%d.%d" % tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle)))
    device["memory_total_bytes"] = attempt("memory_total_bytes", lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total))
    device["mig_mode"] = attempt("mig_mode", lambda: "enabled" if nvml.nvmlDeviceGetMigMode(handle)[0] else "disabled")
    device["ecc_mode"] = attempt("ecc_mode", lambda: "enabled" if nvml.nvmlDeviceGetEccMode(handle)[0] else "disabled")
    device["uuid_sha256"] = attempt(
        "uuid_sha256", lambda: _sha256_hex(text_of(nvml.nvmlDeviceGetUUID(handle)).encode())[:16])
    return device


# ----------------------------------------------------------------------------------- cuda stack

CUDA_WHEELS = {
    "cuda_runtime": ("nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime"),
    "cudnn": ("nvidia-cudnn-cu11", "nvidia-cudnn-cu12", "nvidia-cudnn-cu13", "nvidia-cudnn"),
    "nccl": ("nvidia-nccl-cu11", "nvidia-nccl-cu12", "nvidia-nccl-cu13", "nvidia-nccl"),
    "cublas": ("nvidia-cublas-cu11", "nvidia-cublas-cu12", "nvidia-cublas-cu13", "nvidia-cublas"),
}
SYSTEM_CUDA_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                    "/usr/local/cuda/targets/sbsa-linux/lib", "/usr/lib/x86_64-linux-gnu",
                    "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/local/lib")
SYSTEM_LIB_PATTERNS = {
    "cuda_runtime": re.compile(r"^libcudart\.so\.(\d+(?:\.\d+)*)$"),
    "cudnn": re.compile(r"^libcudnn\.so\.(\d+(?:\.\d+)*)$"),
    "nccl": re.compile(r"^libnccl\.so\.(\d+(?:\.\d+)*)$"),
    "cublas": re.compile(r"^libcublas\.so\.(\d+(?:\.\d+)*)$"),
}
HEADER_DEFINES = {
    "cudnn": ("cudnn_version.h", ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL")),
    "nccl": ("nccl.h", ("NCCL_MAJOR", "NCCL_MINOR", "NCCL_PATCH")),
}


def torch_version_module(dist_index: Dict[str, Distribution]) -> Optional[TorchBuild]:
    """torch/version.py read as text: CUDA/HIP build without importing torch (or CUDA)."""
    torch = dist_index.get("torch")
    if not torch or not torch["location"]:  # no location: a conda package, known from conda-meta alone
        return None
    text = read_text(os.path.join(torch["location"], "torch", "version.py"))
    if text is None:
        note_unavailable("torch.version", "torch is installed but torch/version.py is not readable")
        return None
    values: Dict[str, PyValue] = {}
    for key in ("__version__", "debug", "cuda", "hip", "git_version", "xpu"):
        match = re.search(r"^%s\s*(?::\s*[^=]+)?=\s*(.+)$" % re.escape(key), text, re.M)
        if match:
            raw = match.group(1).strip()
            if raw in ("None", "True", "False"):
                values[key] = {"None": None, "True": True, "False": False}[raw]
            else:
                values[key] = raw.strip("'\"")
    return {
        "version": values.get("__version__"),
        "cuda": values.get("cuda"),
        "hip": values.get("hip"),
        "debug": values.get("debug"),
        "git_version": values.get("git_version"),
    }


def cuda_toolkit_dist_info() -> Dict[str, Optional[str]]:
    """The NVIDIA toolkit installers now ship dist-info folders; their versions are exact."""
    found: Dict[str, Optional[str]] = {}
    root = "/usr/local/cuda/dist-info"
    try:
        entries = os.listdir(root)
    except OSError:
        entries = []
    for entry in entries:
        match = DIST_INFO_RE.match(entry)
        if match:
            found[canonical_name(match.group("name"))] = match.group("version")
    version_json = read_text("/usr/local/cuda/version.json")
    if version_json:
        try:
            data = json.loads(version_json)
            found.setdefault("cuda", data.get("cuda", {}).get("version"))
            found.setdefault("nvidia-cuda-runtime", data.get("cuda_cudart", {}).get("version"))
        except (ValueError, AttributeError):
            pass
    return found


def header_version(name: str) -> Optional[Tuple[str, str]]:
    header, defines = HEADER_DEFINES[name]
    for folder in ("/usr/include", "/usr/local/cuda/include", "/usr/include/x86_64-linux-gnu"):
        text = read_text(os.path.join(folder, header))
        if not text:
            continue
        parts: List[str] = []
        for define in defines:
            match = re.search(r"#define\s+%s\s+(\d+)" % define, text)
            if not match:
                break
            parts.append(match.group(1))
        if len(parts) == 3:
            return ".".join(parts), os.path.join(folder, header)
    return None


def rocm_components() -> Dict[str, Component]:
    """HIP runtime and MIOpen of a ROCm install (collect_env reports both)."""
    found: Dict[str, Component] = {}
    root = os.environ.get("ROCM_PATH") or "/opt/rocm"
    version = read_text(os.path.join(root, ".info", "version"))
    if version and version.strip():
        found["hip_runtime"] = {"version": version.strip().split("-")[0], "source": "system", "where": root}
    try:
        entries = os.listdir(os.path.join(root, "lib"))
    except OSError:
        entries = []
    for entry in entries:
        match = re.match(r"^libMIOpen\.so\.(\d+(?:\.\d+)+)$", entry)
        if match:
            found["miopen"] = {"version": match.group(1), "source": "system", "where": os.path.join(root, "lib", entry)}
    return found


def cuda_facts(dist_index: Dict[str, Distribution]) -> CudaFacts:
    components: Dict[str, Component] = {}
    for component, names in CUDA_WHEELS.items():
        for name in names:
            dist = dist_index.get(name)
            if dist:
                components[component] = {"version": dist["version"], "source": "pip", "where": name}
                break
    toolkit = cuda_toolkit_dist_info()
    runtime = toolkit.get("nvidia-cuda-runtime")
    if runtime and "cuda_runtime" not in components:
        components["cuda_runtime"] = {"version": runtime, "source": "system", "where": "/usr/local/cuda"}
    for folder in SYSTEM_CUDA_DIRS:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            for component, pattern in SYSTEM_LIB_PATTERNS.items():
                match = pattern.match(entry)
                if not match:
                    continue
                current = components.get(component)
                if current and (current["source"] == "pip" or
                                len(current["version"].split(".")) >= len(match.group(1).split("."))):
                    continue
                components[component] = {"version": match.group(1), "source": "system",
                                         "where": os.path.join(folder, entry)}
    for component in HEADER_DEFINES:
        if component in components and components[component]["source"] == "pip":
            continue
        found = header_version(component)
        if found:
            components[component] = {"version": found[0], "source": "system", "where": found[1]}
    components.update(rocm_components())
    nvcc: Optional[ToolVersion] = None
    nvcc_path = which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc_path:
        nvcc = {"path": nvcc_path, "version": None}
    return {"components": components, "torch": torch_version_module(dist_index), "nvcc": nvcc,
            "toolkit_version": toolkit.get("cuda"),
            "toolkit_root": os.path.realpath("/usr/local/cuda") if os.path.isdir("/usr/local/cuda") else None}


# ----------------------------------------------------------------------------------------- blas

BLAS_LIB_RE = re.compile(
    r"^lib(?P<lib>scipy_openblas(?:64_)?|openblas(?:64_|p)?|mkl_rt|mkl_core|mkl_intel_thread|mkl_gnu_thread|"
    r"blis|flexiblas|gomp|iomp5|omp|tbb|cublas|armpl)[-.a-zA-Z0-9_]*\.so[.0-9]*$"
)
LIB_API = {"gomp": "openmp", "iomp5": "openmp", "omp": "openmp", "tbb": "threading"}
OPENBLAS_VERSION_RE = re.compile(rb"OpenBLAS (\d+\.\d+\.\d+(?:\.dev)?)")
CONFIG_BLAS_RE = re.compile(r'"(blas|lapack)":\s*\{[^}]*?"name":\s*"([^"]+)"[^}]*?"version":\s*"([^"]*)"', re.S)


def library_family(lib: str) -> str:
    if "openblas" in lib:
        return "openblas"
    if lib.startswith("mkl"):
        return "mkl"
    return lib


def openblas_version(path: str) -> Optional[str]:
    try:
        import mmap

        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            match = OPENBLAS_VERSION_RE.search(data)
            return match.group(1).decode() if match else None
    except (OSError, ValueError):
        return None


def blas_facts(dist_index: Dict[str, Distribution], cache: FileCache) -> BlasFacts:
    """Which BLAS/OpenMP libraries the numerics packages ship, read from files, not by importing."""
    libraries: List[BlasLibrary] = []
    declared: Dict[str, Declared] = {}
    for owner in ("numpy", "scipy", "torch", "scikit-learn", "jaxlib", "tensorflow", "mkl", "openblas",
                  "scipy-openblas64", "scipy-openblas32", "intel-openmp", "tbb"):
        dist = dist_index.get(owner)
        if not dist:
            continue
        package = {"scikit-learn": "sklearn", "scipy-openblas64": "scipy_openblas64",
                   "scipy-openblas32": "scipy_openblas32", "intel-openmp": None, "tbb": None,
                   "mkl": None, "openblas": None}.get(owner, owner)
        # None for a package known from conda-meta alone: it has no folder of its own to look in
        location = dist["location"]
        folders: List[str] = []
        if package:
            if location:
                folders += [os.path.join(location, owner.replace("-", "_") + ".libs")] if owner != package else []
                folders += [os.path.join(location, package + ".libs"), os.path.join(location, package, "lib"),
                            os.path.join(location, package, ".libs"), os.path.join(location, package, "_core")]
        else:
            folders += [os.path.join(sys.prefix, "lib")]
        for folder in folders:
            try:
                entries = sorted(os.listdir(folder))
            except OSError:
                continue
            for entry in entries:
                match = BLAS_LIB_RE.match(entry)
                if not match:
                    continue
                lib = match.group("lib")
                path = os.path.join(folder, entry)
                family = library_family(lib)
                version = None
                if family == "openblas":
                    version = cache.get_or_compute("openblas-version", path, functools.partial(openblas_version, path))
                version_match = re.search(r"\.so\.(\d+(?:\.\d+)+)$", entry)
                if version is None and version_match:
                    version = version_match.group(1)
                libraries.append({"library": family, "api": LIB_API.get(lib, "blas"), "version": version,
                                  "shipped_by": owner, "filename": entry})
        if not location:
            continue
        if owner == "torch":
            declared.update(torch_build_config(location))
        if package in ("numpy", "scipy"):
            config = read_text(os.path.join(location, package, "__config__.py"))
            if config:
                for api, name, version in CONFIG_BLAS_RE.findall(config):
                    declared["%s.%s" % (owner, api)] = {"name": name, "version": version or None}
    return {"libraries": libraries, "declared": declared, "threadpools": None}


def torch_build_config(location: str) -> Dict[str, Declared]:
    """torch's BLAS, oneDNN and threading choices, from the ATen/Config.h its wheel ships.

    x86 wheels link MKL statically, so no library file would show it.
    """
    text = read_text(os.path.join(location, "torch", "include", "ATen", "Config.h"))
    if not text:
        return {}
    flags = dict(re.findall(r"#define (AT_[A-Z_]+)\(\) (\d)", text))
    parallel = re.search(r"#define AT_PARALLEL_(OPENMP|NATIVE) 1", text)
    declared: Dict[str, Declared] = {}
    if flags.get("AT_MKL_ENABLED") == "1":
        declared["torch.blas"] = {"name": "mkl", "version": None}
    elif flags.get("AT_BUILD_WITH_BLAS") == "1":
        declared["torch.blas"] = {"name": "external-blas", "version": None}
    if flags.get("AT_MKLDNN_ENABLED") == "1":
        declared["torch.onednn"] = {"name": "onednn-acl" if flags.get("AT_MKLDNN_ACL_ENABLED") == "1" else "onednn",
                                    "version": None}
    if parallel:
        declared["torch.parallel"] = {"name": parallel.group(1).lower(), "version": None}
    return declared


def threadpool_facts() -> Optional[Threadpools]:
    """Live view (deep probe only): imports numpy/scipy/torch where present, then asks threadpoolctl."""
    for module in ("numpy", "scipy.linalg", "torch"):
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - a deep probe reports what it could load
            continue
    try:
        import threadpoolctl
    except Exception as exc:  # noqa: BLE001
        note_unavailable("blas.threadpools", "threadpoolctl is not installed in this interpreter (%s)" % exc)
        return None
    pools: Threadpools = []
    for info in threadpoolctl.threadpool_info():
        pools.append({key: info.get(key) for key in
                      ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture",
                       "filepath")})
    return pools


def torch_runtime_facts() -> Optional[TorchRuntime]:
    """Deep probe only: torch's own answers (arch list, cuDNN, NCCL, default precision flags)."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        note_unavailable("torch.runtime", "torch did not import: %s" % exc)
        return None
    facts: TorchRuntime = {"version": torch.__version__, "cuda_available": None, "arch_list": None, "cudnn": None,
             "nccl": None, "num_threads": torch.get_num_threads(), "cpu_capability": None}
    try:
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        pass
    try:
        facts["cuda_available"] = bool(torch.cuda.is_available())
        facts["arch_list"] = list(torch.cuda.get_arch_list())
        version = torch.backends.cudnn.version()
        facts["cudnn"] = str(version) if version else None
        if facts["cuda_available"]:
            facts["nccl"] = ".".join(str(p) for p in torch.cuda.nccl.version())
    except Exception as exc:  # noqa: BLE001
        note_unavailable("torch.cuda", str(exc))
    try:
        import torch.backends.xnnpack  # not loaded by `import torch`

        facts["xnnpack"] = bool(torch.backends.xnnpack.enabled)
    except Exception:  # noqa: BLE001
        pass
    return facts


# ----------------------------------------------------------------------------------- toolchain

def tool_version(cache: FileCache, name: str, argv_tail: List[str], pattern: str) -> Optional[ToolVersion]:
    path = which(name)
    if not path:
        return None

    def compute() -> Optional[str]:
        out = run([path] + argv_tail, timeout=5.0)
        if out is None:
            return None
        match = re.search(pattern, out)
        return match.group(1) if match else out.strip().splitlines()[0][:120] if out.strip() else None

    return {"path": path, "version": cache.get_or_compute("tool-" + name, os.path.realpath(path), compute)}


def toolchain_facts(cache: FileCache) -> Toolchain:
    return {
        "gcc": tool_version(cache, "gcc", ["--version"], r"(\d+\.\d+\.\d+)"),
        "clang": tool_version(cache, "clang", ["--version"], r"version (\d+\.\d+\.\d+)"),
        "cmake": tool_version(cache, "cmake", ["--version"], r"version (\d+\.\d+\.\d+)"),
        "nvcc": tool_version(cache, "nvcc", ["--version"], r"release \d+\.\d+, V(\d+(?:\.\d+)+)"),
    }


# ------------------------------------------------------------------------------------------ env

ENV_EXACT = {
    "PYTHONHASHSEED", "NVIDIA_TF32_OVERRIDE", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING",
    "CUDA_FORCE_PTX_JIT", "CUDA_CACHE_DISABLE", "CUDA_MODULE_LOADING", "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG", "CUBLASLT_WORKSPACE_SIZE", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS", "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "XLA_FLAGS",
    "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "NPY_PROMOTION_STATE",
    "TZ", "LANG", "LC_ALL", "LC_NUMERIC", "HIPBLASLT_ALLOW_TF32", "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_PYTORCH_VERSION", "NVIDIA_DRIVER_CAPABILITIES", "PYTORCH_CUDA_ALLOC_CONF",
    "GOMP_CPU_AFFINITY", "BLIS_NUM_THREADS", "FLEXIBLAS", "CUDNN_LOGINFO_DBG",
    # TensorFlow's own (a bare TF_ prefix would also catch Terraform's variables)
    "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_USE_CUDNN_AUTOTUNE", "TF_CUDNN_USE_AUTOTUNE",
    "TF_ENABLE_ONEDNN_OPTS", "TF_ENABLE_AUTO_MIXED_PRECISION", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_FP16_CONV_USE_FP32_COMPUTE", "TF_FP16_MATMUL_USE_FP32_COMPUTE",
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_ENABLE_CUBLAS_TENSOR_OP_MATH_FP32",
    "TF_ENABLE_CUDNN_TENSOR_OP_MATH_FP32",
}
ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "OPENBLAS_", "GOTO_", "NCCL_", "TORCH_", "TORCHINDUCTOR_",
                "JAX_", "CUBLAS_", "CUDNN_", "NVIDIA_TF32", "PYTORCH_", "TRITON_", "XLA_", "HIP_", "ROCBLAS_")
# --------------------------------------------------------------------------------- redaction
# The one redaction engine: the probe applies it to what it reads (its output may cross a cluster's
# log files), and envcap (envcap/redact.py) to every file, stream, image and report it writes.

REDACTED = "<redacted>"


class _Rule:
    """A rule's regex, compiled the first time a string needs it.

    Why: compiling the rules below cost every probe 4 ms, and most never use them: the prefilter
    (may_hold_secret) lets nearly every string pass untouched.
    """

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: Optional[re.Pattern[str]] = None

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)  # two threads may both compile: the same
        return self._compiled

    def search(self, text: str) -> Optional[re.Match[str]]:
        return self.compiled().search(text)

    def match(self, text: str) -> Optional[re.Match[str]]:
        return self.compiled().match(text)

    def fullmatch(self, text: str) -> Optional[re.Match[str]]:
        return self.compiled().fullmatch(text)

    def findall(self, text: str) -> List[Any]:
        return self.compiled().findall(text)

    def sub(self, replacement: Union[str, Callable[[re.Match[str]], str]], text: str) -> str:
        return self.compiled().sub(replacement, text)


SECRET_NAME_RE = _Rule(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|APIKEY|API_KEY|ACCESS_KEY|PRIVATE|AUTH|"
                            r"COOKIE|SESSION|_KEY$|^KEY$|SAS$)", re.I)
# A key of key=value, --flag=value or --flag value that names a secret: it ends with the word
# (hf_token, --api_token, use_auth_token, password), so max_new_tokens or tokenizer are left alone.
_SECRET_KEY = (r"[A-Za-z0-9_.-]*?(?:token|secret|password|passwd|pwd|passphrase|credentials?|apikey|api[_-]?key|"
               r"access[_-]?key|secret[_-]?key|private[_-]?key|client[_-]?secret|auth|authorization|cookie|"
               r"session[_-]?id|signature|sig|sas)")
SECRET_FLAG_RE = _Rule(r"^--?" + _SECRET_KEY + r"$", re.I)
# PGP's armour says "PRIVATE KEY BLOCK"; an unterminated block is redacted to the end of the text.
_PRIVATE_KEY_RE = _Rule(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
                             r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)", re.S)
_URL_USERINFO_RE = _Rule(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s<>\"']*@")
# A query (or fragment: OAuth's #access_token=) parameter whose name ends with a secret's word: token,
# access_token, private_token, X-Amz-Signature, Azure's sig, subscription-key, x-api-key, session...
_SECRET_PARAM = (r"[A-Za-z0-9_.-]*?(?:token|auth|key|sig|signature|sas|code|password|passwd|pwd|secret|"
                 r"credential|session|session[_-]?id)")
_QUERY_SECRET_RE = _Rule(r"([?&;#]" + _SECRET_PARAM + r"=)[^&#\s\"'<>]*", re.I)
_SECRET_PARAM_RE = _Rule(_SECRET_PARAM, re.I)
_URL_PARAM_RE = _Rule(r"([?#;&])([^?#;&]*)")
_AUTH_HEADER_RE = _Rule(r"(\b(?:proxy-)?authorization\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|"
                             r"(?:(?:bearer|basic|token|digest|negotiate)\s+)?[^\s,;\"']+)", re.I)
_AUTH_SCHEME_RE = _Rule(r"(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{6,}", re.I)
# The key may follow another's "=" or ":" (--xla_flag=hf_token=..., user:password=...).
_KEY_VALUE_RE = _Rule(r"((?:^|(?<=[\s,;&?\"'{(\[=:]))--?" + _SECRET_KEY + r"(?:=|\s+)|"
                           r"(?:^|(?<=[\s,;&?\"'{(\[=:]))[\"']?" + _SECRET_KEY + r"[\"']?\s*[=:]\s*)"
                           r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'})\]]+)", re.I)
_TOKEN_SHAPES_RE = _Rule(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}|"
    r"xox[abposr]-[A-Za-z0-9-]{10,}|hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|pk_(?:live|test)_[A-Za-z0-9]{16,}|"
    r"(?:AKIA|ASIA)[A-Z0-9]{16}|AIza[0-9A-Za-z_-]{30,}|npm_[A-Za-z0-9]{30,}|pypi-[A-Za-z0-9_-]{40,}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?)")
_DEVICE_UUID_RE = _Rule(r"\b((?:MIG-)?GPU-|MIG-)([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                             r"[0-9a-fA-F]{12})((?:/\d+){0,2})")
_RANDOM_RE = _Rule(r"[A-Za-z0-9+/=_\-]{32,}")
# Anything one of the rules above could match contains one of these; most strings (file names,
# hashes, plain URLs) contain none, and skip the rules (a lock holds thousands of such strings).
_MAYBE_SECRET_RE = _Rule(
    r"[@?=]|BEGIN|bearer|basic|gh[pousr]_|github_pat_|glpat-|xox|hf_|sk-|pk_|AKIA|ASIA|AIza|npm_|pypi-|eyJ|GPU-|"
    r"MIG-|token|secret|passw|pwd|passphrase|credential|key|cookie|session|signature|sig|sas|auth", re.I)


def _hashed_device(match: re.Match[str]) -> str:
    """A device UUID as the lock's uuid_sha256 writes it: comparable, not the hardware's identity."""
    return "GPU-sha256:" + _sha256_hex(match.group(2).lower().encode())[:16]


# The same words, for ASCII text (nearly every string a lock holds): lower-cased, then looked for
# one by one with ``in``, which is exact for ASCII and about ten times faster than the regex.
_MAYBE_SECRET_WORDS = ("begin", "bearer", "basic", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
                       "glpat-", "xox", "hf_", "sk-", "pk_", "akia", "asia", "aiza", "npm_", "pypi-", "eyj", "gpu-",
                       "mig-", "token", "secret", "passw", "pwd", "passphrase", "credential", "key", "cookie",
                       "session", "sig", "sas", "auth")


def may_hold_secret(text: str) -> bool:
    """False when no rule of redact_text could match: such a string is recorded as it is.

    Why two paths: a lock holds thousands of artifact URLs, and the case-insensitive regex cost
    40 us each (a tenth of a second per snapshot); for ASCII text, ``in`` on the lower-cased text
    gives exactly the regex's answer. Other text (where case folding has more forms) takes the regex.
    """
    if not text.isascii():
        return bool(_MAYBE_SECRET_RE.search(text))
    if "@" in text or "?" in text or "=" in text:
        return True
    lowered = text.lower()
    for word in _MAYBE_SECRET_WORDS:  # noqa: SIM110 - a third faster than any() over a generator
        if word in lowered:
            return True
    return False


def looks_random(value: str) -> bool:
    """A long string of mixed case and digits in a token's alphabet: treated as a credential."""
    return bool(_RANDOM_RE.fullmatch(value)) and bool(re.search(r"\d", value)) \
        and bool(re.search(r"[A-Z]", value)) and bool(re.search(r"[a-z]", value))


def redact_text(text: str) -> str:
    """Every credential-shaped part of free text replaced by the marker; the rest kept as it was."""
    if not text or not may_hold_secret(text):
        return text
    text = _PRIVATE_KEY_RE.sub(REDACTED, text)
    text = _URL_USERINFO_RE.sub(lambda m: m.group(1) + REDACTED + "@", text)
    text = _QUERY_SECRET_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTH_SCHEME_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KEY_VALUE_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _TOKEN_SHAPES_RE.sub(REDACTED, text)
    return _DEVICE_UUID_RE.sub(_hashed_device, text)


def redact_value(name: str, value: str) -> str:
    """The value of a variable named ``name`` as it may be recorded: whole, in part, or the marker."""
    if SECRET_NAME_RE.search(name):
        return REDACTED
    cleaned = redact_text(value)
    if looks_random(cleaned.strip()):
        return REDACTED
    return cleaned


ARGV_CONTEXT = 6  # arguments read before each one: a private key's header is five words


def redact_argv(argv: List[str]) -> List[str]:
    """A command line as it may be recorded: ``--token X`` and ``--token=X`` lose X, tokens go.

    A secret split over several arguments (``Bearer X``, ``-H Authorization: token X``, ``password = X``,
    a private key passed unquoted) is found by reading each argument after the few before it: when
    they redact differently together than apart, a secret crossed the gap, and the argument is left
    out whole.
    """
    out: List[str] = []
    hide_next = False
    for index, arg in enumerate(argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if SECRET_FLAG_RE.match(arg):
            out.append(arg)
            hide_next = True
            continue
        cleaned = redact_text(arg)
        context = " ".join(argv[max(0, index - ARGV_CONTEXT):index])
        if context and redact_text(context + " " + arg) != redact_text(context) + " " + cleaned:
            cleaned = REDACTED
        out.append(REDACTED if looks_random(cleaned) else cleaned)
    return out


def strip_credentials(url: str) -> str:
    """A URL as it may be recorded: no userinfo at all (greedy to the last "@" before the path, as pip
    splits), no secret query, fragment or ``;`` parameter at all.

    Why dropped whole rather than marked: the URL stays a URL (a lock's URL fields are validated as
    such, and a distribution whose origin read ``?X-Amz-Security-Token=<redacted>`` was left out of the
    lock), and it still names the host and path, which is what a reader of the lock needs.
    """
    return redact_text(_drop_secret_params(_URL_USERINFO_RE.sub(r"\1", url)))


def _drop_secret_params(url: str) -> str:
    head = re.split(r"[?#;]", url, maxsplit=1)[0]
    out = [head]
    opening: Optional[str] = None  # "?" or "#" not yet written: no parameter of its part kept so far
    for sep, item in _URL_PARAM_RE.findall(url[len(head):]):
        if sep in "?#":
            opening = sep
        name, has_value, _ = item.partition("=")
        if has_value and _SECRET_PARAM_RE.fullmatch(name):
            continue
        if opening is not None:
            out.append(opening + item)
            opening = None
        else:
            out.append(sep + item)
    return "".join(out)


def env_allowed(name: str) -> bool:
    return name in ENV_EXACT or name.startswith(ENV_PREFIXES)


def env_facts(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: redact_value(name, value) for name, value in sorted(environ.items()) if env_allowed(name)}


# ------------------------------------------------------------------------------------------ git

def run_many(commands: List[List[str]], cwd: Optional[str] = None, timeout: float = 10.0) -> List[Optional[str]]:
    """Starts every argv at once and waits for all: git's answers cost one round-trip, not three."""
    return [None if out is None else out.decode("utf-8", "replace") for out in run_many_raw(commands, cwd, timeout)]


def run_many_raw(commands: List[List[str]], cwd: Optional[str] = None, timeout: float = 10.0) -> List[Optional[bytes]]:
    """As run_many, the outputs as bytes (a binary diff is hashed as git wrote it); None: failed."""
    import subprocess

    procs: List[Optional[subprocess.Popen[bytes]]] = []
    for argv in commands:
        try:
            procs.append(subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL))
        except OSError:
            procs.append(None)
    outputs: List[Optional[bytes]] = []
    for proc in procs:
        if proc is None:
            outputs.append(None)
            continue
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outputs.append(None)
            continue
        outputs.append(out if proc.returncode == 0 else None)
    return outputs


# The snapshot folder is envcap's, not the workload's code: committing it must not read as a code change.
GIT_OUTSIDE_ENVCAP = ":(top,exclude).envcap"
MAX_CHANGED_FILES = 200


def may_be_in_repository(cwd: str) -> bool:
    """False only where git cannot find a work tree: no ``.git`` in the folder or above it, no folder
    that is itself a repository (HEAD and objects/, which core.worktree may attach to a work tree),
    and no GIT_DIR or GIT_WORK_TREE in the environment."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
        return True
    folder = os.path.abspath(cwd)
    while True:
        if os.path.lexists(os.path.join(folder, ".git")):
            return True
        if os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(os.path.join(folder, "objects")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def git_facts(cwd: str, base: Optional[str] = None) -> Optional[GitFacts]:
    """The work tree's commit and its changes, ``.envcap/`` left out.

    ``base``: measure the changes against that commit instead of HEAD (a replay asks "what changed
    since the snapshot's commit", so commits that only touch .envcap/ leave the code equal).
    """
    if not which("git"):
        note_unavailable("git", "git is not installed")
        return None
    if not may_be_in_repository(cwd):
        return None  # what git status would say, without starting three git processes (10 ms)
    status, root, remote = run_many([
        ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
        ["git", "rev-parse", "--show-toplevel"],
        ["git", "config", "--get", "remote.origin.url"],
    ], cwd=cwd)
    if status is None:
        return None  # not a repository: nothing to record
    facts: GitFacts = {"commit": None, "branch": None, "dirty": False, "diff_sha256": None,
                       "root": root.strip() if root else None,
                       "remote": strip_credentials(remote.strip()) if remote else None,
                       "base": None, "changed_files": []}
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            facts["commit"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            facts["branch"] = None if head == "(detached)" else head
    facts["base"] = base or facts["commit"]
    if facts["base"] is None:
        return facts
    names, diff = run_many_raw([
        ["git", "diff", "--name-only", facts["base"], "--", GIT_OUTSIDE_ENVCAP],
        ["git", "diff", facts["base"], "--binary", "--", GIT_OUTSIDE_ENVCAP],
    ], cwd=cwd, timeout=30.0)
    if names is None or diff is None:
        note_unavailable("git.diff", "git could not compare the work tree with %s" % facts["base"][:12])
        return facts
    changed = [n for n in names.decode("utf-8", "replace").splitlines() if n]
    facts["changed_files"] = changed[:MAX_CHANGED_FILES]
    facts["dirty"] = bool(changed) and base is None
    facts["diff_sha256"] = _sha256_hex(diff) if changed else None
    return facts


# ----------------------------------------------------------------------------------------- main

def guarded(name: str, fn: Callable[..., T], *args: Any) -> Optional[T]:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - one broken reader must not cost the others
        note_unavailable(name, "%s: %s" % (type(exc).__name__, exc))
        return None


# The sections host_facts() reads: what the kernel and the hardware decide. Everything else the probe reports is
# decided by the interpreter's files and the variables it runs with (envcap's replay caches those by image).
HOST_SECTIONS = ("os", "cpu", "gpu")


def host_facts() -> HostFacts:
    """The kernel, the CPU and the GPUs as this process sees them (os-release and libc come along: cheap)."""
    return {"os": guarded("os", os_facts), "cpu": guarded("cpu", cpu_facts), "gpu": guarded("gpu", gpu_facts)}


def parse_args(argv: Iterable[str]) -> Options:
    options: Options = {"cache": None, "deep": False, "cwd": os.getcwd(), "skip_git": False, "search_path": False}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--cache" and args:
            options["cache"] = args.pop(0)
        elif arg == "--cwd" and args:
            options["cwd"] = args.pop(0)
        elif arg == "--deep":
            options["deep"] = True
        elif arg == "--skip-git":
            options["skip_git"] = True
        elif arg == "--search-path":
            options["search_path"] = True
        else:
            raise SystemExit("envcap probe: unknown argument %r" % arg)
    return options


def collect(options: Options) -> SearchedFacts:
    script_dir = os.path.dirname(os.path.abspath(__file__))
    search_path = [p for p in sys.path if p and os.path.abspath(p) != script_dir]
    cache = FileCache(options["cache"])
    dists = guarded("distributions", distributions_facts, search_path) or []
    if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
        dists = guarded("conda", merge_conda, dists, conda_packages(sys.prefix)) or dists
    dist_index = {d["name"]: d for d in dists}
    python = guarded("python", python_facts)
    pip_config = guarded("pip-config", pip_config_facts)
    host = host_facts()  # in the order the readers always ran, so `unavailable` keeps its order too
    facts: SearchedFacts = {
        "probe_version": PROBE_VERSION,
        "python": python,
        "distributions": dists,
        "pip_config": pip_config,
        "os": host["os"],
        "cpu": host["cpu"],
        "gpu": host["gpu"],
        "cuda": guarded("cuda", cuda_facts, dist_index),
        "blas": guarded("blas", blas_facts, dist_index, cache),
        "toolchain": guarded("toolchain", toolchain_facts, cache),
        "env": guarded("env", env_facts),
        "git": None if options["skip_git"] else guarded("git", git_facts, options["cwd"]),
        "torch_runtime": None,
        "unavailable": UNAVAILABLE,  # the list itself: readers below may still add to it
    }
    if facts["cuda"] and facts["toolchain"] and facts["toolchain"].get("nvcc"):
        facts["cuda"]["nvcc"] = facts["toolchain"]["nvcc"]
    if options["deep"]:
        if facts["blas"] is not None:
            facts["blas"]["threadpools"] = guarded("blas.threadpools", threadpool_facts)
        if "torch" in dist_index:
            facts["torch_runtime"] = guarded("torch.runtime", torch_runtime_facts)
    if options["search_path"]:
        facts["search_path"] = [os.path.abspath(p) for p in search_path]
    cache.save()
    return facts


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    facts = collect(options)
    out = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    sys.stdout.write(out)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
