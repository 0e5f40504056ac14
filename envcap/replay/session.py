"""``envcap replay -- CMD``: run the workload again in the snapshot's image and say what is not the same.

The flow, each step in a module of its own so it can be tested against a fake engine:

1. load the lock; find its image (``image``: ``--image``, an earlier replay's, or a build);
2. pre-flight (GPU runtime, GPUs present, driver vs CUDA) before anything runs on GPUs;
3. the same stdlib probe that wrote the lock runs inside a container of the image: snapshot B
   (``container_probe``), beside the workload on CPU replays; there, when an earlier replay of the
   image with the same options kept what the probe read of it (``image_facts``), no probe container
   starts: the launcher reads the machine's sections in the workload's own container;
4. the architecture check, then the workload ``--repeat`` times (``run``);
5. outputs fingerprinted and compared (``outputs``); B compared with the lock by ``envcap.explain``;
6. B and the report are saved in ``DIR/replays/<id>/``, also when the workload crashes, the engine
   dies or Ctrl-C is pressed: the failure then travels as ``ReplayFailed``/``ReplayInterrupted``,
   carrying the partial report.

Library code: nothing here prints; the CLI renders the returned ``ReplayReport``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcap import __version__, _log, redact
from envcap._serde import ShapeError, from_json, to_json
from envcap.engine import ContainerEngine, Mount, OutputCallback, RunSpec
from envcap.engine.errors import EngineError
from envcap.engine.leftovers import sweep
from envcap.errors import EnvcapError, OutputError, PreflightError
from envcap.fs import atomic_write
from envcap.lock import Cpu, GitState, Gpu, Snapshot, dumps, load_lock, lock_path, now_utc
from envcap.lock.store import project_root
from envcap.probe.fingerprint import FingerprintRun, with_fingerprints
from envcap.replay import image_facts
from envcap.replay.container_probe import ProbeJob, ask_arch_list, snapshot_of
from envcap.replay.fingerprint import fingerprint_job
from envcap.replay.fingerprint import section as fingerprint_section
from envcap.replay.image import REPLAYS, ReplayImage, resolve_image
from envcap.replay.match import MatchPlan
from envcap.replay.match import host_cpu as match_host_cpu
from envcap.replay.match import plan as match_plan
from envcap.replay.outputs import outputs_section, repeat_section
from envcap.replay.preflight import (
    PreflightCheck,
    check_arch,
    check_driver,
    check_gpu_runtime,
    check_gpus_present,
    first_failure,
)
from envcap.replay.render import render_json
from envcap.replay.report import Comparison, Difference, ReplayReport, ReplayStatus, RunRecord
from envcap.replay.request import ReplayRequest, check_request, check_tree, decide_gpus, new_replay_id, parse_mount
from envcap.replay.run import (
    describe_exit,
    hook_folder,
    host_differences,
    missing_path_hint,
    run_once,
    workload_env,
)
from envcap.workload import hook

if TYPE_CHECKING:  # only a replay that must build its image loads the build's modules (see image.py)
    from envcap.build.inputs import BuildProgress

REPLAY_LABEL = "io.envcap.replay"
LOGGER = _log.get("replay")


class ReplayFailed(EnvcapError):
    """The replay could not go on; ``report`` is what was known by then, already saved.

    Why a wrapper: the CLI still prints the cause's sentence and exits with its code, and renders
    the partial report without fishing it off an exception attribute.
    """

    def __init__(self, cause: EnvcapError, report: ReplayReport) -> None:
        super().__init__(cause.message, cause.hint)
        self.cause = cause
        self.report = report
        self.exit_code = cause.exit_code


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a replay, with the partial report already saved."""

    def __init__(self, report: ReplayReport) -> None:
        super().__init__()
        self.report = report


@dataclass
class Evidence:
    """What a replay has found out so far, so a report can be saved at any point (also a partial one)."""

    request: ReplayRequest
    replay_id: str
    folder: Path
    lock: Snapshot
    user: str
    gpus: bool
    mounts: tuple[Mount, ...] = ()  # the project's folder (and here, if outside it), then --mount
    image: ReplayImage | None = None
    checks: tuple[PreflightCheck, ...] = ()
    runs: list[RunRecord] = field(default_factory=list)
    snapshot: Snapshot | None = None  # B, as probed in the image
    fingerprint: FingerprintRun | None = None  # B's numeric fingerprint, measured beside the workload
    match: MatchPlan | None = None  # --match: the variables that neutralise the host difference
    fingerprint_problem: str | None = None
    precision: dict[str, Any] | None = None
    modules: tuple[str, ...] | None = None  # the project files the workload imported (first run)
    warnings: list[str] = field(default_factory=list)

    @property
    def replay_dir(self) -> Path:
        return self.folder / REPLAYS / self.replay_id


