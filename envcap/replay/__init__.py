"""``envcap replay -- CMD``: run the workload again in the snapshot's image and say what is not the same.

The flow, each step a small function so it can be tested against a fake engine:

1. load the lock; find its image (``--image``, an earlier replay's, or ``envcap.build``);
2. pre-flight (GPU runtime, GPUs present, driver vs CUDA) before anything runs on GPUs;
3. the same stdlib probe that wrote the lock runs inside a container of the image: snapshot B;
4. the architecture check (asked of the framework in the image), then the workload, ``--repeat``
   times, with the working directory mounted at the same path, the host's UID:GID, the captured
   env vars, the precision hook, an init process as PID 1 so signals reach it;
5. outputs fingerprinted and compared; B compared with the lock (``envcap.explain`` when present);
6. B and the report are saved in ``DIR/replays/<id>/``, also when the workload crashes, the engine
   dies or Ctrl-C is pressed (the exception then carries the partial report as ``.report``).

Library code: nothing here prints; the CLI renders the returned ``ReplayReport``.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import importlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envcap import __version__
from envcap._serde import ShapeError, from_json, to_json
from envcap.emit.plan import HOST_ONLY_ENV, REDACTED
from envcap.engine import (
    ContainerEngine,
    Mount,
    OutputCallback,
    OutputStream,
    RunResult,
    RunSpec,
    keep_signals_for_the_main_thread,
)
from envcap.errors import EnvcapError, OutputError, ReplayError, UsageError
from envcap.fs import atomic_write
from envcap.lock import GitState, Gpu, OutputFingerprint, Snapshot, dumps, load_lock, lock_path, now_utc
from envcap.probe import parse_probe_output, probe_source, snapshot_from_facts
from envcap.replay.preflight import (
    PreflightCheck,
    check_arch,
    check_driver,
    check_gpu_runtime,
    check_gpus_present,
    first_failure,
    lock_uses_gpu,
)
from envcap.replay.report import (
    Comparison,
    Difference,
    OutputsSection,
    RepeatPair,
    RepeatSection,
    ReplayReport,
    RunRecord,
    render_json,
)
from envcap.workload import hook
from envcap.workload.outputs import OutputComparison, display_path, fingerprint, keep_copies
from envcap.workload.outputs import compare as compare_outputs

REPLAYS = "replays"
REPLAY_LABEL = "io.envcap.replay"
IMAGE_MEMO = "image.json"
CONTAINER_HOME = "/tmp"  # writable for any UID, which may have no passwd entry in the image
ARCH_SCRIPT = "import json, torch; print(json.dumps(list(torch.cuda.get_arch_list())))"
GPU_CHOICES = ("auto", "all", "none")
# Device and topology variables are the engine's business; LANG (which the image leaves out, as a
# locale may not exist there) is passed, as the workload ran with it.
REPLAY_SKIP_ENV = HOST_ONLY_ENV - {"LANG"}


@dataclass(frozen=True)
class ReplayRequest:
    lock_dir: Path
    command: tuple[str, ...]
    cwd: Path
    image: str | None = None
    base_image: str | None = None  # used only when the image has to be built
    gpus: str = "auto"
    outputs: tuple[str, ...] = ()
    repeat: int = 1
    user: str | None = None  # "uid:gid"; default: the user running envcap
    tty: bool = False
    interactive: bool = False
    host_env: Mapping[str, str] = field(default_factory=dict)  # for values the lock redacted


@dataclass
class _State:
    """What a replay has gathered so far: enough to save a partial report at any point."""

    request: ReplayRequest
    replay_id: str
    folder: Path
    replay_dir: Path
    lock: Snapshot
    user: str
    gpus: bool = False
    image: str | None = None
    image_id: str | None = None
    image_built: bool | None = None
    checks: tuple[PreflightCheck, ...] = ()
    runs: list[RunRecord] = field(default_factory=list)
    replay_snapshot: Snapshot | None = None
    precision: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- helpers

def new_replay_id(now: _dt.datetime | None = None) -> str:
    """Sortable by time, to the microsecond (two replays in one second must still sort in order);
    the random suffix keeps concurrent replays of one lock apart."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)



