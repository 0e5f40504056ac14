"""The result of a replay, as data; ``envcap.replay.render`` turns it into text, JSON and Markdown.

Why one record: the terminal report, ``--report FILE`` and ``--markdown FILE`` must never disagree,
and the partial report saved when a workload crashes or the engine dies is the same record with
fewer parts filled in. The JSON shape is a contract (``REPORT_FORMAT``), pinned by a test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from envcap.lock import OutputFingerprint
from envcap.replay.fingerprint import FingerprintSection
from envcap.replay.match import MatchPlan
from envcap.replay.preflight import PreflightCheck
from envcap.workload.outputs import OutputComparison

REPORT_FORMAT = 1
ReplayStatus = Literal["ok", "workload-failed", "command-not-found", "preflight-failed", "interrupted",
                       "engine-failed", "replay-failed"]
SEVERITY_ORDER = ("high", "medium", "low", "info", "unranked")


@dataclass(frozen=True)
class Difference:
    """One fact that is not the same in the original environment and in the replay."""

    fact: str
    original: str
    replay: str
    severity: str = "unranked"  # high | medium | low | info | unranked (the field-by-field fallback)
    why: str | None = None
    mitigation: str | None = None
    rule: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Comparison:
    method: str  # explain (the ranked rules of envcap.explain)
    differences: tuple[Difference, ...] = ()
    stack_identical: bool | None = None  # packages, Python, CUDA libraries, BLAS: None when a side is unknown
    stack_note: str | None = None
    verdict: str | None = None
    unknown: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class RunRecord:
    index: int
    exit_code: int | None
    signal: str | None = None
    oom_killed: bool = False
    seconds: float = 0.0
    outputs: tuple[OutputFingerprint, ...] = ()
    not_rewritten: tuple[str, ...] = ()  # files matching --outputs that this run did not write
    stdout_sha256: str | None = None  # of what the workload printed (stdout, or the TTY's merged stream)


@dataclass(frozen=True)
class OutputsSection:
    patterns: tuple[str, ...]
    baseline: str | None  # what the files are compared with, in words; None when there is nothing yet
    files: tuple[OutputComparison, ...] = ()


@dataclass(frozen=True)
class RepeatPair:
    run: int  # compared with run 1
    files: tuple[OutputComparison, ...]


@dataclass(frozen=True)
class RepeatSection:
    runs: int
    identical: bool | None  # None: fewer than two runs finished, or no outputs to compare
    pairs: tuple[RepeatPair, ...] = ()
    stdout_identical: bool | None = None  # what the runs printed, byte for byte


@dataclass(frozen=True)
class ReplayReport:
    replay_id: str
    created_at: str
    envcap_version: str
    lock_dir: str
    replay_dir: str
    lock_digest: str | None
    command: tuple[str, ...]
    workdir: str
    user: str
    gpus: bool
    status: ReplayStatus
    image: str | None = None
    image_id: str | None = None
    image_built: bool | None = None  # built during this replay (False: found, cached)
    exit_code: int | None = None
    message: str | None = None
    preflight: tuple[PreflightCheck, ...] = ()
    runs: tuple[RunRecord, ...] = ()
    comparison: Comparison | None = None
    precision: dict[str, Any] | None = None
    outputs: OutputsSection | None = None
    repeat: RepeatSection | None = None
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=())  # what was saved in replay_dir
    fingerprint: FingerprintSection | None = None  # the image's kernels against the snapshot's
    match: MatchPlan | None = None  # with --match: what was set to behave as the original host, what cannot be


MAX_REPORT_BYTES = 64 << 20


def load_report(folder: Path) -> ReplayReport:
    """A saved replay (``DIR/replays/<id>/report.json``) read back, so ``envcap show`` can render it.

    Like a lock, a report may come from someone else (pasted into an issue): it is parsed into the
    typed record, and every renderer escapes what it shows.
    """
    from envcap._serde import ShapeError, from_json
    from envcap.errors import LockfileError

    path = folder / "report.json"
    try:
        raw = path.read_bytes()[: MAX_REPORT_BYTES + 1]
        data = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_REPORT_BYTES else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LockfileError(f"cannot read the replay report {path}: {getattr(exc, 'strerror', None) or exc}.",
                            hint="pass a folder written by `envcap replay` (DIR/replays/<id>)") from None
    if not isinstance(data, dict) or data.get("kind") != "replay-report" or data.get("format") != REPORT_FORMAT:
        raise LockfileError(f"{path} is not an envcap replay report of format {REPORT_FORMAT}.",
                            hint="pass a folder written by `envcap replay` (DIR/replays/<id>)")
    try:
        return from_json(ReplayReport, data)
    except (ShapeError, RecursionError) as exc:
        raise LockfileError(f"{path} is damaged: {exc}.", hint="replay again to write a fresh report") from None
