"""What the test machine could not provide (an engine, a cluster, a tool the test extra installs).

Why one place: on a developer's machine such a test is skipped, loudly; in CI (``CI=true``), where
scripts/test.sh sets every piece up, it fails instead, so a suite that never ran its end-to-end
tests can never read as green.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(message: str) -> NoReturn:
    """Skips the test (fails it in CI), saying what was missing on stderr as well as in the report."""
    print(f"\n!!! {message}", file=sys.stderr)
    if in_ci():
        pytest.fail(f"{message} (CI: scripts/test.sh should have set this up)", pytrace=False)
    pytest.skip(message)
