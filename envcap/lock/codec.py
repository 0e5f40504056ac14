"""The lock on disk: canonical JSON, the content digest, the schema gate and migration.

Why apart from the records: reading a lock is where untrusted text becomes typed data, so the
checks (schema first, shape, size) live in one small module that every reader goes through.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import replace
from json.encoder import encode_basestring as _encode_string  # the C encoder's (ensure_ascii=False)
from typing import Any

from envcap._serde import ShapeError, from_json, to_json
from envcap.errors import LockfileError
from envcap.lock.records import SCHEMA_VERSION, Snapshot

# Fields that change between two captures of the same environment and so stay out of the digest.
# ``outputs`` and ``precision`` describe a run of the workload, not the environment: an image built
# from the lock must not be rebuilt because the workload wrote different numbers.
VOLATILE_FIELDS = ("captured_at", "digest", "outputs", "precision")


def now_utc() -> str:
    """The timestamp format of ``captured_at`` (and of replay reports): UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    data = to_json(snapshot)
    assert isinstance(data, dict)
    return data


def canonical_json(data: Any) -> str:
    """Sorted keys, fixed separators, a final newline: the same facts give the same bytes.

    The bytes are exactly ``json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False)``'s. Why
    not that call: with ``indent`` the json module encodes in pure Python through generators, and a
    lock's 2,400 artifacts took it 40 ms of a warm snapshot; the writer below builds the same text
    in a third of that (values it does not know, such as a str subclass, go to json.dumps).
    """
    out: list[str] = []
    try:
        _indented(data, 0, out)
    except _Unusual:
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    out.append("\n")
    return "".join(out)


class _Unusual(Exception):
    """A value the fast writer leaves to json.dumps (a subclass, a non-string key, a cycle...)."""


_NEWLINES = tuple("\n" + "  " * level for level in range(32))
_SCALARS: dict[object, str] = {True: "true", False: "false"}


def _indented(value: Any, level: int, out: list[str]) -> None:
    cls = type(value)
    if cls is str:
        out.append(_encode_string(value))
    elif cls is dict:
        if not value:
            out.append("{}")
            return
        if level + 1 >= len(_NEWLINES) or any(type(key) is not str for key in value):
            raise _Unusual
        inner, outer = _NEWLINES[level + 1], _NEWLINES[level]
        separator = "," + inner
        out.append("{" + inner)
        first = True
        for key, item in sorted(value.items()):
            if not first:
                out.append(separator)
            first = False
            out.append(_encode_string(key) + ": ")
            _indented(item, level + 1, out)
        out.append(outer + "}")
    elif cls is list or cls is tuple:
        if not value:
            out.append("[]")
            return
        if level + 1 >= len(_NEWLINES):
            raise _Unusual
        inner, outer = _NEWLINES[level + 1], _NEWLINES[level]
        separator = "," + inner
        out.append("[" + inner)
        first = True
        for item in value:
            if not first:
                out.append(separator)
            first = False
            _indented(item, level + 1, out)
        out.append(outer + "]")
    elif value is None:
        out.append("null")
    elif cls is bool:
        out.append(_SCALARS[value])
    elif cls is int:
        out.append(int.__repr__(value))
    elif cls is float and value == value and value not in (_INFINITY, -_INFINITY):
        out.append(float.__repr__(value))
    else:
        raise _Unusual


_INFINITY = float("inf")


def _digest_of(data: dict[str, Any]) -> str:
    stable = {k: v for k, v in data.items() if k not in VOLATILE_FIELDS}
    payload = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def content_digest(snapshot: Snapshot) -> str:
    return _digest_of(snapshot_to_dict(snapshot))


def dumps(snapshot: Snapshot) -> str:
    """Canonical JSON with the digest of exactly what is written, every string through the redaction engine.

    Snapshots are redacted when they are made (probe) and read (``loads``), so this changes nothing
    in practice; it is the last guard before a file that may be published.
    """
    return dumps_with_digest(snapshot)[0]


def dumps_with_digest(snapshot: Snapshot) -> tuple[str, str]:
    """``dumps`` and the digest it wrote: what the outputs generated beside the lock must name.

    Why both: the digest is of the redacted content as written, so a writer that takes it from here
    needs no second pass over the snapshot (each pass over a 2,400-artifact lock costs 7 ms).
    """
    from envcap.redact import lock_document

    data = lock_document(snapshot_to_dict(snapshot))
    data["digest"] = digest = _digest_of(data)
    return canonical_json(data), digest


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Brings an older schema up to SCHEMA_VERSION; the one place that knows old shapes.

    1 -> 2: ``build`` (base image and target platform) did not exist; it stays absent and
    ``envcap.emit.plan.build_choices`` derives it exactly as a schema-1 ``envcap build`` chose.
    """
    migrated = dict(data)
    if migrated.get("schema") == 1:
        migrated["schema"] = 2
        migrated.setdefault("build", None)
    return migrated


def loads(text: str, origin: str = "the lock") -> Snapshot:
    """Parses a lock, checking the schema before anything else."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LockfileError(
            f"{origin} is not valid JSON ({exc}).",
            hint="run `envcap snapshot` again to write a fresh lock",
        ) from None
    if not isinstance(data, dict):
        raise LockfileError(f"{origin} is not an envcap lock (its top level is not an object).",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise LockfileError(f"{origin} has no integer 'schema' field, so it is not an envcap lock.",
                            hint="pass the envcap.lock.json written by `envcap snapshot`")
    if schema > SCHEMA_VERSION:
        raise LockfileError(
            f"{origin} uses lock schema {schema}, newer than the {SCHEMA_VERSION} this envcap reads.",
            hint="upgrade envcap (pip install -U envcap)",
        )
    if schema < 1:
        raise LockfileError(f"{origin} has an invalid schema number {schema}.",
                            hint="run `envcap snapshot` again to write a fresh lock")
    from envcap.lock.validate import Invalid, check_size, check_strings, validate
    from envcap.redact import lock_document

    try:
        check_size(data)
        check_strings(data)
        data = lock_document(data)  # a stranger's lock may carry someone's secret: it goes no further
    except Invalid as exc:
        raise refused(origin, exc) from None
    except RecursionError:
        raise LockfileError(f"{origin} is damaged: it nests too deeply.", hint="run `envcap snapshot` again") from None
    try:
        snapshot = from_json(Snapshot, migrate(data))
    except ShapeError as exc:
        raise LockfileError(f"{origin} is damaged: {exc}.",
                            hint="run `envcap snapshot` again, or restore the file from version control") from None
    except RecursionError:
        raise LockfileError(f"{origin} is damaged: it nests too deeply.",
                            hint="run `envcap snapshot` again") from None
    if snapshot.python is None and snapshot.source == "probe":
        raise LockfileError(f"{origin} is damaged: it holds no 'python' section.",
                            hint="run `envcap snapshot` again")
    try:
        validate(snapshot)
    except Invalid as exc:
        raise refused(origin, exc) from None
    return snapshot


def refused(origin: str, problem: ValueError) -> LockfileError:
    """One sentence naming the field that broke its rule; the lock is not used at all."""
    return LockfileError(f"{origin} is refused: {problem}.",
                         hint="a lock may come from anyone, so envcap uses none of it; take a fresh snapshot, or fix "
                              "that field if you know why it is so")


def digest_matches(snapshot: Snapshot) -> bool:
    return snapshot.digest is None or snapshot.digest == content_digest(snapshot)


def with_digest(snapshot: Snapshot) -> Snapshot:
    return replace(snapshot, digest=content_digest(snapshot))
