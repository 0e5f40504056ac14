"""The engine: two snapshots in, findings ranked by how likely each is to change results.

Why separate from the rules: the engine knows how to walk facts, check a rule's conditions on both
sides and rank what fired; it knows nothing about GPUs or BLAS. Everything domain-specific is in
``rules.py`` (what matters), ``facts.py`` (where a fact lives) and ``derive.py`` (what a report
implies).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Literal

from envcap.explain.compare import Change, compare, parse_version
from envcap.explain.derive import enrich
from envcap.explain.facts import FactView, facts_of, how_derived
from envcap.explain.fingerprints import KernelValue
from envcap.explain.rules import RULES, SEVERITIES, AllOf, AnyOf, Cond, Rule, Severity
from envcap.lock import Snapshot

SEVERITY_RANK = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}  # high 4 .. info 1
FINDING_KEYS = ("fact", "a", "b", "severity", "why", "mitigation", "reference")
# Facts that, when not measured, are worked out from environment variables (OMP_NUM_THREADS and the like).
DERIVED_FROM_VARIABLES = ("blas.",)


@dataclass(frozen=True)
class Finding:
    fact: str
    a: Any
    b: Any
    severity: Severity
    why: str
    mitigation: str
    reference: str
    weight: float = 0.0
    rule: str = ""
    derived: tuple[str, ...] = ()  # "A" and/or "B": whose value was inferred, not read

    def to_json(self) -> dict[str, Any]:
        return {key: _jsonable(getattr(self, key)) for key in FINDING_KEYS}


OutputStatus = Literal["same", "differs", "only-a", "only-b"]


@dataclass(frozen=True)
class OutputDelta:
    """One output file both environments' runs recorded (``snapshot --outputs``, a replay): the evidence."""

    path: str
    status: OutputStatus
    a: str | None = None  # sha256
    b: str | None = None


@dataclass(frozen=True)
class DiffReport:
    findings: tuple[Finding, ...]
    compared: int
    unknown_a: tuple[str, ...] = ()
    unknown_b: tuple[str, ...] = ()
    verdict: str = ""
    source_a: str = "probe"
    source_b: str = "probe"
    rules: int = len(RULES)
    outputs: tuple[OutputDelta, ...] = ()  # what the two runs wrote, when both recorded it

    @property
    def significant(self) -> tuple[Finding, ...]:
        """Findings that can change results (everything above ``info``)."""
        return tuple(f for f in self.findings if f.severity != "info")

    def worst(self) -> Severity | None:
        return self.significant[0].severity if self.significant else None

    def at_or_above(self, severity: Severity) -> tuple[Finding, ...]:
        limit = SEVERITY_RANK[severity]
        return tuple(f for f in self.findings if SEVERITY_RANK[f.severity] >= limit)


def _jsonable(value: Any) -> Any:
    if isinstance(value, KernelValue):
        return value.to_json()
    if isinstance(value, (frozenset, set)):
        return sorted(str(v) for v in value)
    if isinstance(value, tuple):
        return list(value)
    return value


def diff(a: Snapshot, b: Snapshot, rules: tuple[Rule, ...] = RULES) -> DiffReport:
    """Compares every fact known on both sides; a fact known on one side only is listed as unknown."""
    fa, fb = facts_of(enrich(a)), facts_of(enrich(b))
    keys = sorted(set(fa.values) | set(fb.values) | fa.unknown | fb.unknown)
    findings: list[Finding] = []
    unknown_a: list[str] = []
    unknown_b: list[str] = []
    compared = 0
    for key in keys:
        known_a, known_b = fa.known(key), fb.known(key)
        if not (known_a and known_b):
            if not known_a:
                unknown_a.append(key)
            if not known_b:  # unknown on both sides is listed for both, not for A alone
                unknown_b.append(key)
            continue
        compared += 1
        finding = evaluate(key, fa, fb, rules)
        if finding is not None:
            findings.append(finding)
    changed = {f.fact for f in findings}
    by_id = {rule.id: rule for rule in rules}
    findings = [f for f in findings
                if not any(fnmatchcase(other, pattern) for pattern in by_id[f.rule].unless for other in changed)]
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], -f.weight, f.fact))
    report = DiffReport(findings=tuple(findings), compared=compared, unknown_a=tuple(unknown_a),
                        unknown_b=tuple(unknown_b), source_a=a.source, source_b=b.source, rules=len(rules),
                        outputs=compare_outputs(a, b))
    return replace(report, verdict=verdict(report))


