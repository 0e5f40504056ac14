"""What a replay's outputs are compared with, and whether repeated runs wrote the same.

The baseline is the native run ``envcap snapshot --outputs ... -- CMD`` recorded in the lock, else
the latest earlier replay of the same lock that fingerprinted matching files.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path

from envcap._serde import ShapeError, from_json
from envcap.lock import OutputFingerprint, Snapshot
from envcap.replay.image import REPLAYS
from envcap.replay.report import OutputsSection, RepeatPair, RepeatSection, RunRecord
from envcap.workload.outputs import OutputComparison, compare


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.replace("**/", "")) for p in patterns)


def outputs_baseline(folder: Path, lock: Snapshot, patterns: Sequence[str], current: str
                     ) -> tuple[str | None, tuple[OutputFingerprint, ...], Path | None]:
    """What this replay's outputs are compared with: the native run in the lock, else the latest replay."""
    if lock.outputs:
        prints = tuple(fp for fp in lock.outputs if _matches(fp.path, patterns))
        if prints:
            return "the native run recorded by `envcap snapshot --outputs`", prints, folder / "outputs"
    replays = folder / REPLAYS
    if replays.is_dir():
        for entry in sorted((p for p in replays.iterdir() if p.is_dir() and p.name != current), reverse=True):
            try:
                data = json.loads((entry / "outputs.json").read_text("utf-8"))
                prints = tuple(from_json(OutputFingerprint, item) for item in data["files"])
            except (OSError, ValueError, KeyError, TypeError, ShapeError):
                continue
            prints = tuple(fp for fp in prints if _matches(fp.path, patterns))
            if prints:
                return f"the earlier replay {entry.name}", prints, entry / "outputs" / "run-1"
    return None, (), None


def outputs_section(folder: Path, lock: Snapshot, patterns: Sequence[str], replay_id: str, first: RunRecord,
                    replay_dir: Path) -> OutputsSection:
    baseline, prints, copies = outputs_baseline(folder, lock, patterns, replay_id)
    files: tuple[OutputComparison, ...] = (
        compare(prints, first.outputs, baseline_copies=copies, current_copies=replay_dir / "outputs" / "run-1")
        if baseline else compare((), first.outputs, baseline_copies=None, current_copies=None))
    return OutputsSection(patterns=tuple(patterns), baseline=baseline, files=files)


def repeat_section(runs: Sequence[RunRecord], patterns: Sequence[str], replay_dir: Path) -> RepeatSection:
    """Every finished run against the first: the workload's own nondeterminism, apart from the environment's."""
    finished = [r for r in runs if r.exit_code is not None]
    pairs = tuple(RepeatPair(run=r.index, files=compare(
        finished[0].outputs, r.outputs, baseline_copies=replay_dir / "outputs" / "run-1",
        current_copies=replay_dir / "outputs" / f"run-{r.index}")) for r in finished[1:])
    identical: bool | None = None
    if len(finished) >= 2 and patterns and any(r.outputs for r in finished):
        identical = all(item.status == "same" for pair in pairs for item in pair.files)
    printed = {r.stdout_sha256 for r in finished}
    return RepeatSection(runs=len(finished), identical=identical, pairs=pairs,
                         stdout_identical=len(printed) == 1 if len(finished) >= 2 else None)