def decide_gpus(choice: str, lock: Snapshot) -> bool:
    if choice not in GPU_CHOICES:
        raise UsageError(f"--gpus {choice!r} is not one of {', '.join(GPU_CHOICES)}.",
                         hint="use --gpus all, --gpus none, or --gpus auto (GPUs when the snapshot had them)")
    if choice == "all":
        return True
    if choice == "none":
        return False
    return lock_uses_gpu(lock)


def workload_env(lock: Snapshot, host_env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The captured numerics-relevant variables, as the image's ENV also has them.

    A value the lock redacted (a credential) is taken from the current environment when set there,
    never from the lock; device-selection variables are the engine's business.
    """
    env: dict[str, str] = {}
    warnings = []
    for name, value in sorted((lock.env or {}).items()):
        if name in REPLAY_SKIP_ENV:
            continue
        if REDACTED in value:
            if name in host_env:
                env[name] = host_env[name]
            else:
                warnings.append(f"{name} was redacted in the lock and is not set here, so the replay runs without it")
            continue
        env[name] = value
    env["HOME"] = CONTAINER_HOME
    env.setdefault("PYTHONUNBUFFERED", "1")  # streamed output, not a block at exit
    return env, warnings


def describe_exit(code: int | None, oom: bool, command: Sequence[str], image: str) -> tuple[str, str | None]:
    """(status, sentence) for a workload's exit code."""
    if code is None:
        return "engine-failed", "the engine did not report how the workload ended."
    if code == 0:
        return "ok", None
    if code == 127:
        return ("command-not-found",
                (f"the command {command[0]!r} (or a command it runs) was not found inside the image {image} (exit 127); "
                "check its spelling and that the image has it on PATH (envcap's images put the locked venv first)."))
    if code == 126:
        return ("workload-failed", (f"the command {command[0]!r} could not be executed inside the image {image} "
                "(exit 126: not executable, or a directory)."))
    if 128 < code <= 128 + 64:
        name = signal_name(code - 128)
        why = " by the kernel's out-of-memory killer" if oom else ""
        return "workload-failed", f"the workload was killed by {name}{why} (exit {code})."
    return "workload-failed", f"the workload exited with status {code}."


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ------------------------------------------------------------------------------------------ image

def resolve_image(engine: ContainerEngine, request: ReplayRequest, lock: Snapshot, folder: Path,
                  build_progress: Any = None) -> tuple[str, str, bool | None, list[str]]:
    """(reference, id, built now?, warnings): ``--image``, the image an earlier replay used, or a build."""
    warnings: list[str] = []
    if request.image:
        info = engine.image(request.image)
        if info is None:
            raise ReplayError(f"the engine at {engine.endpoint} has no image {request.image}.",
                              hint=f"pull it first (docker pull {request.image}), or leave out --image to build the "
                                   "snapshot's image with envcap build")
        built_from = info.labels.get("io.envcap.lock-digest")
        if built_from and lock.digest and built_from != lock.digest:
            warnings.append(f"{request.image} was built from another lock ({built_from[:19]}...), not from "
                            f"{lock.digest[:19]}...: the comparison is against this lock's snapshot")
        elif not built_from:
            warnings.append(f"{request.image} carries no envcap lock label, so it may not be the snapshot's image")
        return request.image, info.id, None, warnings
    memo = _read_memo(folder)
    requirements = _requirements_digest(folder)
    if (memo and memo.get("lock_digest") == lock.digest and memo.get("requirements") == requirements
            and memo.get("base_image") == request.base_image):
        info = engine.image(str(memo.get("image_id")))
        if info is not None:
            return str(memo.get("tag") or info.id), info.id, False, warnings
    if request.base_image is None and lock.digest:
        # built earlier by `envcap build` (perhaps with --base-image): the newest image of this lock
        for info in engine.find_images(f"io.envcap.lock-digest={lock.digest}"):
            _write_memo(folder, {"lock_digest": lock.digest, "requirements": requirements, "image_id": info.id,
                                 "tag": info.tags[0] if info.tags else info.id, "base_image": None})
            return (info.tags[0] if info.tags else info.id), info.id, False, warnings
    import envcap.build as build_module

    options = build_module.BuildOptions(base_image=request.base_image)
    result = build_module.build(folder, engine, options, progress=build_progress)
    _write_memo(folder, {"lock_digest": lock.digest, "requirements": requirements, "image_id": result.image_id,
                         "tag": result.tag, "base_image": request.base_image})
    return result.tag, result.image_id, not result.cached, warnings


def _requirements_digest(folder: Path) -> str | None:
    """requirements.lock decides the image too (it can be edited apart from the lock)."""
    try:
        return hashlib.sha256((folder / "requirements.lock").read_bytes()).hexdigest()
    except OSError:
        return None


def _read_memo(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / REPLAYS / IMAGE_MEMO).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_memo(folder: Path, data: dict[str, Any]) -> None:
    """Remembers which image this lock was built into, so the next replay skips the build's planning."""
    try:
        atomic_write(folder / REPLAYS / IMAGE_MEMO, json.dumps(data, sort_keys=True) + "\n")
    except EnvcapError:
        pass  # only costs time next run


# ------------------------------------------------------------------------------------------ probe

class _ProbeJob:
    """The in-container probe, run now or in a thread beside the workload.

    Why a thread for CPU replays: the probe's container costs as much as the workload's start
    (~0.5 s); run one after the other, they would double replay's overhead over ``docker run``. It
    reads static facts, so running it beside the workload changes nothing it reports.
    """

    def __init__(self, engine: ContainerEngine, spec: RunSpec, *, deep: bool, image: str) -> None:
        self.engine, self.spec, self.deep, self.image = engine, spec, deep, image
        self.snapshot: Snapshot | None = None
        self.problem: str | None = None
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            keep_signals_for_the_main_thread()
        try:
            self.snapshot = probe_in_container(self.engine, self.spec, deep=self.deep, image=self.image)
        except EnvcapError as exc:
            self.problem = exc.message
        except Exception as exc:  # noqa: BLE001 - in a thread: reported, never lost
            self.problem = f"{type(exc).__name__}: {exc}"

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="envcap-replay-probe", daemon=True)
        self.thread.start()

    def wait(self, warnings: list[str]) -> Snapshot | None:
        if self.thread is not None:
            self.thread.join()
        if self.problem:
            warnings.append(f"the image could not be probed, so nothing is compared: {self.problem}")
            self.problem = None
        return self.snapshot


