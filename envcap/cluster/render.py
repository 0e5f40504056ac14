"""Rendering a FleetReport: rich text for people, Markdown to paste into an issue (JSON is ``report.to_json``).

Why beside each other: the forms must say the same thing in the same order (the verdict, the classes
biggest first with their causes, the nodes without an answer), as explain's render does for one diff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envcap.cluster.report import EnvClass, FleetReport
from envcap.explain.render import md_cell, value_text

if TYPE_CHECKING:
    from rich.console import Console

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}
PROBLEM_TITLES = {"down": "down", "busy": "busy", "refused": "refused", "timeout": "timed out", "failed": "failed",
                  "no-runtime": "no container runtime", "no-image": "no image", "bad-output": "bad answer"}
MAX_NODES = 12


def class_title(c: EnvClass) -> str:
    nodes = ", ".join(c.nodes[:MAX_NODES]) + (f" and {len(c.nodes) - MAX_NODES} more" if len(c.nodes) > MAX_NODES else "")
    count = "1 node" if len(c.nodes) == 1 else f"{len(c.nodes)} nodes"
    return f"class {c.number} ({count}): {nodes}"


def class_state(c: EnvClass, report: FleetReport) -> str:
    if c.is_reference:
        return "the reference (the most common environment)"
    against = "the snapshot" if report.reference == "snapshot" else "class 1"
    if c.matches:
        return f"same as {against} in everything that can change results"
    n = len(c.report.significant)
    return f"{n} difference{'s' if n != 1 else ''} from {against} can change results: {c.causes()}"


def variable_lines(c: EnvClass) -> list[str]:
    v = c.variables
    lines = []
    if v.missing:
        lines.append("lacks " + ", ".join(v.missing))
    if v.added:
        lines.append("adds " + ", ".join(v.added))
    if v.changed:
        lines.append("changes " + ", ".join(v.changed))
    return lines


def render_text(report: FleetReport, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    mode = f"in the image ({report.image})" if report.mode == "image" else f"with {report.python}"
    console.print(f"[bold]envcap fleet[/]: {escape(report.where)}, {len(report.asked)} nodes asked, probed "
                  f"{escape(mode)}; reference: {escape(report.reference_source)} ({report.seconds:.1f} s)")
    for c in report.classes:
        style = "bold green" if c.matches else SEVERITY_STYLE.get(c.report.worst() or "", "")
        console.print(f"\n[bold]{escape(class_title(c))}[/]\n  [{style}]{escape(class_state(c, report))}[/]")
        for line in variable_lines(c):
            console.print(f"  variables: {escape(line)}")
        if c.report.significant and not c.is_reference:
            table = Table(show_lines=False, expand=False, box=None, padding=(0, 1), pad_edge=False)
            for column in ("severity", "fact", "reference", "these nodes", "what to do"):
                table.add_column(column, no_wrap=column in ("severity", "fact"))
            for f in c.report.significant:
                table.add_row(f"[{SEVERITY_STYLE.get(f.severity, '')}]{f.severity}[/]", escape(f.fact),
                              escape(value_text(f, "A")), escape(value_text(f, "B")), escape(f.mitigation))
            console.print(table)
        info = [f.fact for f in c.report.findings if f.severity == "info"]
        if info and not c.is_reference:
            console.print(f"  [dim]also differs (not known to change results): {escape(', '.join(info[:12]))}"
                          f"{' ...' if len(info) > 12 else ''}[/]")
        if c.varies:
            console.print(f"  [dim]varies inside the class (not known to change results): "
                          f"{escape(', '.join(c.varies[:12]))}[/]")
    if report.problems:
        console.print("\n[bold]no answer[/]")
        for p in report.problems:
            console.print(f"  [red]{escape(p.node)}[/]  {PROBLEM_TITLES[p.kind]}: {escape(p.reason)}")
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    style = "bold green" if not report.differing and not report.problems else "bold yellow"
    console.print(f"\n[{style}]{escape(report.verdict())}[/]")


def render_markdown(report: FleetReport) -> str:
    """A section ready to paste into an issue: the verdict, a table per class that differs, the silent nodes."""
    mode = f"in the image `{report.image}`" if report.mode == "image" else f"with `{report.python}`"
    lines = ["### envcap fleet", "", f"**{md_cell(report.verdict())}**", "",
             f"{md_cell(report.where)}; {len(report.asked)} nodes asked, probed {md_cell(mode)}; reference: "
             f"`{md_cell(report.reference_source)}`.", "",
             "| class | nodes | compared with the reference |", "| --- | --- | --- |"]
    for c in report.classes:
        lines.append(f"| {c.number} | {md_cell(', '.join(c.nodes))} | {md_cell(class_state(c, report))} |")
    lines.append("")
    for c in report.classes:
        if c.is_reference or not (c.report.significant or c.variables):
            continue
        lines += [f"#### {md_cell(class_title(c))}", ""]
        lines += [f"- variables: {md_cell(line)}" for line in variable_lines(c)]
        if c.report.significant:
            lines += ["", "| severity | fact | reference | these nodes | why | what to do |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for f in c.report.significant:
                lines.append(f"| {f.severity} | `{md_cell(f.fact)}` | {md_cell(value_text(f, 'A'))} | "
                             f"{md_cell(value_text(f, 'B'))} | {md_cell(f.why)} | {md_cell(f.mitigation)} |")
        lines.append("")
    if report.problems:
        lines += ["#### Nodes without an answer", "", "| node | what | why |", "| --- | --- | --- |"]
        lines += [f"| {md_cell(p.node)} | {PROBLEM_TITLES[p.kind]} | {md_cell(p.reason)} |" for p in report.problems]
        lines.append("")
    lines += [f"> {md_cell(note)}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["render_markdown", "render_text"]
