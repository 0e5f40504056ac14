"""Typed conversion between frozen dataclasses and plain JSON values.

Why hand-written: the lock is read from files that people edit and that may be damaged; every
wrong shape must become one ``ValueError`` naming the path of the bad field (``python.version``),
which the model turns into a ``LockfileError``. A general-purpose library would either accept
anything or raise its own exception types.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ShapeError(ValueError):
    """A JSON value does not have the shape the dataclass declares."""

    def __init__(self, path: str, expected: str, got: object) -> None:
        shown = type(got).__name__ if not isinstance(got, (str, int, float, bool)) else repr(got)[:60]
        super().__init__(f"{path or '<root>'}: expected {expected}, found {shown}")
        self.path = path


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = (str, int, float, bool, type(None))


def to_json(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists; ``None`` fields are kept so the shape is stable.

    Written for speed (a lock holds thousands of artifacts and a warm snapshot is timed):
    field names are looked up once per class, scalars return at once.
    """
    cls = type(value)
    if cls in _SCALARS:
        return value
    names = _FIELD_NAMES.get(cls)
    if names is None and dataclasses.is_dataclass(cls):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if cls is list or cls is tuple:
        return [to_json(item) for item in value]
    if cls is dict:
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any, path: str = "") -> T:
    """Builds ``cls`` from ``data``; unknown keys are ignored (older readers of newer minor fields)."""
    return typing.cast(T, _convert(cls, data, path))


def _convert(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return data
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(data, bool) or data not in allowed:
            raise ShapeError(path, "one of " + ", ".join(map(str, allowed)), data)
        return data
    if origin is Union or origin is types.UnionType:
        options = get_args(tp)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, data, path)
            except ShapeError as exc:
                errors.append(exc)
        raise errors[0] if errors else ShapeError(path, str(tp), data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ShapeError(path, f"an object ({tp.__name__})", data)
        hints = _hints(tp)
        kwargs = {}
        for field in dataclasses.fields(tp):
            sub = f"{path}.{field.name}" if path else field.name
            if field.name in data:
                kwargs[field.name] = _convert(hints[field.name], data[field.name], sub)
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ShapeError(sub, "a value", None)
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(data, list):
            raise ShapeError(path, "a list", data)
        args = get_args(tp)
        item_type = args[0] if args else Any
        return tuple(_convert(item_type, item, f"{path}[{i}]") for i, item in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise ShapeError(path, "an object", data)
        _, value_type = get_args(tp)
        return {str(k): _convert(value_type, v, f"{path}[{json.dumps(str(k))}]") for k, v in data.items()}
    if tp is bool:
        if not isinstance(data, bool):
            raise ShapeError(path, "true or false", data)
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise ShapeError(path, "an integer", data)
        return data
    if tp is float:
        if data in ("inf", "-inf", "nan"):  # JSON has no infinity; envcap's reports write these strings
            return float(data)
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            raise ShapeError(path, "a number", data)
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise ShapeError(path, "a string", data)
        return data
    raise ShapeError(path, f"a value of type {tp}", data)
