"""``envcap show`` fed damaged lock files: one ``error:`` line and a non-zero exit, or a valid lock shown.

The damage starts from a real snapshot of a real venv, then hypothesis truncates it, replaces it with
random bytes, changes values and their types, deletes keys, nests deeply, or breaks the UTF-8.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap.cli import main
from envcap.lock import loads

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@functools.lru_cache(maxsize=1)
def real_lock() -> str:
    """A real snapshot of envcap's venv (offline: hashes from the cache only), taken outside any repository."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="envcap-fuzz-") as folder:
        os.chdir(folder)  # the probe records git state of the current directory: keep it out
        try:
            result = CliRunner().invoke(main, ["snapshot", "--python", sys.executable, "--out", "lock", "--offline"])
        finally:
            os.chdir(here)
        assert result.exit_code == 0, result.output
        return Path(folder, "lock", "envcap.lock.json").read_text("utf-8")


@pytest.fixture
def valid_lock() -> str:
    return real_lock()


def show(raw: bytes, folder: Path, *args: str) -> Any:
    lock = folder / "envcap.lock.json"
    lock.write_bytes(raw)
    return CliRunner().invoke(main, ["show", *args, str(folder)])


def assert_clean_outcome(result: Any, raw: bytes) -> None:
    """Exit 0 only for a lock envcap can read; otherwise one error line, an optional hint, no traceback."""
    if result.exit_code == 0:
        loads(raw.decode("utf-8"))  # it really was a valid lock
        return
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == 4
    lines = result.stderr.splitlines()
    assert len([line for line in lines if line.startswith("error: ")]) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert all(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# ------------------------------------------------------------------------------------ mutations

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                  st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4)),
                           max_leaves=12)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data[:3]):
            found += paths(value, prefix + (index,))
    return found


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return data


def delete_at(data: Any, path: tuple[Any, ...]) -> Any:
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return data


@given(cut=st.floats(min_value=0.0, max_value=0.999))
@SETTINGS
def test_truncated(tmp_path: Path, cut: float) -> None:
    valid_lock = real_lock()
    raw = valid_lock.encode()[: int(len(valid_lock) * cut)]
    assert_clean_outcome(show(raw, tmp_path), raw)


@given(raw=st.binary(max_size=2000))
@SETTINGS
def test_random_bytes(tmp_path: Path, raw: bytes) -> None:
    assert_clean_outcome(show(raw, tmp_path), raw)


@given(data=st.data())
@SETTINGS
def test_values_replaced_by_other_types(tmp_path: Path, data: st.DataObject) -> None:
    valid_lock = real_lock()
    doc = json.loads(valid_lock)
    path = data.draw(st.sampled_from(paths(doc)[1:]))
    doc = set_at(doc, path, data.draw(json_values))
    raw = json.dumps(doc).encode()
    assert_clean_outcome(show(raw, tmp_path), raw)
    assert_clean_outcome(show(raw, tmp_path, "--json"), raw)


@given(data=st.data())
@SETTINGS
def test_keys_deleted(tmp_path: Path, data: st.DataObject) -> None:
    valid_lock = real_lock()
    doc = json.loads(valid_lock)
    for _ in range(data.draw(st.integers(1, 4))):
        candidates = paths(doc)[1:]
        if not candidates:
            break
        doc = delete_at(doc, data.draw(st.sampled_from(candidates)))
    raw = json.dumps(doc).encode()
    assert_clean_outcome(show(raw, tmp_path), raw)


def nested_lock(depth: int, where: str, kind: str) -> bytes:
    nested = ("[" * depth + "1" + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)
    if where == "top":
        return nested.encode()
    doc = json.loads(real_lock())
    doc[where] = "@@NESTED@@"
    return json.dumps(doc).replace('"@@NESTED@@"', nested if where != "precision" else '{"x":' + nested + "}").encode()


# "precision" (a free-form dict) is left out here: see test_deep_nesting_inside_precision, a known bug.
@given(depth=st.integers(10, 5000), where=st.sampled_from(["top", "env", "distributions", "gpu", "cuda"]),
       kind=st.sampled_from(["list", "dict"]))
@SETTINGS
def test_deep_nesting(tmp_path: Path, depth: int, where: str, kind: str) -> None:
    """A lock nested thousands deep must not end in a RecursionError traceback."""
    raw = nested_lock(depth, where, kind)
    assert_clean_outcome(show(raw, tmp_path), raw)


@pytest.mark.parametrize("depth", [600, 900])
def test_deep_nesting_inside_precision(tmp_path: Path, depth: int) -> None:
    raw = nested_lock(depth, "precision", "list")
    assert_clean_outcome(show(raw, tmp_path), raw)


@given(data=st.data())
@SETTINGS
def test_not_utf8(tmp_path: Path, data: st.DataObject) -> None:
    valid_lock = real_lock()
    raw = bytearray(valid_lock.encode())
    for _ in range(data.draw(st.integers(1, 5))):
        raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.sampled_from([0xFF, 0xFE, 0xC3, 0x80, 0xED])))
    assert_clean_outcome(show(bytes(raw), tmp_path), bytes(raw))


def test_keys_with_newlines_still_give_one_error_line(valid_lock: str, tmp_path: Path) -> None:
    """A damaged key is named in the message; a newline in it must not split the error in two."""
    doc = json.loads(valid_lock)
    doc["env"] = {"OMP_NUM_THREADS\nsecond line": 5}
    raw = json.dumps(doc).encode()
    result = show(raw, tmp_path)
    assert result.exit_code == 4
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr


def test_valid_lock_is_shown(valid_lock: str, tmp_path: Path) -> None:
    result = show(valid_lock.encode(), tmp_path)
    assert result.exit_code == 0
    assert "Python" in result.stdout and "Digest" in result.stdout
    assert "does not match" not in result.stdout


def test_damaged_lock_through_a_real_process(valid_lock: str, tmp_path: Path) -> None:
    """The console script, as a user runs it: exit code, one error line, no traceback."""
    (tmp_path / "envcap.lock.json").write_text(valid_lock[: len(valid_lock) // 2], "utf-8")
    envcap = Path(sys.executable).parent / "envcap"
    done = subprocess.run([str(envcap), "show", str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 4
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: ") and "not valid JSON" in lines[0]
    assert lines[1].startswith("hint: ")
    assert len(lines) == 2


def test_missing_and_unreadable_locations(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli.invoke(main, ["show", str(tmp_path / "nowhere")])
    assert result.exit_code == 4 and result.stderr.startswith("error: no snapshot at ")
    folder = tmp_path / "dir-as-lock"
    (folder / "envcap.lock.json").mkdir(parents=True)
    result = cli.invoke(main, ["show", str(folder)])
    assert result.exit_code == 4 and result.stderr.startswith("error: cannot read ")
    assert isinstance(result.exception, SystemExit)
