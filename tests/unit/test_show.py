"""``envcap show``: the readable summary and the ``--json`` contract of a saved snapshot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from envcap.cli import main
from envcap.lock import (
    CudaComponent,
    CudaStack,
    Distribution,
    Gpu,
    GpuDevice,
    OsInfo,
    PythonEnv,
    Snapshot,
    TorchBuild,
    dumps,
)


def snapshot() -> Snapshot:
    return Snapshot(
        captured_at="2026-01-01T00:00:00Z", envcap_version="0.1.0",
        python=PythonEnv(version="3.11.7", implementation="cpython", is_venv=True, executable="/srv/.venv/bin/python"),
        distributions=(Distribution(name="torch", version="2.3.0+cu121"), Distribution(name="numpy", version="1.26.4")),
        os=OsInfo(pretty_name="Ubuntu 22.04.4 LTS", kernel="5.15.0", libc="glibc", libc_version="2.35"),
        gpu=Gpu(status="ok", driver_version="535.129.03", cuda_driver_version="12.2",
                devices=(GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                                   memory_total_bytes=81559 << 20, mig_mode="disabled"),)),
        cuda=CudaStack(components={"cudnn": CudaComponent("8.9.2.26", "pip", "nvidia-cudnn-cu12")},
                       torch=TorchBuild(version="2.3.0+cu121", cuda="12.1")),
        env={"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
        warnings=("my-project 0.1 is installed from the local folder /src (editable)",),
    ).with_digest()


def save(tmp_path: Path, snap: Snapshot) -> Path:
    (tmp_path / "envcap.lock.json").write_text(dumps(snap), "utf-8")
    return tmp_path


def test_summary_names_the_facts_that_decide_results(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli.invoke(main, ["show", str(save(tmp_path, snapshot()))])
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    for fact in ("3.11.7", "venv", "torch 2.3.0+cu121", "numpy 1.26.4", "Ubuntu 22.04.4 LTS", "glibc 2.35",
                 "535.129.03", "NVIDIA H100 80GB HBM3", "sm 9.0", "cudnn 8.9.2.26 (pip)",
                 "torch built for CUDA 12.1", "CUBLAS_WORKSPACE_CONFIG=:4096:8", "editable"):
        assert fact in text, fact
    assert "does not match" not in text


def test_file_path_works_as_well_as_the_folder(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = save(tmp_path, snapshot())
    by_file = cli.invoke(main, ["show", str(folder / "envcap.lock.json")])
    by_folder = cli.invoke(main, ["show", str(folder)])
    assert by_file.exit_code == by_folder.exit_code == 0
    assert by_file.stdout == by_folder.stdout


def test_hand_edited_lock_is_flagged(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(dumps(snapshot()))
    data["distributions"][0]["version"] = "2.4.0"
    (tmp_path / "envcap.lock.json").write_text(json.dumps(data), "utf-8")
    result = cli.invoke(main, ["show", str(tmp_path)])
    assert result.exit_code == 0
    assert "does not match the content" in result.stdout


def test_no_gpu_is_said_with_its_reason(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    snap = replace(snapshot(), gpu=Gpu(status="no-nvml", reason="NVML could not start: library not found"))
    result = cli.invoke(main, ["show", str(save(tmp_path, snap.with_digest()))])
    assert "no-nvml" in result.stdout and "library not found" in " ".join(result.stdout.split())


def test_json_contract(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    snap = snapshot()
    result = cli.invoke(main, ["show", "--json", str(save(tmp_path, snap))])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert set(document) == {"format", "kind", "snapshot"}
    assert document["format"] == 1 and document["kind"] == "snapshot"
    assert document["snapshot"] == json.loads(dumps(snap))


def test_default_location_is_dot_envcap(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".envcap").mkdir()
    save(tmp_path / ".envcap", snapshot())
    result = cli.invoke(main, ["show"])
    assert result.exit_code == 0 and "NVIDIA H100 80GB HBM3" in result.stdout
