"""NumPy's ``.npy``/``.npz`` files read without NumPy: the format is a small header and raw numbers.

Why: a replay compares the workload's outputs number by number on the host, where envcap may live
in its own environment (pipx) without NumPy; comparing only when NumPy happens to be installed beside
envcap made the report depend on envcap's install, not on the outputs.
"""

from __future__ import annotations

import ast
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x93NUMPY"
# dtype character -> struct format (one element); bool reads as 0/1
_FORMATS = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q", "u1": "B", "u2": "H",
            "u4": "I", "u8": "Q", "b1": "?"}


class NpyError(ValueError):
    """Not a .npy file envcap can read (compared by hash alone then)."""


@dataclass(frozen=True)
class Array:
    shape: tuple[int, ...]
    fortran_order: bool
    kind: str  # "f", "i", "u", "b" (numbers) or another dtype character (compared as bytes)
    item_format: str | None  # struct format of one element, None when not numeric
    data: bytes

    @property
    def size(self) -> int:
        total = 1
        for n in self.shape:
            total *= n
        return total

    def values(self) -> Iterator[float]:
        """The elements in C order, as floats."""
        if self.item_format is None:
            raise NpyError("not a numeric array")
        flat = [float(v[0]) for v in struct.iter_unpack(self.item_format, self.data[: self.size *
                                                                                    struct.calcsize(self.item_format)])]
        if not self.fortran_order or len(self.shape) < 2:
            yield from flat
            return
        for index in range(self.size):  # C-order position -> Fortran-order offset
            yield flat[_fortran_offset(unravel(index, self.shape), self.shape)]


def unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    position = []
    for n in reversed(shape):
        position.append(index % n if n else 0)
        index //= n if n else 1
    return tuple(reversed(position))


def _fortran_offset(position: tuple[int, ...], shape: tuple[int, ...]) -> int:
    offset, stride = 0, 1
    for i, n in zip(position, shape, strict=True):
        offset += i * stride
        stride *= n
    return offset


def parse(raw: bytes) -> Array:
    if not raw.startswith(MAGIC) or len(raw) < 10:
        raise NpyError("no .npy magic")
    major = raw[6]
    if major == 1:
        (length,) = struct.unpack("<H", raw[8:10])
        start = 10
    elif major in (2, 3):
        (length,) = struct.unpack("<I", raw[8:12])
        start = 12
    else:
        raise NpyError(f"unknown .npy version {major}")
    try:
        header = ast.literal_eval(raw[start:start + length].decode("latin-1"))  # a dict literal, never code
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise NpyError(f"unreadable header ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("descr"), str):
        raise NpyError("a structured or unusual dtype")
    shape = header.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyError("no shape")
    descr = header["descr"]
    order = {"<": "<", ">": ">", "|": "<", "=": "<"}.get(descr[:1])
    code = descr[1:] if order else descr
    kind = code[:1]
    item = _FORMATS.get(code)
    return Array(shape=tuple(shape), fortran_order=bool(header.get("fortran_order")), kind=kind,
                 item_format=(order or "<") + item if item else None, data=raw[start + length:])


def arrays(path: Path, kind: str, limit: int) -> Iterator[tuple[str, Array]]:
    """("", array) for a .npy; (member name, array) for each ``.npy`` inside a ``.npz`` (zipfile)."""
    if kind == "npy":
        yield "", parse(path.read_bytes())
        return
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.file_size > limit:
                raise NpyError(f"{info.filename} is too large to compare number by number")
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            yield name, parse(archive.read(info))


__all__ = ["Array", "NpyError", "arrays", "parse", "unravel"]
