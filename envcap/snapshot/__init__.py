"""``envcap snapshot``: probe, pin every artifact by hash, and write the lock set atomically."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcap import __version__
from envcap.errors import IndexUnreachable, UsageError
from envcap.fs import cache_dir
from envcap.probe import run_probe

if TYPE_CHECKING:
    # imported where used: the lock's records, the look-ups' and the emitters' modules load while the
    # probe runs, not before it starts
    from envcap.lock import Snapshot
    from envcap.net.pipconf import PipSettings
    from envcap.snapshot.hashes import ArtifactResolver, IndexDown, Release
    from envcap.snapshot.interpreter import Interpreter
    from envcap.workload.native import NativeRun

DEFAULT_OUT = Path(".envcap")


@dataclass(frozen=True)
class SnapshotResult:
    snapshot: Snapshot
    out_dir: Path
    files: tuple[Path, ...]
    native: NativeRun | None = None  # the workload's run on this host, with `-- CMD`
    interpreter: Interpreter | None = None  # which one was described, and why that one
    notes: tuple[str, ...] = ()  # about this invocation (not recorded in the lock)



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
    return _capture(python, deep=deep, offline=offline, cwd=cwd, on_release=on_release,
                    on_stage=on_stage).with_digest()


def _capture(
    python: str | None,
    *,
    deep: bool,
    offline: bool,
    cwd: str | None = None,
    on_release: Callable[[Release], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
) -> Snapshot:
    """``capture`` without the digest: ``take`` writes the snapshot, and the writer computes it once."""
    cache_root = cache_dir()
    interpreter = python or sys.executable
    lookups = _EarlyLookups(interpreter, cache_root, offline)
    try:
        if on_stage:
            on_stage("probe", 0)
        facts = _probe_while_importing(interpreter, meanwhile=lookups.start, cache_root=cache_root, deep=deep,
                                       cwd=cwd)
        from envcap.lock import now_utc
        from envcap.probe import snapshot_from_facts

        snapshot = snapshot_from_facts(facts, envcap_version=__version__, captured_at=now_utc(), source="probe")
        from envcap.net.pipconf import read_pip_settings

        # pip's settings as the target's pip reads them (its sys.prefix holds the site pip.conf); the
        # lock records them without credentials, the requests use them whole.
        settings = read_pip_settings(snapshot.python.prefix if snapshot.python else None)
        snapshot = replace(snapshot, pip_config=settings.redacted())
        resolver = lookups.resolver_for(settings)
        wanted = [(d.name, d.version) for d in snapshot.distributions
                  if (d.origin is None or d.origin.kind in ("index", "egg-info"))]
        releases = resolver.resolve(wanted, progress=on_release,
                                    on_pending=(lambda n: on_stage("hashes", n)) if on_stage else None)
    finally:
        lookups.close()
    missing = [r for r in releases.values() if not r.artifacts]
    down = resolver.unreachable()
    if down and missing:
        raise _unreachable(down, len(missing), len(releases))
    dists = []
    for dist in snapshot.distributions:
        release = releases.get((dist.name, dist.version))
        if release is not None:
            dist = replace(dist, artifacts=release.artifacts, index_url=release.index_url)
        dists.append(dist)
    snapshot = replace(snapshot, distributions=tuple(dists))
    from envcap.lock.disposition import conda_note, dispositions
    from envcap.snapshot.hashes import NOT_FOUND

    warnings = list(snapshot.warnings) + list(settings.problems) + resolver.notes
    for item in dispositions(snapshot):
        release = releases.get((item.dist.name, item.dist.version))
        if item.kind == "missing" and release is not None and release.error and not item.dist.artifacts \
                and release.error != NOT_FOUND:
            # the real reason (an index's HTTP 503, a page envcap could not read), not "not found"
            warnings.append(f"{item.dist.name} {item.dist.version}: no hash could be pinned ({release.error}), so "
                            "it is left out of requirements.lock and the image.")
        elif item.note:
            warnings.append(item.note)
    for index in down:
        warnings.append(f"the index {index.index} did not answer ({index.reason}); the lock pins only what the "
                        "other sources had.")
    conda = conda_note(snapshot)
    if conda:
        warnings.append(conda)
    for dist in snapshot.distributions:
        for problem in dist.problems:
            warnings.append(f"{dist.name}: broken metadata ({problem}).")
    return replace(snapshot, warnings=tuple(warnings))


class _EarlyLookups:
    """Hash look-ups started while the probe runs, from a guess of the pins; kept if the guess was right.

    Why: a cold snapshot spends longer on the indexes than on the probe, and most pins can be read
    from a venv's dist-info folder names before the probe has answered. The probe's report decides:
    pins it does not list are never used, pins the guess missed are looked up after it. Only when
    nothing is cached for these sources yet (a first snapshot): otherwise the guess would cost a
    warm snapshot the time it saves a cold one.
    """

    def __init__(self, python: str, cache_root: Path, offline: bool) -> None:
        self.python = python
        self.cache_root = cache_root
        self.offline = offline
        self.settings: PipSettings | None = None
        self.resolver: ArtifactResolver | None = None

    def start(self) -> None:
        prefix = Path(self.python).parent.parent
        if not (prefix / "pyvenv.cfg").is_file():
            return
        from envcap.net.pipconf import read_pip_settings
        from envcap.snapshot.hashes import ArtifactResolver

        self.settings = read_pip_settings(str(prefix))
        self.resolver = ArtifactResolver.from_settings(self.cache_root, self.settings, offline=self.offline)
        if self.resolver.cache_is_empty():
            self.resolver.prefetch(_venv_pins(prefix))
        else:
            self.resolver.preload(_venv_pins(prefix))

    def resolver_for(self, settings: PipSettings) -> ArtifactResolver:
        """The early resolver when it asked the same sources, else a new one (the early one stops)."""
        if self.resolver is not None and settings == self.settings:
            return self.resolver
        from envcap.snapshot.hashes import ArtifactResolver

        self.close()
        self.resolver = ArtifactResolver.from_settings(self.cache_root, settings, offline=self.offline)
        return self.resolver

    def close(self) -> None:
        if self.resolver is not None:
            self.resolver.close()


def _venv_pins(prefix: Path) -> list[tuple[str, str]]:
    """A venv's (name, version) pins from its dist-info folder names, before any probe.

    Only a guess (the probe's report decides). A distribution with a ``direct_url.json`` (a local
    folder, a VCS checkout, a URL) is left out: the snapshot never asks an index for it, so neither
    may the guess (its name may be private).
    """
    import os

    pins = []
    for site in prefix.glob("lib/python3*/site-packages"):
        try:
            entries = os.listdir(site)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info") and not os.path.exists(os.path.join(site, entry, "direct_url.json")):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                if name and version:
                    pins.append((name, version))
    return pins


def _unreachable(down: list[IndexDown], missing: int, asked: int) -> IndexUnreachable:
    """One sentence: which index, through which proxy, why, and what it cost."""
    first = down[0]
    names = first.index if len(down) == 1 else ", ".join(d.index for d in down[:-1]) + f" and {down[-1].index}"
    route = f"through the proxy {first.proxy}" if first.proxy else "directly (no proxy is set)"
    return IndexUnreachable(
        f"cannot reach the package {'index' if len(down) == 1 else 'indexes'} {names} {route}: {first.reason}, so "
        f"{missing} of {asked} releases could not be pinned by hash.",
        hint="check the network and the proxy (HTTPS_PROXY, NO_PROXY, pip's proxy and cert settings), or run "
             "`envcap snapshot --offline` for a lock of what local files and the cache can pin")


def _probe_while_importing(python: str, meanwhile: Callable[[], None] | None = None,
                           **kwargs: Any) -> dict[str, Any]:
    """Runs the probe in a thread while this process starts the look-ups and loads the emitters.

    Why: the probe is another process on another core; waiting for it idle, then importing, would
    add both times to every snapshot. ``meanwhile`` runs after the probe has started, so that
    nothing it does delays the probe.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["facts"] = run_probe(python, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="envcap-probe", daemon=True)
    worker.start()
    if meanwhile is not None:
        meanwhile()
    import envcap.emit.dockerfile
    import envcap.emit.pylock
    import envcap.emit.requirements

    envcap.emit.dockerfile.load_templates()

    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["facts"]  # type: ignore[no-any-return]


