"""``envcap snapshot``: probe, pin every artifact by hash, and write the lock set atomically."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcap import __version__
from envcap.errors import UsageError
from envcap.fs import cache_dir
from envcap.lock import Snapshot, now_utc
from envcap.probe import run_probe, snapshot_from_facts
from envcap.snapshot.hashes import ArtifactResolver, Release

DEFAULT_OUT = Path(".envcap")

if TYPE_CHECKING:
    from envcap.workload.native import NativeRun


@dataclass(frozen=True)
class SnapshotResult:
    snapshot: Snapshot
    out_dir: Path
    files: tuple[Path, ...]
    native: NativeRun | None = None  # the workload's run on this host, with `-- CMD`



def capture(
    python: str | None = None,
    *,
    deep: bool = False,
    offline: bool = False,
    cwd: str | None = None,
    on_release: Callable[[Release], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
) -> Snapshot:
    """Probes the interpreter and pins every re-installable distribution's artifacts by hash."""
    cache_root = cache_dir()
    if on_stage:
        on_stage("probe", 0)
    facts = _probe_while_importing(python or sys.executable, cache_root=cache_root, deep=deep, cwd=cwd)
    snapshot = snapshot_from_facts(facts, envcap_version=__version__, captured_at=now_utc(), source="probe")
    pip_config = snapshot.pip_config
    resolver = ArtifactResolver(
        cache_root,
        find_links=pip_config.find_links if pip_config else (),
        extra_indexes=[u for u in (pip_config.extra_index_urls if pip_config else ())],
        offline=offline,
    )
    wanted = [(d.name, d.version) for d in snapshot.distributions
              if (d.origin is None or d.origin.kind in ("index", "egg-info"))]
    releases = resolver.resolve(wanted, progress=on_release,
                                on_pending=(lambda n: on_stage("hashes", n)) if on_stage else None)
    dists = []
    for dist in snapshot.distributions:
        release = releases.get((dist.name, dist.version))
        if release is not None:
            dist = replace(dist, artifacts=release.artifacts, index_url=release.index_url)
        dists.append(dist)
    snapshot = replace(snapshot, distributions=tuple(dists))
    from envcap.lock.disposition import conda_note, dispositions

    warnings = [item.note for item in dispositions(snapshot) if item.note]
    conda = conda_note(snapshot)
    if conda:
        warnings.append(conda)
    for dist in snapshot.distributions:
        for problem in dist.problems:
            warnings.append(f"{dist.name}: broken metadata ({problem}).")
    return replace(snapshot, warnings=tuple(warnings)).with_digest()


def _probe_while_importing(python: str, **kwargs: Any) -> dict[str, Any]:
    """Runs the probe in a thread while this process loads the emitters (Jinja2, packaging's pylock).

    Why: the probe is another process on another core; waiting for it idle, then importing, would
    add both times to every snapshot.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["facts"] = run_probe(python, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="envcap-probe", daemon=True)
    worker.start()
    import envcap.emit.dockerfile
    import envcap.emit.requirements  # noqa: F401

    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["facts"]  # type: ignore[no-any-return]


def with_build_choices(snapshot: Snapshot, base_image: str | None = None) -> Snapshot:
    """Records the base image (as given, or chosen from the facts) and target platform in the lock.

    Why at snapshot time: ``envcap build`` may run elsewhere, from the lock alone; a choice that
    lived only in the generated Dockerfile would never reach it.
    """
    from envcap.emit.plan import build_choices

    if snapshot.build is not None and base_image is None:
        return snapshot
    return replace(snapshot, build=build_choices(snapshot, base_image)).with_digest()


def lock_files(snapshot: Snapshot, out_dir: Path) -> dict[Path, str]:
    """Every file of the lock set, rendered in memory: written together or not at all."""
    from envcap.emit import lock_set

    return {out_dir / name: text for name, text in lock_set(snapshot).items()}


def write_snapshot(snapshot: Snapshot, out_dir: Path, base_image: str | None = None, *,
                   staged_outputs: Path | None = None) -> SnapshotResult:
    """Writes the lock (with its build choices) and every output generated from it, as one set.

    ``staged_outputs``: the native run's copies of its output files, staged inside ``out_dir``; they
    join the same generation, so the lock's fingerprints and the copies can never disagree.
    """
    from envcap.emit import lock_set
    from envcap.lock.lockset import new_generation, write_lock_set

    if out_dir.exists() and not out_dir.is_dir():
        from envcap.errors import OutputError

        raise OutputError(f"--out {out_dir} is a file, not a folder.",
                          hint="pass a folder (it is created if missing), for example --out .envcap")
    snapshot = with_build_choices(snapshot, base_image)
    files = lock_set(snapshot)
    folders = {"outputs": staged_outputs} if staged_outputs is not None and staged_outputs.is_dir() else {}
    write_lock_set(out_dir, files, folders=folders, generation=new_generation(snapshot.digest))
    return SnapshotResult(snapshot=snapshot, out_dir=out_dir, files=tuple(out_dir / name for name in files))


def take(python: str | None, out_dir: Path, *, base_image: str | None = None, deep: bool = False,
         offline: bool = False, workload: Sequence[str] = (), outputs: Sequence[str] = (),
         quiet_stdout: bool = False, on_release: Callable[[Release], None] | None = None,
         on_stage: Callable[[str, int], None] | None = None) -> SnapshotResult:
    """``envcap snapshot``: probe, pin, run the workload here when given (its outputs are the baseline),
    and write the lock set as one whole."""
    if outputs and not workload:
        raise UsageError("--outputs needs the command that writes them.",
                         hint="put it after --: envcap snapshot --outputs 'out/*.json' -- python train.py")
    snapshot = capture(python, deep=deep, offline=offline, on_release=on_release, on_stage=on_stage)
    if not workload:
        return write_snapshot(snapshot, out_dir, base_image=base_image)
    from envcap.workload.native import native_run

    if on_stage:
        on_stage("run", 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        native = native_run(workload, patterns=outputs, cwd=Path.cwd(), copies_dir=staging / "outputs",
                            stdout_to_stderr=quiet_stdout)
        recorded = bool(outputs) and native.exit_code == 0
        snapshot = replace(snapshot, outputs=native.outputs if recorded else None, precision=native.precision)
        result = write_snapshot(snapshot, out_dir, base_image=base_image,
                                staged_outputs=staging / "outputs" if recorded else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(result, native=native)


__all__ = ["DEFAULT_OUT", "SnapshotResult", "capture", "lock_files", "take", "with_build_choices", "write_snapshot"]
