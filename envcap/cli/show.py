"""``envcap show``: a readable summary of a saved snapshot."""

from __future__ import annotations

from pathlib import Path

import click

from envcap.cli.options import json_option, lock_dir_argument, verbose_option
from envcap.cli.output import console, emit_json
from envcap.lock import Snapshot, digest_matches, load_snapshot, snapshot_to_dict
from envcap.textsafe import markup


@click.command("show")
@lock_dir_argument()
@json_option
@verbose_option
def command(lock_dir: Path, as_json: bool) -> None:
    """Summarise a saved snapshot (DIR: a folder or an envcap.lock.json file; default .envcap/), or the report
    of a saved replay (DIR: .envcap/replays/<id>)."""
    if (lock_dir / "report.json").is_file():
        show_replay(lock_dir, as_json)
        return
    snapshot = load_snapshot(lock_dir)
    if as_json:
        emit_json("snapshot", {"snapshot": snapshot_to_dict(snapshot)})
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summarize(snapshot):
        table.add_row(label, markup(value))  # a lock's values may hold markup, escapes or secrets
    for text in beside_the_lock(lock_dir, snapshot):
        table.add_row("Note", markup(text))
    console().print(table)


def show_replay(folder: Path, as_json: bool) -> None:
    from envcap.replay.render import render_json, render_text
    from envcap.replay.report import load_report

    report = load_report(folder)
    if as_json:
        click.echo(render_json(report), nl=False)
    else:
        console().print(render_text(report), markup=False, highlight=False, end="", soft_wrap=True)


def beside_the_lock(location: Path, snapshot: Snapshot) -> list[str]:
    """A folder whose generated files do not match its lock (edited, or a mixed set) is said to be so."""
    from envcap.emit import generated_files, stale_outputs
    from envcap.lock import lock_path

    folder = lock_path(Path(location)).parent
    return stale_outputs(folder, generated_files(snapshot)) if folder.is_dir() else []


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.1f} GiB" if value else "unknown"


SHOWN = 40  # items of a list shown in the summary; a stranger's lock may hold a million (--json has them all)
CLIP = 400  # characters of one value


def _clip(text: str) -> str:
    return text if len(text) <= CLIP else text[:CLIP] + f"... ({len(text)} characters)"


def _first(items: list[str], what: str) -> str:
    shown = ", ".join(_clip(item) for item in items[:SHOWN])
    return shown + (f", ... and {len(items) - SHOWN} more {what} (envcap show --json has them all)"
                    if len(items) > SHOWN else "")


def summarize(snapshot: Snapshot) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    py = snapshot.python
    if py:
        kind = "conda" if py.is_conda else "venv" if py.is_venv else "system"
        rows.append(("Python", f"{py.version} ({py.implementation}, {kind}) {py.executable or ''}".strip()))
    dists = snapshot.distributions
    pinned = sum(1 for d in dists if d.artifacts)
    rows.append(("Distributions", f"{len(dists)} ({pinned} pinned by hash)"))
    for name in ("torch", "numpy", "scipy", "jax", "tensorflow", "scikit-learn"):
        dist = snapshot.distribution(name)
        if dist:
            rows.append((f"  {name}", dist.version))
    if snapshot.os:
        o = snapshot.os
        rows.append(("OS", f"{o.pretty_name or o.system}, kernel {o.kernel}, {o.libc} {o.libc_version}"
                     + (f", in a {o.container} container" if o.container else "")))
    if snapshot.cpu:
        c = snapshot.cpu
        flags = ", ".join(f for f in (c.numeric_flags or ()) if f.startswith(("avx", "fma", "amx", "sve")))
        rows.append(("CPU", f"{c.model_name} ({c.vendor}), {c.logical_cores} logical cores, "
                     f"{_gib(c.memory_total_bytes)}"))
        rows.append(("  ISA", flags or "none of note"))
    gpu = snapshot.gpu
    if gpu is None:
        rows.append(("GPU", "unknown"))
    elif gpu.devices:
        rows.append(("GPU driver", f"{gpu.driver_version} (CUDA {gpu.cuda_driver_version})"))
        for dev in gpu.devices:
            rows.append((f"  GPU {dev.index}", f"{dev.name}, sm {dev.compute_capability}, "
                         f"{_gib(dev.memory_total_bytes)}, MIG {dev.mig_mode}"))
    else:
        rows.append(("GPU", f"none ({gpu.status}: {gpu.reason})"))
    if snapshot.cuda:
        parts = [f"{k} {v.version} ({v.source})" for k, v in sorted(snapshot.cuda.components.items())]
        if snapshot.cuda.torch and snapshot.cuda.torch.cuda:
            parts.append(f"torch built for CUDA {snapshot.cuda.torch.cuda}")
        rows.append(("CUDA stack", "; ".join(parts) or "none"))
    if snapshot.blas:
        libs = sorted({f"{b.library} {b.version or '?'} ({b.shipped_by})" for b in snapshot.blas.libraries})
        rows.append(("BLAS/OpenMP", "; ".join(libs) or "none found"))
    if snapshot.env is not None:
        rows.append(("Env vars", _first(sorted(f"{k}={v}" for k, v in snapshot.env.items()), "variables")
                     or "none set"))
    if snapshot.git:
        g = snapshot.git
        rows.append(("Git", f"{(g.commit or 'no commit')[:12]} on {g.branch or 'detached HEAD'}"
                     + (f", dirty (diff {g.diff_sha256[:12]})" if g.dirty and g.diff_sha256 else
                        ", dirty" if g.dirty else ", clean")))
    rows.append(("Captured", f"{snapshot.captured_at} by envcap {snapshot.envcap_version}"))
    mismatch = "" if digest_matches(snapshot) else "  (does not match the content: edited by hand?)"
    rows.append(("Digest", f"{snapshot.digest or 'none'}{mismatch}"))
    for warning in snapshot.warnings[:SHOWN]:
        rows.append(("Warning", _clip(warning)))
    if len(snapshot.warnings) > SHOWN:
        rows.append(("Warning", f"... and {len(snapshot.warnings) - SHOWN} more (envcap show --json has them all)"))
    for item in snapshot.unavailable[:SHOWN]:
        rows.append(("Unknown", _clip(f"{item.probe}: {item.reason}")))
    return rows
