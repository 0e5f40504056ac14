"""Which differences between two environments can change numerical results, and why.

``diff(a, b)`` compares two snapshots with the rules in ``rules.py`` and returns a ``DiffReport``
whose findings are ranked most-likely-cause first; ``render_text``/``render_json``/
``render_markdown`` present it. ``replay`` calls this with (host snapshot, container snapshot);
``envcap diff`` with any two environments, including foreign reports (see ``envcap.foreign``).
"""

from __future__ import annotations

from envcap.explain.ranking import DiffReport, Finding, diff
from envcap.explain.render import render_json, render_markdown, render_text
from envcap.explain.rules import RULES, Rule

__all__ = ["RULES", "DiffReport", "Finding", "Rule", "diff", "render_json", "render_markdown", "render_text"]
