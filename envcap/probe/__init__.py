"""Runs the stdlib-only probe script inside a target interpreter and turns its JSON into a Snapshot.

Why a separate interpreter: envcap may live in pipx while the project lives in ``.venv``; and
inside a replay container the very same script describes the other side, so two snapshots are
always taken by the same code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envcap._serde import ShapeError, from_json
from envcap._subprocess import RunFailed, Runner, run
from envcap.errors import ProbeError
from envcap.lock import Snapshot

PROBE_SCRIPT = Path(__file__).with_name("_probe.py")


def probe_source() -> str:
    """The script's text, for interpreters that cannot see this file (a container)."""
    return PROBE_SCRIPT.read_text("utf-8")


def resolve_interpreter(python: str) -> str:
    """An interpreter path that exists and can be executed, or a ProbeError naming the problem."""
    candidate = python
    if os.sep not in python:
        found = shutil.which(python)
        if found is None:
            raise ProbeError(f"no interpreter named {python!r} is on PATH.",
                             hint="pass a path, for example --python .venv/bin/python")
        candidate = found
    path = Path(candidate)
    if path.is_dir():
        for inner in ("bin/python", "bin/python3"):
            if (path / inner).exists():
                return str(path / inner)
        raise ProbeError(f"{python} is a folder without bin/python.",
                         hint="pass the interpreter itself, for example --python .venv/bin/python")
    if not path.exists():
        raise ProbeError(f"the interpreter {python} does not exist.",
                         hint="check the path, or create the environment first (python -m venv .venv)")
    if not os.access(path, os.X_OK):
        raise ProbeError(f"{python} is not executable.", hint="pass a Python interpreter with --python")
    return os.path.abspath(path)  # run with another cwd, a relative path would name another file


def probe_cache_file(cache_root: Path, python: str) -> Path:
    key = hashlib.sha256(os.path.abspath(python).encode()).hexdigest()[:16]
    return cache_root / "probe" / f"{key}.json"


def run_probe(
    python: str,
    *,
    cache_root: Path | None = None,
    deep: bool = False,
    cwd: str | None = None,
    runner: Runner = run,
    timeout: float = 120.0,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    interpreter = resolve_interpreter(python)
    argv = [interpreter, str(PROBE_SCRIPT)]
    if cache_root is not None:
        argv += ["--cache", str(probe_cache_file(cache_root, interpreter))]
    if deep:
        argv.append("--deep")
    argv += ["--cwd", cwd or os.getcwd()]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the target's own sys.path, not envcap's
    env.pop("PYTHONHOME", None)
    if extra_env:
        env.update(extra_env)
    try:
        done = runner(argv, timeout=timeout, cwd=cwd, env=env)
    except RunFailed as exc:
        raise ProbeError(f"could not run the probe in {python}: {exc}.",
                         hint="check that it is a working Python interpreter") from None
    return parse_probe_output(done.stdout, done.stderr, done.returncode, python)


def parse_probe_output(stdout: str, stderr: str, returncode: int, python: str) -> dict[str, Any]:
    if returncode != 0:
        last = (stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise ProbeError(f"{python} could not run envcap's probe (exit {returncode}: {last}).",
                         hint="check that it is a Python 3.8+ interpreter: run it with --version")
    try:
        facts = json.loads(stdout)
    except ValueError:
        raise ProbeError(f"{python} did not answer like a Python interpreter (its output is not the probe's JSON).",
                         hint="pass a Python interpreter with --python") from None
    if not isinstance(facts, dict) or "python" not in facts:
        raise ProbeError(f"{python} returned an incomplete probe report.", hint="run with --debug and report it")
    return facts


def snapshot_from_facts(facts: Mapping[str, Any], **fields: Any) -> Snapshot:
    """The probe's raw JSON into the typed model; extra ``fields`` (version, capture time) are set too."""
    data = dict(facts)
    data.pop("probe_version", None)
    dists = data.get("distributions") or []
    if isinstance(dists, list) and all(isinstance(d, dict) for d in dists):
        data["distributions"] = sorted(dists, key=lambda d: (str(d.get("name", "")), str(d.get("version", ""))))
    # any other shape is reported by from_json below as one clear sentence
    data.update(fields)
    from dataclasses import replace

    from envcap.lock.validate import Invalid, check_strings, sanitize
    from envcap.redact import lock_document

    try:
        check_strings(data)
        snapshot = from_json(Snapshot, lock_document(data))
        snapshot, warnings = sanitize(snapshot)
    except ShapeError as exc:
        raise ProbeError(f"the probe's report has an unexpected shape ({exc}).",
                         hint="run with --debug and report it; envcap and its probe may disagree") from None
    except Invalid as exc:
        raise ProbeError(f"the probe's report cannot be recorded safely: {exc}.",
                         hint="run with --debug and report it") from None
    return replace(snapshot, warnings=snapshot.warnings + tuple(warnings)) if warnings else snapshot
