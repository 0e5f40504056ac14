""".npy/.npz outputs compared number by number by envcap's own reader, NumPy or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envcap.workload.npy import NpyError, parse
from envcap.workload.outputs import numeric_diff


@pytest.mark.parametrize("dtype", ["<f8", ">f4", "<f2", "<i8", "<u1", "|b1", ">i2"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_the_reader_agrees_with_numpy(tmp_path: Path, dtype: str, order: str) -> None:
    rng = np.random.default_rng(7)
    array = np.asarray(rng.integers(0, 100, size=(3, 4, 2)), dtype=dtype, order=order)  # type: ignore[call-overload]
    np.save(tmp_path / "a.npy", array)
    parsed = parse((tmp_path / "a.npy").read_bytes())
    assert parsed.shape == (3, 4, 2) and parsed.fortran_order == (order == "F")
    assert list(parsed.values()) == [float(v) for v in array.ravel(order="C")]


def test_the_largest_difference_and_where_it_is(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = a.copy()
    b[2, 1] += 0.5
    b[0, 0] = 1e-9
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    found = numeric_diff(tmp_path / "a.npy", tmp_path / "b.npy")
    assert found is not None and found.compared == 12 and found.differing == 2
    assert found.max_abs == 0.5 and found.at == "array[2, 1]"


def test_npz_members_compressed_or_not(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "a.npz", w=np.ones(5), b=np.zeros(2, dtype=np.int32))
    np.savez(tmp_path / "b.npz", w=np.ones(5) * 1.25, b=np.zeros(2, dtype=np.int32))
    found = numeric_diff(tmp_path / "a.npz", tmp_path / "b.npz")
    assert found is not None and found.differing == 5 and found.max_abs == 0.25 and found.at == "w[0]"


def test_no_numpy_is_needed_beside_envcap(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.array([1.0, 2.0]))
    np.save(tmp_path / "b.npy", np.array([1.0, 2.5]))
    code = ("import sys; sys.modules['numpy'] = None\n"
            "from pathlib import Path\nfrom envcap.workload.outputs import numeric_diff\n"
            f"d = numeric_diff(Path({str(tmp_path / 'a.npy')!r}), Path({str(tmp_path / 'b.npy')!r}))\n"
            "print(d.differing, d.max_abs)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0.5"]


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200),
                     st.binary(max_size=120).map(lambda tail: b"\x93NUMPY\x01\x00" + len(tail).to_bytes(2, "little")
                                                 + tail)))
def test_damaged_bytes_are_a_reader_error_never_a_crash(raw: bytes) -> None:
    try:
        parsed = parse(raw)
        list(parsed.values()) if parsed.item_format else None
    except NpyError:
        pass
    except Exception as exc:  # struct.error for a short payload is what numeric_diff turns into "no comparison"
        assert type(exc).__name__ == "error", repr(exc)
