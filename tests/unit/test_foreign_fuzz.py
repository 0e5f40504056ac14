"""Every reader driven with damaged input: it returns a snapshot or raises ReportFormatError or
LockfileError, never another exception; and whatever it returns can be compared.

The damage starts from real reports (tests/data/foreign) and a real lock written by the model:
hypothesis truncates them, overwrites bytes, inserts bytes, swaps lines and feeds pure noise.
"""

from __future__ import annotations

import functools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from envcap.errors import LockfileError, ReportFormatError
from envcap.explain import diff
from envcap.foreign import parse_report
from envcap.lock import Snapshot, dumps
from tests.unit.test_explain import snap

FOREIGN = Path(__file__).resolve().parents[1] / "data" / "foreign"
SETTINGS = settings(max_examples=200, deadline=None)


@functools.lru_cache(maxsize=1)
def samples() -> tuple[bytes, ...]:
    reports = tuple(p.read_bytes() for p in sorted(FOREIGN.iterdir()) if p.is_file() and p.suffix in (".txt", ".json"))
    return reports + (dumps(snap(gpu="NVIDIA A100-SXM4-80GB", precision={"torch.deterministic_algorithms": True}))
                      .encode(),)


def survive(raw: bytes) -> Snapshot | None:
    try:
        snapshot = parse_report(raw, "report")
    except (ReportFormatError, LockfileError) as exc:
        assert exc.message and "\n" not in exc.message
        return None
    assert isinstance(snapshot, Snapshot)
    diff(snapshot, snapshot)
    diff(snapshot, snap())
    return snapshot


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(samples()))
    how = draw(st.sampled_from(["truncate", "overwrite", "insert", "lines", "tail"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "tail":
        return raw[draw(st.integers(0, len(raw))):]
    if how == "overwrite":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 12))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=40)) + raw[at:]
    lines = raw.split(b"\n")
    order = draw(st.permutations(range(len(lines)))) if len(lines) < 200 else list(range(len(lines)))
    keep = draw(st.integers(0, len(lines)))
    return b"\n".join(lines[i] for i in order[:keep])


@SETTINGS
@given(damaged())
def test_damaged_reports_parse_or_fail_cleanly(raw: bytes) -> None:
    survive(raw)


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_fail_cleanly(raw: bytes) -> None:
    survive(raw)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_random_text_fails_cleanly(text: str) -> None:
    survive(text.encode("utf-8"))


@SETTINGS
@given(st.lists(st.sampled_from([
    "PyTorch version: 2.1.0", "Versions of relevant libraries:", "[pip3] numpy==1.26.4", "[conda] blas 1.0 mkl",
    "GPU models and configuration: GPU 0: Tesla T4", "GPU 1: NVIDIA A100", "CUDA used to build PyTorch: 12.1",
    "cuDNN version: Probably one of the following:", "/usr/lib/libcudnn.so.8.9.7", "CPU:", "Flags: avx2 fma",
    "Driver Version : 535.1", "Attached GPUs : 2", "GPU 00000000:01:00.0", "    Product Name : Tesla T4",
    "numpy==1.26.4", "torch=2.1.0=py3.11_cuda12.1_cudnn8.9.2_0", "# platform: linux-64", "Python version: 3.11",
    "", "garbage : : :", "[pip3] broken", "    FB Memory Usage", "        Total : 15360 MiB",
]), max_size=30))
def test_recombined_report_lines_parse_or_fail_cleanly(lines: list[str]) -> None:
    survive("\n".join(lines).encode())