def probe_in_container(engine: ContainerEngine, spec: RunSpec, *, deep: bool, image: str) -> Snapshot:
    """Snapshot B: the lock's own probe, piped into the image's python3 (envcap is not installed there)."""
    argv = ("python3", "-", "--skip-git") + (("--deep",) if deep else ())
    result = engine.run(replace(spec, command=argv, stdin_data=probe_source().encode("utf-8"), tty=False,
                                interactive=False))
    facts = parse_probe_output(result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"),
                               result.exit_code, f"python3 in the image {image}")
    return snapshot_from_facts(facts, envcap_version=__version__, captured_at=now_utc(), source="probe")


def ask_arch_list(engine: ContainerEngine, spec: RunSpec) -> tuple[list[str] | None, str | None]:
    """torch.cuda.get_arch_list() inside the image: what the framework itself says it was built for."""
    try:
        result = engine.run(replace(spec, command=("python3", "-c", ARCH_SCRIPT), gpus=False, stdin_data=None,
                                    tty=False, interactive=False))
    except EnvcapError as exc:
        return None, exc.message
    if result.exit_code != 0:
        tail = (result.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        return None, f"torch in the image could not be asked ({tail[:200]})"
    try:
        value = json.loads(result.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "torch in the image gave no architecture list"
    if not isinstance(value, list):
        return None, "torch in the image gave no architecture list"
    return [str(v) for v in value], None


def host_git(cwd: Path) -> GitState | None:
    """The working tree's git state now, read on the host (the container sees the same mounted files)."""
    probe: Any = importlib.import_module("envcap.probe._probe")
    try:
        facts = probe.git_facts(str(cwd))
        return from_json(GitState, facts) if isinstance(facts, dict) else None
    except (ShapeError, OSError, ValueError):
        return None


def _host_gpu_default() -> Gpu:
    from envcap.replay.preflight import host_gpu

    return host_gpu()


# ------------------------------------------------------------------------------------- comparison

def software_stack(snapshot: Snapshot) -> dict[str, str] | None:
    """Versions that make up the software stack: distributions, Python, CUDA libraries, BLAS libraries."""
    if snapshot.python is None:
        return None
    stack = {f"package {d.name}": d.version for d in snapshot.distributions}
    stack["python"] = snapshot.python.version
    if snapshot.cuda:
        gpu_run = bool(snapshot.gpu and snapshot.gpu.devices)
        for name, component in snapshot.cuda.components.items():
            # A system toolkit counts only where a GPU could load it; pip's and torch's always do.
            if component.source != "system" or gpu_run:
                stack[f"cuda {name}"] = component.version
    if snapshot.blas:
        for lib in snapshot.blas.libraries:
            stack[f"blas {lib.library} ({lib.shipped_by or '?'})"] = lib.version or "?"
    return stack


def stack_verdict(a: Snapshot, b: Snapshot | None) -> tuple[bool | None, str]:
    sa, sb = software_stack(a), software_stack(b) if b is not None else None
    if sa is None or sb is None:
        return None, "the snapshot or the replay has no probe facts"
    differing = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
    if not differing:
        packages = sum(1 for k in sa if k.startswith("package "))
        return True, f"{packages} distributions, Python {sa['python']}, CUDA and BLAS libraries match"
    shown = ", ".join(f"{k} {sa.get(k, 'absent')} → {sb.get(k, 'absent')}" for k in differing[:5])
    more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
    return False, shown + more


def compare_snapshots(a: Snapshot, b: Snapshot) -> Comparison:
    """explain's ranked findings, as the replay report's Comparison (their order kept)."""
    from envcap.explain import diff
    from envcap.explain.compare import show

    identical, note = stack_verdict(a, b)
    result = diff(a, b)
    differences = tuple(Difference(fact=f.fact, original=show(f.a), replay=show(f.b), severity=f.severity, why=f.why,
                                   mitigation=f.mitigation, rule=f.rule or None, reference=f.reference or None)
                        for f in result.findings)
    unknown = tuple(sorted(set(result.unknown_a) | set(result.unknown_b)))
    return Comparison(method="explain", differences=differences, stack_identical=identical, stack_note=note,
                      verdict=result.verdict, unknown=unknown)


# ---------------------------------------------------------------------------------------- outputs

def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.replace("**/", "")) for p in patterns)


