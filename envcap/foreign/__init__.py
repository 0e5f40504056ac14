"""Reading any environment description into a Snapshot: envcap's own, or a foreign report.

Why detection by content: people name pasted reports ``env.txt`` or ``a.log``; the content says
what it is. A foreign report gives a partial Snapshot whose ``source`` names the format; what it
does not state stays unknown (never guessed), and what it implies is filled in by
``envcap.explain.derive`` and marked as derived.

Every failure is one sentence naming what was expected: a ``ReportFormatError`` for foreign text,
a ``LockfileError`` for a damaged or newer envcap lock.
"""

from __future__ import annotations

import json
from pathlib import Path

from envcap.errors import LockfileError
from envcap.foreign import collect_env, conda, nvidia_smi, pip
from envcap.foreign._common import READS, fail
from envcap.lock import LOCK_FILENAME, Snapshot, load_snapshot, loads

MAX_REPORT_BYTES = 64 << 20
FORMATS = ("envcap-lock", "collect-env", "nvidia-smi", "conda-list", "pip-freeze", "pip-list", "pip-inspect")


def load_any(path: str | Path) -> Snapshot:
    """A snapshot folder, an envcap.lock.json, or a foreign report detected by its content."""
    location = Path(path)
    if location.is_dir():
        return load_snapshot(location)
    if not location.exists():
        raise LockfileError(f"no file or snapshot folder at {location}.",
                            hint=f"pass a folder holding {LOCK_FILENAME}, or a report file")
    try:
        with open(location, "rb") as handle:
            raw = handle.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise fail(f"cannot read {location}: {exc.strerror or exc}.", hint="check the file's permissions") from None
    if len(raw) > MAX_REPORT_BYTES:
        raise fail(f"{location} is larger than {MAX_REPORT_BYTES >> 20} MiB; expected {READS}.")
    return parse_report(raw, str(location))


def decode(raw: bytes, origin: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM (PowerShell's `>`); anything else is not a report."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise fail(f"{origin} is not readable text (a broken UTF-16 file); expected {READS}.") from None
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise fail(f"{origin} is binary, not text; expected {READS}.") from None
    if "\x00" in text:
        raise fail(f"{origin} is binary, not text; expected {READS}.")
    return text


def parse_report(raw: bytes, origin: str) -> Snapshot:
    text = decode(raw, origin)
    if not text.strip():
        raise fail(f"{origin} is empty; expected {READS}.")
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _parse_json(text, origin)
    if collect_env.looks_like(text):
        return collect_env.parse(text, origin)
    if nvidia_smi.looks_like(text):
        return nvidia_smi.parse(text, origin)
    if conda.looks_like(text):
        return conda.parse(text, origin)
    if pip.looks_like_freeze(text):
        return pip.parse_freeze(text, origin)
    if pip.looks_like_requirements(text):
        raise fail(f"{origin} is a requirements file (version ranges or bare names), not `pip freeze` output.",
                   hint="pass the output of `pip freeze` from the environment")
    raise fail(f"{origin} is of no format envcap reads; expected {READS}.")


def _parse_json(text: str, origin: str) -> Snapshot:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise fail(f"{origin} starts like JSON but is not valid JSON (is it cut short?); expected an envcap lock, "
                   "`pip list --format=json` or `pip inspect` output.") from None
    if isinstance(data, dict) and "schema" in data:
        return loads(text, origin)
    if pip.looks_like_inspect(data):
        return pip.parse_inspect(data, origin)
    if isinstance(data, list):
        return pip.parse_list_json(data, origin)
    raise fail(f"{origin} is JSON of no format envcap reads; expected an envcap lock (with a 'schema' field), "
               "`pip list --format=json` or `pip inspect` output.")


__all__ = ["FORMATS", "decode", "load_any", "parse_report"]
