"""The suite's own rule for a missing engine, cluster or tool: a loud skip locally, a failure in CI."""

from __future__ import annotations

import re

import pytest

from tests.machine import unavailable


def test_a_missing_piece_is_a_skip_on_a_developers_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="NO ENGINE"):
        unavailable("NO ENGINE here")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_piece_fails_the_suite_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=re.escape("NO ENGINE here (CI: scripts/test.sh should have set this up)")):
        unavailable("NO ENGINE here")