def compare_outputs(a: Snapshot, b: Snapshot) -> tuple[OutputDelta, ...]:
    """The recorded outputs of both sides by path; nothing when either side recorded none."""
    if not a.outputs or not b.outputs:
        return ()
    left = {o.path: o.sha256 for o in a.outputs}
    right = {o.path: o.sha256 for o in b.outputs}
    deltas = []
    for path in sorted(set(left) | set(right)):
        x, y = left.get(path), right.get(path)
        status: OutputStatus = "only-b" if x is None else "only-a" if y is None else "same" if x == y else "differs"
        deltas.append(OutputDelta(path=path, status=status, a=x, b=y))
    return tuple(deltas)


def matches(rule: Rule, fact: str) -> bool:
    if not fnmatchcase(fact, rule.fact):
        return False
    if rule.names:
        member = fact.split(".", 1)[1] if "." in fact else fact
        return any(fnmatchcase(member, name) for name in rule.names)
    return True


def evaluate(fact: str, fa: FactView, fb: FactView, rules: tuple[Rule, ...] = RULES) -> Finding | None:
    """The finding of the first rule that matches the fact, rates its change and whose conditions allow it."""
    a, b = fa.get(fact), fb.get(fact)
    for rule in rules:
        if not matches(rule, fact):
            continue
        change = compare(rule.compare, a, b, rule.threshold)
        if change is None:
            return None
        severity = rule.severity_for(change.kind)
        if severity is None:
            continue
        holds = conditions_hold(rule.when, fa, fb)
        note = ""
        if holds is False:
            if rule.otherwise is None:
                continue
            severity = rule.otherwise
            note = f" Here it does not apply: it {rule.when_text or 'needs conditions not met'}."
        elif holds is None:
            note = f" It {rule.when_text}, which is not known on both sides." if rule.when_text else ""
        return _finding(fact, a, b, rule, change, severity, note, fa, fb, unsure=holds is None)
    return None


def _finding(fact: str, a: Any, b: Any, rule: Rule, change: Change, severity: Severity, note: str,
             fa: FactView, fb: FactView, unsure: bool) -> Finding:
    sides = tuple(side for side, view in (("A", fa), ("B", fb)) if fact in view.derived)
    if len(sides) == 1 and severity in ("high", "medium"):
        severity = "medium" if severity == "high" else "low"  # a default against a measured value: weaker
    if sides:
        note += f" ({' and '.join(sides)}: {how_derived(fact)}.)"
    weight = rule.weight + 10 * change.magnitude - (5 if unsure else 0)
    if len(sides) == 2 and fact.startswith(DERIVED_FROM_VARIABLES):
        weight -= 30  # a count both sides derived from their variables ranks below those variables
    why = f"{_capital(change.text)}. {rule.why}{note}" if change.text else f"{rule.why}{note}"
    return Finding(fact=fact, a=a, b=b, severity=severity, why=why, mitigation=rule.mitigation,
                   reference=rule.reference, weight=weight, rule=rule.id, derived=sides)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def conditions_hold(conds: tuple[Cond | AnyOf | AllOf, ...], fa: FactView, fb: FactView) -> bool | None:
    """All conditions hold (True), one fails (False), or some cannot be decided for lack of facts (None)."""
    return _group(AllOf(conds), fa, fb)