def with_build_choices(snapshot: Snapshot, base_image: str | None = None) -> Snapshot:
    """Records the base image (as given, or chosen from the facts) and target platform in the lock.

    Why at snapshot time: ``envcap build`` may run elsewhere, from the lock alone; a choice that
    lived only in the generated Dockerfile would never reach it.
    """
    chosen = _with_build(snapshot, base_image)
    return snapshot if chosen is snapshot else chosen.with_digest()


def _with_build(snapshot: Snapshot, base_image: str | None) -> Snapshot:
    """with_build_choices without the digest, for a writer that takes it from the lock it writes."""
    from envcap.emit.plan import build_choices

    if snapshot.build is not None and base_image is None:
        return snapshot
    return replace(snapshot, build=build_choices(snapshot, base_image))


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
    from envcap.emit import lock_set_and_digest
    from envcap.lock.lockset import new_generation, write_lock_set

    if out_dir.exists() and not out_dir.is_dir():
        from envcap.errors import OutputError

        raise OutputError(f"--out {out_dir} is a file, not a folder.",
                          hint="pass a folder (it is created if missing), for example --out .envcap")
    snapshot = _with_build(snapshot, base_image)
    files, digest = lock_set_and_digest(snapshot)
    snapshot = replace(snapshot, digest=digest)
    folders = {"outputs": staged_outputs} if staged_outputs is not None and staged_outputs.is_dir() else {}
    write_lock_set(out_dir, files, folders=folders, generation=new_generation(snapshot.digest))
    return SnapshotResult(snapshot=snapshot, out_dir=out_dir, files=tuple(out_dir / name for name in files))