def _host_gpu_default() -> Gpu:
    from envcap.replay.preflight import host_gpu

    return host_gpu()


def replay(request: ReplayRequest, *, engine: ContainerEngine, on_output: OutputCallback | None = None,
           host_gpu: Callable[[], Gpu] = _host_gpu_default,
           build_progress: BuildProgress | None = None, host_cpu: Callable[[], Cpu | None] = match_host_cpu) -> ReplayReport:
    """Runs the replay; returns the report (also when the workload fails) and saves it.

    Raises ReplayFailed (its ``cause`` a PreflightError, an EngineError or another EnvcapError)
    or ReplayInterrupted, each with the partial report saved, when the replay itself cannot go on.
    """
    check_request(request)
    lock = load_lock(request.lock_dir)
    folder = lock_path(Path(request.lock_dir)).parent.absolute()  # bind mounts need absolute paths
    evidence = Evidence(request=request, replay_id=new_replay_id(), folder=folder, lock=lock,
                        user=request.user or f"{os.getuid()}:{os.getgid()}", gpus=decide_gpus(request.gpus, lock),
                        mounts=replay_mounts(request, folder))
    engine.ping()
    sweep(engine)  # what a build or replay that died with this engine left there (one list call)
    try:
        return _replay(evidence, engine, on_output, host_gpu, build_progress, host_cpu)
    except KeyboardInterrupt:
        _sweep_containers(engine, evidence.replay_id)
        raise ReplayInterrupted(save(evidence, "interrupted", "interrupted (Ctrl-C); the container was stopped.")) \
            from None
    except EnvcapError as exc:
        raise ReplayFailed(exc, save(evidence, status_of(exc), f"error: {exc.message}")) from None
    except OSError as exc:  # the replay's own files (its folder, the hook): one sentence, not a traceback
        error = OutputError(f"the replay could not write {exc.filename or 'its files'}: {exc.strerror or exc}.",
                            hint=f"check that {folder / REPLAYS} is a writable folder (remove a file in its way)")
        raise ReplayFailed(error, save(evidence, "replay-failed", f"error: {error.message}")) from None


def replay_mounts(request: ReplayRequest, folder: Path) -> tuple[Mount, ...]:
    """The project's folder at its own path (so imports and relative paths work from any subfolder),
    here too when here is outside it, then what ``--mount`` adds."""
    cwd = request.cwd.absolute()
    root = project_root(cwd, folder)
    check_tree(root, request.allow_broad_mount)
    mounts = [Mount(str(root), str(root))]
    if cwd != root and root not in cwd.parents:
        check_tree(cwd, request.allow_broad_mount)
        mounts.append(Mount(str(cwd), str(cwd)))
    mounts += [parse_mount(spec, cwd) for spec in request.mounts]
    return tuple(mounts)


def status_of(error: EnvcapError) -> ReplayStatus:
    if isinstance(error, PreflightError):
        return "preflight-failed"
    if isinstance(error, EngineError):
        return "engine-failed"
    return "replay-failed"


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


