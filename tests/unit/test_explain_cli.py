"""``envcap diff`` on the command line: output forms, the CI gate, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from envcap.cli import main
from envcap.explain.ranking import FINDING_KEYS
from envcap.lock import Snapshot, dumps
from tests.unit.test_explain import snap

FOREIGN = Path(__file__).resolve().parents[1] / "data" / "foreign"


def write(folder: Path, snapshot: Snapshot) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "envcap.lock.json").write_text(dumps(snapshot), "utf-8")
    return folder


def test_identical_environments_print_one_verdict_line(cli: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a", snap())
    result = cli.invoke(main, ["diff", str(a), str(a)])
    assert result.exit_code == 0, result.output
    assert "Identical: all" in result.output.splitlines()[-1]


def test_json_has_a_format_version_and_exactly_the_finding_keys(cli: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a", snap())
    b = write(tmp_path / "b", snap(python="3.12.0", env={"PYTHONHASHSEED": "0"}))
    result = cli.invoke(main, ["diff", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["format"] == 1 and document["kind"] == "diff"
    assert {"verdict", "compared", "unknown_a", "unknown_b", "findings"} <= set(document)
    assert [f["fact"] for f in document["findings"]] == ["env.PYTHONHASHSEED", "python.version"]
    assert all(sorted(f) == sorted(FINDING_KEYS) for f in document["findings"])


def test_markdown_is_ready_to_paste(cli: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a", snap())
    b = write(tmp_path / "b", snap(packages={"numpy": "2.0.0", "torch": "2.3.0"}))
    result = cli.invoke(main, ["diff", str(a), str(b), "--markdown"])
    assert result.exit_code == 0
    assert "| high | `pkg.numpy` | 1.26.4 | 2.0.0 |" in result.output


def test_fail_on_exits_1_at_or_above_the_threshold(cli: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a", snap())
    b = write(tmp_path / "b", snap(env={"OMP_NUM_THREADS": "1"}))  # medium
    assert cli.invoke(main, ["diff", str(a), str(b), "--fail-on", "high"]).exit_code == 0
    assert cli.invoke(main, ["diff", str(a), str(b), "--fail-on", "medium"]).exit_code == 1
    assert cli.invoke(main, ["diff", str(a), str(b), "--fail-on", "low"]).exit_code == 1
    assert cli.invoke(main, ["diff", str(a), str(a), "--fail-on", "low"]).exit_code == 0


def test_foreign_reports_are_detected_by_content(cli: CliRunner, tmp_path: Path) -> None:
    renamed = tmp_path / "env-a.log"
    renamed.write_bytes((FOREIGN / "pip_freeze_torch2.13.txt").read_bytes())
    result = cli.invoke(main, ["diff", str(renamed), str(FOREIGN / "pip_list_torch2.13.json"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["sources"] == {"a": "pip-freeze", "b": "pip-list"}
    assert document["findings"] == []  # the list adds pip and setuptools, which a freeze leaves out


def test_bad_input_is_one_error_line_and_exit_11(cli: CliRunner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = cli.invoke(main, ["diff", str(junk), str(FOREIGN / "pip_freeze_torch2.13.txt")])
    assert result.exit_code == 11
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert "binary" in result.output.splitlines()[0]


def test_json_and_markdown_together_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a", snap())
    result = cli.invoke(main, ["diff", str(a), str(a), "--json", "--markdown"])
    assert result.exit_code == 2
