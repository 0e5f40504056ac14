"""What a workload wrote: fingerprints of its output files, and how far two versions of a file differ.

Why more than a hash: a hash says *that* ``metrics.json`` changed, not whether the loss moved in
the 7th digit (a BLAS or ISA difference) or in the 1st (a different algorithm). For the formats ML
runs write most (JSON, CSV, NumPy ``.npy``/``.npz``) the largest absolute and relative difference
of the numbers in them is given, which is the figure a user compares with a tolerance.

To compare numbers, the earlier version of each file must still exist after the workload overwrote
it, so ``keep_copies`` stores a copy beside the report (up to ``MAX_COPY_BYTES`` per file).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcap.errors import UsageError
from envcap.fs import sha256_file
from envcap.lock import OutputFingerprint

MAX_COPY_BYTES = 256 << 20  # larger outputs keep only their hash
MAX_PARSE_BYTES = 64 << 20  # larger files are compared by hash only
NUMERIC_SUFFIXES = (".json", ".csv", ".tsv", ".npy", ".npz")


@dataclass(frozen=True)
class NumericDiff:
    """How far the numbers of two versions of one file are apart.

    ``max_rel`` is ``|a - b| / max(|a|, |b|)``: symmetric, so it does not matter which side is the
    reference. ``at`` names the value with the largest absolute difference (``weights[3]``,
    ``row 7, column loss``). ``note`` says what could not be compared (a shape that differs).
    """

    kind: str  # json | csv | npy | npz
    compared: int
    differing: int
    max_abs: float
    max_rel: float
    at: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class OutputComparison:
    path: str
    status: str  # same | differs | missing (in the new run) | new (not in the baseline)
    baseline_sha256: str | None = None
    sha256: str | None = None
    numeric: NumericDiff | None = None


# ----------------------------------------------------------------------------------- fingerprints

def expand(patterns: Sequence[str], root: Path) -> list[Path]:
    """Files matching the glob ``patterns`` (``**`` allowed), relative ones resolved against ``root``."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        if not pattern.strip():
            raise UsageError("an empty --outputs pattern was given.", hint="pass a glob such as 'out/*.json'")
        full = pattern if os.path.isabs(pattern) else os.path.join(str(root), pattern)
        for match in glob.glob(full, recursive=True):
            path = Path(match)
            if path.is_file():
                found[os.path.normpath(match)] = path
    return [found[key] for key in sorted(found)]


