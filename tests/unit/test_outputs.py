"""Output fingerprints and the numeric comparison of JSON, CSV and NumPy files."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from envcap.errors import UsageError
from envcap.lock import OutputFingerprint
from envcap.workload.outputs import compare, expand, fingerprint, keep_copies, numeric_diff


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_fingerprint_hashes_matching_files_relative_to_root(tmp_path: Path) -> None:
    write(tmp_path / "out" / "a.json", '{"x": 1}')
    write(tmp_path / "out" / "deep" / "b.json", "[]")
    write(tmp_path / "out" / "c.txt", "not matched")
    prints = fingerprint(["out/**/*.json"], tmp_path)
    assert [p.path for p in prints] == ["out/a.json", "out/deep/b.json"]
    assert prints[0].sha256 == hashlib.sha256(b'{"x": 1}').hexdigest()
    assert prints[0].size == 8


def test_overlapping_patterns_list_a_file_once_and_absolute_patterns_work(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "1,2\n")
    paths = expand(["*.csv", str(tmp_path / "m.csv")], tmp_path)
    assert paths == [tmp_path / "m.csv"]


def test_empty_pattern_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        expand(["  "], tmp_path)


def test_json_diff_finds_largest_absolute_and_relative_difference(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "m.json", json.dumps({"loss": 0.5, "weights": [1.0, 2.0, 3.0], "name": "x"}))
    b = write(tmp_path / "b" / "m.json", json.dumps({"loss": 0.5000001, "weights": [1.0, 2.5, 3.0], "name": "x"}))
    diff = numeric_diff(a, b)
    assert diff is not None
    assert diff.kind == "json"
    assert diff.compared == 4 and diff.differing == 2
    assert diff.max_abs == pytest.approx(0.5)
    assert diff.at == "weights[1]"
    assert diff.max_rel == pytest.approx(0.5 / 2.5)
    assert diff.note is None


def test_json_diff_reports_structure_it_cannot_compare(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", json.dumps({"curve": [1, 2, 3], "only_a": 1, "tag": "x"}))
    b = write(tmp_path / "b.json", json.dumps({"curve": [1, 2], "tag": "y"}))
    diff = numeric_diff(a, b)
    assert diff is not None
    assert diff.differing == 0
    assert diff.note is not None
    assert "curve has 3 items in one file and 2" in diff.note
    assert "only_a is only in one file" in diff.note
    assert "tag differs in a non-numeric value" in diff.note


def test_nan_on_both_sides_is_equal_and_on_one_side_is_infinite(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", "[NaN, NaN]")
    b = write(tmp_path / "b.json", "[NaN, 1.0]")
    diff = numeric_diff(a, b)
    assert diff is not None and diff.differing == 1 and math.isinf(diff.max_abs)


def test_csv_diff_names_row_and_header_column(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    b = write(tmp_path / "b.csv", "epoch,loss\n1,0.9\n2,0.4\n")
    diff = numeric_diff(a, b)
    assert diff is not None and diff.kind == "csv"
    assert diff.at == "row 3, column loss"
    assert diff.max_abs == pytest.approx(0.1)
    assert diff.max_rel == pytest.approx(0.1 / 0.5)


def test_npy_diff_locates_the_element(tmp_path: Path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = x.copy()
    y[1, 2] += 0.25
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    diff = numeric_diff(tmp_path / "a.npy", tmp_path / "b.npy")
    assert diff is not None and diff.kind == "npy"
    assert diff.compared == 6 and diff.differing == 1
    assert diff.at == "array[1, 2]"
    assert diff.max_abs == pytest.approx(0.25)
    assert diff.max_rel == pytest.approx(0.25 / 5.25)


def test_npz_diff_compares_each_array_and_notes_shape_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", w=np.zeros(3), b=np.ones(2))
    np.savez(tmp_path / "b.npz", w=np.array([0.0, 1e-3, 0.0]), b=np.ones(3))
    diff = numeric_diff(tmp_path / "a.npz", tmp_path / "b.npz")
    assert diff is not None
    assert diff.at == "w[1]" and diff.max_abs == pytest.approx(1e-3)
    assert diff.note is not None and "b has shape (2,)" in diff.note


def test_unreadable_or_unknown_formats_give_no_numbers(tmp_path: Path) -> None:
    assert numeric_diff(write(tmp_path / "a.bin", "x"), write(tmp_path / "b.bin", "y")) is None
    assert numeric_diff(write(tmp_path / "a.json", "{"), write(tmp_path / "b.json", "[]")) is None


def test_compare_uses_copies_for_numbers_and_lists_missing_and_new(tmp_path: Path) -> None:
    root = tmp_path / "work"
    write(root / "out" / "m.json", '{"loss": 1.0}')
    write(root / "out" / "gone.json", "{}")
    before = fingerprint(["out/*.json"], root)
    keep_copies(before, root, tmp_path / "copies-1")
    write(root / "out" / "m.json", '{"loss": 1.5}')
    (root / "out" / "gone.json").unlink()
    write(root / "out" / "new.json", "{}")
    after = fingerprint(["out/*.json"], root)
    keep_copies(after, root, tmp_path / "copies-2")
    result = {c.path: c for c in compare(before, after, baseline_copies=tmp_path / "copies-1",
                                         current_copies=tmp_path / "copies-2")}
    assert result["out/gone.json"].status == "missing"
    assert result["out/new.json"].status == "new"
    changed = result["out/m.json"]
    assert changed.status == "differs"
    assert changed.numeric is not None and changed.numeric.max_abs == pytest.approx(0.5)


def test_compare_without_copies_still_says_which_files_differ() -> None:
    a = (OutputFingerprint("x.json", "1" * 64, 3),)
    b = (OutputFingerprint("x.json", "2" * 64, 3),)
    (only,) = compare(a, b, baseline_copies=None, current_copies=None)
    assert only.status == "differs" and only.numeric is None
    (same,) = compare(a, a, baseline_copies=None, current_copies=None)
    assert same.status == "same"


def test_damaged_numeric_outputs_fall_back_to_the_hash(tmp_path: Path) -> None:
    """Files a crashed workload leaves behind must not crash the comparison after the run."""
    from envcap.workload.outputs import numeric_diff

    cases = {
        "empty.npy": (b"", b""),
        "cut.npz": (b"PK\x03\x04broken", b"PK\x03\x04other"),
        "wide.csv": (b"a\n" + b'"' + b"x" * 200_000 + b'"\n', b"a\n1\n"),
    }
    for name, (left, right) in cases.items():
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        a.parent.mkdir(exist_ok=True)
        b.parent.mkdir(exist_ok=True)
        a.write_bytes(left)
        b.write_bytes(right)
        assert numeric_diff(a, b) is None, name
