"""GPU facts through NVML, over pynvml's API faked from recorded nvidia-smi output (tests/data/nvml).

Each fixture names the public report it was taken from; the fake (tests/fakes.py) answers as pynvml
does, including NVML's error codes, so the probe's error paths run as they would on a real host.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from envcap.lock import Gpu, dumps
from envcap.probe import snapshot_from_facts
from tests.fakes import FakeNvml

NVML_DATA = Path(__file__).resolve().parents[1] / "data" / "nvml"
FIXTURES = sorted(p.name for p in NVML_DATA.glob("*.json"))



def recorded(name: str) -> dict[str, Any]:
    return json.loads((NVML_DATA / name).read_text("utf-8"))  # type: ignore[no-any-return]


def test_every_fixture_names_its_source() -> None:
    assert len(FIXTURES) >= 4
    for name in FIXTURES:
        data = recorded(name)
        assert data["source"] and all(url.startswith("https://github.com/") for url in data["source"]), name
        assert data["devices"], name


@pytest.mark.parametrize("name", FIXTURES)
def test_recorded_gpu_is_described(probe: ModuleType, name: str) -> None:
    data = recorded(name)
    fail = {"nvmlSystemGetCudaDriverVersion_v2": 13} if data["cuda_driver_version"] is None else {}
    nvml = FakeNvml(data, fail=fail)
    gpu = probe.gpu_facts(nvml, "pynvml")
    assert gpu["status"] == "ok"
    assert gpu["reason"] is None
    assert gpu["binding"] == "pynvml"
    assert gpu["driver_version"] == data["driver_version"]
    if data["cuda_driver_version"] is None:
        assert gpu["cuda_driver_version"] is None
        assert any(u["probe"] == "gpu.cuda_driver_version" for u in probe.UNAVAILABLE)
    else:
        raw = data["cuda_driver_version"]
        assert gpu["cuda_driver_version"] == f"{raw // 1000}.{raw % 1000 // 10}"
    assert len(gpu["devices"]) == len(data["devices"])
    for index, (device, source) in enumerate(zip(gpu["devices"], data["devices"])):
        assert device["index"] == index
        assert device["name"] == source["name"]
        assert device["compute_capability"] == "%d.%d" % tuple(source["compute_capability"])
        assert device["memory_total_bytes"] == source["memory_total_bytes"]
        assert device["mig_mode"] == source["mig_mode"]
        assert device["ecc_mode"] == source["ecc_mode"]
        assert device["uuid_sha256"] == hashlib.sha256(source["uuid"].encode()).hexdigest()[:16]
    assert nvml.initialised is False  # nvmlShutdown was called


def test_cuda_driver_version_is_decoded(probe: ModuleType) -> None:
    """NVML encodes CUDA 12.2 as 12020 and 11.4 as 11040."""
    assert probe.gpu_facts(FakeNvml(recorded("h100-80gb-hbm3.json")), "x")["cuda_driver_version"] == "12.2"
    assert probe.gpu_facts(FakeNvml(recorded("a100-sxm4-80gb.json")), "x")["cuda_driver_version"] == "11.4"


def test_consumer_gpu_keeps_the_device_when_mig_and_ecc_are_not_supported(probe: ModuleType) -> None:
    gpu = probe.gpu_facts(FakeNvml(recorded("rtx-3090.json")), "pynvml")
    (device,) = gpu["devices"]
    assert device["name"] == "NVIDIA GeForce RTX 3090"
    assert device["compute_capability"] == "8.6"
    assert device["mig_mode"] is None and device["ecc_mode"] is None
    reasons = {u["probe"]: u["reason"] for u in probe.UNAVAILABLE}
    assert "Not Supported" in reasons["gpu[0].mig_mode"]
    assert "Not Supported" in reasons["gpu[0].ecc_mode"]


def test_one_field_failing_on_one_device_keeps_the_others(probe: ModuleType) -> None:
    nvml = FakeNvml(recorded("h100-80gb-hbm3.json"), fail={"nvmlDeviceGetMemoryInfo": 999})
    gpu = probe.gpu_facts(nvml, "pynvml")
    assert gpu["status"] == "ok"
    assert [d["memory_total_bytes"] for d in gpu["devices"]] == [None, None]
    assert [d["compute_capability"] for d in gpu["devices"]] == ["9.0", "9.0"]
    assert {u["probe"] for u in probe.UNAVAILABLE} >= {"gpu[0].memory_total_bytes", "gpu[1].memory_total_bytes"}


def test_nvml_library_missing(probe: ModuleType) -> None:
    nvml = FakeNvml({}, fail={"nvmlInit": 12})
    gpu = probe.gpu_facts(nvml, "pynvml")
    assert gpu["status"] == "no-nvml"
    assert gpu["devices"] == [] and gpu["driver_version"] is None
    assert "NVML could not start" in gpu["reason"]


def test_driver_not_loaded(probe: ModuleType) -> None:
    gpu = probe.gpu_facts(FakeNvml({}, fail={"nvmlInit": 9}), "pynvml")
    assert gpu["status"] == "no-driver"
    assert "code 9" in gpu["reason"]


def test_no_gpu_keeps_the_driver(probe: ModuleType) -> None:
    data = {"driver_version": "535.129.03", "cuda_driver_version": 12020, "devices": []}
    gpu = probe.gpu_facts(FakeNvml(data), "pynvml")
    assert gpu["status"] == "no-gpu"
    assert gpu["driver_version"] == "535.129.03"
    assert gpu["cuda_driver_version"] == "12.2"
    assert gpu["devices"] == []


def test_nvml_failing_after_init_is_an_error_status_not_an_exception(probe: ModuleType) -> None:
    nvml = FakeNvml(recorded("a100-sxm4-80gb.json"), fail={"nvmlDeviceGetCount": 17})
    gpu = probe.gpu_facts(nvml, "pynvml")
    assert gpu["status"] == "error"
    assert "code 17" in gpu["reason"]
    assert gpu["driver_version"] == "470.103.01"
    assert nvml.initialised is False


def test_device_handle_failing_is_an_error_status(probe: ModuleType) -> None:
    nvml = FakeNvml(recorded("h100-80gb-hbm3.json"), fail={"nvmlDeviceGetHandleByIndex": 17})
    gpu = probe.gpu_facts(nvml, "pynvml")
    assert gpu["status"] == "error"


def test_ctypes_binding_on_this_machine(probe: ModuleType) -> None:
    """The shim used where pynvml is absent: here, without libnvidia-ml, it must report no NVML."""
    gpu = probe.gpu_facts(probe.CtypesNvml(), "ctypes")
    if ctypes.util.find_library("nvidia-ml") is None:
        assert gpu["status"] == "no-nvml"
        assert "library not found" in gpu["reason"]
    else:
        assert gpu["status"] in ("ok", "no-gpu", "no-driver")


def _facts_with_gpu(probe: ModuleType, gpu: dict[str, Any]) -> dict[str, Any]:
    facts = {"python": probe.python_facts(), "distributions": [], "os": probe.os_facts(), "gpu": gpu,
             "unavailable": probe.UNAVAILABLE}
    return facts


@pytest.mark.parametrize("name", FIXTURES)
def test_raw_uuid_appears_nowhere_in_the_lock_set(probe: ModuleType, name: str, tmp_path: Path) -> None:
    """A lock may be published: the UUID (a serial number) is kept only as a hash."""
    from envcap.snapshot import lock_files

    data = recorded(name)
    gpu = probe.gpu_facts(FakeNvml(data, fail={"nvmlSystemGetCudaDriverVersion_v2": 13}), "pynvml")
    snapshot = snapshot_from_facts(_facts_with_gpu(probe, gpu), captured_at="2026-01-01T00:00:00Z").with_digest()
    assert isinstance(snapshot.gpu, Gpu) and len(snapshot.gpu.devices) == len(data["devices"])
    everything = dumps(snapshot) + "".join(lock_files(snapshot, tmp_path).values())
    for device in data["devices"]:
        raw = device["uuid"]
        assert raw not in everything
        assert raw.removeprefix("GPU-") not in everything
        assert raw.lower() not in everything.lower()
        assert hashlib.sha256(raw.encode()).hexdigest()[:16] in everything


def test_gpu_section_survives_the_model_round_trip(probe: ModuleType) -> None:
    from envcap.lock import loads

    gpu = probe.gpu_facts(FakeNvml(recorded("a100-sxm4-80gb.json")), "pynvml")
    snapshot = snapshot_from_facts(_facts_with_gpu(probe, gpu), captured_at="2026-01-01T00:00:00Z")
    again = loads(dumps(snapshot))
    assert again.gpu == snapshot.gpu
    assert again.gpu is not None and again.gpu.devices[0].name == "NVIDIA A100-SXM4-80GB"
    assert again == replace(snapshot, digest=again.digest)


class FakeNvmlLibrary:
    """libnvidia-ml.so as ctypes calls it, over recorded data: each C function fills what its pointer
    arguments point at and returns NVML_SUCCESS. Handles are device index + 1 (a NULL handle is None)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _device(self, handle: ctypes.c_void_p) -> dict[str, Any]:
        assert handle.value is not None
        return self.data["devices"][handle.value - 1]  # type: ignore[no-any-return]

    def nvmlInit_v2(self) -> int:
        return 0

    def nvmlShutdown(self) -> int:
        return 0

    def nvmlSystemGetDriverVersion(self, buf: Any, size: ctypes.c_uint) -> int:
        buf.value = self.data["driver_version"].encode()
        return 0

    def nvmlSystemGetCudaDriverVersion_v2(self, ref: Any) -> int:
        if self.data["cuda_driver_version"] is None:
            return 13  # NVML_ERROR_FUNCTION_NOT_FOUND: a driver older than the call
        ref._obj.value = self.data["cuda_driver_version"]
        return 0

    def nvmlDeviceGetCount_v2(self, ref: Any) -> int:
        ref._obj.value = len(self.data["devices"])
        return 0

    def nvmlDeviceGetHandleByIndex_v2(self, index: ctypes.c_uint, ref: Any) -> int:
        ref._obj.value = index.value + 1
        return 0

    def nvmlDeviceGetName(self, handle: ctypes.c_void_p, buf: Any, size: ctypes.c_uint) -> int:
        buf.value = self._device(handle)["name"].encode()
        return 0

    def nvmlDeviceGetUUID(self, handle: ctypes.c_void_p, buf: Any, size: ctypes.c_uint) -> int:
        buf.value = self._device(handle)["uuid"].encode()
        return 0

    def nvmlDeviceGetCudaComputeCapability(self, handle: ctypes.c_void_p, major: Any, minor: Any) -> int:
        major._obj.value, minor._obj.value = self._device(handle)["compute_capability"]
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle: ctypes.c_void_p, ref: Any) -> int:
        ref._obj.total = self._device(handle)["memory_total_bytes"]
        ref._obj.free = ref._obj.used = 0
        return 0

    def _mode(self, handle: ctypes.c_void_p, key: str, current: Any, pending: Any) -> int:
        mode = self._device(handle)[key]
        if mode is None:
            return 3  # NVML_ERROR_NOT_SUPPORTED: a GeForce has no MIG
        current._obj.value = pending._obj.value = int(mode == "enabled")
        return 0

    def nvmlDeviceGetMigMode(self, handle: ctypes.c_void_p, current: Any, pending: Any) -> int:
        return self._mode(handle, "mig_mode", current, pending)

    def nvmlDeviceGetEccMode(self, handle: ctypes.c_void_p, current: Any, pending: Any) -> int:
        return self._mode(handle, "ecc_mode", current, pending)


@pytest.mark.parametrize("name", FIXTURES)
def test_ctypes_binding_answers_like_pynvml(probe: ModuleType, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim's buffers, pointers and memory struct, driven through a C library faked at the CDLL seam."""
    data = recorded(name)
    fail = {"nvmlSystemGetCudaDriverVersion_v2": 13} if data["cuda_driver_version"] is None else {}
    expected = probe.gpu_facts(FakeNvml(data, fail=fail), "ctypes")
    noted = [u["probe"] for u in probe.UNAVAILABLE]
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeNvmlLibrary(data))
    assert probe.gpu_facts(probe.CtypesNvml(), "ctypes") == expected
    assert [u["probe"] for u in probe.UNAVAILABLE] == noted * 2  # the same fields unknown
