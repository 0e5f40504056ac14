"""The quality measure: real divergences from public threads, each with the cause the thread found.

Each ``tests/data/corpus/<case>/`` holds ``case.json`` (source URL, a one-line summary, the true cause
as a fact path, and what the two sides were reconstructed from) and the two sides in the formats people
paste. The cause must rank in the top three findings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envcap.explain import diff
from envcap.foreign import load_any

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "case.json").is_file())


def load_case(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / "case.json").read_text("utf-8"))
    return meta


def test_the_corpus_has_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("folder", CASES, ids=lambda p: p.name)
def test_case_records_where_it_comes_from(folder: Path) -> None:
    meta = load_case(folder)
    assert meta["source"].startswith("https://github.com/")
    assert meta["summary"].strip() and "\n" not in meta["summary"]
    assert meta["reconstruction"].strip()
    assert (folder / meta["a"]).is_file() and (folder / meta["b"]).is_file()


@pytest.mark.parametrize("folder", CASES, ids=lambda p: p.name)
def test_true_cause_ranks_in_the_top_three(folder: Path) -> None:
    meta = load_case(folder)
    report = diff(load_any(folder / meta["a"]), load_any(folder / meta["b"]))
    top = [f.fact for f in report.findings[:3]]
    assert meta["cause"] in top, f"{meta['cause']} not in {top}: {report.verdict}"
    cause = next(f for f in report.findings if f.fact == meta["cause"])
    assert cause.severity != "info"