def take(python: str | None, out_dir: Path, *, base_image: str | None = None, deep: bool = False,
         offline: bool = False, workload: Sequence[str] = (), outputs: Sequence[str] = (),
         quiet_stdout: bool = False, fingerprint: bool = False,
         on_release: Callable[[Release], None] | None = None,
         on_stage: Callable[[str, int], None] | None = None) -> SnapshotResult:
    """``envcap snapshot``: probe, pin, run the workload here when given (its outputs are the baseline),
    and write the lock set as one whole."""
    if outputs and not workload:
        raise UsageError("--outputs needs the command that writes them.",
                         hint="put it after --: envcap snapshot --outputs 'out/*.json' -- python train.py")
    from envcap.snapshot.interpreter import choose, is_envcaps_own

    interpreter = choose(python, workload, os.environ, Path.cwd())
    snapshot = _capture(interpreter.path, deep=deep, offline=offline, on_release=on_release, on_stage=on_stage)
    if fingerprint:  # imported only when asked: the default snapshot never loads the numerics libraries
        from envcap.probe.fingerprint import run_fingerprint, with_fingerprints

        snapshot = with_fingerprints(snapshot, run_fingerprint(interpreter.path))
    notes: tuple[str, ...] = ()
    if is_envcaps_own(snapshot.python.prefix if snapshot.python else None):
        notes = (f"{interpreter.path} is the environment envcap itself runs in, not a project's: activate the "
                 "project's venv, or pass --python .venv/bin/python",)
    if not workload:
        return replace(write_snapshot(snapshot, out_dir, base_image=base_image), interpreter=interpreter, notes=notes)
    from envcap.workload.native import native_run

    if on_stage:
        on_stage("run", 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    import tempfile

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
    return replace(result, native=native, interpreter=interpreter, notes=notes)


__all__ = ["DEFAULT_OUT", "SnapshotResult", "capture", "lock_files", "take", "with_build_choices", "write_snapshot"]