def _replay(evidence: Evidence, engine: ContainerEngine, on_output: OutputCallback | None,
            host_gpu: Callable[[], Gpu], build_progress: BuildProgress | None,
            host_cpu: Callable[[], Cpu | None]) -> ReplayReport:
    request, lock = evidence.request, evidence.lock
    evidence.replay_dir.mkdir(parents=True, exist_ok=True)

    # 1. pre-flight, the part that needs no image: GPU runtime, GPUs, driver
    host: Gpu | None = None
    if evidence.gpus:
        runtime = check_gpu_runtime(gpus=True, engine_has_runtime=engine.gpu_runtime_available(),
                                    endpoint=engine.endpoint)
        host = host_gpu()
        evidence.checks = (runtime, check_gpus_present(gpus=True, host=host), check_driver(lock, host, gpus=True))
        _fail_fast(evidence)

    # 2. the image
    image = resolve_image(engine, lock, evidence.folder, image=request.image, base_image=request.base_image,
                          build_progress=build_progress)
    evidence.image = image
    evidence.warnings += image.warnings

    env, redacted = workload_env(lock, request.env)
    evidence.warnings += [f"{name} was redacted in the lock, so the replay runs without it; pass it with -e {name}"
                          for name in redacted]
    evidence.warnings += host_differences(lock, request.host_env, request.env)
    if request.match:  # the original's threads, ISA caps and TF32; the lock's and -e's variables always win
        evidence.match = match_plan(lock, host_cpu(), host if evidence.gpus else None)
        env |= {k: v for k, v in evidence.match.env.items() if k not in env}
    base = RunSpec(image=image.id, command=request.command, workdir=str(request.cwd), user=evidence.user, env=env,
                   mounts=evidence.mounts, gpus=evidence.gpus, labels={REPLAY_LABEL: evidence.replay_id}, init=True)

    # 3. snapshot B, by the same probe: before the workload where the GPU check needs it, else beside it, or
    #    the image's part as kept from an earlier replay and the machine's read by the workload's launcher
    deep = lock.torch_runtime is not None or bool(lock.blas and lock.blas.threadpools is not None)
    probe = ProbeJob(engine, base, deep=deep, image=image.reference)
    kept = image_facts.KeptFacts(key=None, facts=None)
    if evidence.gpus:
        probe.run()
        _take_probe(evidence, probe)
        # 4. pre-flight, the part that asks the image: GPU architectures
        evidence.checks += (check_arch(host, _arch_list(evidence, engine, base), gpus=True),)
        _fail_fast(evidence)
    else:
        evidence.checks = (check_gpu_runtime(gpus=False, engine_has_runtime=False, endpoint=engine.endpoint),)
        kept = image_facts.kept_facts(engine, base, image, deep=deep)
        if kept.facts is None:
            probe.start()
    stderr_tail = b""
    fingerprint = fingerprint_job(engine, base, image=image.reference) if wants_fingerprint(request, lock) else None
    if fingerprint is not None:
        fingerprint.start()
    try:
        for index in range(1, request.repeat + 1):
            evidence.runs.append(RunRecord(index=index, exit_code=None))  # replaced when the run ends
            outcome = run_once(engine, base, index=index, replay_dir=evidence.replay_dir, cwd=request.cwd,
                               patterns=request.outputs, user=evidence.user, tty=request.tty,
                               interactive=request.interactive, on_output=on_output,
                               project_root=evidence.mounts[0].source,
                               launcher=kept.launcher if index == 1 else None)
            evidence.runs[-1] = outcome.record
            stderr_tail = outcome.stderr_tail
            if index == 1:
                evidence.precision, evidence.modules = outcome.precision, outcome.modules
            if outcome.record.exit_code != 0:
                break
    finally:
        if evidence.snapshot is None and kept.facts is not None:
            _take_kept(evidence, kept)
        elif evidence.snapshot is None:
            _take_probe(evidence, probe)
            image_facts.keep(kept, probe, base)
        if fingerprint is not None:
            evidence.fingerprint, evidence.fingerprint_problem = fingerprint.wait()
    if evidence.snapshot is None and kept.facts is not None:  # the launcher read nothing: probe as before
        assert kept.key is not None
        image_facts.forget(kept.key)
        probe.run()
        _take_probe(evidence, probe)
    last = evidence.runs[-1]
    status, message = describe_exit(last.exit_code, last.oom_killed, request.command, image.reference)
    hint = missing_path_hint(stderr_tail, evidence.mounts) if last.exit_code else None
    if hint:
        message = f"{message} {hint[0].upper()}{hint[1:]}." if message else hint
    return save(evidence, status, message)


def wants_fingerprint(request: ReplayRequest, lock: Snapshot) -> bool:
    """``--fingerprint``/``--no-fingerprint``, else whenever the lock has one to compare with."""
    return request.fingerprint if request.fingerprint is not None else lock.fingerprints is not None


def _take_probe(evidence: Evidence, probe: ProbeJob) -> None:
    snapshot, problem = probe.snapshot()
    evidence.snapshot = snapshot
    if problem:
        evidence.warnings.append(problem)


def _take_kept(evidence: Evidence, kept: image_facts.KeptFacts) -> None:
    """Snapshot B from the kept image facts and what the launcher read of the machine in run 1 (if it did)."""
    assert kept.facts is not None
    host = hook.read_host_facts(hook_folder(evidence.replay_dir, 1))
    if host is None:
        return
    try:
        evidence.snapshot = snapshot_of(image_facts.with_host(kept.facts, host))
    except EnvcapError as exc:
        LOGGER.debug("the launcher's reading is unusable: %s", exc.message)


def _arch_list(evidence: Evidence, engine: ContainerEngine, base: RunSpec) -> list[str] | None:
    """What the framework in the image was built for: from the deep probe, else asked of torch."""
    replayed = evidence.snapshot
    if replayed is not None and replayed.torch_runtime is not None and replayed.torch_runtime.arch_list is not None:
        return list(replayed.torch_runtime.arch_list)
    if evidence.lock.distribution("torch") is None:
        return None
    arch_list, problem = ask_arch_list(engine, base)
    if problem:
        evidence.warnings.append(problem)
    return arch_list


