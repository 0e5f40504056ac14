"""Set-up every benchmark shares (the scripts run as ``python bench/NAME.py``, so this imports by name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def byte_compile_envcap() -> None:
    """envcap's modules compiled once, as ``pip install`` does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE=1 (common in CI and containers) would otherwise compile them from source
    on every timed run, about 60 ms that no installed envcap pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "envcap")], check=True,
                   stdout=subprocess.DEVNULL)
