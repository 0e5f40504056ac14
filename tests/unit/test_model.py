"""The snapshot model: canonical bytes, the content digest, the schema gate."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from envcap.cli import main
from envcap.errors import LockfileError
from envcap.lock import (
    SCHEMA_VERSION,
    Distribution,
    PythonEnv,
    Snapshot,
    content_digest,
    digest_matches,
    dumps,
    loads,
    snapshot_to_dict,
)

LOCK_SET = ("envcap.lock.json", "requirements.lock", "requirements.in", "pylock.toml", "Dockerfile", ".dockerignore")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of our own, so nothing else installing into envcap's venv can change it mid-test."""
    root = tmp_path_factory.mktemp("model") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    return root / "bin" / "python"


@pytest.fixture(scope="module")
def two_snapshots(target: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same environment snapshotted twice, a second apart, through the real CLI."""
    import time

    from click.testing import CliRunner

    work = tmp_path_factory.mktemp("twice")
    outs = (work / "first", work / "second")
    for out in outs:
        result = CliRunner().invoke(main, ["snapshot", "--python", str(target), "--out", str(out), "--offline"])
        assert result.exit_code == 0, result.output
        time.sleep(1.1)  # captured_at has one-second resolution: make it differ
    return outs


def test_two_snapshots_differ_only_in_capture_time(two_snapshots: tuple[Path, Path]) -> None:
    first, second = two_snapshots
    a = (first / "envcap.lock.json").read_text("utf-8").splitlines()
    b = (second / "envcap.lock.json").read_text("utf-8").splitlines()
    assert len(a) == len(b)
    differing = [(x, y) for x, y in zip(a, b) if x != y]
    assert len(differing) == 1
    assert differing[0][0].strip().startswith('"captured_at"')
    assert differing[0][1].strip().startswith('"captured_at"')
    for name in LOCK_SET[1:]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_digest_is_the_same_for_both_and_matches_the_content(two_snapshots: tuple[Path, Path]) -> None:
    first, second = (loads((p / "envcap.lock.json").read_text("utf-8")) for p in two_snapshots)
    assert first.captured_at != second.captured_at
    assert first.digest == second.digest
    assert first.digest == content_digest(first)
    assert first.digest is not None and first.digest.startswith("sha256:") and len(first.digest) == 71


def test_lock_json_is_canonical(two_snapshots: tuple[Path, Path]) -> None:
    text = (two_snapshots[0] / "envcap.lock.json").read_text("utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert dumps(loads(text)) == text  # loading and writing again changes nothing
    names = [d["name"] for d in data["distributions"]]
    assert names == sorted(names)
    assert data["schema"] == SCHEMA_VERSION


def _snapshot() -> Snapshot:
    return Snapshot(captured_at="2026-01-01T00:00:00Z", python=PythonEnv(version="3.11.7"),
                    distributions=(Distribution(name="numpy", version="2.1.0"),
                                   Distribution(name="six", version="1.16.0")))


def test_digest_excludes_capture_time_and_itself() -> None:
    snap = _snapshot()
    assert content_digest(snap) == content_digest(replace(snap, captured_at="2030-12-31T23:59:59Z"))
    assert content_digest(snap) == content_digest(replace(snap, digest="sha256:" + "0" * 64))
    assert content_digest(snap) == content_digest(replace(snap, captured_at=None))


def test_digest_changes_with_any_fact() -> None:
    snap = _snapshot()
    changed = replace(snap, distributions=(Distribution(name="numpy", version="2.1.1"), snap.distributions[1]))
    assert content_digest(snap) != content_digest(changed)
    assert content_digest(snap) != content_digest(replace(snap, env={"OMP_NUM_THREADS": "1"}))


def test_round_trip_keeps_every_field() -> None:
    snap = _snapshot().with_digest()
    assert loads(dumps(snap)) == snap
    assert digest_matches(loads(dumps(snap)))


def test_hand_edit_is_detected_by_the_digest() -> None:
    data = json.loads(dumps(_snapshot()))
    data["distributions"][0]["version"] = "9.9.9"
    edited = loads(json.dumps(data))
    assert not digest_matches(edited)


def test_unknown_keys_are_ignored() -> None:
    data = json.loads(dumps(_snapshot()))
    data["added_in_a_later_minor"] = {"x": 1}
    data["python"]["future_field"] = True
    assert loads(json.dumps(data)).python == PythonEnv(version="3.11.7")


@pytest.mark.parametrize("schema", [SCHEMA_VERSION + 1, 99])
def test_newer_schema_is_refused_with_an_upgrade_hint(schema: int) -> None:
    data = json.loads(dumps(_snapshot()))
    data["schema"] = schema
    with pytest.raises(LockfileError) as info:
        loads(json.dumps(data), origin="x.json")
    assert f"schema {schema}" in info.value.message and "newer" in info.value.message
    assert info.value.hint is not None and "upgrade envcap" in info.value.hint


@pytest.mark.parametrize("schema", [None, "1", True, 0, -1, 1.0])
def test_missing_or_invalid_schema_is_refused(schema: object) -> None:
    data = json.loads(dumps(_snapshot()))
    if schema is None:
        del data["schema"]
    else:
        data["schema"] = schema
    with pytest.raises(LockfileError):
        loads(json.dumps(data))


def test_newer_schema_through_the_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(dumps(_snapshot()))
    data["schema"] = SCHEMA_VERSION + 1
    (tmp_path / "envcap.lock.json").write_text(json.dumps(data), "utf-8")
    result = cli.invoke(main, ["show", str(tmp_path)])
    assert result.exit_code == 4
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and "newer" in lines[0]
    assert lines[1] == "hint: upgrade envcap (pip install -U envcap)"
    assert "Traceback" not in result.output + result.stderr


def test_a_probe_snapshot_needs_its_python_section_but_a_foreign_one_does_not() -> None:
    data = json.loads(dumps(_snapshot()))
    del data["python"]
    with pytest.raises(LockfileError, match="no 'python' section"):
        loads(json.dumps(data))
    data["source"] = "pip-freeze"
    assert loads(json.dumps(data)).python is None


def test_json_from_snapshot_to_dict_has_every_top_level_field() -> None:
    keys = set(snapshot_to_dict(_snapshot()))
    assert {"schema", "captured_at", "digest", "source", "python", "distributions", "gpu", "cuda", "blas", "env",
            "git", "unavailable", "warnings"} <= keys