def _fail_fast(evidence: Evidence) -> None:
    error = first_failure(evidence.checks)
    if error is not None:
        raise error


def host_git(cwd: Path, base: str | None = None, modules: tuple[str, ...] | None = None) -> GitState | None:
    """The work tree's git state now, read on the host (the container sees the same mounted files),
    measured against the snapshot's commit; ``modules``: did the workload import a changed file."""
    from envcap.probe._probe import git_facts

    facts = git_facts(str(cwd), base)
    if not isinstance(facts, dict):
        return None
    try:
        state = from_json(GitState, facts)
    except ShapeError:
        return None
    if modules is None:
        return state
    return replace(state, imports_changed=bool(set(state.changed_files) & set(modules)))


def _snapshot_b(evidence: Evidence) -> Snapshot | None:
    snapshot = evidence.snapshot
    if snapshot is None:
        return None
    first = evidence.runs[0] if evidence.runs else None
    lock_git = evidence.lock.git
    git = host_git(evidence.request.cwd, lock_git.commit, evidence.modules) if lock_git is not None else None
    if evidence.fingerprint is not None:
        snapshot = with_fingerprints(snapshot, evidence.fingerprint)
    return replace(snapshot, git=git, precision=evidence.precision,
                   outputs=first.outputs if first and evidence.request.outputs else None).with_digest()


def compare_snapshots(a: Snapshot, b: Snapshot) -> Comparison:
    """explain's ranked findings, as the replay report's Comparison (their order kept)."""
    from envcap.explain import diff
    from envcap.explain.compare import show
    from envcap.explain.stack import stack_verdict

    identical, note = stack_verdict(a, b)
    result = diff(a, b)
    differences = tuple(Difference(fact=f.fact, original=show(f.a), replay=show(f.b), severity=f.severity, why=f.why,
                                   mitigation=f.mitigation, rule=f.rule or None, reference=f.reference or None)
                        for f in result.findings)
    unknown = tuple(sorted(set(result.unknown_a) | set(result.unknown_b)))
    return Comparison(method="explain", differences=differences, stack_identical=identical, stack_note=note,
                      verdict=result.verdict, unknown=unknown)


def save(evidence: Evidence, status: ReplayStatus, message: str | None) -> ReplayReport:
    """Builds the report from whatever is known and writes B and the report; never raises for a write."""
    request = evidence.request
    snapshot = _snapshot_b(evidence)
    first = evidence.runs[0] if evidence.runs and evidence.runs[0].exit_code is not None else None
    image = evidence.image
    report = ReplayReport(
        replay_id=evidence.replay_id, created_at=now_utc(), envcap_version=__version__,
        lock_dir=str(evidence.folder), replay_dir=str(evidence.replay_dir), lock_digest=evidence.lock.digest,
        command=tuple(redact.argv(request.command)), workdir=str(request.cwd), user=evidence.user, gpus=evidence.gpus, status=status,
        image=image.reference if image else None, image_id=image.id if image else None,
        image_built=image.built if image else None,
        exit_code=evidence.runs[-1].exit_code if evidence.runs else None, message=message,
        preflight=evidence.checks, runs=tuple(evidence.runs),
        comparison=compare_snapshots(evidence.lock, snapshot) if snapshot is not None else None,
        precision=evidence.precision,
        outputs=outputs_section(evidence.folder, evidence.lock, request.outputs, evidence.replay_id, first,
                                evidence.replay_dir) if request.outputs and first is not None else None,
        repeat=repeat_section(evidence.runs, request.outputs, evidence.replay_dir) if request.repeat > 1 else None,
        fingerprint=fingerprint_section(evidence.lock.fingerprints, evidence.fingerprint, evidence.fingerprint_problem)
        if wants_fingerprint(request, evidence.lock) and evidence.runs else None,
        match=evidence.match,
        warnings=tuple(evidence.warnings))
    saved = []
    try:
        if snapshot is not None:
            atomic_write(evidence.replay_dir / "envcap.lock.json", dumps(snapshot))
            saved.append("envcap.lock.json")
        if evidence.runs and evidence.runs[0].outputs:
            atomic_write(evidence.replay_dir / "outputs.json", json.dumps(
                {"patterns": list(request.outputs), "files": to_json(list(evidence.runs[0].outputs))},
                indent=2, sort_keys=True) + "\n")
            saved.append("outputs.json")
        saved.append("report.json")
        report = replace(report, files=tuple(saved))
        atomic_write(evidence.replay_dir / "report.json", render_json(report))
    except EnvcapError as exc:
        report = replace(report, files=tuple(saved[:-1]),
                         warnings=report.warnings + (f"the report could not be saved: {exc.message}",))
    return report
