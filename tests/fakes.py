"""Fakes for the edges (NVML, subprocesses); each implements the real interface, nothing is patched."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcap._subprocess import Completed


class FakeNvmlError(Exception):
    """Shaped like pynvml.NVMLError: ``value`` carries NVML's return code."""

    def __init__(self, value: int, text: str) -> None:
        super().__init__(text)
        self.value = value


@dataclass
class FakeNvml:
    """pynvml's API over recorded data (tests/data/nvml/*.json) or hand-made dicts.

    ``fail`` maps a function name to an NVML return code, to try the probe's error paths.
    """

    data: dict[str, Any]
    fail: dict[str, int] = field(default_factory=dict)
    initialised: bool = False

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> FakeNvml:
        return cls(json.loads(Path(path).read_text("utf-8")), **kwargs)

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise FakeNvmlError(self.fail[name], f"{name} failed with NVML code {self.fail[name]}")
        if name != "nvmlInit" and not self.initialised:
            raise FakeNvmlError(1, "Uninitialized")

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return str(self.data["driver_version"])

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return int(self.data["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        self._check("nvmlDeviceGetHandleByIndex")
        return dict(self.data["devices"][index])

    def nvmlDeviceGetName(self, handle: Mapping[str, Any]) -> str:
        self._check("nvmlDeviceGetName")
        return str(handle["name"])

    def nvmlDeviceGetUUID(self, handle: Mapping[str, Any]) -> str:
        self._check("nvmlDeviceGetUUID")
        return str(handle["uuid"])

    def nvmlDeviceGetCudaComputeCapability(self, handle: Mapping[str, Any]) -> tuple[int, int]:
        self._check("nvmlDeviceGetCudaComputeCapability")
        major, minor = handle["compute_capability"]
        return int(major), int(minor)

    def nvmlDeviceGetMemoryInfo(self, handle: Mapping[str, Any]) -> Any:
        self._check("nvmlDeviceGetMemoryInfo")

        @dataclass
        class Memory:
            total: int
            free: int
            used: int

        total = int(handle["memory_total_bytes"])
        return Memory(total=total, free=total, used=0)

    def nvmlDeviceGetMigMode(self, handle: Mapping[str, Any]) -> tuple[int, int]:
        self._check("nvmlDeviceGetMigMode")
        if handle.get("mig_mode") is None:
            raise FakeNvmlError(3, "Not Supported")
        mode = 1 if handle["mig_mode"] == "enabled" else 0
        return mode, mode

    def nvmlDeviceGetEccMode(self, handle: Mapping[str, Any]) -> tuple[int, int]:
        self._check("nvmlDeviceGetEccMode")
        if handle.get("ecc_mode") is None:
            raise FakeNvmlError(3, "Not Supported")
        mode = 1 if handle["ecc_mode"] == "enabled" else 0
        return mode, mode


@dataclass
class CannedRunner:
    """A ``Runner`` that answers from a table of argv prefixes and records every call."""

    answers: dict[tuple[str, ...], Completed] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    raises: dict[tuple[str, ...], Exception] = field(default_factory=dict)  # argv prefix -> RunFailed/RunTimedOut
    timeouts: list[float] = field(default_factory=list)

    def add(self, argv_prefix: Sequence[str], stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.answers[tuple(argv_prefix)] = Completed(tuple(argv_prefix), returncode, stdout, stderr)

    def __call__(self, argv: Sequence[str], *, timeout: float = 0, cwd: str | None = None,
                 env: Mapping[str, str] | None = None, stdin: str | None = None) -> Completed:
        argv = tuple(argv)
        self.calls.append(argv)
        self.timeouts.append(timeout)
        for prefix, exc in sorted(self.raises.items(), key=lambda kv: -len(kv[0])):
            if argv[: len(prefix)] == prefix:
                raise exc
        for prefix, answer in sorted(self.answers.items(), key=lambda kv: -len(kv[0])):
            if argv[: len(prefix)] == prefix:
                return Completed(argv, answer.returncode, answer.stdout, answer.stderr)
        raise AssertionError(f"CannedRunner has no answer for {argv}")


@dataclass(frozen=True)
class FakeBuild:
    """What one ``FakeEngine.build`` call received: the context's files as the engine would see them."""

    tag: str
    labels: dict[str, str]
    files: dict[str, bytes]  # relative path -> content of every file in the context (wheels included)
    image_id: str

    @property
    def dockerfile(self) -> str:
        return self.files["Dockerfile"].decode("utf-8")


@dataclass(frozen=True)
class FakeInstall:
    """What one install container received: the wheels and requirements mounted into it, its flags."""

    files: dict[str, bytes]  # "wheels/<name>", "wheels/vendored/<name>", "requirements.lock" (the mounted requirements)
    installer: str  # uv | pip
    network_disabled: bool
    image: str
    user: str | None
    tag: str = ""  # repository:tag it was committed as
    labels: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # the script's arguments: installer, venv, user, uid

    @property
    def requirements(self) -> str:
        return self.files["requirements.lock"].decode("utf-8")


@dataclass
class FakeEngine:
    """The ContainerEngine Protocol in memory: records builds and runs, answers runs from a script.

    ``run_results`` are returned in order (the last one repeats); ``on_run``, when set, answers
    instead (for answers that depend on the command). ``build_error`` makes the next build fail
    after emitting ``build_events``. Images live in ``images`` by tag and by id.
    """

    endpoint: str = "fake://engine"
    images: dict[str, Any] = field(default_factory=dict)  # ref -> ImageInfo
    builds: list[FakeBuild] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)  # RunSpec
    run_results: list[Any] = field(default_factory=list)  # RunResult
    on_run: Any = None  # Callable[[RunSpec], RunResult] | None
    run_output: list[tuple[bytes, str]] = field(default_factory=list)  # streamed to on_output on each run
    build_events: list[Any] = field(default_factory=list)  # BuildEvent, emitted by every build
    build_error: Exception | None = None
    pullable: dict[str, Any] = field(default_factory=dict)  # ref -> ImageInfo that pull() can fetch
    pulls: list[str] = field(default_factory=list)
    gpu_runtime: bool = False
    reachable: bool = True
    live_containers: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> labels
    removed: list[str] = field(default_factory=list)
    leftover_images: set[str] = field(default_factory=set)  # untagged images nothing uses (a dead build's)
    removed_images: list[str] = field(default_factory=list)
    installs: list[FakeInstall] = field(default_factory=list)  # install containers (envcap.build.install)
    install_exit_code: int = 0

    def _check(self) -> None:
        from envcap.engine.errors import EngineUnavailable

        if not self.reachable:
            raise EngineUnavailable(f"cannot reach the container engine at {self.endpoint}: refused.",
                                    hint="start it or set DOCKER_HOST")

    def add_image(self, ref: str, image_id: str | None = None, labels: dict[str, str] | None = None,
                  entrypoint: tuple[str, ...] = ()) -> Any:
        from envcap.engine import ImageInfo

        info = ImageInfo(id=image_id or f"sha256:{abs(hash(ref)):064x}"[:71], tags=(ref,), labels=labels or {},
                         size=1000, entrypoint=entrypoint)
        self.images[ref] = info
        self.images[info.id] = info
        return info

    def ping(self) -> None:
        self._check()

    def image(self, ref: str) -> Any:
        self._check()
        return self.images.get(ref)

    def pull(self, ref: str) -> Any:
        from envcap.engine.errors import ImagePullFailed

        self._check()
        self.pulls.append(ref)
        if ref not in self.pullable:
            raise ImagePullFailed(f"cannot pull the base image {ref}: not found.", hint="pass --base-image")
        info = self.pullable[ref]
        self.images[ref] = info
        self.images[info.id] = info
        return info

    def tag(self, image_id: str, ref: str) -> None:
        from dataclasses import replace

        self._check()
        info = self.images[image_id]
        info = replace(info, tags=(*info.tags, ref))
        self.images[image_id] = info
        self.images[ref] = info

    def remove_image(self, ref: str) -> None:
        info = self.images.pop(ref, None)
        if info is not None:
            for key in [k for k, v in self.images.items() if v.id == info.id]:
                del self.images[key]

    def build(self, context: Path, *, tag: str, labels: dict[str, str], on_event: Any = None,
              network_disabled: bool = False) -> Any:
        import hashlib

        from envcap.engine import ImageInfo

        self._check()
        files = {str(p.relative_to(context)): p.read_bytes() for p in sorted(Path(context).rglob("*"))
                 if p.is_file()}
        for event in self.build_events:
            if on_event is not None:
                on_event(event)
        if self.build_error is not None:
            raise self.build_error
        digest = hashlib.sha256(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode())
        image_id = f"sha256:{digest.hexdigest()}"
        self.builds.append(FakeBuild(tag=tag, labels=dict(labels), files=files, image_id=image_id))
        info = ImageInfo(id=image_id, tags=(tag,), labels=dict(labels), size=sum(len(v) for v in files.values()))
        self.images[tag] = info
        self.images[image_id] = info
        return info

    def run(self, spec: Any, *, on_output: Any = None) -> Any:
        from envcap.engine import RunResult

        self._check()
        self.runs.append(spec)
        if spec.labels.get("io.envcap.purpose") == "install":
            return self._install(spec)
        if on_output is not None:
            for chunk, stream in self.run_output:
                on_output(chunk, stream)
        if self.on_run is not None:
            return self.on_run(spec)
        if not self.run_results:
            return RunResult(exit_code=0)
        return self.run_results.pop(0) if len(self.run_results) > 1 else self.run_results[0]

    def _install(self, spec: Any) -> Any:
        """An install container: records what was mounted; on success commits an image as asked."""
        import hashlib

        from envcap.engine import ImageInfo, RunResult

        [mount] = spec.mounts
        assert mount.target == "/mnt" and mount.read_only
        stage = Path(mount.source)
        files = {f"wheels/{p.relative_to(stage / 'wheels')}": p.read_bytes()
                 for p in sorted((stage / "wheels").rglob("*")) if p.is_file()}
        files["requirements.lock"] = (stage / "requirements.txt").read_bytes()
        entry = tuple(spec.entrypoint or ())
        commit = spec.commit
        tag = f"{commit.repository}:{commit.tag}" if commit is not None else ""
        self.installs.append(FakeInstall(files=files, installer=entry[4] if len(entry) > 4 else "?",
                                         network_disabled=spec.network_disabled, image=spec.image, user=spec.user,
                                         tag=tag, labels=dict(commit.labels) if commit else {}, args=entry[4:]))
        if self.install_exit_code or commit is None:
            return RunResult(exit_code=self.install_exit_code, stdout=b"boom" if self.install_exit_code else b"")
        digest = hashlib.sha256(repr((spec.image, sorted(files.items()))).encode()).hexdigest()
        info = ImageInfo(id=f"sha256:{digest}", tags=(tag,), labels=dict(commit.labels), size=len(files))
        self.images[tag] = info
        self.images[info.id] = info
        return RunResult(exit_code=0, committed=info)

    def gpu_runtime_available(self) -> bool:
        self._check()
        return self.gpu_runtime

    def containers(self, label: str) -> list[str]:
        key, _, value = label.partition("=")
        return [cid for cid, labels in self.live_containers.items()
                if key in labels and (not value or labels[key] == value)]

    def find_images(self, label: str) -> list[Any]:  # added for replay (issue 4): the lock's image by its label
        key, _, value = label.partition("=")
        from dataclasses import replace

        unique = {info.id: info for info in self.images.values()}
        return [replace(info, entrypoint=None)  # as the engine's image list: it does not say
                for info in unique.values() if key in info.labels and (not value or info.labels[key] == value)]

    def remove_container(self, container_id: str) -> None:
        self.live_containers.pop(container_id, None)
        self.removed.append(container_id)

    def find_containers(self, label: str) -> list[Any]:
        from envcap.engine import ContainerInfo

        return [ContainerInfo(cid, dict(self.live_containers[cid])) for cid in self.containers(label)]

    def remove_leftover_image(self, image_id: str) -> bool:
        """Only an image listed in ``leftover_images`` (untagged, unused) goes."""
        if image_id not in self.leftover_images:
            return False
        self.leftover_images.discard(image_id)
        self.removed_images.append(image_id)
        return True


@dataclass
class FakeCluster:
    """A ``Cluster`` whose nodes and answers are given: the fleet's tests replace Slurm here, nowhere else.

    ``answers`` maps a node to its ``NodeRun``, or to a function of the command it was sent (to run it
    for real, or to check what it carries). ``sent`` records the nodes ``run`` was asked to use.
    """

    node_list: list[Any]
    answers: dict[str, Any] = field(default_factory=dict)
    kind: str = "slurm"
    sent: list[str] = field(default_factory=list)
    commands: list[Any] = field(default_factory=list)
    selections: list[Any] = field(default_factory=list)

    @property
    def where(self) -> str:
        return "Fake Slurm"

    def nodes(self, selection: Any) -> tuple[Any, ...]:
        self.selections.append(selection)
        return tuple(self.node_list)

    def run(self, nodes: Sequence[Any], command: Any) -> tuple[Any, ...]:
        from envcap.cluster import NodeRun

        self.commands.append(command)
        runs = []
        for node in nodes:
            self.sent.append(node.name)
            answer = self.answers.get(node.name)
            if callable(answer):
                answer = answer(command)
            runs.append(answer if answer is not None else NodeRun(node.name, "lost", detail="no answer in the fake"))
        return tuple(runs)


def task_stdout(parts: Mapping[str, Mapping[str, Any]], *, host: str = "node", runtime: str | None = None,
                error: str | None = None, before: str = "", image: str | None = None) -> str:
    """What the node task prints: ``parts`` maps a part to {"rc", "stdout", "stderr"} or {"error", "detail"}."""
    import base64
    import zlib

    answer: dict[str, Any] = {"host": host, "python": "3.11.2", "runtime": runtime, "parts": dict(parts)}
    if error:
        answer["error"] = error
    if image:
        answer["image"] = image
    packed = base64.b64encode(zlib.compress(json.dumps(answer).encode())).decode()
    return f"{before}\nENVCAP-FLEET-RESULT {packed}\n"


# -- the sandbox's edges (envcap.build.fromsource): pip download, the index's hashes, the container ----------
@dataclass
class FakeBackendIndex:
    """``pip download`` of build backends (a ``Runner``) and the index that vouches for them (a ``ReleaseLookup``).

    Each requirement's project gets one wheel, ``<name>-1.0-py3-none-any.whl``; ``tampered`` names projects
    whose published sha256 differs from what pip is served. ``git`` commands run for real when ``git`` is set.
    """

    tampered: set[str] = field(default_factory=set)
    unlisted: set[str] = field(default_factory=set)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    git: bool = False
    returncode: int = 0

    @staticmethod
    def wheel(name: str) -> tuple[str, bytes]:
        from packaging.utils import canonicalize_name

        project = canonicalize_name(name).replace("-", "_")
        return f"{project}-1.0-py3-none-any.whl", f"the wheel of {project}".encode()

    def __call__(self, argv: Sequence[str], *, timeout: float = 0, cwd: str | None = None,
                 env: Mapping[str, str] | None = None, stdin: str | None = None) -> Completed:
        from packaging.requirements import Requirement

        argv = tuple(argv)
        self.calls.append(argv)
        if argv[0] == "git" and self.git:
            from envcap._subprocess import run

            return run(argv, timeout=timeout, cwd=cwd, env=env, stdin=stdin)
        assert argv[1:4] == ("-m", "pip", "download"), argv
        if self.returncode:
            return Completed(argv, self.returncode, "", "ERROR: No matching distribution found for mybackend")
        dest = Path(argv[argv.index("--dest") + 1])
        for text in argv[argv.index("--") + 1:]:
            filename, data = self.wheel(Requirement(text).name)
            (dest / filename).write_bytes(data)
        return Completed(argv, 0, "Successfully downloaded", "")

    def resolve(self, pins: Any) -> dict[tuple[str, str], Any]:
        import hashlib

        from envcap.lock import Artifact
        from envcap.snapshot.hashes import Release

        answers = {}
        for name, version in pins:
            filename, data = self.wheel(name)
            sha = hashlib.sha256(b"other bytes" if name in self.tampered else data).hexdigest()
            artifacts = () if name in self.unlisted else (Artifact(filename=filename, sha256=sha),)
            answers[(name, version)] = Release(name=name, version=version, artifacts=artifacts)
        return answers

    def downloads(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[1:4] == ("-m", "pip", "download")]


@dataclass(frozen=True)
class SandboxRun:
    """What one sandbox container was given: its spec, and the files of its read-only mounts at that moment."""

    spec: Any  # RunSpec
    source: dict[str, str]  # relative path -> file text, or "-> target" for a symlink
    backend_requirements: str


@dataclass
class FakeSandbox:
    """The container side of ``envcap build``: the base image's platform probe, and sandbox builds.

    A build writes ``wheel_name`` (default: ``<name>-<version>-py3-none-any.whl`` of the sdist or of the
    project's pyproject.toml) into the output mount, holding a listing of the source it was given; ``exit_code``
    and ``log`` make it fail; ``plant`` runs on the output folder (to leave a symlink or a second wheel).
    """

    facts: Mapping[str, str]
    wheel_name: str | None = None
    exit_code: int = 0
    log: bytes = b"compiling...\n"
    plant: Any = None  # Callable[[Path], None] | None
    runs: list[SandboxRun] = field(default_factory=list)

    def __call__(self, spec: Any) -> Any:
        import zipfile

        from envcap.engine import RunResult

        if spec.labels.get("io.envcap.purpose") != "sandbox-build":
            return RunResult(exit_code=0, stdout=(json.dumps(dict(self.facts)) + "\n").encode())
        mounts = {m.target: m for m in spec.mounts}
        source_root = Path(mounts["/envcap/src"].source)
        source = {}
        for path in sorted(source_root.rglob("*")):
            relative = str(path.relative_to(source_root))
            if path.is_symlink():
                source[relative] = "-> " + str(path.readlink())
            elif path.is_file():
                source[relative] = path.read_bytes().decode("utf-8", "replace")
        backend = Path(mounts["/envcap/backend"].source) / "requirements.txt"
        self.runs.append(SandboxRun(spec, source, backend.read_text() if backend.exists() else ""))
        if self.exit_code:
            return RunResult(exit_code=self.exit_code, stdout=self.log)
        mode, entry = spec.entrypoint[-2:]
        out = Path(mounts["/envcap/out"].source)
        with zipfile.ZipFile(out / (self.wheel_name or self._name(mode, entry, source_root)), "w") as archive:
            archive.writestr("built-from.json", json.dumps(sorted(source)))
        if self.plant is not None:
            self.plant(out)
        return RunResult(exit_code=0, stdout=self.log)

    @staticmethod
    def _name(mode: str, entry: str, source_root: Path) -> str:
        import tomllib
        from packaging.utils import parse_sdist_filename

        if mode == "sdist":
            name, version = parse_sdist_filename(entry)
        else:
            project = tomllib.loads((source_root / entry / "pyproject.toml").read_text())["project"]
            name, version = project["name"], project["version"]
        return f"{str(name).replace('-', '_')}-{version}-py3-none-any.whl"


def sdist_bytes(name: str, version: str, files: Mapping[str, str] | None = None) -> bytes:
    """A real .tar.gz sdist: ``<name>-<version>/`` holding ``files`` (default: a setup.py and PKG-INFO)."""
    import io
    import tarfile

    files = files if files is not None else {"setup.py": "from setuptools import setup\nsetup()\n",
                                             "PKG-INFO": f"Name: {name}\nVersion: {version}\n"}
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{relative}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)  # the same bytes every call: a test may build it twice


def make_wheel(folder: Path, name: str, version: str, files: Mapping[str, str]) -> Path:
    """A real, installable pure-Python wheel, written with zipfile (no build backend, no network)."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: envcap-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel

