"""``envcap replay`` against the fake engine: what is sent to the engine, what is reported, what is saved.

The lock is a real snapshot of this test's own interpreter (the real probe, run once per module);
the "container" answers the probe with the same facts, edited where a test wants a difference. The
fake workload writes into the mounted working directory and the mounted hook folder, as a real
container would, so output fingerprints, stale-file detection and the precision hook are exercised.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from envcap.cli import main
from envcap.engine import RunResult, RunSpec
from envcap.errors import LockfileError, PreflightError, ReplayError, UsageError
from envcap.engine.errors import EngineUnavailable
from envcap.lock import Gpu, GpuDevice, OutputFingerprint, Snapshot, dumps, load_snapshot
from envcap.probe import probe_source, run_probe, snapshot_from_facts
from envcap.explain.stack import stack_verdict
from envcap.replay import (
    IMAGE_MEMO,
    REPLAY_LABEL,
    ReplayFailed,
    ReplayInterrupted,
    ReplayRequest,
    decide_gpus,
    describe_exit,
    replay,
    workload_env,
)
from envcap.replay.render import render_json, render_markdown, render_text
from envcap.workload import hook
from envcap.workload.outputs import keep_copies
from tests.fakes import FakeEngine

IMAGE = "envcap:replaytest"
IMAGE_ID = "sha256:" + "c" * 64


@pytest.fixture(scope="module")
def host_facts() -> dict[str, Any]:
    facts = run_probe(sys.executable)
    facts["env"] = {"OMP_NUM_THREADS": "2", "HF_TOKEN": "<redacted>", "CUDA_VISIBLE_DEVICES": "0"}
    return facts


def make_lock(folder: Path, facts: dict[str, Any], **changes: Any) -> Snapshot:
    snapshot = replace(snapshot_from_facts(facts, envcap_version="0.1.0", captured_at="2026-01-01T00:00:00Z"),
                       **changes).with_digest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "envcap.lock.json").write_text(dumps(snapshot))
    return snapshot


@dataclass
class Container:
    """The fake engine's answer to each run: the probe, the arch query, or one run of the workload."""

    probe_facts: dict[str, Any]
    exit_codes: list[int] = field(default_factory=lambda: [0])
    write: Callable[[Path, int], None] | None = None
    precision: dict[str, Any] | None = None
    modules: list[str] | None = None  # project files the workload "imports" (the hook's record)
    arch_list: list[str] | None = None
    fail_on_workload: BaseException | None = None
    workload_runs: list[RunSpec] = field(default_factory=list)
    # where the probe looked for distributions (--search-path): the image's own folders
    search_path: list[str] = field(default_factory=lambda: ["/usr/lib/python3.11", "/opt/venv/lib/python3.11"])
    machine: dict[str, Any] | None = None  # what the launcher reads of the machine (default: the probe's os/cpu/gpu)
    launcher_reads: bool = True  # False: a launcher that wrote nothing
    probe_runs: int = 0

    def __call__(self, spec: RunSpec) -> RunResult:
        if spec.command[:2] == ("python3", "-"):
            assert spec.stdin_data == probe_source().encode()
            self.probe_runs += 1
            facts = dict(self.probe_facts) | ({"search_path": self.search_path} if "--search-path" in spec.command
                                              else {})
            return RunResult(0, stdout=json.dumps(facts).encode())
        if spec.command[:2] == ("python3", "-c"):
            return RunResult(0, stdout=(json.dumps(self.arch_list) + "\n").encode())
        self.workload_runs.append(spec)
        hook_mount = next(m for m in spec.mounts if m.target == hook.MOUNT_TARGET)
        if spec.entrypoint is not None and self.launcher_reads:  # the launcher reads the machine, then runs it
            machine = self.machine or {name: self.probe_facts[name] for name in ("os", "cpu", "gpu")}
            Path(hook_mount.source, hook.HOST_FACTS).write_text(json.dumps(machine | {"unavailable": []}))
        if self.fail_on_workload is not None:
            raise self.fail_on_workload
        index = len(self.workload_runs)
        if self.write is not None:
            self.write(Path(spec.workdir or "/"), index)
        if self.precision is not None or self.modules is not None:
            Path(hook_mount.source, "precision-7.json").write_text(
                json.dumps({"pid": 7, "ppid": 1, "argv": [], "flags": self.precision or {},
                            "modules": self.modules or []}))
        code = self.exit_codes[min(index, len(self.exit_codes)) - 1]
        return RunResult(code, oom_killed=code == 137)


def engine_for(container: Container, *, labels: dict[str, str] | None = None) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(IMAGE, IMAGE_ID, labels=labels or {})
    engine.on_run = container
    return engine


def request(tmp_path: Path, **changes: Any) -> ReplayRequest:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    base = ReplayRequest(lock_dir=tmp_path / "lock", command=("python", "train.py"), cwd=work, image=IMAGE,
                         host_env={"HF_TOKEN": "secret-from-the-shell"}, env={"SEED": "7"})
    return replace(base, **changes)


def image_facts(facts: dict[str, Any], python_version: str = "3.11.2") -> dict[str, Any]:
    inside = json.loads(json.dumps(facts))
    inside["python"]["version"] = python_version
    return inside


def no_gpu() -> Gpu:
    return Gpu(status="no-driver", reason="NVML could not start: driver not loaded")


# ------------------------------------------------------------------------------------------- runs

