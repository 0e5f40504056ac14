"""The explain rules, as data, joined in the order they are tried (the first that fires wins).

Each domain's rules live in a module of their own; ``_common`` holds the types and shared pieces.
"""

from __future__ import annotations

from envcap.explain.rules._common import SEVERITIES, AllOf, AnyOf, Cond, Rule, Severity
from envcap.explain.rules.cpu import CPU_RULES
from envcap.explain.rules.env import ENV_RULES
from envcap.explain.rules.fingerprint import FINGERPRINT_RULES
from envcap.explain.rules.gpu import GPU_RULES
from envcap.explain.rules.precision import PRECISION_RULES
from envcap.explain.rules.system import SYSTEM_RULES

# Measurements first: a kernel that computes different bits is evidence, the rest are claims that could matter.
RULES: tuple[Rule, ...] = FINGERPRINT_RULES + GPU_RULES + PRECISION_RULES + ENV_RULES + CPU_RULES + SYSTEM_RULES
def markdown_table(rules: tuple[Rule, ...] = RULES) -> str:
    """The rule table of docs/explain.md, generated so the docs cannot drift from the rules."""

    def severity(rule: Rule) -> str:
        if set(rule.severity) == {"*"}:
            return rule.severity["*"]
        return ", ".join(f"{kind}: {level}" for kind, level in rule.severity.items())

    lines = ["| rule | fact | compare | severity by kind of change | applies when | catalog |",
             "| --- | --- | --- | --- | --- | --- |"]
    for rule in rules:
        names = f" ({', '.join(rule.names[:4])}{', …' if len(rule.names) > 4 else ''})" if rule.names else ""
        when = rule.when_text or ("see conditions" if rule.when else "always")
        if rule.when:
            when += f"; else {rule.otherwise}" if rule.otherwise else "; else the next rule"
        threshold = f" {rule.threshold:g}" if rule.threshold is not None else ""
        lines.append(f"| `{rule.id}` | `{rule.fact}{names}` | {rule.compare}{threshold} | {severity(rule)} | {when} "
                     f"| {rule.factor or '-'} |")
    return "\n".join(lines) + "\n"

__all__ = ["RULES", "SEVERITIES", "AllOf", "AnyOf", "Cond", "Rule", "Severity", "markdown_table"]