def outputs_baseline(folder: Path, lock: Snapshot, patterns: Sequence[str], current: str
                     ) -> tuple[str | None, tuple[OutputFingerprint, ...], Path | None]:
    """What this replay's outputs are compared with: the native run in the lock, else the latest replay."""
    if lock.outputs:
        prints = tuple(fp for fp in lock.outputs if _matches(fp.path, patterns))
        if prints:
            return "the native run recorded by `envcap snapshot --outputs`", prints, folder / "outputs"
    replays = folder / REPLAYS
    if replays.is_dir():
        for entry in sorted((p for p in replays.iterdir() if p.is_dir() and p.name != current), reverse=True):
            try:
                data = json.loads((entry / "outputs.json").read_text("utf-8"))
                prints = tuple(from_json(OutputFingerprint, item) for item in data["files"])
            except (OSError, ValueError, KeyError, TypeError, ShapeError):
                continue
            prints = tuple(fp for fp in prints if _matches(fp.path, patterns))
            if prints:
                return f"the earlier replay {entry.name}", prints, entry / "outputs" / "run-1"
    return None, (), None


def fresh_outputs(patterns: Sequence[str], cwd: Path, since_ns: int
                  ) -> tuple[tuple[OutputFingerprint, ...], tuple[str, ...]]:
    """(files written since ``since_ns``, files that match but are older): an old file is not an output.

    Only the fresh files are hashed: old checkpoints that match a pattern can be gigabytes.
    """
    stale: list[str] = []

    def written_by_this_run(path: Path) -> bool:
        if path.stat().st_mtime_ns >= since_ns:
            return True
        stale.append(display_path(path, cwd))
        return False

    fresh = fingerprint(patterns, cwd, keep=written_by_this_run)
    return fresh, tuple(stale)


