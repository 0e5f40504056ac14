"""``envcap snapshot --outputs PATTERN -- CMD``: the native run that replays are compared with.

These run real commands on this host (the workload is a Python one-liner), with the real hook.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from envcap.cli import main
from envcap.errors import UsageError
from envcap.lock import load_snapshot
from envcap.workload.native import native_run

WRITE_METRICS = "import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); (p / 'm.json').write_text('{\"loss\": 0.25}')"


def test_native_run_fingerprints_fresh_outputs_and_keeps_copies(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    old = tmp_path / "out" / "old.json"
    old.write_text("{}")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    run = native_run([sys.executable, "-c", WRITE_METRICS], patterns=["out/*.json"], cwd=tmp_path,
                     copies_dir=tmp_path / "copies")
    assert run.exit_code == 0
    assert [fp.path for fp in run.outputs] == ["out/m.json"]
    assert run.not_rewritten == ("out/old.json",)
    assert (tmp_path / "copies" / "out" / "m.json").read_text() == '{"loss": 0.25}'
    assert run.precision is None  # no framework imported


def test_a_failing_native_run_does_not_replace_the_baseline_copies(tmp_path: Path) -> None:
    copies = tmp_path / "copies"
    (copies / "out").mkdir(parents=True)
    (copies / "out" / "m.json").write_text("previous")
    code = WRITE_METRICS + "; raise SystemExit(4)"
    run = native_run([sys.executable, "-c", code], patterns=["out/*.json"], cwd=tmp_path, copies_dir=copies)
    assert run.exit_code == 4
    assert (copies / "out" / "m.json").read_text() == "previous"


def test_native_run_signal_exit_is_128_plus_n(tmp_path: Path) -> None:
    run = native_run(["sh", "-c", "kill -TERM $$"], patterns=[], cwd=tmp_path, copies_dir=tmp_path / "c")
    assert run.exit_code == 143


def test_native_run_of_a_missing_program_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot run 'no-such-program-envcap'"):
        native_run(["no-such-program-envcap"], patterns=[], cwd=tmp_path, copies_dir=tmp_path / "c")


def test_native_run_records_precision_from_the_hook(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes" / "jax"
    fakes.mkdir(parents=True)
    (fakes / "__init__.py").write_text("__version__ = '0.4.30'\nclass C:\n    jax_default_matmul_precision = 'bfloat16'\n"
                                       "    jax_enable_x64 = False\nconfig = C()\n")
    run = native_run([sys.executable, "-c", "import jax"], patterns=[], cwd=tmp_path, copies_dir=tmp_path / "c",
                     environ={"PYTHONPATH": str(tmp_path / "fakes"), "PATH": "/usr/bin:/bin"})
    assert run.precision == {"jax.version": "0.4.30", "jax.default_matmul_precision": "bfloat16",
                             "jax.enable_x64": False}


def test_snapshot_cli_records_outputs_in_the_lock(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["snapshot", "--offline", "--out", "lock", "--outputs", "out/*.json", "--",
                               sys.executable, "-c", WRITE_METRICS])
    assert result.exit_code == 0, result.output
    snapshot = load_snapshot(tmp_path / "lock")
    assert snapshot.outputs is not None and [fp.path for fp in snapshot.outputs] == ["out/m.json"]
    assert json.loads((tmp_path / "lock" / "outputs" / "out" / "m.json").read_text()) == {"loss": 0.25}
    assert "Recorded 1 output file(s)" in result.stderr


def test_snapshot_cli_passes_the_commands_failure_on(tmp_path: Path, cli: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["snapshot", "--offline", "--out", "lock", "--outputs", "out/*.json", "--",
                               sys.executable, "-c", "raise SystemExit(3)"])
    assert result.exit_code == 3
    assert load_snapshot(tmp_path / "lock").outputs is None
    assert "outputs were not recorded" in result.stderr


def test_snapshot_cli_outputs_without_command_is_a_usage_error(tmp_path: Path, cli: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["snapshot", "--offline", "--out", "lock", "--outputs", "out/*.json"])
    assert result.exit_code == 2 and "--outputs needs the command" in result.stderr


def test_outputs_do_not_change_the_lock_digest(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image is keyed by the lock digest: different numbers must not force a rebuild."""
    monkeypatch.chdir(tmp_path)
    first = cli.invoke(main, ["snapshot", "--offline", "--out", "a", "--outputs", "out/*.json", "--",
                              sys.executable, "-c", WRITE_METRICS])
    second = cli.invoke(main, ["snapshot", "--offline", "--out", "b", "--outputs", "out/*.json", "--",
                               sys.executable, "-c", WRITE_METRICS.replace("0.25", "0.5")])
    assert first.exit_code == 0 and second.exit_code == 0
    a, b = load_snapshot(tmp_path / "a"), load_snapshot(tmp_path / "b")
    assert a.outputs != b.outputs
    assert a.digest == b.digest
