"""Rendering a DiffReport: rich text for people, JSON for scripts, Markdown to paste into an issue.

Why one module: the three forms must say the same thing (same order, same verdict); keeping them
side by side makes a drift visible. Library code: nothing here prints on its own; ``render_text``
writes to the console it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envcap.explain.compare import show
from envcap.explain.ranking import FINDING_KEYS, DiffReport, Finding
from envcap.textsafe import markup as escape
from envcap.textsafe import md, md_code

if TYPE_CHECKING:
    from rich.console import Console

GROUPS = (("high", "High: likely to change results", "bold red"),
          ("medium", "Medium: changes kernels or the order of operations", "yellow"),
          ("low", "Low: rarely changes results", "cyan"))
MAX_VALUE = 60


def render_json(report: DiffReport) -> dict[str, Any]:
    """The payload of ``envcap diff --json`` (the command adds ``format`` and ``kind``)."""
    return {
        "verdict": report.verdict,
        "compared": report.compared,
        "rules": report.rules,
        "sources": {"a": report.source_a, "b": report.source_b},
        "unknown_a": list(report.unknown_a),
        "unknown_b": list(report.unknown_b),
        "findings": [finding.to_json() for finding in report.findings],
        "outputs": [{"path": o.path, "status": o.status, "a": o.a, "b": o.b} for o in report.outputs],
    }


def value_text(finding: Finding, side: str) -> str:
    value = finding.a if side == "A" else finding.b
    text = show(value)
    if value is None and finding.fact.startswith("env."):
        text = "unset"
    elif value is None and finding.fact.startswith("pkg."):
        text = "not installed"
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    if side in finding.derived:
        text += " (derived)"
    return text


def render_text(report: DiffReport, console: Console) -> None:
    """Groups by severity, most likely cause first; informational differences in one line; the verdict last."""
    from rich.table import Table

    console.print(f"[bold]envcap diff[/]: A = {escape(report.source_a)}, B = {escape(report.source_b)}; "
                  f"{report.compared} facts compared with {report.rules} rules")
    for severity, title, style in GROUPS:
        group = [f for f in report.findings if f.severity == severity]
        if not group:
            continue
        table = Table(title=f"[{style}]{title}[/]", title_justify="left", show_lines=True, expand=False)
        table.add_column("fact", style="bold", no_wrap=True)
        table.add_column("A")
        table.add_column("B")
        table.add_column("why / what to do", ratio=1)
        for f in group:
            table.add_row(escape(f.fact), escape(value_text(f, "A")), escape(value_text(f, "B")),
                          f"{escape(f.why)}\n[green]→ {escape(f.mitigation)}[/]\n[dim]{escape(f.reference)}[/]")
        console.print(table)
    info = [f.fact for f in report.findings if f.severity == "info"]
    if info:
        console.print(f"[dim]Info (not known to change results): {escape(', '.join(info))}[/]")
    if report.unknown_a or report.unknown_b:
        console.print(f"[dim]Unknown in A ({len(report.unknown_a)}): {escape(_short(report.unknown_a))}[/]")
        console.print(f"[dim]Unknown in B ({len(report.unknown_b)}): {escape(_short(report.unknown_b))}[/]")
    if report.outputs:
        differing = [o for o in report.outputs if o.status != "same"]
        console.print(f"Recorded outputs: {len(report.outputs) - len(differing)} same, {len(differing)} differ"
                      + "".join(f"\n  {escape(o.status)}: {escape(o.path)}" for o in differing[:20]))
    style = {"high": "bold red", "medium": "yellow", "low": "cyan"}.get(report.worst() or "", "bold green")
    console.print(f"[{style}]{escape(report.verdict)}[/]")


def _short(facts: tuple[str, ...], limit: int = 12) -> str:
    if not facts:
        return "none"
    shown = ", ".join(facts[:limit])
    return shown + (f", … ({len(facts) - limit} more)" if len(facts) > limit else "")


md_cell = md


def render_markdown(report: DiffReport) -> str:
    """A section ready to paste into an issue or pull request."""
    lines = ["### envcap diff", "", f"**{md_cell(report.verdict)}**", "",
             f"A: {md_code(report.source_a)}, B: {md_code(report.source_b)}; {report.compared} facts compared.", ""]
    significant = report.significant
    if significant:
        lines += ["| severity | fact | A | B | why | what to do |", "| --- | --- | --- | --- | --- | --- |"]
        for f in significant:
            lines.append(f"| {f.severity} | {md_code(f.fact)} | {md_cell(value_text(f, 'A'))} | {md_cell(value_text(f, 'B'))} "
                         f"| {md_cell(f.why)} ([ref]({f.reference})) | {md_cell(f.mitigation)} |")
        lines.append("")
    info = [f for f in report.findings if f.severity == "info"]
    if info:
        lines += ["<details><summary>Informational differences</summary>", ""]
        lines += [f"- {md_code(f.fact)}: {md_cell(value_text(f, 'A'))} → {md_cell(value_text(f, 'B'))}" for f in info]
        lines += ["", "</details>", ""]
    if report.outputs:
        lines += ["| output | A | B |", "| --- | --- | --- |"]
        lines += [f"| {md_code(o.path)} | {md_cell((o.a or 'none')[:12])} | "
                  f"{md_cell((o.b or 'none')[:12])} {'(same)' if o.status == 'same' else ''} |" for o in report.outputs]
        lines.append("")
    if report.unknown_a or report.unknown_b:
        lines += ["<details><summary>Facts known on one side only</summary>", "",
                  f"- unknown in A: {md_cell(', '.join(report.unknown_a) or 'none')}",
                  f"- unknown in B: {md_cell(', '.join(report.unknown_b) or 'none')}", "", "</details>", ""]
    return "\n".join(lines)


__all__ = ["FINDING_KEYS", "render_json", "render_markdown", "render_text"]
