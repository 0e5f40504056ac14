"""The replay report in its three renderings: text for the terminal, JSON, Markdown, from one record."""

from __future__ import annotations

import math
from typing import Any

from envcap._serde import to_json
from envcap.explain.render import md_cell
from envcap.replay.fingerprint import render_lines as fingerprint_lines
from envcap.replay.match import render_lines as match_lines
from envcap.replay.report import REPORT_FORMAT, ReplayReport, RunRecord
from envcap.textsafe import json_text, md_code, terminal
from envcap.workload.outputs import NumericDiff, OutputComparison

# ------------------------------------------------------------------------------------------- JSON

def to_document(report: ReplayReport) -> dict[str, Any]:
    data = to_json(report)
    assert isinstance(data, dict)
    finite: dict[str, Any] = _finite(data)
    return {"format": REPORT_FORMAT, "kind": "replay-report"} | finite


def _finite(value: Any) -> Any:
    """JSON has no infinity: a difference against NaN is written as the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def render_json(report: ReplayReport) -> str:
    return json_text(to_document(report)) + "\n"


# ------------------------------------------------------------------------------------------- text

def _cmd(command: tuple[str, ...]) -> str:
    import shlex

    return shlex.join(command)


def _num(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def numeric_text(diff: NumericDiff) -> str:
    if diff.differing == 0:
        text = f"{diff.compared} numbers equal"
    else:
        text = (f"{diff.differing} of {diff.compared} numbers differ; max abs {_num(diff.max_abs)}"
                f"{f' at {diff.at}' if diff.at else ''}, max rel {_num(diff.max_rel)}")
    if diff.note:
        text += f" ({diff.note})"
    return text


def _file_line(item: OutputComparison) -> str:
    if item.status == "same":
        return f"same      {item.path}"
    if item.status == "missing":
        return f"missing   {item.path} (in the baseline, not written by the replay)"
    if item.status == "new":
        return f"new       {item.path} (not in the baseline)"
    detail = numeric_text(item.numeric) if item.numeric else "content differs"
    return f"differs   {item.path}: {detail}"


def run_summary(run: RunRecord) -> str:
    if run.exit_code is None:
        return f"run {run.index}: did not finish"
    text = f"run {run.index}: exit {run.exit_code}"
    if run.signal:
        text += f" ({run.signal}{', out of memory' if run.oom_killed else ''})"
    return text + f", {run.seconds:.2f} s"


def render_text(report: ReplayReport) -> str:
    """The terminal report, printed after the workload's own output."""
    lines = [f"── envcap replay {report.replay_id} " + "─" * 20]
    if report.image:
        state = "" if report.image_built is None else " (built now)" if report.image_built else ""
        lines.append(f"Image        {report.image}{state}")
    lines.append(f"Command      {_cmd(report.command)}  in {report.workdir} as {report.user}"
                 f"{', GPUs passed through' if report.gpus else ''}")
    for run in report.runs:
        lines.append(f"             {run_summary(run)}")
    shown = [c for c in report.preflight if c.status != "skipped"]
    if shown:
        lines.append("Pre-flight")
        for check in shown:
            lines.append(f"  {check.status.upper():7} {check.name}: {check.detail}")
    comparison = report.comparison
    if comparison is not None:
        lines.append("")
        lines.append("Differences from the snapshot, most likely to change results first")
        if not comparison.differences:
            lines.append("  none found")
        for diff in comparison.differences:
            lines.append(f"  {diff.severity.upper():8} {diff.fact}: {diff.original} (snapshot) → {diff.replay} (replay)")
            if diff.why:
                lines.append(f"           why: {diff.why}")
            if diff.mitigation:
                lines.append(f"           fix: {diff.mitigation}")
        if comparison.stack_identical is True:
            lines.append(f"The software stack is identical: {comparison.stack_note or 'same packages and versions'}.")
        elif comparison.stack_identical is False:
            lines.append(f"The software stack differs: {comparison.stack_note or 'see above'}.")
        else:
            lines.append(f"Whether the software stack is identical is unknown: {comparison.stack_note or 'a side is missing'}.")
        if comparison.verdict:
            lines.append(f"Verdict: {comparison.verdict}")
        if comparison.unknown:
            lines.append("Unknown on one side: " + ", ".join(comparison.unknown[:12])
                         + (" ..." if len(comparison.unknown) > 12 else ""))
    if report.match is not None:
        lines += ["", *match_lines(report.match)]
    if report.fingerprint is not None:
        lines += ["", *fingerprint_lines(report.fingerprint)]
    if report.precision:
        lines.append("")
        lines.append("Precision and determinism settings the workload left:")
        for key, value in sorted(report.precision.items()):
            lines.append(f"  {key} = {value}")
    if report.outputs is not None:
        lines.append("")
        section = report.outputs
        if section.baseline is None:
            lines.append(f"Outputs ({', '.join(section.patterns)}): fingerprinted; nothing earlier to compare with "
                         "(the next replay compares with this one)")
        else:
            lines.append(f"Outputs ({', '.join(section.patterns)}) compared with {section.baseline}:")
        for item in section.files:
            if section.baseline is not None:
                lines.append(f"  {_file_line(item)}")
            else:
                lines.append(f"  recorded  {item.path} (sha256 {str(item.sha256)[:12]})")
        if not section.files:
            lines.append("  no file matched")
        for run in report.runs[:1]:
            for path in run.not_rewritten:
                lines.append(f"  note: {path} matched but was not written by the replay")
    if report.repeat is not None and report.repeat.runs > 1:
        lines.append("")
        rep = report.repeat
        if rep.identical is True:
            lines.append(f"Repeat: the outputs of all {rep.runs} runs were identical in the same image, so the "
                         "workload is deterministic here.")
        elif rep.identical is False:
            lines.append("Repeat: the outputs differed between runs in the same image, so the workload itself is "
                         "not deterministic (not only the environment):")
            for pair in rep.pairs:
                for item in pair.files:
                    if item.status != "same":
                        lines.append(f"  run {pair.run} vs run 1: {_file_line(item)}")
        else:
            lines.append("Repeat: no output files to compare (pass --outputs PATTERN).")
        if rep.stdout_identical is not None:
            lines.append(f"        what the runs printed was {'identical' if rep.stdout_identical else 'not identical'}.")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    lines.append("")
    lines.append(f"Saved in {report.replay_dir}/ ({', '.join(report.files) or 'nothing'})")
    if report.message:
        lines.append(report.message)
    return terminal("\n".join(lines)) + "\n"