def test_replay_runs_workload_as_the_user_in_the_mounted_tree(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    lock = make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts))
    engine = engine_for(container, labels={"io.envcap.lock-digest": lock.digest or ""})
    req = request(tmp_path, user="1000:1000")
    report = replay(req, engine=engine, host_gpu=no_gpu)

    assert report.status == "ok" and report.exit_code == 0 and report.message is None
    (probe_spec,) = [r for r in engine.runs if r.command[:2] == ("python3", "-")]  # in a thread, beside it
    assert probe_spec.command[:3] == ("python3", "-", "--skip-git")
    assert len(engine.runs) == 2
    (spec,) = container.workload_runs
    assert spec.image == IMAGE_ID and spec.command == ("python", "train.py")
    assert spec.workdir == str(req.cwd) and spec.user == "1000:1000"
    assert spec.init is True and spec.gpus is False
    assert spec.labels == {REPLAY_LABEL: report.replay_id}
    mounts = {m.target: m.source for m in spec.mounts}
    assert mounts[str(tmp_path)] == str(tmp_path)  # the project (the lock's folder's parent), here inside it
    assert Path(mounts[hook.MOUNT_TARGET], "sitecustomize.py").is_file()
    assert spec.env["OMP_NUM_THREADS"] == "2"
    assert "HF_TOKEN" not in spec.env  # the lock redacted it; the shell's value is never filled in by name
    assert spec.env["SEED"] == "7"  # -e SEED=7
    assert "CUDA_VISIBLE_DEVICES" not in spec.env
    assert spec.env["HOME"] == "/tmp"
    assert spec.env["PYTHONPATH"] == hook.MOUNT_TARGET and spec.env[hook.OUT_ENV] == hook.MOUNT_TARGET
    assert hook.OUT_ENV not in probe_spec.env  # the probe is not the workload
    assert report.warnings == ("HF_TOKEN was redacted in the lock, so the replay runs without it; pass it with "
                               "-e HF_TOKEN",)