def display_path(path: Path, root: Path) -> str:
    """Relative to ``root`` when inside it: the replay mounts the same folder at the same path."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return os.path.abspath(path)




def fingerprint(patterns: Sequence[str], root: Path,
                keep: Callable[[Path], bool] | None = None) -> tuple[OutputFingerprint, ...]:
    """Hashes every file matching ``patterns`` (that ``keep`` accepts, asked before hashing);
    a file that vanishes while hashed is skipped."""
    prints = []
    for path in expand(patterns, root):
        try:
            if keep is not None and not keep(path):
                continue
            prints.append(OutputFingerprint(path=display_path(path, root), sha256=sha256_file(path),
                                            size=path.stat().st_size))
        except OSError:
            continue
    return tuple(prints)


def resolve(fp: OutputFingerprint, root: Path) -> Path:
    return Path(fp.path) if os.path.isabs(fp.path) else root / fp.path


def copy_name(fp: OutputFingerprint) -> str:
    """Where a copy lives under a copies folder: the relative path, or a flattened absolute one."""
    if os.path.isabs(fp.path):
        return "_abs" + fp.path
    return fp.path


def keep_copies(prints: Iterable[OutputFingerprint], root: Path, dest: Path) -> list[str]:
    """Copies the fingerprinted files into ``dest`` so a later run can be compared number by number.

    Returns the paths that were too large to keep (only their hash is then compared).
    """
    skipped = []
    for fp in prints:
        if fp.size > MAX_COPY_BYTES:
            skipped.append(fp.path)
            continue
        target = dest / copy_name(fp)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resolve(fp, root), target)
        except OSError:
            skipped.append(fp.path)
    return skipped


# ------------------------------------------------------------------------------------ comparison

def fs_now(folder: Path) -> int:
    """The file system's idea of now, from a file written just before the run.

    Why not ``time.time_ns()``: the kernel stamps files with a coarse clock that can lag the precise
    one by a few milliseconds, so a file written right after the run started could look older.
    """
    marker = folder / ".started"
    marker.write_bytes(b"")
    return marker.stat().st_mtime_ns


def fresh_outputs(patterns: Sequence[str], cwd: Path, since_ns: int
                  ) -> tuple[tuple[OutputFingerprint, ...], tuple[str, ...]]:
    """(files written since ``since_ns``, files that match but are older): an old file is not an output.

    Only the fresh files are hashed: old checkpoints that match a pattern can be gigabytes.
    """
    stale: list[str] = []

    def written_by_this_run(path: Path) -> bool:
        if path.stat().st_mtime_ns >= since_ns:
            return True
        stale.append(display_path(path, cwd))
        return False

    fresh = fingerprint(patterns, cwd, keep=written_by_this_run)
    return fresh, tuple(stale)


def compare(baseline: Sequence[OutputFingerprint], current: Sequence[OutputFingerprint], *,
            baseline_copies: Path | None, current_copies: Path | None) -> tuple[OutputComparison, ...]:
    """Every file of either side: same, differs (with numbers where the format allows), missing, new."""
    before = {fp.path: fp for fp in baseline}
    after = {fp.path: fp for fp in current}
    result = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            assert new is not None
            result.append(OutputComparison(path, "new", None, new.sha256))
        elif new is None:
            result.append(OutputComparison(path, "missing", old.sha256, None))
        elif old.sha256 == new.sha256:
            result.append(OutputComparison(path, "same", old.sha256, new.sha256))
        else:
            numeric = None
            if baseline_copies is not None and current_copies is not None:
                a, b = baseline_copies / copy_name(old), current_copies / copy_name(new)
                if a.is_file() and b.is_file():
                    numeric = numeric_diff(a, b)
            result.append(OutputComparison(path, "differs", old.sha256, new.sha256, numeric))
    return tuple(result)


def numeric_diff(a: Path, b: Path) -> NumericDiff | None:
    """The largest differences between the numbers of two files of the same format, or None.

    None: the format is not one envcap reads, a file is too large, or it does not parse (then the
    hash comparison is all there is).
    """
    suffix = a.suffix.lower()
    if suffix not in NUMERIC_SUFFIXES or suffix != b.suffix.lower():
        return None
    try:
        if a.stat().st_size > MAX_PARSE_BYTES or b.stat().st_size > MAX_PARSE_BYTES:
            return None
        if suffix == ".json":
            return _json_diff(a, b)
        if suffix in (".csv", ".tsv"):
            return _csv_diff(a, b, "\t" if suffix == ".tsv" else ",")
        return _numpy_diff(a, b, suffix[1:])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, csv.Error, struct.error, RecursionError):
        return None  # a damaged output (an empty .npy, a cut .npz, a huge CSV field) is compared by hash alone


class _Acc:
    """Running maxima over pairs of numbers."""

    def __init__(self) -> None:
        self.compared = 0
        self.differing = 0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.at: str | None = None
        self.notes: list[str] = []

    def add(self, x: float, y: float, where: str) -> None:
        self.compared += 1
        if x == y or (math.isnan(x) and math.isnan(y)):
            return
        self.differing += 1
        if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
            diff, rel = math.inf, math.inf
        else:
            diff = abs(x - y)
            scale = max(abs(x), abs(y))
            rel = diff / scale if scale else 0.0
        if diff > self.max_abs or self.at is None:
            self.max_abs = max(self.max_abs, diff)
            self.at = where
        self.max_rel = max(self.max_rel, rel)

    def note(self, text: str) -> None:
        if len(self.notes) < 3:
            self.notes.append(text)

    def result(self, kind: str) -> NumericDiff:
        return NumericDiff(kind=kind, compared=self.compared, differing=self.differing, max_abs=self.max_abs,
                           max_rel=self.max_rel, at=self.at, note="; ".join(self.notes) or None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _walk_json(x: Any, y: Any, where: str, acc: _Acc) -> None:
    if _is_number(x) and _is_number(y):
        acc.add(float(x), float(y), where or "(top level)")
    elif isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y), key=str):
            child = f"{where}.{key}" if where else str(key)
            if key not in x or key not in y:
                acc.note(f"{child} is only in one file")
                continue
            _walk_json(x[key], y[key], child, acc)
    elif isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            acc.note(f"{where or '(top level)'} has {len(x)} items in one file and {len(y)} in the other")
        for index, (p, q) in enumerate(zip(x, y, strict=False)):
            _walk_json(p, q, f"{where}[{index}]", acc)
    elif x != y:
        acc.note(f"{where or '(top level)'} differs in a non-numeric value")


def _json_diff(a: Path, b: Path) -> NumericDiff:
    acc = _Acc()
    _walk_json(json.loads(a.read_text("utf-8")), json.loads(b.read_text("utf-8")), "", acc)
    return acc.result("json")


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_rows(path: Path, delimiter: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def _csv_diff(a: Path, b: Path, delimiter: str) -> NumericDiff:
    acc = _Acc()
    rows_a, rows_b = _csv_rows(a, delimiter), _csv_rows(b, delimiter)
    header = rows_a[0] if rows_a and all(_float(c) is None for c in rows_a[0]) else None
    if len(rows_a) != len(rows_b):
        acc.note(f"{len(rows_a)} rows in one file and {len(rows_b)} in the other")
    for r, (row_a, row_b) in enumerate(zip(rows_a, rows_b, strict=False)):
        if len(row_a) != len(row_b):
            acc.note(f"row {r + 1} has {len(row_a)} cells in one file and {len(row_b)} in the other")
        for c, (cell_a, cell_b) in enumerate(zip(row_a, row_b, strict=False)):
            x, y = _float(cell_a), _float(cell_b)
            column = header[c] if header and c < len(header) else str(c + 1)
            if x is not None and y is not None:
                acc.add(x, y, f"row {r + 1}, column {column}")
            elif cell_a != cell_b:
                acc.note(f"row {r + 1}, column {column} differs in a non-numeric value")
    return acc.result("csv")


def _numpy_diff(a: Path, b: Path, kind: str) -> NumericDiff | None:
    """``.npy``/``.npz`` number by number, read by envcap itself (NumPy need not be installed beside it)."""
    from envcap.workload.npy import arrays

    acc = _Acc()
    left = dict(arrays(a, kind, MAX_PARSE_BYTES))
    right = dict(arrays(b, kind, MAX_PARSE_BYTES))
    for name in sorted(set(left) | set(right)):
        label = name or "array"
        if name not in left or name not in right:
            acc.note(f"{label} is only in one file")
            continue
        x, y = left[name], right[name]
        if x.shape != y.shape:
            acc.note(f"{label} has shape {x.shape} in one file and {y.shape} in the other")
            continue
        if x.item_format is None or y.item_format is None:
            if x.data != y.data:
                acc.note(f"{label} differs in non-numeric values")
            continue
        if x.data == y.data and x.item_format == y.item_format and x.fortran_order == y.fortran_order:
            acc.compared += x.size
            continue
        for index, (u, v) in enumerate(zip(x.values(), y.values(), strict=True)):
            acc.add(u, v, f"{label}[{', '.join(str(i) for i in _position(index, x.shape))}]")
    return acc.result(kind)


def _position(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    from envcap.workload.npy import unravel

    return unravel(index, shape) if shape else ()
