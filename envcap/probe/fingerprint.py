"""Runs the numeric fingerprint (``_fingerprint.py``) inside a target interpreter and reads its JSON into records.

Why apart from the probe: the fingerprint imports numpy, scipy and torch and costs a second or more, so it runs
only when asked (``envcap snapshot --fingerprint``, ``envcap fingerprint``, a replay of a fingerprinted lock);
the default snapshot path never loads this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from envcap._serde import ShapeError, from_json
from envcap._subprocess import RunFailed, Runner, run
from envcap.errors import ProbeError
from envcap.lock import Fingerprint, Snapshot, Unavailable

FINGERPRINT_SCRIPT = Path(__file__).with_name("_fingerprint.py")
LIBRARIES = ("numpy", "scipy", "torch")


@dataclass(frozen=True)
class FingerprintRun:
    """What one run of the suite measured: kernels by ``library.kernel``, and what it could not run."""

    kernels: dict[str, Fingerprint]
    unavailable: tuple[Unavailable, ...] = ()
    context: dict[str, str | int | bool] = field(default_factory=dict)  # versions, SIMD targets, pinned BLAS
    seconds: dict[str, float] = field(default_factory=dict)  # per kernel, the mean of its two runs
    total_seconds: float = 0.0  # inside the interpreter: imports and kernels


@dataclass(frozen=True)
class _Output:
    """The script's JSON, as read (fields the reader does not know are ignored)."""

    fingerprint_version: int
    kernels: dict[str, Fingerprint]
    context: dict[str, str | int | bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    unavailable: tuple[Unavailable, ...] = ()


def fingerprint_source() -> str:
    """The script's text, for interpreters that cannot see this file (a container's python3)."""
    return FINGERPRINT_SCRIPT.read_text("utf-8")


def fingerprint_argv(python: str, only: tuple[str, ...] = ()) -> list[str]:
    return [python, str(FINGERPRINT_SCRIPT)] + (["--only", ",".join(only)] if only else [])


def run_fingerprint(python: str, *, only: tuple[str, ...] = (), runner: Runner = run, timeout: float = 300.0,
                    extra_env: Mapping[str, str] | None = None) -> FingerprintRun:
    """The suite in ``python`` (resolved like the probe's ``--python``), with this process's environment."""
    from envcap.probe import resolve_interpreter, target_environment

    interpreter = resolve_interpreter(python)
    try:
        done = runner(fingerprint_argv(interpreter, only), timeout=timeout, env=target_environment(extra_env))
    except RunFailed as exc:
        raise ProbeError(f"could not run the numeric fingerprint in {python}: {exc}.",
                         hint="check that it is a working Python interpreter") from None
    return parse_fingerprint_output(done.stdout, done.stderr, done.returncode, python)


def parse_fingerprint_output(stdout: str, stderr: str, returncode: int, where: str) -> FingerprintRun:
    import json

    if returncode != 0:
        last = (stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise ProbeError(f"{where} could not run envcap's numeric fingerprint (exit {returncode}: {last}).",
                         hint="run `envcap fingerprint --python PY -v` to see the call; a library that crashes "
                              "on import can be left out by uninstalling it from a copy of the environment")
    try:
        data = json.loads(stdout)
    except ValueError:
        raise ProbeError(f"{where} did not answer with the fingerprint's JSON.",
                         hint="pass a Python interpreter with --python") from None
    try:
        output = from_json(_Output, data)
    except ShapeError as exc:
        raise ProbeError(f"the fingerprint's report has an unexpected shape ({exc}).",
                         hint="run with --debug and report it; envcap and its fingerprint script may disagree") \
            from None
    return FingerprintRun(kernels=dict(sorted(output.kernels.items())), unavailable=output.unavailable,
                          context=output.context, seconds=output.seconds, total_seconds=output.total_seconds)


def with_fingerprints(snapshot: Snapshot, measured: FingerprintRun) -> Snapshot:
    """The snapshot with the measured kernels; a kernel that could not run is listed as unavailable."""
    kept = tuple(u for u in snapshot.unavailable if not u.probe.startswith("fingerprint."))
    return replace(snapshot, fingerprints=dict(measured.kernels), unavailable=kept + measured.unavailable)


__all__ = ["FINGERPRINT_SCRIPT", "LIBRARIES", "FingerprintRun", "fingerprint_argv", "fingerprint_source",
           "parse_fingerprint_output", "run_fingerprint", "with_fingerprints"]