def test_report_shows_python_patch_difference_and_saves_both_files(tmp_path: Path,
                                                                   host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    report = replay(request(tmp_path), engine=engine_for(Container(image_facts(host_facts, "3.11.2"))),
                    host_gpu=no_gpu)
    assert report.comparison is not None
    facts = {d.fact: d for d in report.comparison.differences}
    assert facts["python.version"].replay == "3.11.2"
    assert facts["python.version"].original == host_facts["python"]["version"]
    assert report.comparison.stack_identical is False
    saved = Path(report.replay_dir)
    assert saved.parent == (tmp_path / "lock" / "replays").absolute()
    replayed = load_snapshot(saved)
    assert replayed.python is not None and replayed.python.version == "3.11.2"
    document = json.loads((saved / "report.json").read_text())
    assert document["status"] == "ok" and document["replay_id"] == report.replay_id
    assert set(report.files) == {"envcap.lock.json", "report.json"}
    assert "python.version" in render_text(report)


def test_identical_stack_gets_an_explicit_line(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    report = replay(request(tmp_path), engine=engine_for(Container(host_facts)), host_gpu=no_gpu)
    assert report.comparison is not None and report.comparison.stack_identical is True
    assert "The software stack is identical" in render_text(report)
    assert "**The software stack is identical**" in render_markdown(report)


@pytest.mark.parametrize(("code", "status", "needle"), [
    (3, "workload-failed", "exited with status 3"),
    (127, "command-not-found", "was not found inside the image"),
    (143, "workload-failed", "killed by SIGTERM (exit 143)"),
    (137, "workload-failed", "SIGKILL by the kernel's out-of-memory killer"),
])
def test_exit_code_passes_through_with_a_sentence(tmp_path: Path, host_facts: dict[str, Any], code: int,
                                                  status: str, needle: str) -> None:
    make_lock(tmp_path / "lock", host_facts)
    report = replay(request(tmp_path), engine=engine_for(Container(host_facts, exit_codes=[code])), host_gpu=no_gpu)
    assert report.exit_code == code and report.status == status
    assert report.message is not None and needle in report.message
    assert (Path(report.replay_dir) / "report.json").is_file()
    assert (Path(report.replay_dir) / "envcap.lock.json").is_file()


def test_precision_flags_from_the_hook_land_in_the_replay_snapshot(tmp_path: Path,
                                                                   host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    flags = {"torch.backends.cudnn.benchmark": True, "torch.float32_matmul_precision": "high"}
    report = replay(request(tmp_path), engine=engine_for(Container(host_facts, precision=flags)), host_gpu=no_gpu)
    assert report.precision == flags
    assert load_snapshot(Path(report.replay_dir)).precision == flags
    assert "torch.float32_matmul_precision = high" in render_text(report)


# ----------------------------------------------------------------------------------------- faults

def test_missing_image_is_a_replay_error_with_the_partial_report_saved(tmp_path: Path,
                                                                       host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    with pytest.raises(ReplayFailed) as caught:
        replay(request(tmp_path, image="nope:1"), engine=engine_for(Container(host_facts)), host_gpu=no_gpu)
    assert isinstance(caught.value.cause, ReplayError)
    assert "has no image nope:1" in caught.value.message and "docker pull" in (caught.value.hint or "")
    partial = caught.value.report
    assert partial is not None and partial.status == "replay-failed"
    assert json.loads((Path(partial.replay_dir) / "report.json").read_text())["status"] == "replay-failed"


def test_no_snapshot_is_a_lockfile_error(tmp_path: Path) -> None:
    with pytest.raises(LockfileError):
        replay(request(tmp_path), engine=FakeEngine(), host_gpu=no_gpu)


def test_engine_dying_mid_run_keeps_the_probe_snapshot_and_report(tmp_path: Path,
                                                                  host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    dead = EngineUnavailable("cannot reach the container engine at fake://engine: connection reset.")
    engine = engine_for(Container(image_facts(host_facts), fail_on_workload=dead))
    with pytest.raises(ReplayFailed) as caught:
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert isinstance(caught.value.cause, EngineUnavailable) and caught.value.exit_code == 7
    partial = caught.value.report
    assert partial is not None and partial.status == "engine-failed"
    assert partial.runs[0].exit_code is None
    assert partial.comparison is not None  # the probe ran before the workload: B is compared anyway
    assert (Path(partial.replay_dir) / "envcap.lock.json").is_file()


def test_ctrl_c_saves_the_partial_report_and_propagates(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts, fail_on_workload=KeyboardInterrupt()))
    with pytest.raises(ReplayInterrupted) as caught:
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    partial = caught.value.report
    assert partial is not None and partial.status == "interrupted"
    assert (Path(partial.replay_dir) / "report.json").is_file()


def test_usage_errors(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts))
    with pytest.raises(UsageError):
        replay(request(tmp_path, command=()), engine=engine, host_gpu=no_gpu)
    with pytest.raises(UsageError):
        replay(request(tmp_path, repeat=0), engine=engine, host_gpu=no_gpu)
    with pytest.raises(UsageError):
        replay(request(tmp_path, user="alice"), engine=engine, host_gpu=no_gpu)
    with pytest.raises(UsageError):
        decide_gpus("some", Snapshot())
    assert engine.runs == []


def test_image_from_another_lock_is_used_with_a_warning(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts), labels={"io.envcap.lock-digest": "sha256:" + "0" * 64})
    report = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert any("built from another lock" in w for w in report.warnings)


def test_the_image_an_earlier_replay_used_is_found_without_building(tmp_path: Path,
                                                                     host_facts: dict[str, Any]) -> None:
    lock = make_lock(tmp_path / "lock", host_facts)
    memo = tmp_path / "lock" / "replays" / IMAGE_MEMO
    memo.parent.mkdir(parents=True)
    memo.write_text(json.dumps({"lock_digest": lock.digest, "image_id": IMAGE_ID, "tag": IMAGE, "base_image": None}))
    engine = engine_for(Container(host_facts))
    report = replay(request(tmp_path, image=None), engine=engine, host_gpu=no_gpu)
    assert report.image == IMAGE and report.image_built is False
    assert engine.builds == []


# -------------------------------------------------------------------------------------------- GPUs

def gpu_lock_changes() -> dict[str, Any]:
    from envcap.lock import CudaComponent, CudaStack, TorchBuild

    return {"gpu": Gpu(status="ok", driver_version="550.54.15", cuda_driver_version="12.4",
                       devices=(GpuDevice(0, "NVIDIA A100-SXM4-80GB", "8.0"),)),
            "cuda": CudaStack(components={"cuda_runtime": CudaComponent("12.4.127", "pip")},
                              torch=TorchBuild(version="2.5.1", cuda="12.4"))}


def a100(driver: str = "550.54.15") -> Gpu:
    return Gpu(status="ok", driver_version=driver, cuda_driver_version="12.4",
               devices=(GpuDevice(0, "NVIDIA A100-SXM4-80GB", "8.0"),))


def test_gpus_needed_without_gpu_runtime_fails_before_anything_runs(tmp_path: Path,
                                                                     host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts, **gpu_lock_changes())
    engine = engine_for(Container(host_facts))
    with pytest.raises(ReplayFailed) as caught:
        replay(request(tmp_path), engine=engine, host_gpu=a100)
    assert isinstance(caught.value.cause, PreflightError)
    assert "no GPU runtime" in caught.value.message and caught.value.exit_code == 10
    assert engine.runs == []
    partial = caught.value.report
    assert partial is not None and partial.status == "preflight-failed"
    assert (Path(partial.replay_dir) / "report.json").is_file()


def test_old_driver_fails_preflight(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts, **gpu_lock_changes())
    engine = engine_for(Container(host_facts))
    engine.gpu_runtime = True
    with pytest.raises(ReplayFailed) as caught:
        replay(request(tmp_path), engine=engine, host_gpu=lambda: a100("470.82.01"))
    assert isinstance(caught.value.cause, PreflightError)
    assert "470.82.01" in caught.value.message and "12.4.127" in caught.value.message
    assert engine.runs == []


def test_gpu_arch_is_asked_of_torch_in_the_image(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    facts = json.loads(json.dumps(host_facts))
    facts["distributions"].append({"name": "torch", "version": "2.5.1"})
    make_lock(tmp_path / "lock", facts, **gpu_lock_changes())
    container = Container(facts, arch_list=["sm_50", "sm_60", "sm_70"])
    engine = engine_for(container)
    engine.gpu_runtime = True
    with pytest.raises(ReplayFailed) as caught:
        replay(request(tmp_path), engine=engine, host_gpu=a100)
    assert isinstance(caught.value.cause, PreflightError)
    assert "compute capability 8.0" in caught.value.message and "sm_50 sm_60 sm_70" in caught.value.message
    assert container.workload_runs == []
    arch_query = engine.runs[-1]
    assert arch_query.command[:2] == ("python3", "-c") and "get_arch_list" in arch_query.command[2]

    container.arch_list = ["sm_80", "sm_90"]
    report = replay(request(tmp_path), engine=engine, host_gpu=a100)
    assert report.status == "ok" and container.workload_runs[-1].gpus is True
    assert [c.status for c in report.preflight] == ["ok", "ok", "ok", "ok"]


def test_gpus_none_replays_a_gpu_lock_on_the_cpu(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts, **gpu_lock_changes())
    container = Container(host_facts)
    report = replay(request(tmp_path, gpus="none"), engine=engine_for(container), host_gpu=no_gpu)
    assert report.status == "ok" and container.workload_runs[0].gpus is False


# ----------------------------------------------------------------------------------------- outputs

def writer(values: Callable[[int], str]) -> Callable[[Path, int], None]:
    def write(cwd: Path, index: int) -> None:
        (cwd / "out").mkdir(exist_ok=True)
        (cwd / "out" / "metrics.json").write_text(values(index))

    return write


def test_outputs_compared_with_the_native_run_number_by_number(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    native = work / "out" / "metrics.json"
    native.write_text('{"loss": 0.5, "weights": [1.0, 2.0]}')
    prints = (OutputFingerprint("out/metrics.json", hashlib.sha256(native.read_bytes()).hexdigest(),
                                native.stat().st_size),)
    keep_copies(prints, work, tmp_path / "lock" / "outputs")
    make_lock(tmp_path / "lock", host_facts, outputs=prints)
    container = Container(host_facts, write=writer(lambda i: '{"loss": 0.5000002, "weights": [1.0, 2.0]}'))
    report = replay(request(tmp_path, outputs=("out/*.json",)), engine=engine_for(container), host_gpu=no_gpu)
    assert report.outputs is not None and "envcap snapshot --outputs" in (report.outputs.baseline or "")
    (item,) = report.outputs.files
    assert item.status == "differs" and item.numeric is not None
    assert item.numeric.at == "loss" and item.numeric.max_abs == pytest.approx(2e-7)
    assert "max abs 2e-07 at loss" in render_text(report)
    assert load_snapshot(Path(report.replay_dir)).outputs == report.runs[0].outputs


def test_outputs_of_an_earlier_replay_are_the_next_baseline(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts, write=writer(lambda i: '{"loss": 1.0}')))
    first = replay(request(tmp_path, outputs=("out/*.json",)), engine=engine, host_gpu=no_gpu)
    assert first.outputs is not None and first.outputs.baseline is None
    assert [f.path for f in first.outputs.files] == ["out/metrics.json"]
    second = replay(request(tmp_path, outputs=("out/*.json",)), engine=engine, host_gpu=no_gpu)
    assert second.outputs is not None and second.outputs.baseline == f"the earlier replay {first.replay_id}"
    assert [f.status for f in second.outputs.files] == ["same"]


def test_a_file_the_run_did_not_write_is_not_taken_as_its_output(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    old = tmp_path / "work" / "out" / "metrics.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    report = replay(request(tmp_path, outputs=("out/*.json",)),
                    engine=engine_for(Container(host_facts, exit_codes=[1])), host_gpu=no_gpu)
    assert report.runs[0].outputs == () and report.runs[0].not_rewritten == ("out/metrics.json",)
    assert "was not written by the replay" in render_text(report)


def test_repeat_detects_a_nondeterministic_output(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(host_facts, write=writer(lambda i: json.dumps({"loss": 1.0 + i * 1e-9})))
    report = replay(request(tmp_path, outputs=("out/*.json",), repeat=3), engine=engine_for(container),
                    host_gpu=no_gpu)
    assert len(container.workload_runs) == 3
    assert report.repeat is not None and report.repeat.runs == 3 and report.repeat.identical is False
    assert [p.run for p in report.repeat.pairs] == [2, 3]
    assert report.repeat.pairs[1].files[0].numeric is not None
    assert report.repeat.pairs[1].files[0].numeric.max_abs == pytest.approx(2e-9)
    assert "not deterministic" in render_text(report)


def test_repeat_of_a_deterministic_workload_says_identical(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(host_facts, write=writer(lambda i: '{"loss": 1.0}'))
    report = replay(request(tmp_path, outputs=("out/*.json",), repeat=2), engine=engine_for(container),
                    host_gpu=no_gpu)
    assert report.repeat is not None and report.repeat.identical is True
    assert report.repeat.stdout_identical is True


def test_repeat_stops_at_the_first_failing_run(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(host_facts, exit_codes=[0, 2, 0])
    report = replay(request(tmp_path, repeat=3), engine=engine_for(container), host_gpu=no_gpu)
    assert len(container.workload_runs) == 2 and report.exit_code == 2


# -------------------------------------------------------------------------------------- comparison

def test_stack_verdict_names_what_differs(host_facts: dict[str, Any]) -> None:
    a = snapshot_from_facts(host_facts)
    same, note = stack_verdict(a, a)
    assert same is True and "distributions" in note
    differs, note = stack_verdict(a, snapshot_from_facts(image_facts(host_facts, "3.11.2")))
    assert differs is False and "python" in note and "3.11.2" in note
    assert stack_verdict(a, None)[0] is None


def test_workload_env_skips_device_vars_and_never_passes_a_redacted_marker() -> None:
    lock = Snapshot(env={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "1", "WANDB_API_KEY": "<redacted>",
                         "LANG": "C.UTF-8"})
    env, redacted = workload_env(lock, {})
    assert env["OMP_NUM_THREADS"] == "1" and env["LANG"] == "C.UTF-8"
    assert "CUDA_VISIBLE_DEVICES" not in env and "WANDB_API_KEY" not in env
    assert redacted == ["WANDB_API_KEY"]
    env, redacted = workload_env(lock, {"WANDB_API_KEY": "given-with-e", "OMP_NUM_THREADS": "8"})
    assert env["WANDB_API_KEY"] == "given-with-e" and env["OMP_NUM_THREADS"] == "8" and redacted == []


def test_describe_exit_unknown_signal_and_none() -> None:
    assert describe_exit(None, False, ("x",), "img")[0] == "engine-failed"
    assert describe_exit(0, False, ("x",), "img") == ("ok", None)
    assert "exit 126" in (describe_exit(126, False, ("x",), "img")[1] or "")


# --------------------------------------------------------------------------------------------- CLI

def test_cli_exit_code_report_files_and_streamed_output(tmp_path: Path, host_facts: dict[str, Any], cli: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts, exit_codes=[3]))
    engine.run_output = [(b"epoch 1\n", "stdout"), (b"warning\n", "stderr")]
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["replay", str(tmp_path / "lock"), "--image", IMAGE, "--report", "r.json",
                               "--markdown", "r.md", "--", "python", "train.py", "--epochs", "3"],
                        obj={"engine": engine})
    assert result.exit_code == 3, result.output
    assert result.stdout == "epoch 1\n"
    assert "warning\n" in result.stderr and "exited with status 3" in result.stderr
    assert "Differences from the snapshot" in result.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["format"] == 1 and document["exit_code"] == 3
    assert document["command"] == ["python", "train.py", "--epochs", "3"]
    assert "### envcap replay" in (tmp_path / "r.md").read_text()


def test_cli_without_command_is_a_usage_error(tmp_path: Path, cli: Any) -> None:
    result = cli.invoke(main, ["replay", str(tmp_path)], obj={"engine": FakeEngine()})
    assert result.exit_code == 2 and "no command to replay" in result.stderr


def test_cli_preflight_failure_writes_partial_report(tmp_path: Path, host_facts: dict[str, Any], cli: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_lock(tmp_path / "lock", host_facts, **gpu_lock_changes())
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["replay", str(tmp_path / "lock"), "--image", IMAGE, "--gpus", "all",
                               "--report", "r.json", "--", "true"], obj={"engine": engine_for(Container(host_facts))})
    assert result.exit_code == 10
    assert "error: pre-flight check failed" in result.stderr and "hint:" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "preflight-failed"


# ---------------------------------------------------------------------------------- JSON contract

REPORT_KEYS = {"format", "kind", "replay_id", "created_at", "envcap_version", "lock_dir", "replay_dir", "lock_digest",
               "command", "workdir", "user", "gpus", "status", "image", "image_id", "image_built", "exit_code",
               "message", "preflight", "runs", "comparison", "precision", "outputs", "repeat", "warnings", "files",
               "fingerprint", "match"}


def test_report_json_contract(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts), write=writer(lambda i: f'{{"x": {i}}}'))
    report = replay(request(tmp_path, outputs=("out/*",), repeat=2), engine=engine_for(container), host_gpu=no_gpu)
    document = json.loads(render_json(report))
    assert set(document) == REPORT_KEYS
    assert document["kind"] == "replay-report"
    assert set(document["runs"][0]) == {"index", "exit_code", "signal", "oom_killed", "seconds", "outputs",
                                        "not_rewritten", "stdout_sha256"}
    assert set(document["comparison"]) == {"method", "differences", "stack_identical", "stack_note", "verdict",
                                           "unknown", "note"}
    assert set(document["comparison"]["differences"][0]) == {"fact", "original", "replay", "severity", "why",
                                                             "mitigation", "rule", "reference"}
    assert set(document["repeat"]) == {"runs", "identical", "pairs", "stdout_identical"}
    assert set(document["outputs"]) == {"patterns", "baseline", "files"}


def test_the_image_envcap_build_made_is_found_by_the_lock_label(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    lock = make_lock(tmp_path / "lock", host_facts)
    engine = FakeEngine()
    engine.add_image("envcap:other", "sha256:" + "e" * 64, labels={"io.envcap.lock-digest": "sha256:" + "0" * 64})
    engine.add_image("envcap:built", IMAGE_ID, labels={"io.envcap.lock-digest": lock.digest or ""})
    engine.on_run = Container(host_facts)
    report = replay(request(tmp_path, image=None), engine=engine, host_gpu=no_gpu)
    assert (report.image, report.image_id, report.image_built) == ("envcap:built", IMAGE_ID, False)
    assert engine.builds == [] and engine.runs[-1].image == IMAGE_ID
    memo = json.loads((tmp_path / "lock" / "replays" / IMAGE_MEMO).read_text())
    assert memo["image_id"] == IMAGE_ID


def test_replay_ids_sort_in_time_order_within_one_second() -> None:
    """Reports are found as 'the newest folder': ids made in the same second must sort by time."""
    import datetime as dt

    from envcap.replay import new_replay_id

    base = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    ids = [new_replay_id(base + dt.timedelta(microseconds=step)) for step in (900_000, 5, 400_000, 0)]
    assert sorted(ids) == [ids[3], ids[1], ids[2], ids[0]]


def test_a_lock_edited_by_hand_does_not_reuse_the_old_image(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    """The memo and image labels follow the lock's content: an edited lock means another image."""
    from envcap.engine.errors import ImagePullFailed

    lock = make_lock(tmp_path / "lock", host_facts)
    memo = tmp_path / "lock" / "replays" / IMAGE_MEMO
    memo.parent.mkdir(parents=True)
    memo.write_text(json.dumps({"lock_digest": lock.digest, "image_id": IMAGE_ID, "tag": IMAGE, "base_image": None}))
    path = tmp_path / "lock" / "envcap.lock.json"
    edited = json.loads(path.read_text())
    edited["env"] = {"OMP_NUM_THREADS": "1"}  # the stored digest is left as it was
    path.write_text(json.dumps(edited))
    engine = engine_for(Container(host_facts))
    with pytest.raises(ReplayFailed, match="cannot pull the base image") as caught:  # it went on to build
        replay(request(tmp_path, image=None), engine=engine, host_gpu=no_gpu)
    assert isinstance(caught.value.cause, ImagePullFailed)
    assert engine.builds == []


def test_a_file_where_the_replays_folder_should_be_is_one_error(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    from envcap.errors import OutputError

    make_lock(tmp_path / "lock", host_facts)
    (tmp_path / "lock" / "replays").write_text("in the way")
    engine = engine_for(Container(host_facts))
    with pytest.raises(ReplayFailed, match="could not write") as caught:
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert isinstance(caught.value.cause, OutputError) and caught.value.exit_code == OutputError.exit_code


def test_ctrl_c_sweeps_containers_a_thread_left_behind(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    """A second Ctrl-C abandons the probe's thread; the replay removes its containers by label."""
    make_lock(tmp_path / "lock", host_facts)
    container = Container(host_facts, fail_on_workload=KeyboardInterrupt())
    engine = engine_for(container)
    original = engine.on_run

    def leave_one_behind(spec: RunSpec) -> RunResult:
        if spec.command[:2] != ("python3", "-"):  # the workload: as if the probe's thread died mid-run
            engine.live_containers["abandoned-probe"] = dict(spec.labels)
        return original(spec)

    engine.on_run = leave_one_behind
    with pytest.raises(KeyboardInterrupt):
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert "abandoned-probe" in engine.removed
    assert engine.containers(REPLAY_LABEL) == []


# ----------------------------------------------------------------------------------- project reach

def test_a_replay_from_a_subfolder_mounts_the_project_and_keeps_the_working_directory(
        tmp_path: Path, host_facts: dict[str, Any], cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10: .envcap/ found upward, the project root mounted, --mount and -e reach the workload."""
    project = tmp_path / "project"
    make_lock(project / ".envcap", host_facts)
    (project / ".git").mkdir()
    sub = project / "src" / "exp"
    sub.mkdir(parents=True)
    data = tmp_path / "datasets" / "mnist"
    data.mkdir(parents=True)
    container = Container(host_facts)
    engine = engine_for(container)
    monkeypatch.chdir(sub)
    monkeypatch.setenv("SEED", "7")
    result = cli.invoke(main, ["replay", "--image", IMAGE, "--mount", f"{data}:/data:ro", "-e", "SEED",
                               "-e", "LR=0.1", "--", "python", "train.py"], obj={"engine": engine})
    assert result.exit_code == 0, result.output
    (spec,) = container.workload_runs
    mounts = {m.target: (m.source, m.read_only) for m in spec.mounts}
    assert mounts[str(project)] == (str(project), False)
    assert mounts["/data"] == (str(data), True)
    assert spec.workdir == str(sub)
    assert spec.env["SEED"] == "7" and spec.env["LR"] == "0.1"


def test_the_home_folder_or_root_is_not_mounted_unless_asked(tmp_path: Path, host_facts: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_lock(tmp_path / "lock", host_facts)
    monkeypatch.setenv("HOME", str(tmp_path / "work"))
    engine = engine_for(Container(host_facts))
    with pytest.raises(UsageError, match="read-write into the container"):
        replay(replace(request(tmp_path), cwd=Path("/")), engine=engine, host_gpu=no_gpu)
    assert replay(replace(request(tmp_path), cwd=Path("/"), allow_broad_mount=True), engine=engine,
                  host_gpu=no_gpu).status == "ok"


@pytest.mark.parametrize("spec", ["", "a:b:c:d", "/nonexistent-envcap-path", ".:relative/target"])
def test_bad_mounts_are_one_sentence(tmp_path: Path, host_facts: dict[str, Any], spec: str) -> None:
    make_lock(tmp_path / "lock", host_facts)
    with pytest.raises(UsageError, match="--mount"):
        replay(request(tmp_path, mounts=(spec,)), engine=engine_for(Container(host_facts)), host_gpu=no_gpu)


def test_a_workload_that_dies_on_a_path_outside_the_mounts_is_told_which_mount(
        tmp_path: Path, host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    dataset = tmp_path.parent / f"{tmp_path.name}-data"
    dataset.mkdir()
    (dataset / "train.csv").write_text("1,2\n")
    engine = engine_for(Container(host_facts, exit_codes=[1]))
    engine.run_output = [(f"FileNotFoundError: [Errno 2] No such file or directory: '{dataset}/train.csv'\n"
                          .encode(), "stderr")]
    report = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert report.status == "workload-failed"
    assert f"pass --mount {dataset}" in (report.message or "")
    engine.run_output = [(b"FileNotFoundError: No such file or directory: '" + str(tmp_path / "work" / "x").encode()
                          + b"'\n", "stderr")]
    report = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert "--mount" not in (report.message or "")  # inside the project: mounted already, no hint


# ------------------------------------------------------------------------------------- the code

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, host_facts: dict[str, Any]) -> Path:
    """A git project whose snapshot (.envcap/) was then committed, as users do."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("import model\n")
    (root / "model.py").write_text("W = 1\n")
    (root / "README.md").write_text("hello\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "code")
    from envcap.probe._probe import git_facts

    facts = dict(host_facts, git=git_facts(str(root)))
    make_lock(root / ".envcap", facts)
    git(root, "add", ".envcap")
    git(root, "commit", "-q", "-m", "the snapshot")
    return root


def test_a_committed_snapshot_folder_is_not_blamed(project: Path, host_facts: dict[str, Any]) -> None:
    engine = engine_for(Container(host_facts, modules=["train.py", "model.py"]))
    report = replay(replace(request(project), lock_dir=project / ".envcap", cwd=project), engine=engine,
                    host_gpu=no_gpu)
    assert report.comparison is not None
    code = [d for d in report.comparison.differences if d.fact.startswith("git.")]
    assert all(d.severity == "info" for d in code), code  # the new commit only added .envcap/
    assert "git." not in (report.comparison.verdict or "")


def test_an_edit_to_an_imported_file_is_high_and_named(project: Path, host_facts: dict[str, Any]) -> None:
    (project / "model.py").write_text("W = 2\n")
    engine = engine_for(Container(host_facts, modules=["train.py", "model.py"]))
    report = replay(replace(request(project), lock_dir=project / ".envcap", cwd=project), engine=engine,
                    host_gpu=no_gpu)
    assert report.comparison is not None
    (code,) = [d for d in report.comparison.differences if d.fact == "git.code"]
    assert code.severity == "high" and "model.py" in code.replay
    assert report.comparison.differences[0].fact == "git.code"  # the most likely cause


def test_an_edit_the_workload_does_not_import_is_low(project: Path, host_facts: dict[str, Any]) -> None:
    (project / "README.md").write_text("changed\n")
    engine = engine_for(Container(host_facts, modules=["train.py", "model.py"]))
    report = replay(replace(request(project), lock_dir=project / ".envcap", cwd=project), engine=engine,
                    host_gpu=no_gpu)
    assert report.comparison is not None
    (code,) = [d for d in report.comparison.differences if d.fact == "git.code"]
    assert code.severity == "low" and "README.md" in code.replay


@pytest.mark.parametrize("flag", [["--json"], ["--report", "-"]])
def test_json_on_stdout_moves_the_workloads_stdout_to_stderr(tmp_path: Path, host_facts: dict[str, Any], cli: Any,
                                                             monkeypatch: pytest.MonkeyPatch, flag: list[str]) -> None:
    """Issue 10: replay --json, and --report - writes to stdout (it wrote a file named '-')."""
    make_lock(tmp_path / "lock", host_facts)
    engine = engine_for(Container(host_facts))
    engine.run_output = [(b"epoch 1\n", "stdout")]
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["replay", str(tmp_path / "lock"), "--image", IMAGE, *flag, "--", "python", "t.py"],
                        obj={"engine": engine})
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "replay-report" and document["status"] == "ok"
    assert "epoch 1" in result.stderr
    assert not (tmp_path / "-").exists()
    assert ("Differences from the snapshot" in result.stderr) == (flag != ["--json"])


def test_show_of_a_saved_replay_renders_its_report(tmp_path: Path, host_facts: dict[str, Any], cli: Any) -> None:
    make_lock(tmp_path / "lock", host_facts)
    report = replay(request(tmp_path), engine=engine_for(Container(image_facts(host_facts, "3.11.2"))),
                    host_gpu=no_gpu)
    shown = cli.invoke(main, ["show", report.replay_dir])
    assert shown.exit_code == 0, shown.output
    assert f"envcap replay {report.replay_id}" in shown.stdout and "python.version" in shown.stdout
    as_json = cli.invoke(main, ["show", "--json", report.replay_dir])
    assert json.loads(as_json.stdout)["replay_id"] == report.replay_id
    (Path(report.replay_dir) / "report.json").write_text('{"kind": "something else"}')
    damaged = cli.invoke(main, ["show", report.replay_dir])
    assert damaged.exit_code == 4 and damaged.stderr.startswith("error: ")


# ------------------------------------------------------------------ the image's facts, kept by image

def kept_files(cache: Path) -> list[Path]:
    return sorted((cache / "replay-image-facts").glob("*.json"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(folder))
    return folder


def other_machine(facts: dict[str, Any]) -> dict[str, Any]:
    """The same image on another machine: another CPU (no AVX-512), another kernel."""
    machine = json.loads(json.dumps({name: facts[name] for name in ("os", "cpu", "gpu")}))
    machine["os"]["kernel"] = "9.9.9-other"
    machine["cpu"]["model_name"] = "Another CPU"
    machine["cpu"]["numeric_flags"] = [f for f in machine["cpu"]["numeric_flags"] if not f.startswith("avx512")]
    return machine


def test_a_second_replay_takes_the_image_from_the_first_and_reads_the_machine_again(
        tmp_path: Path, host_facts: dict[str, Any], cache: Path) -> None:
    """No probe container the second time; the kernel and the CPU are read again, by the launcher, in the workload's
    own container (here: another machine's), and only the image's part comes from the first replay."""
    make_lock(tmp_path / "lock", host_facts)
    inside = image_facts(host_facts, "3.11.2")
    container = Container(inside)
    engine = engine_for(container)
    first = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert container.probe_runs == 1 and container.workload_runs[0].entrypoint is None
    (kept,) = kept_files(cache)

    container.machine = other_machine(inside)
    second = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)

    assert container.probe_runs == 1  # nothing probed the image again
    launched = container.workload_runs[1]
    assert launched.entrypoint == hook.launch_command(inside["python"]["executable"])
    assert launched.command == ("python", "train.py")
    b = load_snapshot(Path(second.replay_dir) / "envcap.lock.json")
    assert b.python.version == "3.11.2"  # the image's, as kept
    assert b.os.kernel == "9.9.9-other" and b.cpu.model_name == "Another CPU"  # the machine's, read now
    assert "avx512f" not in b.cpu.numeric_flags
    assert first.comparison is not None and second.comparison is not None
    assert any(d.fact.startswith("cpu") for d in second.comparison.differences)
    assert not any(d.fact.startswith("cpu") for d in first.comparison.differences)
    assert kept_files(cache) == [kept]
    hook_folder = Path(second.replay_dir) / "hook" / "run-1"
    assert (hook_folder / hook.HOST_FACTS).is_file()  # what the launcher read, kept with the replay
    assert not (hook_folder / hook.LAUNCH_FOLDER).exists()  # not the tools


@pytest.mark.parametrize("change", ["env", "user", "workdir", "image"])
def test_kept_facts_are_used_only_with_the_same_image_and_run_options(
        tmp_path: Path, host_facts: dict[str, Any], cache: Path, change: str) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts))
    engine = engine_for(container)
    engine.add_image("envcap:other", "sha256:" + "d" * 64)
    replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    (tmp_path / "elsewhere").mkdir()
    changed = {"env": {"env": {"SEED": "8"}}, "user": {"user": "1000:1000"},
               "workdir": {"cwd": tmp_path / "elsewhere"}, "image": {"image": "envcap:other"}}[change]

    replay(request(tmp_path, **changed), engine=engine, host_gpu=no_gpu)

    assert container.probe_runs == 2 and container.workload_runs[1].entrypoint is None
    assert len(kept_files(cache)) == 2
    replay(request(tmp_path, **changed), engine=engine, host_gpu=no_gpu)  # and now kept for those options too
    assert container.probe_runs == 2 and container.workload_runs[2].entrypoint is not None


def test_when_the_launcher_reads_nothing_the_image_is_probed_after_the_run(
        tmp_path: Path, host_facts: dict[str, Any], cache: Path) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts, "3.11.2"), launcher_reads=False)
    engine = engine_for(container)
    replay(request(tmp_path), engine=engine, host_gpu=no_gpu)

    report = replay(request(tmp_path), engine=engine, host_gpu=no_gpu)

    assert container.workload_runs[1].entrypoint is not None and container.probe_runs == 2
    assert report.comparison is not None and "envcap.lock.json" in report.files
    assert kept_files(cache) == []  # forgotten: the next replay probes beside the workload again


def test_an_image_with_its_own_entrypoint_is_probed_every_time(tmp_path: Path, host_facts: dict[str, Any],
                                                              cache: Path) -> None:
    """The launcher would have to run where the image's entrypoint runs; it never takes that place."""
    make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts))
    engine = FakeEngine()
    engine.add_image(IMAGE, IMAGE_ID, entrypoint=("/opt/nvidia/entrypoint.sh",))
    engine.on_run = container
    for _ in range(2):
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert container.probe_runs == 2 and all(run.entrypoint is None for run in container.workload_runs)


def test_the_image_found_by_its_label_is_asked_for_its_entrypoint(tmp_path: Path, host_facts: dict[str, Any],
                                                                 cache: Path) -> None:
    """An image list does not say whether an image has an entrypoint: the replay asks before launching."""
    lock = make_lock(tmp_path / "lock", host_facts)
    container = Container(image_facts(host_facts))
    engine = engine_for(container, labels={"io.envcap.lock-digest": lock.digest or ""})
    replay(request(tmp_path), engine=engine, host_gpu=no_gpu)  # --image: keeps the facts
    replay(request(tmp_path, image=None), engine=engine, host_gpu=no_gpu)  # found by the lock's label
    assert container.probe_runs == 1 and container.workload_runs[1].entrypoint is not None


@pytest.mark.parametrize("why", ["mounted search path", "mounted interpreter", "a reader failed", "tool without version",
                                 "deep"])
def test_readings_that_may_change_under_the_same_key_are_not_kept(tmp_path: Path, host_facts: dict[str, Any],
                                                                  cache: Path, why: str) -> None:
    inside = image_facts(host_facts)
    changes: dict[str, Any] = {}
    container = Container(inside)
    if why == "mounted search path":  # PYTHONPATH (or a .pth) into the project: its files change between replays
        container.search_path = [*container.search_path, str(tmp_path / "src")]
    elif why == "mounted interpreter":
        inside["python"]["executable"] = str(tmp_path / ".venv" / "bin" / "python")
    elif why == "a reader failed":
        inside["unavailable"] = [{"probe": "toolchain", "reason": "TimeoutExpired: gcc --version"}]
    elif why == "tool without version":
        inside["toolchain"]["gcc"] = {"path": "/usr/bin/gcc", "version": None}
    else:
        blas = snapshot_from_facts(host_facts).blas
        assert blas is not None
        changes["blas"] = replace(blas, threadpools=())  # a deep lock: the thread pools follow the machine's CPUs
    make_lock(tmp_path / "lock", host_facts, **changes)
    engine = engine_for(container)
    for _ in range(2):
        replay(request(tmp_path), engine=engine, host_gpu=no_gpu)
    assert kept_files(cache) == [] and container.probe_runs == 2


def test_a_gpu_replay_probes_before_the_run_and_keeps_nothing(tmp_path: Path, host_facts: dict[str, Any],
                                                             cache: Path) -> None:
    make_lock(tmp_path / "lock", host_facts, **gpu_lock_changes())
    container = Container(image_facts(host_facts), arch_list=["sm_80"])
    engine = engine_for(container)
    engine.gpu_runtime = True
    for _ in range(2):
        replay(request(tmp_path), engine=engine, host_gpu=a100)
    assert container.probe_runs == 2 and kept_files(cache) == []
    assert all(run.entrypoint is None for run in container.workload_runs)