# ------------------------------------------------------------------------------ the native run

@dataclass(frozen=True)
class NativeRun:
    """``envcap snapshot --outputs ... -- CMD``: the workload run on the host, the replays' baseline."""

    exit_code: int
    outputs: tuple[OutputFingerprint, ...]
    not_rewritten: tuple[str, ...]
    precision: dict[str, Any] | None


def native_run(command: Sequence[str], *, patterns: Sequence[str], cwd: Path, copies_dir: Path,
               environ: Mapping[str, str] | None = None,
               runner: Callable[..., int] | None = None, stdout_to_stderr: bool = False) -> NativeRun:
    """Runs CMD on the host with the precision hook, then fingerprints (and copies) what it wrote.

    The copies in ``copies_dir`` are what a replay compares number by number; they are replaced
    only when the command succeeded, so a crashed run never becomes the baseline.
    """
    import shutil
    import tempfile

    from envcap._subprocess import RunFailed, call

    run_command = runner or call
    environ = dict(os.environ if environ is None else environ)
    with tempfile.TemporaryDirectory(prefix="envcap-hook-") as tmp:
        hook_dir = hook.install(Path(tmp))
        env = environ | hook.environment(str(hook_dir), environ.get("PYTHONPATH"))
        since = _fs_now(hook_dir)
        try:
            code = (run_command(list(command), cwd=str(cwd), env=env, stdout_to_stderr=True) if stdout_to_stderr
                    else run_command(list(command), cwd=str(cwd), env=env))
        except RunFailed as exc:
            raise UsageError(f"cannot run {command[0]!r}: {exc}.",
                             hint="check the command after --; it runs on this host, in the current folder") from None
        prints, stale = fresh_outputs(patterns, cwd, since) if patterns else ((), ())
        precision = hook.read_records(hook_dir)
    if code == 0 and patterns:
        shutil.rmtree(copies_dir, ignore_errors=True)
        keep_copies(prints, cwd, copies_dir)
    return NativeRun(exit_code=code, outputs=prints, not_rewritten=stale, precision=precision)


# ----------------------------------------------------------------------------------------- replay

