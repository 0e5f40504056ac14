"""Loading a saved snapshot by folder or file, and the facts ``envcap show`` puts first."""

from __future__ import annotations

from pathlib import Path

from envcap.errors import LockfileError
from envcap.lock.records import LOCK_FILENAME, Snapshot, digest_matches, loads

MAX_LOCK_BYTES = 64 << 20


def lock_path(location: Path) -> Path:
    return location / LOCK_FILENAME if location.is_dir() or not location.suffix else location


def load_snapshot(location: Path) -> Snapshot:
    """Reads DIR/envcap.lock.json or the file itself; every failure is one LockfileError."""
    path = lock_path(Path(location))
    if not path.exists():
        raise LockfileError(f"no snapshot at {path}.",
                            hint="run `envcap snapshot` first, or pass the folder that holds envcap.lock.json")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_LOCK_BYTES + 1)
    except OSError as exc:
        raise LockfileError(f"cannot read {path}: {exc.strerror or exc}.",
                            hint="check the file's permissions") from None
    if len(raw) > MAX_LOCK_BYTES:
        raise LockfileError(f"{path} is larger than {MAX_LOCK_BYTES >> 20} MiB, too large for an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LockfileError(f"{path} is not UTF-8 text, so it is not an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`") from None
    return loads(text, origin=str(path))


def load_lock(location: Path) -> Snapshot:
    """The snapshot as ``build`` and ``replay`` use it: its digest is that of its content.

    A lock edited by hand keeps its old ``digest`` field; images are found and labelled by digest,
    so trusting the stale one would run the image of the lock as it was before the edit.
    """
    snapshot = load_snapshot(location)
    return snapshot if digest_matches(snapshot) and snapshot.digest else snapshot.with_digest()


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.1f} GiB" if value else "unknown"


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
        rows.append(("Env vars", ", ".join(f"{k}={v}" for k, v in sorted(snapshot.env.items())) or "none set"))
    if snapshot.git:
        g = snapshot.git
        rows.append(("Git", f"{(g.commit or 'no commit')[:12]} on {g.branch or 'detached HEAD'}"
                     + (f", dirty (diff {g.diff_sha256[:12]})" if g.dirty and g.diff_sha256 else
                        ", dirty" if g.dirty else ", clean")))
    rows.append(("Captured", f"{snapshot.captured_at} by envcap {snapshot.envcap_version}"))
    mismatch = "" if digest_matches(snapshot) else "  (does not match the content: edited by hand?)"
    rows.append(("Digest", f"{snapshot.digest or 'none'}{mismatch}"))
    for warning in snapshot.warnings:
        rows.append(("Warning", warning))
    for item in snapshot.unavailable:
        rows.append(("Unknown", f"{item.probe}: {item.reason}"))
    return rows
