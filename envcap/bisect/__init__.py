"""``envcap bisect``: which of the differences between two environments change a workload's outputs, by experiment.

``candidates`` (what differs, what can be varied here), ``resolve`` (installable intermediate package sets),
``overlay`` (an intermediate environment as a thin layer on A's image), ``ddmin`` (the search), ``session``
(runs it all) and ``report`` (the result and its evidence).
"""

from __future__ import annotations

from envcap.bisect.report import BisectReport, BisectRun, Culprit, render_json, render_text, to_document
from envcap.bisect.session import BISECT_LABEL, BisectRequest, bisect

__all__ = ["BISECT_LABEL", "BisectReport", "BisectRequest", "BisectRun", "Culprit", "bisect", "render_json",
           "render_text", "to_document"]