def replay(request: ReplayRequest, *, engine: ContainerEngine, on_output: OutputCallback | None = None,
           host_gpu: Callable[[], Gpu] = _host_gpu_default, build_progress: Any = None) -> ReplayReport:
    """Runs the replay; returns the report (also when the workload fails) and saves it.

    Raises PreflightError, ReplayError or EngineUnavailable (with ``.report``, the partial report,
    already saved) when the replay itself cannot go on, and re-raises KeyboardInterrupt likewise.
    """
    if not request.command:
        raise UsageError("no command to replay was given.", hint="put it after --: envcap replay -- python train.py")
    if request.repeat < 1:
        raise UsageError(f"--repeat {request.repeat} must be at least 1.", hint="pass --repeat 2 to run twice")
    lock = load_lock(request.lock_dir)
    folder = lock_path(Path(request.lock_dir)).parent.absolute()  # bind mounts need absolute paths
    gpus = decide_gpus(request.gpus, lock)
    user = request.user or f"{os.getuid()}:{os.getgid()}"
    _check_user(user)
    engine.ping()
    replay_id = new_replay_id()
    state = _State(request=request, replay_id=replay_id, folder=folder, replay_dir=folder / REPLAYS / replay_id,
                   lock=lock, user=user, gpus=gpus)
    try:
        return _replay(state, engine, on_output, host_gpu, build_progress)
    except KeyboardInterrupt as exc:
        _sweep_containers(engine, replay_id)
        report = _save(state, status="interrupted", message="interrupted (Ctrl-C); the container was stopped.")
        attach_report(exc, report)
        raise
    except EnvcapError as exc:
        status = {10: "preflight-failed", 7: "engine-failed"}.get(exc.exit_code, "replay-failed")
        if report_of(exc) is None:
            attach_report(exc, _save(state, status=status, message=f"error: {exc.message}"))
        raise
    except OSError as exc:  # the replay's own files (its folder, the hook): one sentence, not a traceback
        error = OutputError(f"the replay could not write {exc.filename or 'its files'}: {exc.strerror or exc}.",
                            hint=f"check that {folder / REPLAYS} is a writable folder (remove a file in its way)")
        try:
            attach_report(error, _save(state, status="replay-failed", message=f"error: {error.message}"))
        except (OSError, EnvcapError):
            pass  # the folder that failed is the one the report would go to
        raise error from None


def _sweep_containers(engine: ContainerEngine, replay_id: str) -> None:
    """After Ctrl-C: remove what this replay started and a thread may not get to remove (a second
    Ctrl-C abandons the in-container probe's thread, whose own cleanup then never runs)."""
    try:
        for container_id in engine.containers(f"{REPLAY_LABEL}={replay_id}"):
            try:
                engine.remove_container(container_id)
            except (EnvcapError, KeyboardInterrupt):
                continue
    except (EnvcapError, KeyboardInterrupt):
        return


def attach_report(exc: BaseException, report: ReplayReport) -> None:
    """The partial report travels with the exception, so the CLI can still render and save it."""
    setattr(exc, "report", report)  # noqa: B010 - a dynamic attribute on a foreign exception type


def report_of(exc: BaseException) -> ReplayReport | None:
    found = getattr(exc, "report", None)
    return found if isinstance(found, ReplayReport) else None


def _check_user(user: str) -> None:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise UsageError(f"--user {user!r} is not UID:GID.", hint="pass numbers, for example --user 1000:1000")


