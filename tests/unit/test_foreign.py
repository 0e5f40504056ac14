"""Foreign reports: real outputs (from this machine and from public threads) read into partial snapshots,
and every kind of bad input turned into one sentence naming what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envcap.errors import LockfileError, ReportFormatError
from envcap.explain.derive import enrich
from envcap.explain.facts import facts_of
from envcap.foreign import load_any, parse_report
from envcap.lock import SCHEMA_VERSION

FOREIGN = Path(__file__).resolve().parents[1] / "data" / "foreign"


def facts(name: str) -> dict[str, object]:
    return facts_of(enrich(load_any(FOREIGN / name))).values


def test_collect_env_of_a_cpu_build() -> None:
    snapshot = load_any(FOREIGN / "collect_env_cpu_torch2.13.txt")
    assert snapshot.source == "collect-env"
    v = facts("collect_env_cpu_torch2.13.txt")
    assert v["pkg.torch"] == "2.13.0+cpu" and v["pkg.numpy"] == "2.4.6"
    assert v["torch.cuda_build"] is None  # "+cpu": a CPU build, derived from the tag
    assert "torch.cuda_build" in facts_of(enrich(snapshot)).derived
    assert v["python.version"] == "3.11.7" and v["os.libc_version"] == "2.36" and v["os.distro"] == "debian 12"
    assert {"avx2", "avx512f", "fma"} <= set(v["cpu.isa"])  # type: ignore[arg-type]
    assert "gpu.count" not in v  # "Could not collect" stays unknown
    assert v["cuda.nvcc"] == "13.0.88"


def test_collect_env_of_a_gpu_machine_from_an_issue() -> None:
    v = facts("collect_env_rtx3090_torch1.8.0.txt")
    assert v["gpu.model"] == "GeForce RTX 3090" and v["gpu.compute_capability"] == "8.6"
    assert v["gpu.driver"] == "460.39" and v["torch.cuda_build"] == "11.1"
    assert v["blas.backend"] == frozenset({"mkl"})  # [conda] blas 1.0 mkl
    assert v["cuda.runtime"] == "11.1.1"  # conda's cudatoolkit, not the system nvcc (11.2.142)
    assert v["precision.torch.backends.cuda.matmul.allow_tf32"] is True  # torch 1.8's default
    assert v["python.version"] == "3.6"


@pytest.mark.parametrize(("name", "model", "cc", "driver", "cuda"), [
    ("nvidia_smi_q_tesla_k80_driver396.txt", "Tesla K80", "3.7", "396.37", None),
    ("nvidia_smi_q_a100_sxm4_80gb_driver470.txt", "NVIDIA A100-SXM4-80GB", "8.0", "470.103.01", "11.4"),
])
def test_nvidia_smi_gives_gpus_and_the_derived_compute_capability(name: str, model: str, cc: str, driver: str,
                                                                  cuda: str | None) -> None:
    view = facts_of(enrich(load_any(FOREIGN / name)))
    assert view.values["gpu.model"] == model and view.values["gpu.count"] == 1
    assert view.values["gpu.compute_capability"] == cc and "gpu.compute_capability" in view.derived
    assert view.values["gpu.driver"] == driver and view.values.get("gpu.cuda_driver") == cuda


def test_nvidia_smi_for_one_of_several_gpus_leaves_the_count_unknown() -> None:
    for name in ("nvidia_smi_q_gtx1080ti_windows_i0.txt", "nvidia_smi_q_rtx_a6000_4gpus_cut.txt"):
        view = facts_of(enrich(load_any(FOREIGN / name)))
        assert "gpu.count" in view.unknown and "gpu.count" not in view.values


def test_pip_reports_list_every_distribution() -> None:
    freeze = facts("pip_freeze_torch2.13.txt")
    listed = facts("pip_list_torch2.13.json")
    inspect = facts("pip_inspect_torch2.13.json")
    for v in (freeze, listed, inspect):
        assert v["pkg.torch"] == "2.13.0+cpu" and v["pkg.typing-extensions"] == "4.16.0"
    assert "pkg.pip" in listed and "pkg.pip" not in freeze
    assert inspect["python.version"] == "3.11.7" and inspect["cpu.architecture"] == "x86_64"


def test_conda_export_and_table_name_the_blas_and_the_cuda_toolkit() -> None:
    export = facts("conda_export_win64.txt")
    assert export["blas.backend"] == frozenset({"mkl"}) and export["os.system"] == "Windows"
    assert export["pkg.cython"] == "0.29.24"
    table = facts("conda_list_linux_cudatoolkit11.1.txt")
    assert table["cuda.runtime"] == "11.1.1" and table["blas.backend"] == frozenset({"mkl"})


def test_conda_pytorch_build_string_implies_cuda_and_cudnn() -> None:
    text = b"# platform: linux-64\npython=3.9.7=h12debd9_1\npytorch=1.10.0=py3.9_cuda11.3_cudnn8.2.0_0\n"
    snapshot = parse_report(text, "env.txt")
    v = facts_of(enrich(snapshot))
    assert v.values["torch.cuda_build"] == "11.3" and v.values["cuda.cudnn"] == "8.2.0"
    assert {"torch.cuda_build", "cuda.cudnn"} <= v.derived
    assert v.values["python.version"] == "3.9.7"


def test_collect_env_conda_lines_imply_the_cuda_build_where_the_report_does_not_say() -> None:
    text = (b"PyTorch version: 1.10.0\nCUDA used to build PyTorch: Could not collect\n"
            b"Versions of relevant libraries:\n[conda] pytorch 1.10.0 py3.9_cuda11.3_cudnn8.2.0_0 pytorch\n")
    view = facts_of(enrich(parse_report(text, "env.txt")))
    assert view.values["torch.cuda_build"] == "11.3" and view.values["cuda.cudnn"] == "8.2.0"
    assert {"torch.cuda_build", "cuda.cudnn"} <= view.derived


def test_utf16_output_of_powershell_redirection_is_read() -> None:
    raw = (FOREIGN / "pip_freeze_torch2.13.txt").read_text("utf-8").encode("utf-16")
    assert parse_report(raw, "freeze.txt").distribution("torch") is not None


def test_pip_freeze_with_urls_and_editables_leaves_their_versions_unknown() -> None:
    text = b"numpy==1.26.4\nmylib @ file:///src/mylib\n-e git+https://example.org/x.git@abc#egg=other\n"
    view = facts_of(parse_report(text, "freeze.txt"))
    assert view.values["pkg.numpy"] == "1.26.4"
    assert {"pkg.mylib", "pkg.other"} <= view.unknown


# ----------------------------------------------------------------------------------- bad input

def one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary"),
    (b"\xff\xd8\xff\xe0 not utf8 \xc3\x28", "binary"),
    (b"hello, this is a letter\n", "no format envcap reads"),
    (b"numpy>=1.20\ntorch\n", "requirements file"),
    (b"numpy==1.26.4\nscipy>=1.10\n", "version range"),
    (b'{"installed": [', "not valid JSON"),
    (b'{"hello": 1}', "JSON of no format"),
    (b'[{"name": "numpy"}]', "not a {\"name\", \"version\"} object"),
    (b'{"version": "2", "pip_version": "30", "installed": []}', "newer than the 1"),
    (b"numpy==1.26.4\nnump\n", "line 2"),
])
def test_bad_reports_raise_one_sentence_naming_what_was_expected(content: bytes, words: str) -> None:
    with pytest.raises(ReportFormatError) as info:
        parse_report(content, "env.txt")
    assert words in info.value.message
    one_sentence(info.value.message)
    assert info.value.hint


@pytest.mark.parametrize(("name", "words"), [
    ("collect_env_rtx4080_cu121_cut.txt", "cut short"),
    ("conda_export_win64_cut.txt", "line 41"),
])
def test_truncated_real_reports_are_refused(name: str, words: str) -> None:
    with pytest.raises(ReportFormatError) as info:
        load_any(FOREIGN / name)
    assert words in info.value.message
    one_sentence(info.value.message)


def test_nvidia_smi_cut_before_its_first_gpu_is_refused() -> None:
    text = (FOREIGN / "nvidia_smi_q_tesla_k80_driver396.txt").read_text("utf-8")
    cut = text[: text.index("GPU 3E3F8E05")]
    with pytest.raises(ReportFormatError, match="lists none"):
        parse_report(cut.encode(), "smi.txt")


def test_a_lock_of_a_newer_schema_is_a_lockfile_error(tmp_path: Path) -> None:
    lock = tmp_path / "envcap.lock.json"
    lock.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "python": {"version": "3.12.0"}}))
    with pytest.raises(LockfileError) as info:
        load_any(lock)
    assert "newer" in info.value.message
    one_sentence(info.value.message)


def test_missing_paths_and_folders_without_a_lock(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="no file or snapshot folder"):
        load_any(tmp_path / "missing.txt")
    with pytest.raises(LockfileError, match="no snapshot at"):
        load_any(tmp_path)