# --------------------------------------------------------------------------------------- Markdown

def render_markdown(report: ReplayReport) -> str:
    """For an issue or pull request: the facts first, then tables."""
    out = [f"### envcap replay {md_code(report.replay_id)}", ""]
    out.append(f"- **Command:** {md_code(_cmd(report.command))} (exit {report.exit_code if report.exit_code is not None else 'none'}"
               f", status {report.status})")
    if report.image:
        out.append(f"- **Image:** {md_code(report.image)}")
    out.append(f"- **Lock:** `{report.lock_digest or 'no digest'}`")
    out.append(f"- **GPUs:** {'passed through' if report.gpus else 'none'}")
    if report.message:
        out.append(f"- **Result:** {md_cell(report.message)}")
    comparison = report.comparison
    if comparison is not None:
        out += ["", "#### Differences from the snapshot", ""]
        if comparison.differences:
            out += ["| severity | fact | snapshot | replay | why | mitigation |", "| --- | --- | --- | --- | --- | --- |"]
            for d in comparison.differences:
                out.append(f"| {d.severity} | {md_code(d.fact)} | {md_cell(d.original)} | {md_cell(d.replay)} | "
                           f"{md_cell(d.why or '')} | {md_cell(d.mitigation or '')} |")
        else:
            out.append("No differences found.")
        out.append("")
        if comparison.stack_identical is True:
            out.append(f"**The software stack is identical** ({md_cell(comparison.stack_note or '')}).")
        elif comparison.stack_identical is False:
            out.append(f"**The software stack differs** ({md_cell(comparison.stack_note or '')}).")
        if comparison.verdict:
            out.append(f"**Verdict:** {md_cell(comparison.verdict)}")
    if report.match is not None:
        out += ["", "```", *match_lines(report.match), "```"]
    if report.fingerprint is not None:
        out += ["", "```", *fingerprint_lines(report.fingerprint), "```"]
    if report.precision:
        out += ["", "#### Precision settings the workload left", "", "| flag | value |", "| --- | --- |"]
        out += [f"| {md_code(k)} | {md_cell(v)} |" for k, v in sorted(report.precision.items())]
    if report.outputs is not None:
        section = report.outputs
        out += ["", f"#### Outputs ({md_code(', '.join(section.patterns))})", ""]
        if section.baseline is None:
            out.append("Fingerprinted; nothing earlier to compare with.")
        else:
            out += [f"Compared with {md_cell(section.baseline)}.", "", "| file | status | numbers |", "| --- | --- | --- |"]
            for item in section.files:
                out.append(f"| {md_code(item.path)} | {item.status} | "
                           f"{md_cell(numeric_text(item.numeric)) if item.numeric else ''} |")
    if report.repeat is not None and report.repeat.runs > 1:
        rep = report.repeat
        verdict = {True: "identical in every run", False: "**not identical** across runs (the workload is "
                   "nondeterministic)", None: "not comparable"}[rep.identical]
        out += ["", f"#### Repeat: {rep.runs} runs, outputs {verdict}"]
        for pair in rep.pairs:
            for item in pair.files:
                if item.status != "same":
                    out.append(f"- run {pair.run} vs run 1: {md_code(item.path)} {item.status}"
                               f"{': ' + md_cell(numeric_text(item.numeric)) if item.numeric else ''}")
    shown = [c for c in report.preflight if c.status != "skipped"]
    if shown:
        out += ["", "#### Pre-flight", ""]
        out += [f"- {c.status}: {c.name}: {md_cell(c.detail)}" for c in shown]
    if report.warnings:
        out += [""] + [f"> warning: {md_cell(w)}" for w in report.warnings]
    return "\n".join(out) + "\n"