def _replay(state: _State, engine: ContainerEngine, on_output: OutputCallback | None,
            host_gpu: Callable[[], Gpu], build_progress: Any) -> ReplayReport:
    request, lock = state.request, state.lock
    state.replay_dir.mkdir(parents=True, exist_ok=True)

    # 1. pre-flight, the part that needs no image: GPU runtime, GPUs, driver
    host: Gpu | None = None
    if state.gpus:
        runtime = check_gpu_runtime(gpus=True, engine_has_runtime=engine.gpu_runtime_available(),
                                    endpoint=engine.endpoint)
        host = host_gpu()
        state.checks = (runtime, check_gpus_present(gpus=True, host=host), check_driver(lock, host, gpus=True))
        _fail_fast(state)

    # 2. the image
    image, image_id, built, warnings = resolve_image(engine, request, lock, state.folder, build_progress)
    state.image, state.image_id, state.image_built = image, image_id, built
    state.warnings += warnings

    env, env_warnings = workload_env(lock, request.host_env)
    state.warnings += env_warnings
    cwd = str(request.cwd)
    base = RunSpec(image=image_id, command=request.command, workdir=cwd, user=state.user, env=env,
                   mounts=(Mount(cwd, cwd),), gpus=state.gpus, labels={REPLAY_LABEL: state.replay_id}, init=True)

    # 3. snapshot B, by the same probe: before the workload where the GPU check needs it, else beside it
    deep = lock.torch_runtime is not None or bool(lock.blas and lock.blas.threadpools is not None)
    probe = _ProbeJob(engine, base, deep=deep, image=image)
    if state.gpus:
        probe.run()
        state.replay_snapshot = probe.wait(state.warnings)
        # 4. pre-flight, the part that asks the image: GPU architectures
        arch_list: list[str] | None = None
        replay_snapshot = state.replay_snapshot
        if replay_snapshot is not None and replay_snapshot.torch_runtime is not None \
                and replay_snapshot.torch_runtime.arch_list is not None:
            arch_list = list(replay_snapshot.torch_runtime.arch_list)
        elif lock.distribution("torch") is not None:
            arch_list, problem = ask_arch_list(engine, base)
            if problem:
                state.warnings.append(problem)
        state.checks += (check_arch(host, arch_list, gpus=True),)
        _fail_fast(state)
    else:
        state.checks = (check_gpu_runtime(gpus=False, engine_has_runtime=False, endpoint=engine.endpoint),)
        probe.start()
    try:
        _run_workload(state, engine, base, env, on_output)
    finally:
        if state.replay_snapshot is None:
            state.replay_snapshot = probe.wait(state.warnings)
    last = state.runs[-1]
    status, message = describe_exit(last.exit_code, last.oom_killed, request.command, image)
    return _save(state, status=status, message=message)


def _run_workload(state: _State, engine: ContainerEngine, base: RunSpec, env: dict[str, str],
                  on_output: OutputCallback | None) -> None:
    request = state.request
    # 5. the workload, --repeat times
    pythonpath = env.get("PYTHONPATH")
    uid, _, gid = state.user.partition(":")
    for index in range(1, request.repeat + 1):
        hook_dir = hook.install(state.replay_dir / "hook" / f"run-{index}", uid=int(uid),
                                gid=int(gid) if gid else None)
        spec = replace(base, tty=request.tty, interactive=request.interactive,
                       mounts=base.mounts + (Mount(str(hook_dir), hook.MOUNT_TARGET),),
                       env=env | hook.environment(hook.MOUNT_TARGET, pythonpath))
        since = _fs_now(hook_dir)
        started = time.monotonic()
        state.runs.append(RunRecord(index=index, exit_code=None))  # replaced when the run ends
        printed = hashlib.sha256()
        result: RunResult = engine.run(spec, on_output=_tee(printed, on_output))
        prints, stale = fresh_outputs(request.outputs, request.cwd, since) if request.outputs else ((), ())
        if prints:
            keep_copies(prints, request.cwd, state.replay_dir / "outputs" / f"run-{index}")
        code = result.exit_code
        state.runs[-1] = RunRecord(index=index, exit_code=code,
                                   signal=signal_name(code - 128) if 128 < code <= 192 else None,
                                   oom_killed=result.oom_killed, seconds=time.monotonic() - started,
                                   outputs=prints, not_rewritten=stale, stdout_sha256=printed.hexdigest())
        if index == 1:
            state.precision = hook.read_records(hook_dir)
        if code != 0:
            break


def _fs_now(folder: Path) -> int:
    """The file system's idea of now, from a file written just before the run.

    Why not ``time.time_ns()``: the kernel stamps files with a coarse clock that can lag the precise
    one by a few milliseconds, so a file written right after the run started could look older.
    """
    marker = folder / ".started"
    marker.write_bytes(b"")
    return marker.stat().st_mtime_ns


def _tee(printed: Any, on_output: OutputCallback | None) -> OutputCallback:
    """Streams the workload's output on, hashing stdout so ``--repeat`` can say if the runs printed the same."""

    def tee(chunk: bytes, stream: OutputStream) -> None:
        if stream == "stdout":
            printed.update(chunk)
        if on_output is not None:
            on_output(chunk, stream)

    return tee


