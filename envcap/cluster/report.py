"""The fleet's one merged report: nodes grouped into environments, each explained against the reference.

Why classes and not one diff per node: on 200 nodes the answer a person needs is "these 198 are alike,
nodes 17 and 42 differ, and this is why", so nodes whose environments explain cannot tell apart form
one class, and each class carries explain's ranked findings against the reference (the snapshot in
DIR, or the fleet's most common environment). Nodes that gave no environment are listed with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from envcap.cluster import ClusterKind
from envcap.explain import DiffReport
from envcap.explain.render import value_text

# down: the batch system says the node cannot take a task; busy: it could not be had within the timeout;
# refused: the batch system would not start the task for another reason; timeout: the task did not finish;
# failed: it ran and failed (no interpreter, a crash); no-runtime/no-image: --image and the node has no
# docker/podman, or not the image; bad-output: it answered something that is not the probe's report.
ProblemKind = Literal["down", "busy", "refused", "timeout", "failed", "no-runtime", "no-image", "bad-output"]
ReferenceKind = Literal["snapshot", "majority"]
ProbeMode = Literal["interpreter", "image"]
FLEET_FORMAT = 1  # the shape of the payload under --json (besides the CLI's own "format")
SUMMARY_FINDINGS = 3


@dataclass(frozen=True)
class NodeProblem:
    node: str
    kind: ProblemKind
    reason: str


@dataclass(frozen=True)
class VariableChanges:
    """Numerics variables of these nodes against the reference's (closed on both sides: the probe sees all)."""

    missing: tuple[str, ...] = ()  # set in the reference, unset on the nodes
    added: tuple[str, ...] = ()  # unset in the reference, set on the nodes
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.added or self.changed)


@dataclass(frozen=True)
class EnvClass:
    number: int
    nodes: tuple[str, ...]
    report: DiffReport  # the reference (A) against this class's environment (B)
    variables: VariableChanges
    varies: tuple[str, ...] = ()  # facts that differ inside the class, none of them able to change results
    is_reference: bool = False  # the class the others are compared with (no DIR: the most common one)

    @property
    def matches(self) -> bool:
        """Nothing that can change results differs from the reference."""
        return not self.report.significant

    def causes(self, limit: int = SUMMARY_FINDINGS) -> str:
        """``pkg.numpy 1.24.2 vs 1.26.4; env.OMP_NUM_THREADS unset vs 1``: the top findings, reference first."""
        shown = [f"{f.fact} {value_text(f, 'A')} vs {value_text(f, 'B')}" for f in self.report.significant[:limit]]
        more = len(self.report.significant) - limit
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class FleetReport:
    kind: ClusterKind
    where: str  # Slurm 22.05.8
    reference: ReferenceKind
    reference_source: str  # the lock's path, or the reference class's nodes
    mode: ProbeMode
    python: str
    image: str | None
    fingerprint: bool
    asked: tuple[str, ...]  # every node selected, in the batch system's order
    classes: tuple[EnvClass, ...]
    problems: tuple[NodeProblem, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(len(c.nodes) for c in self.classes)

    @property
    def differing(self) -> tuple[EnvClass, ...]:
        return tuple(c for c in self.classes if not c.matches)

    def verdict(self) -> str:
        """One sentence: how many nodes answered, in how many environments, and which differ from the reference."""
        asked, answered = len(self.asked), self.answered
        head = f"{answered} of {asked} nodes answered"
        if not self.classes:
            return f"{head}: no environment to compare."
        envs = "one environment" if len(self.classes) == 1 else f"{len(self.classes)} environments"
        against = "the snapshot" if self.reference == "snapshot" else "the most common environment"
        odd = [n for c in self.differing for n in c.nodes]
        if not odd:
            tail = f"all match {against}"
        else:
            top = self.differing[0]
            cause = top.report.significant[0].fact
            nodes = _names(odd)
            verb = "differs" if len(odd) == 1 else "differ"
            tail = f"{len(odd)} {verb} from {against} ({nodes}; most likely cause: {cause})"
        failed = f"; {len(self.problems)} gave no answer" if self.problems else ""
        return f"{head} in {envs}; {tail}{failed}."


def _names(nodes: list[str], limit: int = 6) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def to_json(report: FleetReport) -> dict[str, Any]:
    """The payload of ``envcap fleet --json`` (the CLI adds ``format`` and ``kind``); pinned by a contract test."""
    from envcap.explain import render_json

    classes = []
    for c in report.classes:
        diff = render_json(c.report)
        classes.append({
            "class": c.number,
            "nodes": list(c.nodes),
            "reference": c.is_reference,
            "matches": c.matches,
            "summary": c.causes() if not c.matches else "",
            "verdict": diff["verdict"],
            "compared": diff["compared"],
            "findings": diff["findings"],
            "unknown_in_reference": diff["unknown_a"],
            "unknown_on_nodes": diff["unknown_b"],
            "variables": {"missing": list(c.variables.missing), "added": list(c.variables.added),
                          "changed": list(c.variables.changed)},
            "varies": list(c.varies),
        })
    return {
        "fleet_format": FLEET_FORMAT,
        "backend": {"kind": report.kind, "where": report.where},
        "reference": {"kind": report.reference, "source": report.reference_source},
        "probe": {"mode": report.mode, "python": report.python, "image": report.image,
                  "fingerprint": report.fingerprint},
        "verdict": report.verdict(),
        "nodes": {"asked": list(report.asked), "answered": report.answered, "classes": len(report.classes),
                  "problems": len(report.problems)},
        "classes": classes,
        "problems": [{"node": p.node, "kind": p.kind, "reason": p.reason} for p in report.problems],
        "notes": list(report.notes),
        "seconds": round(report.seconds, 3),
    }


__all__ = ["FLEET_FORMAT", "EnvClass", "FleetReport", "NodeProblem", "ProbeMode", "ProblemKind", "ReferenceKind",
           "VariableChanges", "to_json"]
