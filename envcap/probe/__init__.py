"""Runs the stdlib-only probe script inside a target interpreter and turns its JSON into a Snapshot.

Why a separate interpreter: envcap may live in pipx while the project lives in ``.venv``; and
inside a replay container the very same script describes the other side, so two snapshots are
always taken by the same code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcap._subprocess import RunFailed, Runner, run
from envcap.errors import ProbeError

if TYPE_CHECKING:  # loaded by snapshot_from_facts: the probe is started before the records are imported
    from envcap.lock import Snapshot

PROBE_SCRIPT = Path(__file__).with_name("_probe.py")


def probe_source() -> str:
    """The script's text, for interpreters that cannot see this file (a container)."""
    return PROBE_SCRIPT.read_text("utf-8")


def target_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a script run in the target interpreter: without envcap's own
    ``PYTHONPATH``/``PYTHONHOME`` (the target keeps its own sys.path), plus ``extra``."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env.update(extra or {})
    return env


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


# Runs the probe script as ``python _probe.py ARGS`` would, from a compiled copy kept beside the
# probe's cache. Why: a script is compiled on every run (Python caches only imported modules), and
# compiling the probe cost 15 ms of a 75 ms warm probe. The copy is marshal data, valid only for the
# same script text (its sha256), interpreter build and optimisation level, all in its first line;
# anything else, or any failure to read it, means compiling the script as Python would. Standard
# library only, Python 3.8+, run with: -c LOADER SCRIPT COPY SHA256 ARGS...
_LOADER = """\
import marshal, os, sys
def _envcap_probe_code():
    script, copy, expected = sys.argv[1:4]
    del sys.argv[1:4]
    sys.argv[0] = script
    if sys.path and sys.path[0] == "":  # -c put the working folder first; a script puts its own
        sys.path[0] = os.path.dirname(os.path.abspath(script))
    tag = ("%s|%s|%d|%r\\n" % (expected, sys.implementation.cache_tag, sys.flags.optimize,
                                 sys.version)).encode("utf-8", "backslashreplace")
    try:
        with open(copy, "rb") as handle:
            data = handle.read()
        if data.startswith(tag):
            return marshal.loads(data[len(tag):])
    except (OSError, ValueError, EOFError, TypeError):
        pass
    with open(script, "rb") as handle:
        source = handle.read()
    code = compile(source, script, "exec", dont_inherit=True)
    import hashlib
    if hashlib.sha256(source).hexdigest() == expected:
        try:
            temporary = "%s.%d.tmp" % (copy, os.getpid())
            with open(temporary, "wb") as handle:
                handle.write(tag + marshal.dumps(code))
            os.replace(temporary, copy)
        except OSError:
            pass
    return code
__file__ = sys.argv[1]
exec(_envcap_probe_code())
"""


@functools.cache
def _probe_sha256() -> str:
    return hashlib.sha256(PROBE_SCRIPT.read_bytes()).hexdigest()


def probe_argv(interpreter: str, cache_root: Path | None) -> list[str]:
    """How to start the probe: the script itself, or through its compiled copy when there is a cache."""
    if cache_root is None:
        return [interpreter, str(PROBE_SCRIPT)]
    cache_file = probe_cache_file(cache_root, interpreter)
    copy = cache_file.with_suffix(".code")
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return [interpreter, str(PROBE_SCRIPT), "--cache", str(cache_file)]
    return [interpreter, "-c", _LOADER, str(PROBE_SCRIPT), str(copy), _probe_sha256(), "--cache", str(cache_file)]


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
    argv = probe_argv(interpreter, cache_root)
    if deep:
        argv.append("--deep")
    argv += ["--cwd", cwd or os.getcwd()]
    try:
        done = runner(argv, timeout=timeout, cwd=cwd, env=target_environment(extra_env))
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

    from envcap._serde import ShapeError, from_json
    from envcap.lock import Snapshot
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