def _fail_fast(state: _State) -> None:
    error = first_failure(state.checks)
    if error is not None:
        attach_report(error, _save(state, status="preflight-failed", message=f"error: {error.message}"))
        raise error


def _finish_snapshot(state: _State) -> Snapshot | None:
    snapshot = state.replay_snapshot
    if snapshot is None:
        return None
    first = state.runs[0] if state.runs else None
    git = host_git(state.request.cwd) if state.lock.git is not None else None
    return replace(snapshot, git=git, precision=state.precision,
                   outputs=first.outputs if first and state.request.outputs else None).with_digest()


def _save(state: _State, *, status: str, message: str | None) -> ReplayReport:
    """Builds the report from whatever is known and writes B and the report; never raises for a write."""
    request = state.request
    snapshot = _finish_snapshot(state)
    comparison = compare_snapshots(state.lock, snapshot) if snapshot is not None else None
    outputs_section = None
    repeat_section = None
    first = state.runs[0] if state.runs and state.runs[0].exit_code is not None else None
    if request.outputs and first is not None:  # no finished run: nothing was written to compare
        baseline, prints, copies = outputs_baseline(state.folder, state.lock, request.outputs, state.replay_id)
        files: tuple[OutputComparison, ...] = compare_outputs(
            prints, first.outputs, baseline_copies=copies, current_copies=state.replay_dir / "outputs" / "run-1") \
            if baseline else compare_outputs((), first.outputs, baseline_copies=None, current_copies=None)
        outputs_section = OutputsSection(patterns=request.outputs, baseline=baseline, files=files)
    if request.repeat > 1:
        finished = [r for r in state.runs if r.exit_code is not None]
        pairs = tuple(RepeatPair(run=r.index, files=compare_outputs(
            finished[0].outputs, r.outputs, baseline_copies=state.replay_dir / "outputs" / "run-1",
            current_copies=state.replay_dir / "outputs" / f"run-{r.index}")) for r in finished[1:])
        identical: bool | None = None
        if len(finished) >= 2 and request.outputs and any(r.outputs for r in finished):
            identical = all(item.status == "same" for pair in pairs for item in pair.files)
        printed = {r.stdout_sha256 for r in finished}
        repeat_section = RepeatSection(runs=len(finished), identical=identical, pairs=pairs,
                                       stdout_identical=len(printed) == 1 if len(finished) >= 2 else None)
    exit_code = state.runs[-1].exit_code if state.runs else None
    saved = []
    report = ReplayReport(
        replay_id=state.replay_id, created_at=now_utc(), envcap_version=__version__, lock_dir=str(state.folder),
        replay_dir=str(state.replay_dir), lock_digest=state.lock.digest, command=request.command,
        workdir=str(request.cwd), user=state.user, gpus=state.gpus, status=status, image=state.image,
        image_id=state.image_id, image_built=state.image_built, exit_code=exit_code, message=message,
        preflight=state.checks, runs=tuple(state.runs), comparison=comparison, precision=state.precision,
        outputs=outputs_section, repeat=repeat_section, warnings=tuple(state.warnings))
    try:
        if snapshot is not None:
            atomic_write(state.replay_dir / "envcap.lock.json", dumps(snapshot))
            saved.append("envcap.lock.json")
        if state.runs and state.runs[0].outputs:
            atomic_write(state.replay_dir / "outputs.json", json.dumps(
                {"patterns": list(request.outputs), "files": to_json(list(state.runs[0].outputs))},
                indent=2, sort_keys=True) + "\n")
            saved.append("outputs.json")
        saved.append("report.json")
        report = replace(report, files=tuple(saved))
        atomic_write(state.replay_dir / "report.json", render_json(report))
    except EnvcapError as exc:
        report = replace(report, files=tuple(saved[:-1]),
                         warnings=report.warnings + (f"the report could not be saved: {exc.message}",))
    return report
