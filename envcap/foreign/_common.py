"""Helpers shared by the foreign-report parsers: names, versions, and the one error they raise."""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

from envcap.errors import ReportFormatError
from envcap.lock import Distribution

NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9_])?$")  # conda allows a leading _
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_*-]{0,99}$")
NOT_COLLECTED = ("could not collect", "n/a", "none", "no cuda", "")

READS = ("an envcap snapshot (a folder or envcap.lock.json), or the text of `python -m torch.utils.collect_env`, "
         "`pip freeze`, `pip list --format=json`, `pip inspect`, `conda list --export` or `nvidia-smi -q`")
HINT = "save the report with its command's own output (for example `pip freeze > env.txt`) and pass that file"


def fail(message: str, hint: str = HINT) -> ReportFormatError:
    return ReportFormatError(message, hint=hint)


def distribution(name: str, version: str, installer: str | None = None, origin: str = "the report",
                 line: int | None = None) -> Distribution:
    """A Distribution from a (name, version) pair a report printed; bad text is a ReportFormatError."""
    name, version = name.strip(), version.strip()
    where = f" line {line}" if line is not None else ""
    if not NAME_RE.match(name):
        raise fail(f"{origin}{where} names a package {name[:40]!r} that is not a valid distribution name.")
    if not VERSION_RE.match(version):
        raise fail(f"{origin}{where} gives {name} the version {version[:40]!r}, which is not a version "
                   "(is the file cut short?).")
    return Distribution(name=canonicalize_name(name), version=version, display_name=name, installer=installer)


def collected(value: str | None) -> str | None:
    """The value a report printed, or None where it printed "Could not collect", "N/A" and the like."""
    if value is None:
        return None
    text = value.strip()
    return None if text.lower() in NOT_COLLECTED else text


def dedupe(dists: list[Distribution]) -> tuple[Distribution, ...]:
    """First occurrence of each name wins, sorted by name (the order the probe writes)."""
    seen: dict[str, Distribution] = {}
    for dist in dists:
        seen.setdefault(dist.name, dist)
    return tuple(sorted(seen.values(), key=lambda d: d.name))
