"""The result of a bisect, as data, and its renderings (text for the terminal, JSON for ``--json`` and the file).

Why every run is in it: the culprits are a conclusion; the runs are the evidence (which differences were
applied, what the outputs hashed to, how long it took), so anyone can check the conclusion or repeat a run.
The JSON shape is a contract (``BISECT_FORMAT``, pinned by a test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from envcap._serde import to_json
from envcap.bisect.candidates import Untested

BISECT_FORMAT = 1
BisectStatus = Literal["found", "no-difference", "nondeterministic", "failed"]
RunOutcome = Literal["A", "B", "other", "failed", "unstable"]


@dataclass(frozen=True)
class Culprit:
    """One difference, as the report names it (``culprits``, ``harmless``)."""

    fact: str
    a: str | None
    b: str | None
    kind: str  # package | env | threads | isa
    group: str  # what ddmin applied it with (a package, a variable, "thread counts", "ISA caps")


@dataclass(frozen=True)
class BisectRun:
    index: int
    config: str  # "A", "B as locked", "A + all", "A + scikit-learn"
    applied: tuple[str, ...]  # the facts applied to A (pkg.scikit-learn, env.OMP_NUM_THREADS)
    coupled: tuple[str, ...] = ()  # packages moved to B's version because an applied one needs them
    compiled: tuple[str, ...] = ()  # name==version chosen by pip-compile (neither A's nor B's)
    image: str | None = None
    image_built: bool | None = None  # built for this run (False: found under its digest)
    build_seconds: float = 0.0
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # path -> sha256
    outcome: RunOutcome = "other"
    seconds: float = 0.0
    note: str | None = None


@dataclass(frozen=True)
class BisectReport:
    bisect_id: str
    created_at: str
    envcap_version: str
    a: str
    b: str
    a_digest: str | None
    b_digest: str | None
    command: tuple[str, ...]
    patterns: tuple[str, ...]
    workdir: str
    status: BisectStatus
    message: str
    culprits: tuple[Culprit, ...] = ()
    harmless: tuple[Culprit, ...] = ()
    harmless_proof: str | None = None  # how the harmless ones were proven (which run)
    untested: tuple[Untested, ...] = ()
    notes: tuple[str, ...] = ()
    candidates: int = 0  # groups of differences ddmin worked on
    runs: tuple[BisectRun, ...] = ()
    builds: int = 0  # images built (A's and B's when not cached, and every new intermediate layer)
    images_reused: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # before the first run: A's image (built or found), B's wheels, the candidates
    deciding_files: tuple[str, ...] = ()  # outputs that are stable and differ between A and A + all
    unstable_files: tuple[str, ...] = ()  # outputs that differ between two runs of the same environment
    matched: bool = True  # each side ran with its original's thread counts and ISA caps
    b_as_locked: RunOutcome | None = None  # B's own image: does it give what A + all gives?
    folder: str | None = None


def to_document(report: BisectReport) -> dict[str, Any]:
    data = to_json(report)
    assert isinstance(data, dict)
    return {"format": BISECT_FORMAT, "kind": "bisect-report"} | data


def render_json(report: BisectReport) -> str:
    return json.dumps(to_document(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _value(value: str | None) -> str:
    return "absent" if value is None else value


def _applied(run: BisectRun) -> str:
    if not run.applied:
        return "nothing"
    shown = ", ".join(run.applied[:4]) + (f" +{len(run.applied) - 4}" if len(run.applied) > 4 else "")
    return shown + (f" (with {', '.join(run.coupled)})" if run.coupled else "")


def render_text(report: BisectReport) -> str:
    lines = [f"── envcap bisect {report.bisect_id} " + "─" * 20,
             f"A {report.a}  →  B {report.b}",
             f"Command      {' '.join(report.command)}  (outputs: {', '.join(report.patterns)})", ""]
    if report.culprits:
        lines.append("These differences turn A's outputs into B's:")
        for item in report.culprits:
            lines.append(f"  {item.fact}: {_value(item.a)} → {_value(item.b)}")
    lines.append(report.message)
    if report.harmless:
        lines.append("")
        lines.append("Proven harmless" + (f" ({report.harmless_proof})" if report.harmless_proof else "") + ":")
        for item in report.harmless:
            lines.append(f"  {item.fact}: {_value(item.a)} → {_value(item.b)}")
    if report.untested:
        lines.append("")
        lines.append("Not tested (cannot be varied on this machine), never guessed:")
        for untested in report.untested:
            severity = f"{untested.severity.upper():8} " if untested.severity != "unranked" else ""
            lines.append(f"  {severity}{untested.fact}: {untested.a} → {untested.b}: {untested.why}")
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append("")
    lines.append("Runs (the evidence):")
    for run in report.runs:
        image = "" if run.image_built is None else " [image built]" if run.image_built else ""
        outputs = ", ".join(f"{path} {sha[:10]}" for path, sha in sorted(run.outputs.items())
                            if not report.deciding_files or path in report.deciding_files) or "no outputs"
        code = "" if run.exit_code in (0, None) else f", exit {run.exit_code}"
        lines.append(f"  {run.index:>3} {run.config:<24} applied: {_applied(run)}")
        lines.append(f"      → {run.outcome}{code}; {outputs}; {run.seconds:.1f} s{image}"
                     + (f" ({run.note})" if run.note else ""))
    lines.append("")
    lines.append(f"{len(report.runs)} runs, {report.builds} images built ({report.images_reused} reused), "
                 f"{report.candidates} candidate groups, {report.seconds:.0f} s in all.")
    if report.folder:
        lines.append(f"Saved in {report.folder}/report.json")
    return "\n".join(lines) + "\n"


__all__ = ["BISECT_FORMAT", "BisectReport", "BisectRun", "BisectStatus", "Culprit", "RunOutcome", "render_json",
           "render_text", "to_document"]
