"""The explain engine: comparisons, dependent rules, package weighting, ranking, derivation, rendering.

Snapshots are built by a small factory (``snap``) with the facts each test is about; everything else
is identical on both sides, so a finding can only come from what the test changed.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import pytest

from envcap.explain import diff, render_json, render_markdown, render_text
from envcap.explain.compare import compare
from envcap.explain.derive import compute_capability, cuda_from_local_tag, enrich, torch_tf32_defaults
from envcap.explain.ranking import FINDING_KEYS, DiffReport, Finding
from envcap.lock import (
    Blas,
    BlasLibrary,
    Cpu,
    CudaStack,
    Distribution,
    Gpu,
    GpuDevice,
    OsInfo,
    PythonEnv,
    Snapshot,
    TorchBuild,
)


def snap(*, python: str = "3.11.7", packages: dict[str, str] | None = None, env: dict[str, str] | None = None,
         gpu: str | None = None, cc: str | None = None, blas: tuple[str, ...] = ("openblas",),
         flags: tuple[str, ...] = ("avx", "avx2", "fma"), vendor: str = "GenuineIntel", cores: int = 8,
         precision: dict[str, Any] | None = None, **fields: Any) -> Snapshot:
    """A probe-like snapshot; ``packages`` defaults to numpy and torch so ISA and thread rules have a reader."""
    packages = {"numpy": "1.26.4", "torch": "2.3.0"} if packages is None else packages
    devices = (GpuDevice(index=0, name=gpu, compute_capability=cc),) if gpu else ()
    base = Snapshot(
        python=PythonEnv(version=python, implementation="cpython", executable="/usr/bin/python3", prefix="/usr"),
        distributions=tuple(Distribution(name=n, version=v) for n, v in sorted(packages.items())),
        os=OsInfo(system="Linux", id="debian", version_id="12", libc="glibc", libc_version="2.36", container=None),
        cpu=Cpu(architecture="x86_64", vendor=vendor, model_name="Some CPU", logical_cores=cores,
                physical_cores=cores, affinity_cores=cores, numeric_flags=flags),
        gpu=Gpu(status="ok", devices=devices, driver_version="550.54.15") if gpu else Gpu(status="no-gpu"),
        blas=Blas(libraries=tuple(BlasLibrary(library=b, api="blas", version=None) for b in blas)),
        env={} if env is None else env,
        precision=precision,
    )
    return replace(base, **fields)


def by_fact(report: DiffReport) -> dict[str, Finding]:
    return {f.fact: f for f in report.findings}


# ------------------------------------------------------------------------------------- identical

def test_identical_snapshots_give_one_verdict_with_the_number_of_facts() -> None:
    report = diff(snap(), snap())
    assert report.findings == ()
    assert report.compared > 20
    assert report.verdict == f"Identical: all {report.compared} facts compared are the same."


def test_host_versus_container_reports_the_python_patch_level_and_only_context_for_paths() -> None:
    host = snap()
    container = snap(python="3.11.2")
    container = replace(container, python=replace(container.python, executable="/opt/venv/bin/python",
                                                  prefix="/opt/venv"),
                        os=replace(container.os, container="docker"),
                        cpu=replace(container.cpu, memory_total_bytes=2 << 30))
    found = by_fact(diff(host, container))
    assert found["python.version"].severity == "low"
    assert "patch downgrade 3.11.7 → 3.11.2" in found["python.version"].why.lower()
    for fact in ("python.executable", "python.prefix", "os.container"):
        assert found[fact].severity == "info"
    report = diff(host, container)
    assert report.significant == (found["python.version"],)
    assert report.verdict.startswith("1 of ") and "python.version" in report.verdict


# ------------------------------------------------------------------------------- dependent rules

TF32 = "torch.backends.cuda.matmul.allow_tf32"


@pytest.mark.parametrize(("cc", "expected"), [("8.0", "high"), ("9.0", "high"), ("7.0", "info")])
def test_tf32_flag_matters_only_on_ampere_or_newer(cc: str, expected: str) -> None:
    a = snap(gpu="GPU", cc=cc, precision={TF32: False})
    b = snap(gpu="GPU", cc=cc, precision={TF32: True})
    finding = by_fact(diff(a, b))[f"precision.{TF32}"]
    assert finding.severity == expected
    if expected == "info":
        assert "does not apply" in finding.why


def test_tf32_flag_keeps_its_severity_when_the_gpu_is_unknown_and_says_so() -> None:
    a = replace(snap(precision={TF32: False}), gpu=None)
    b = replace(snap(precision={TF32: True}), gpu=None)
    finding = by_fact(diff(a, b))[f"precision.{TF32}"]
    assert finding.severity == "high"
    assert "not known on both sides" in finding.why


def test_tf32_default_change_is_context_on_machines_known_to_have_no_gpu() -> None:
    found = by_fact(diff(snap(packages={"torch": "1.11.0"}), snap(packages={"torch": "1.12.0"})))
    assert found[f"precision.{TF32}"].severity == "info"
    assert found["pkg.torch"].severity == "high"


def test_nvidia_tf32_override_zero_on_both_sides_neutralises_the_torch_flag() -> None:
    env = {"NVIDIA_TF32_OVERRIDE": "0"}
    a = snap(gpu="A100", cc="8.0", env=env, precision={TF32: False})
    b = snap(gpu="A100", cc="8.0", env=env, precision={TF32: True})
    assert by_fact(diff(a, b))[f"precision.{TF32}"].severity == "info"


def test_gpu_generation_crossing_8_0_is_high_only_where_tf32_is_enabled() -> None:
    on = {TF32: True, "torch.backends.cudnn.allow_tf32": True}
    off = {TF32: False, "torch.backends.cudnn.allow_tf32": False, "torch.float32_matmul_precision": "highest"}
    crossing_on = by_fact(diff(snap(gpu="V100", cc="7.0", precision=on), snap(gpu="A100", cc="8.0", precision=on)))
    crossing_off = by_fact(diff(snap(gpu="V100", cc="7.0", precision=off), snap(gpu="A100", cc="8.0", precision=off)))
    assert crossing_on["gpu.compute_capability"].severity == "high"
    assert crossing_off["gpu.compute_capability"].severity == "medium"
    assert "gpu.model" not in crossing_on  # the architecture finding explains the model change


def test_mkl_cbwr_matters_only_where_mkl_is_the_blas() -> None:
    with_mkl = by_fact(diff(snap(blas=("mkl",)), snap(blas=("mkl",), env={"MKL_CBWR": "COMPATIBLE"})))
    without = by_fact(diff(snap(blas=("openblas",)), snap(blas=("openblas",), env={"MKL_CBWR": "COMPATIBLE"})))
    assert with_mkl["env.MKL_CBWR"].severity == "medium"
    assert without["env.MKL_CBWR"].severity == "info"


def test_isa_difference_matters_where_a_library_dispatches_on_it() -> None:
    wide = ("avx", "avx2", "avx512f", "fma")
    numerics = by_fact(diff(snap(), snap(flags=wide)))
    bare = by_fact(diff(snap(packages={}, blas=()), snap(packages={}, blas=(), flags=wide)))
    assert numerics["cpu.isa"].severity == "medium"
    assert numerics["cpu.isa"].why.startswith("Only B has avx512f.")
    assert bare["cpu.isa"].severity == "low"


def test_thread_variable_matters_for_the_backend_that_reads_it() -> None:
    openblas = by_fact(diff(snap(blas=("openblas",)), snap(blas=("openblas",), env={"OPENBLAS_NUM_THREADS": "2"})))
    mkl = by_fact(diff(snap(blas=("mkl",)), snap(blas=("mkl",), env={"OPENBLAS_NUM_THREADS": "2"})))
    assert openblas["env.OPENBLAS_NUM_THREADS"].severity == "medium"
    assert openblas["blas.openblas.threads"].a == 8 and openblas["blas.openblas.threads"].b == 2
    assert mkl["env.OPENBLAS_NUM_THREADS"].severity == "info"
    assert "blas.openblas.threads" not in mkl and "blas.mkl.threads" not in mkl  # MKL does not read it: its thread count is unchanged


def test_effective_blas_threads_follow_the_core_count_when_no_variable_is_set() -> None:
    found = by_fact(diff(snap(cores=2), snap(cores=8)))
    assert found["blas.openblas.threads"].severity == "medium"
    assert found["blas.openblas.threads"].derived == ("A", "B")
    assert "cpu.logical_cores" not in found  # explained by the thread count


def test_mkl_on_another_cpu_vendor_is_medium_and_low_without_mkl() -> None:
    mkl = by_fact(diff(snap(blas=("mkl",)), snap(blas=("mkl",), vendor="AuthenticAMD")))
    other = by_fact(diff(snap(), snap(vendor="AuthenticAMD")))
    assert mkl["cpu.vendor"].severity == "medium" and mkl["cpu.vendor"].rule == "cpu-vendor-mkl"
    assert other["cpu.vendor"].severity == "low"


# ------------------------------------------------------------------------------------- packages

@pytest.mark.parametrize(("name", "a", "b", "severity", "words"), [
    ("numpy", "1.26.4", "2.0.0", "high", "major upgrade"),
    ("numpy", "1.26.4", "1.26.1", "low", "patch downgrade"),
    ("scikit-learn", "1.3.2", "1.4.0", "high", "minor upgrade"),
    ("torch", "2.1.0+cu118", "2.1.0+cu121", "medium", "build cu118 → cu121"),
    ("nvidia-cublas-cu12", "12.1.3.1", "12.4.5.8", "medium", "minor upgrade"),
    ("requests", "2.31.0", "2.32.3", "info", "minor upgrade"),
    ("requests", "2.31.0", "3.0.0", "low", "major upgrade"),
])
def test_package_changes_name_the_part_and_weigh_numerics_more(name: str, a: str, b: str, severity: str,
                                                               words: str) -> None:
    base = {"numpy": "1.26.4", "torch": "2.3.0"}
    report = diff(snap(packages={**base, name: a}), snap(packages={**base, name: b}))
    finding = by_fact(report)[f"pkg.{name}"]
    assert finding.severity == severity
    assert words in finding.why.lower()


def test_added_and_removed_packages_are_findings_not_unknowns() -> None:
    report = diff(snap(packages={"numpy": "1.26.4"}), snap(packages={"numpy": "1.26.4", "scipy": "1.13.0"}))
    finding = by_fact(report)["pkg.scipy"]
    assert (finding.a, finding.b, finding.severity) == (None, "1.13.0", "medium")
    assert "pkg.scipy" not in report.unknown_a


def test_numerics_packages_rank_before_other_packages_of_the_same_severity() -> None:
    a = snap(packages={"numpy": "1.26.4", "pandas": "2.1.0", "rich": "13.0.0"})
    b = snap(packages={"numpy": "1.27.0", "pandas": "2.2.0", "rich": "14.0.0"})
    order = [f.fact for f in diff(a, b).findings]
    assert order.index("pkg.numpy") < order.index("pkg.pandas") < order.index("pkg.rich")


def test_findings_are_ranked_by_severity_then_weight() -> None:
    a = snap(gpu="A100", cc="8.0", precision={TF32: False}, packages={"numpy": "1.26.4", "requests": "2.0.0"})
    b = snap(gpu="A100", cc="8.0", precision={TF32: True}, packages={"numpy": "1.26.1", "requests": "3.0.0"},
             python="3.11.2")
    report = diff(a, b)
    ranks = [("high", "medium", "low", "info").index(f.severity) for f in report.findings]
    assert ranks == sorted(ranks)
    assert report.findings[0].fact == f"precision.{TF32}"


# -------------------------------------------------------------------------------- unknown facts

def test_facts_known_on_one_side_only_are_listed_as_unknown_not_as_differences() -> None:
    partial = Snapshot(source="pip-freeze", distributions=(Distribution(name="numpy", version="1.26.4"),))
    report = diff(partial, snap())
    assert "python.version" in report.unknown_a
    assert all(f.fact != "python.version" for f in report.findings)
    assert report.unknown_b == ()


def test_a_partial_package_list_leaves_missing_packages_unknown() -> None:
    collect_env = Snapshot(source="collect-env", distributions=(Distribution(name="torch", version="2.3.0"),))
    report = diff(collect_env, snap())
    assert "pkg.numpy" in report.unknown_a
    assert "pkg.numpy" not in by_fact(report)


# -------------------------------------------------------------------------------------- derived

@pytest.mark.parametrize(("name", "cc"), [
    ("NVIDIA A100-SXM4-80GB", "8.0"), ("Tesla V100-SXM2-16GB", "7.0"), ("Tesla T4", "7.5"),
    ("NVIDIA GeForce RTX 3090", "8.6"), ("GeForce RTX 2080 Ti", "7.5"), ("NVIDIA H100 80GB HBM3", "9.0"),
    ("NVIDIA A10G", "8.6"), ("NVIDIA L4", "8.9"), ("NVIDIA GeForce RTX 4080 SUPER", "8.9"), ("Tesla K80", "3.7"),
    ("GeForce GTX 1080 Ti", "6.1"), ("Tesla P100-PCIE-16GB", "6.0"), ("NVIDIA RTX A6000", "8.6"),
    ("NVIDIA RTX 6000 Ada Generation", "8.9"), ("Quadro RTX 8000", "7.5"), ("NVIDIA GeForce RTX 5090", "12.0"),
    ("GeForce GTX TITAN X", "5.2"), ("GeForce GTX TITAN", "3.5"), ("GeForce GTX TITAN Black", "3.5"),
])
def test_compute_capability_comes_from_nvidias_table(name: str, cc: str) -> None:
    assert compute_capability(name) == cc


@pytest.mark.parametrize("name", ["GeForce GTX 960M", "TITAN X", "Some Future GPU", "", None])
def test_unknown_or_ambiguous_gpu_names_stay_unknown(name: str | None) -> None:
    assert compute_capability(name) is None


@pytest.mark.parametrize(("version", "expected"), [
    ("2.1.0+cu121", (True, "12.1")), ("1.8.1+cu111", (True, "11.1")), ("2.3.0+cpu", (True, None)),
    ("2.3.0", (False, None)), ("2.3.0+rocm5.7", (False, None)), ("not a version", (False, None)),
])
def test_cuda_build_from_the_local_version_tag(version: str, expected: tuple[bool, str | None]) -> None:
    assert cuda_from_local_tag(version) == expected


def test_tf32_defaults_follow_pytorch_history() -> None:
    assert torch_tf32_defaults("1.6.0")[TF32] is False
    assert torch_tf32_defaults("1.8.1+cu111") == {TF32: True, "torch.backends.cudnn.allow_tf32": True}
    assert torch_tf32_defaults("1.12.0")[TF32] is False
    assert torch_tf32_defaults("2.3.0")["torch.backends.cudnn.allow_tf32"] is True


def test_enrich_marks_what_it_inferred_and_is_idempotent() -> None:
    report = Snapshot(source="pip-freeze", gpu=Gpu(status="ok", devices=(GpuDevice(index=0, name="Tesla T4"),)),
                      distributions=(Distribution(name="torch", version="2.1.0+cu121"),))
    once = enrich(report)
    assert once.gpu is not None and once.gpu.devices[0].compute_capability == "7.5"
    assert once.cuda == CudaStack(torch=TorchBuild(version="2.1.0+cu121", cuda="12.1"))
    assert {"gpu.devices[0].compute_capability", "cuda.torch.cuda", f"precision.{TF32}"} <= set(once.derived)
    assert enrich(once) == once


def test_a_default_against_a_measured_setting_is_one_severity_lower_and_says_so() -> None:
    host = snap(gpu="A100", cc="8.0", packages={"torch": "2.3.0"})  # no hook record: defaults are derived
    container = snap(gpu="A100", cc="8.0", packages={"torch": "2.3.0"}, precision={TF32: True})
    finding = by_fact(diff(host, container))[f"precision.{TF32}"]
    assert finding.severity == "medium"
    assert finding.derived == ("A",)
    assert "default of the installed framework version" in finding.why


def test_torch_11_versus_112_flags_the_tf32_default_change_on_ampere() -> None:
    a = snap(gpu="A100", cc="8.0", packages={"torch": "1.11.0"})
    b = snap(gpu="A100", cc="8.0", packages={"torch": "1.12.0"})
    found = by_fact(diff(a, b))
    assert found[f"precision.{TF32}"].severity == "high"
    assert found["pkg.torch"].severity == "high"


# ------------------------------------------------------------------------------------ comparisons

def test_version_comparison_tolerates_a_shorter_stated_precision_but_package_comparison_does_not() -> None:
    assert compare("version", "11.1", "11.1.105") is None
    assert compare("package", "1.8", "1.8.1") is not None
    change = compare("version", "2.27", "2.28")
    assert change is not None and change.kind == "minor"


def test_set_and_threshold_comparisons() -> None:
    change = compare("set", frozenset({"avx2"}), frozenset({"avx2", "avx512f"}))
    assert change is not None and change.kind == "added"
    crossed = compare("threshold", "7.5", "8.6", 8.0)
    assert crossed is not None and crossed.kind == "crossed"
    same_side = compare("threshold", "8.0", "8.6", 8.0)
    assert same_side is not None and same_side.kind == "changed"


# -------------------------------------------------------------------------------------- rendering

def test_json_findings_have_exactly_the_documented_keys() -> None:
    report = diff(snap(), snap(python="3.12.1", env={"OMP_NUM_THREADS": "1"}))
    payload = render_json(report)
    assert payload["findings"], "the test needs findings"
    for finding in payload["findings"]:
        assert tuple(finding) == FINDING_KEYS
        assert finding["severity"] in ("high", "medium", "low", "info")
    json.dumps(payload)  # plain JSON values only
    assert payload["compared"] == report.compared and payload["verdict"] == report.verdict


def test_markdown_is_a_table_with_the_verdict_and_escaped_cells() -> None:
    report = diff(snap(env={"XLA_FLAGS": "a|b"}, packages={"jax": "0.4.30"}),
                  snap(env={"XLA_FLAGS": "c"}, packages={"jax": "0.4.30"}))
    text = render_markdown(report)
    assert text.startswith("### envcap diff")
    assert f"**{report.verdict}**" in text
    assert "| medium | `env.XLA_FLAGS` | a\\|b | c |" in text


def test_text_output_groups_by_severity_and_ends_with_the_verdict() -> None:
    from rich.console import Console

    report = diff(snap(gpu="A100", cc="8.0", precision={TF32: False}),
                  snap(gpu="A100", cc="8.0", precision={TF32: True}, python="3.11.2"))
    out = io.StringIO()
    render_text(report, Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert text.index("High:") < text.index("Low:")
    assert text.rstrip().splitlines()[-1] == report.verdict


# ------------------------------------------------------------------------- reports that do not mislead
def test_a_variable_ranks_above_the_thread_counts_derived_from_it() -> None:
    """Issue 10: OMP_NUM_THREADS=1 on one side is the cause; the BLAS count follows from it."""
    report = diff(snap(env={"OMP_NUM_THREADS": "4"}), snap(env={"OMP_NUM_THREADS": "1"}))
    order = [f.fact for f in report.significant]
    assert order.index("env.OMP_NUM_THREADS") < order.index("blas.openblas.threads")
    assert report.significant[0].fact == "env.OMP_NUM_THREADS"


def test_no_most_likely_cause_when_nothing_at_medium_or_above_differs() -> None:
    report = diff(snap(python="3.11.7"), snap(python="3.11.2"))
    assert report.worst() == "low"
    assert "most likely cause" not in report.verdict and "none likely to change results" in report.verdict


def test_facts_unknown_on_both_sides_are_listed_for_both() -> None:
    """A probe that could not read the same thing on both sides: unknown in A and in B, not in A only."""
    from envcap.lock import Unavailable

    lost = (Unavailable(probe="env.OMP_NUM_THREADS", reason="could not read"),)
    report = diff(snap(unavailable=lost), snap(unavailable=lost))
    assert "env.OMP_NUM_THREADS" in report.unknown_a and "env.OMP_NUM_THREADS" in report.unknown_b
