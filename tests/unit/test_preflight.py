"""Pre-flight checks: driver against the locked CUDA runtime, GPU architecture, GPU runtime."""

from __future__ import annotations

from envcap.lock import CudaComponent, CudaStack, Gpu, GpuDevice, PythonEnv, Snapshot, TorchBuild
from envcap.replay.preflight import (
    check_arch,
    check_driver,
    check_gpu_runtime,
    check_gpus_present,
    first_failure,
    host_gpu,
    locked_cuda_runtime,
    run_checks,
)


def lock(cuda_runtime: str | None = None, torch_cuda: str | None = None) -> Snapshot:
    components = {"cuda_runtime": CudaComponent(cuda_runtime, "pip")} if cuda_runtime else {}
    return Snapshot(python=PythonEnv(version="3.11.7"),
                    cuda=CudaStack(components=components, torch=TorchBuild(version="2.5.1", cuda=torch_cuda)),
                    gpu=Gpu(status="ok", driver_version="550.54.15", devices=(GpuDevice(0, "NVIDIA A100", "8.0"),)))


def host(driver: str = "550.54.15", cuda: str | None = "12.4", *caps: tuple[str, str]) -> Gpu:
    devices = tuple(GpuDevice(i, name, cc) for i, (name, cc) in enumerate(caps or (("NVIDIA A100", "8.0"),)))
    return Gpu(status="ok", driver_version=driver, cuda_driver_version=cuda, devices=devices)


def test_locked_runtime_comes_from_the_library_else_from_torch() -> None:
    assert locked_cuda_runtime(lock("12.4.127", "12.1")) == "12.4.127"
    assert locked_cuda_runtime(lock(None, "12.1")) == "12.1"
    assert locked_cuda_runtime(Snapshot()) is None


def test_driver_new_enough_passes() -> None:
    check = check_driver(lock("12.4.127"), host("550.54.15"), gpus=True)
    assert check.status == "ok"


def test_driver_older_than_minor_compat_fails_with_both_versions_named() -> None:
    check = check_driver(lock("12.4.127"), host("470.82.01", "11.4"), gpus=True)
    assert check.status == "fail"
    assert "470.82.01" in check.detail and "12.4.127" in check.detail and "525.60.13" in check.detail
    assert check.hint and "upgrade" in check.hint


def test_driver_between_minor_compat_and_toolkit_driver_warns() -> None:
    check = check_driver(lock(None, "12.4"), host("535.104.05", "12.2"), gpus=True)
    assert check.status == "warn"
    assert "minor version compatibility" in check.detail


def test_driver_numeric_not_textual_comparison() -> None:
    # "1000.1" < "550.54" as text; as numbers it is newer
    assert check_driver(lock("12.4.127"), host("1000.1", "13.5"), gpus=True).status == "ok"


def test_cuda_newer_than_the_table_uses_the_drivers_own_cuda_version() -> None:
    assert check_driver(lock("14.1.0"), host("600.1", "14.2"), gpus=True).status == "ok"
    assert check_driver(lock("14.1.0"), host("600.1", "13.2"), gpus=True).status == "fail"
    assert check_driver(lock("14.3.0"), host("600.1", "14.2"), gpus=True).status == "warn"


def test_driver_check_skipped_without_gpus_or_cuda() -> None:
    assert check_driver(lock("12.4"), host("470.1"), gpus=False).status == "skipped"
    assert check_driver(Snapshot(), host(), gpus=True).status == "skipped"


def test_arch_native_and_same_major_newer_minor_pass() -> None:
    archs = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_90"]
    assert check_arch(host("550.1", "12.4", ("A100", "8.0"), ("RTX 3090", "8.6")), archs, gpus=True).status == "ok"


def test_arch_missing_fails_naming_the_gpu_and_the_list() -> None:
    check = check_arch(host("550.1", "12.4", ("Tesla K80", "3.7")), ["sm_50", "sm_80"], gpus=True)
    assert check.status == "fail"
    assert "Tesla K80" in check.detail and "3.7" in check.detail and "sm_50 sm_80" in check.detail
    assert check.hint and "sm_37" in check.hint


def test_arch_reachable_only_through_ptx_warns() -> None:
    check = check_arch(host("570.1", "12.8", ("B200", "10.0")), ["sm_80", "sm_90", "compute_90"], gpus=True)
    assert check.status == "warn" and "PTX" in check.detail


def test_arch_specific_entries_do_not_count_as_portable() -> None:
    check = check_arch(host("570.1", "12.8", ("B200", "10.0")), ["sm_90a"], gpus=True)
    assert check.status == "fail"


def test_cpu_build_of_the_framework_fails_when_gpus_are_passed() -> None:
    check = check_arch(host(), [], gpus=True)
    assert check.status == "fail" and "without CUDA" in check.detail


def test_gpu_runtime_missing_is_an_actionable_failure() -> None:
    check = check_gpu_runtime(gpus=True, engine_has_runtime=False, endpoint="unix:///var/run/docker.sock")
    assert check.status == "fail"
    assert "unix:///var/run/docker.sock" in check.detail
    assert check.hint and "nvidia-ctk" in check.hint and "--gpus none" in check.hint
    assert check_gpu_runtime(gpus=False, engine_has_runtime=False, endpoint="x").status == "skipped"


def test_gpus_needed_but_host_has_none() -> None:
    check = check_gpus_present(gpus=True, host=Gpu(status="no-driver", reason="NVML could not start"))
    assert check.status == "fail" and "NVML could not start" in check.detail


def test_first_failure_becomes_a_preflight_error_in_check_order() -> None:
    checks = run_checks(lock("12.4.127"), gpus=True, engine_has_runtime=False, endpoint="unix:///x",
                        host=host("470.82.01", "11.4"), arch_list=["sm_80"])
    assert [c.status for c in checks] == ["fail", "ok", "fail", "ok"]
    error = first_failure(checks)
    assert error is not None and error.exit_code == 10
    assert "GPU runtime" in error.message and error.hint
    assert first_failure(run_checks(lock("12.4.127"), gpus=False, engine_has_runtime=False, endpoint="x",
                                    host=None, arch_list=None)) is None


def test_host_gpu_on_this_machine_is_a_fact_not_an_error() -> None:
    gpu = host_gpu()
    assert gpu.status in ("ok", "no-nvml", "no-driver", "no-gpu", "error")
    if gpu.status != "ok":
        assert gpu.reason
