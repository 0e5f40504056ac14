"""The code habits the project keeps, checked like behaviour: mypy --strict and ruff on envcap/.

Why in the suite: CI runs only the test command, so a habit not checked here erodes silently.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def test_mypy_strict_passes_on_envcap() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_passes_on_envcap() -> None:
    done = subprocess.run([str(BIN / "ruff"), "check", "envcap"], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