def _any(outcomes: list[bool | None]) -> bool | None:
    """Three-valued OR: True if one holds, False if none can, unknown otherwise."""
    if any(o is True for o in outcomes):
        return True
    return False if all(o is False for o in outcomes) else None


def _all(outcomes: list[bool | None]) -> bool | None:
    """Three-valued AND: False if one fails, True if all hold, unknown otherwise."""
    if any(o is False for o in outcomes):
        return False
    return True if all(o is True for o in outcomes) else None


def _group(node: Cond | AnyOf | AllOf, fa: FactView, fb: FactView) -> bool | None:
    if isinstance(node, Cond):
        return _cond(node, fa, fb)
    outcomes = [_group(child, fa, fb) for child in node.conds]
    return _any(outcomes) if isinstance(node, AnyOf) else _all(outcomes)


def _cond(cond: Cond, fa: FactView, fb: FactView) -> bool | None:
    if cond.side == "known":  # a fact only one side can state (what the replayed workload imported)
        outcomes = [_check(cond, view) for view in (fa, fb) if view.known(cond.fact)]
        return _any(outcomes) if outcomes else None
    outcomes = [_check(cond, view) for view in (fa, fb)]
    return _all(outcomes) if cond.side == "both" else _any(outcomes)


def _check(cond: Cond, view: FactView) -> bool | None:
    known = view.known(cond.fact)
    if cond.op == "unknown":
        return not known
    if not known:
        return None
    value = view.get(cond.fact)
    if cond.op == "present":
        return value is not None
    if cond.op == "absent":
        return value is None
    if cond.op == "eq":
        return bool(value == cond.value)
    if cond.op == "ne":
        return bool(value != cond.value)
    if cond.op == "contains":
        return value is not None and cond.value in value
    if cond.op in ("ge", "lt"):
        if value is None:
            return False
        left, right = _ordered(value), _ordered(cond.value)
        if left is None or right is None:
            return None
        return bool(left >= right) if cond.op == "ge" else bool(left < right)
    raise ValueError(f"unknown condition operator {cond.op!r}")


def _ordered(value: Any) -> Any:
    """Numbers, compute capabilities and versions compare as versions ("8.6" >= "8.0", 2 >= 1)."""
    return parse_version(str(int(value)) if isinstance(value, bool) else str(value))


def verdict(report: DiffReport) -> str:
    """One sentence: identical, nothing that matters, or how many differences and the most likely cause."""
    sentence = _verdict(report)
    if report.outputs:
        differing = sum(1 for o in report.outputs if o.status != "same")
        files = f"{len(report.outputs)} {'file' if len(report.outputs) == 1 else 'files'}"
        sentence = sentence[:-1] + (f"; the recorded outputs are identical ({files})."
                                    if not differing else
                                    f"; {differing} of {len(report.outputs)} recorded output files differ.")
    return sentence


def _verdict(report: DiffReport) -> str:
    significant = report.significant
    unknown = ""
    if report.unknown_a or report.unknown_b:
        count = len(report.unknown_a)
        unknown = f"; {count} {'fact' if count == 1 else 'facts'} unknown in A, {len(report.unknown_b)} in B"
    if not report.findings:
        return f"Identical: all {report.compared} facts compared are the same{unknown}."
    if not significant:
        return (f"No difference that can change results among {report.compared} facts compared "
                f"({len(report.findings)} informational){unknown}.")
    counts = {s: sum(1 for f in significant if f.severity == s) for s in ("high", "medium", "low")}
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    top = significant[0]
    if top.severity == "low":  # nothing at medium or above: naming a "cause" would mislead
        names = ", ".join(f.fact for f in significant[:3]) + (", ..." if len(significant) > 3 else "")
        return (f"{len(significant)} of {report.compared} facts compared differ, none likely to change results "
                f"({parts}: {names}){unknown}.")
    return (f"{len(significant)} of {report.compared} facts compared can change results ({parts}); "
            f"most likely cause: {top.fact}{unknown}.")
