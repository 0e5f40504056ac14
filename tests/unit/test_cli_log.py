"""``-v``: every subprocess (and engine call, and HTTP request) envcap makes is logged, with secrets redacted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envcap import _log
from envcap._subprocess import run


@pytest.fixture(autouse=True)
def quiet_afterwards() -> Iterator[None]:
    yield
    _log.setup(0)


def test_python_dash_m_envcap_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "envcap", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("envcap, version ")


def test_verbose_snapshot_logs_the_probe_it_starts(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "envcap", "-v", "snapshot", "--offline", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "envcap: [envcap.subprocess] run " in done.stderr and "_probe.py" in done.stderr
    quiet = subprocess.run([sys.executable, "-m", "envcap", "snapshot", "--offline", "--out", str(tmp_path / "q")],
                           capture_output=True, text=True, check=False, cwd=tmp_path)
    assert "[envcap.subprocess]" not in quiet.stderr


def test_the_log_redacts_credentials_in_urls(capsys: pytest.CaptureFixture[str]) -> None:
    _log.setup(1)
    run([sys.executable, "-c", "pass", "https://alice:s3cret@index.example/simple"])
    err = capsys.readouterr().err
    assert "index.example" in err and "s3cret" not in err and "alice" not in err


def test_without_v_nothing_is_logged(capsys: pytest.CaptureFixture[str]) -> None:
    _log.setup(0)
    run([sys.executable, "-c", "pass"])
    assert capsys.readouterr().err == ""
    assert not [h for h in _log.LOGGER.handlers if h.get_name() == "envcap-cli"]
