"""pip's own reports: ``pip freeze``, ``pip list --format=json`` and ``pip inspect``.

Why all three: they are what people attach when asked "which versions do you have"; each lists
every installed distribution, so a package missing from one is known not to be installed. Only
``pip inspect`` also states the interpreter (version, implementation, machine).
"""

from __future__ import annotations

import re
from typing import Any

from packaging.utils import canonicalize_name

from envcap.foreign._common import dedupe, distribution, fail
from envcap.lock import Cpu, Distribution, OsInfo, PythonEnv, Snapshot, Unavailable

PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;#]+)\s*(?:[;#].*)?$")
URL_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*@\s*\S+")
EGG_RE = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
RANGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*(?:>=|<=|~=|!=|>|<)")
WHEEL_VERSION_RE = re.compile(r"/([A-Za-z0-9_.]+)-(\d[^-/]*)-[^/]*\.whl$")
PIP_INSPECT_VERSION = 1
FREEZE_OMITS = ("pip", "setuptools", "wheel", "distribute")


def looks_like_freeze(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and (PIN_RE.match(lines[0]) is not None or URL_RE.match(lines[0]) is not None
                            or lines[0].startswith("-e ")) and any(PIN_RE.match(line) for line in lines)


def looks_like_requirements(text: str) -> bool:
    """A requirements file with ranges or bare names: what people keep, not what is installed."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    bare = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?\s*(?:[<>=!~]=?.*)?$")
    return bool(lines) and all(bare.match(line) or line.startswith("-") for line in lines) \
        and not any(PIN_RE.match(line) for line in lines)


def parse_freeze(text: str, origin: str) -> Snapshot:
    dists: list[Distribution] = []
    unknown: list[Unavailable] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pin = PIN_RE.match(line)
        if pin:
            dists.append(distribution(pin.group(1), pin.group(2), origin=origin, line=number))
            continue
        url = URL_RE.match(line)
        egg = EGG_RE.search(line) if line.startswith("-e ") else None
        if url or egg:
            name = (url or egg).group(1)  # type: ignore[union-attr]
            wheel = WHEEL_VERSION_RE.search(line)
            if wheel:
                dists.append(distribution(name, wheel.group(2), origin=origin, line=number))
            else:
                unknown.append(Unavailable(f"pkg.{canonicalize_name(name)}",
                                           "pip freeze names a URL or an editable checkout, not a version"))
            continue
        if line.startswith("-"):
            continue  # options of a requirements file (--index-url, -r): not distributions
        if RANGE_RE.match(line):
            raise fail(f"{origin} line {number} ({line[:40]!r}) is a version range, so the file is a requirements "
                       "file, not `pip freeze` output.", hint="pass the output of `pip freeze` from the environment")
        raise fail(f"{origin} line {number} ({line[:40]!r}) is not a `name==version` pin: expected `pip freeze` "
                   "output (is the file cut short?).")
    if not dists and not unknown:
        raise fail(f"{origin} lists no `name==version` pins: expected `pip freeze` output.")
    listed = {d.name for d in dists}
    # `pip freeze` leaves out its own tools unless run with --all: their absence says nothing.
    unknown += [Unavailable(f"pkg.{name}", "pip freeze omits it unless run with --all")
                for name in FREEZE_OMITS if name not in listed]
    return Snapshot(source="pip-freeze", distributions=dedupe(dists), unavailable=tuple(unknown))


def parse_list_json(data: Any, origin: str) -> Snapshot:
    if not isinstance(data, list) or not data:
        raise fail(f"{origin} is a JSON list without entries: expected `pip list --format=json` output.")
    dists = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("version"), str):
            raise fail(f"{origin} entry {index} is not a {{\"name\", \"version\"}} object: expected "
                       "`pip list --format=json` output.")
        dists.append(distribution(item["name"], item["version"], origin=origin))
    return Snapshot(source="pip-list", distributions=dedupe(dists))


def looks_like_inspect(data: Any) -> bool:
    return isinstance(data, dict) and "installed" in data and ("pip_version" in data or "environment" in data)


def parse_inspect(data: dict[str, Any], origin: str) -> Snapshot:
    version = data.get("version")
    try:
        number = int(str(version))
    except ValueError:
        raise fail(f"{origin} has no valid report 'version' field: expected `pip inspect` output.") from None
    if number > PIP_INSPECT_VERSION:
        raise fail(f"{origin} is a `pip inspect` report of version {number}, newer than the "
                   f"{PIP_INSPECT_VERSION} envcap reads.", hint="upgrade envcap, or pass `pip freeze` output instead")
    installed = data.get("installed")
    if not isinstance(installed, list):
        raise fail(f"{origin} has no 'installed' list: expected `pip inspect` output.")
    dists = []
    for index, item in enumerate(installed):
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
                or not isinstance(meta.get("version"), str):
            raise fail(f"{origin} installed[{index}] has no metadata name and version: expected `pip inspect` "
                       "output (is the file cut short?).")
        installer = item.get("installer") if isinstance(item.get("installer"), str) else None
        requested = item.get("requested") if isinstance(item.get("requested"), bool) else None
        dist = distribution(meta["name"], meta["version"], installer=installer, origin=origin)
        dists.append(Distribution(**{**dist.__dict__, "requested": requested}))
    env = data.get("environment")
    text = {k: v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) else {}
    python = None
    if text.get("python_full_version"):
        python = PythonEnv(version=text["python_full_version"], implementation=text.get("implementation_name"),
                           implementation_version=text.get("implementation_version"),
                           machine=text.get("platform_machine"))
    os_info = OsInfo(system=text.get("platform_system"), kernel=text.get("platform_release")) \
        if text.get("platform_system") else None
    cpu = Cpu(architecture=text.get("platform_machine")) if text.get("platform_machine") else None
    return Snapshot(source="pip-inspect", python=python, distributions=dedupe(dists), os=os_info, cpu=cpu)
