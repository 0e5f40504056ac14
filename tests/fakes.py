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

    def add(self, argv_prefix: Sequence[str], stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.answers[tuple(argv_prefix)] = Completed(tuple(argv_prefix), returncode, stdout, stderr)

    def __call__(self, argv: Sequence[str], *, timeout: float = 0, cwd: str | None = None,
                 env: Mapping[str, str] | None = None, stdin: str | None = None) -> Completed:
        argv = tuple(argv)
        self.calls.append(argv)
        for prefix, answer in sorted(self.answers.items(), key=lambda kv: -len(kv[0])):
            if argv[: len(prefix)] == prefix:
                return Completed(argv, answer.returncode, answer.stdout, answer.stderr)
        raise AssertionError(f"CannedRunner has no answer for {argv}")
