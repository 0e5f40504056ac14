"""Validation at the door: a lock is input from a stranger, so every field that can reach a file name,
a path, a Dockerfile line, an image label, a URL fetched or a container's environment obeys a strict
rule before anything uses it. A lock that breaks one is refused with a sentence naming the field.

Why here, once: the stages after the lock (emit, build, replay) can then treat these fields as
plain data; a rule enforced in one renderer but not another is how injection gets in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from envcap.lock.records import Artifact, Distribution, Snapshot

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,200}[A-Za-z0-9])?")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
VCS_REVISION = re.compile(r"[0-9A-Za-z._-]{1,128}")
PYTHON_VERSION = re.compile(r"\d{1,2}\.\d{1,3}(?:\.\d{1,3})?(?:(?:a|b|rc)\d{1,3})?")
LIBC_VERSION = re.compile(r"\d{1,3}\.\d{1,3}")
TOKEN = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
URL = re.compile(r"(?:https?|file)://[^\s\"'<>\\^`{|}]+")
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
VCS_SCHEMES = ("https://", "http://", "ssh://", "git://", "git+https://", "git+http://", "git+ssh://", "git+git://",
               "hg+https://", "hg+http://", "hg+ssh://", "svn+https://", "svn+http://", "svn+ssh://", "svn://",
               "bzr+https://", "bzr+http://", "bzr+ssh://", "file://", "git+file://")
# Docker's reference grammar: [registry[:port]/]name[:tag][@sha256:digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
IMAGE_REFERENCE = re.compile(rf"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
                             r"(?:@sha256:[0-9a-f]{64})?")
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
# A probe records a few dozen numerics variables; a lock claiming a hundred thousand is not one envcap
# wrote, and every later stage would pay for each entry (ENV lines, report rows).
MAX_VARIABLES = 10_000


class Invalid(ValueError):
    """One field broke its rule: where (a dotted path) and what the rule is."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field = field
        self.rule = rule


def check_size(data: Any) -> None:
    """Before anything walks the lock: counts a stranger could inflate to make every stage slow."""
    env = data.get("env") if isinstance(data, dict) else None
    if isinstance(env, dict) and len(env) > MAX_VARIABLES:
        raise Invalid("env", f"holds {len(env)} variables, more than the {MAX_VARIABLES} a snapshot can record")


def check_strings(data: Any, path: str = "") -> None:
    """No string anywhere may hold a NUL or a lone surrogate: neither can be written to a file or a terminal."""
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if _BAD_CHARACTERS.search(value):
                raise Invalid(where or "<root>", "holds a NUL or an unpaired surrogate character")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _BAD_CHARACTERS.search(key):
                    raise Invalid(f"{where}.<key>" if where else "<key>", "holds a NUL or an unpaired surrogate")
                stack.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def _require(ok: bool, field: str, rule: str) -> None:
    if not ok:
        raise Invalid(field, rule)


def safe_relative_path(value: str) -> bool:
    """A path inside some folder: relative, no ``..``, no empty or hidden-escape parts."""
    if not value or value.startswith(("/", "\\")) or "\\" in value or "\x00" in value:
        return False
    parts = value.split("/")
    return all(part not in ("", ".", "..") for part in parts)


def archive_matches(filename: str, dist: Distribution) -> bool:
    """A file of this distribution and version, by its name: a wheel's or an sdist's."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
        return name == canonicalize_name(dist.name) and version == Version(dist.version)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return False


def _artifact(item: Artifact, dist: Distribution, field: str) -> None:
    _require("/" not in item.filename and "\\" not in item.filename and not item.filename.startswith(".")
             and item.filename.endswith(ARCHIVE_SUFFIXES), f"{field}.filename",
             "must be the base name of a wheel or sdist (no folders, no leading dot)")
    _require(archive_matches(item.filename, dist), f"{field}.filename",
             f"must name a file of {dist.name} {dist.version}")
    _require(bool(SHA256.fullmatch(item.sha256)), f"{field}.sha256", "must be 64 hexadecimal digits")
    _require(item.url is None or bool(URL.fullmatch(item.url)), f"{field}.url", "must be an http(s) or file URL")
    _require(item.size is None or item.size >= 0, f"{field}.size", "must not be negative")


def _distribution(dist: Distribution, field: str) -> None:
    _require(bool(DIST_NAME.fullmatch(dist.name)), f"{field}.name", "must be a distribution name (PEP 508)")
    # Not PEP 440 (legacy and conda versions exist), but one word: it is written into requirement lines.
    _require(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,127}", dist.version)), f"{field}.version",
             "must be a version (letters, digits and . + ! _ -)")
    _require(dist.index_url is None or bool(URL.fullmatch(dist.index_url)), f"{field}.index_url",
             "must be an http(s) or file URL")
    for i, item in enumerate(dist.artifacts):
        _artifact(item, dist, f"{field}.artifacts[{i}]")
    origin = dist.origin
    if origin is None:
        return
    if origin.kind == "vcs":
        _require(origin.url is None or (origin.url.startswith(VCS_SCHEMES) and not re.search(r"\s", origin.url)),
                 f"{field}.origin.url", "must be an http(s), ssh, git or file repository URL")
        _require(origin.commit is None or bool(VCS_REVISION.fullmatch(origin.commit)), f"{field}.origin.commit",
                 "must be a revision id (letters, digits, . _ -)")
        _require(origin.vcs in (None, "git", "hg", "svn", "bzr"), f"{field}.origin.vcs", "must be git, hg, svn or bzr")
    elif origin.url is not None:
        _require(bool(URL.fullmatch(origin.url)), f"{field}.origin.url", "must be an http(s) or file URL")
    _require(origin.subdirectory is None or safe_relative_path(origin.subdirectory), f"{field}.origin.subdirectory",
             "must be a relative path without ..")
    _require(origin.sha256 is None or bool(SHA256.fullmatch(origin.sha256)), f"{field}.origin.sha256",
             "must be 64 hexadecimal digits")


def _fields(snapshot: Snapshot) -> Iterator[tuple[bool, str, str]]:
    """(rule holds, field, rule) for every field a later stage turns into a name, a path or a line."""
    yield snapshot.digest is None or bool(DIGEST.fullmatch(snapshot.digest)), "digest", "must be sha256:<64 hex>"
    if snapshot.python is not None:
        yield bool(PYTHON_VERSION.fullmatch(snapshot.python.version)), "python.version", "must be a Python version"
    for name in (snapshot.env or {}):
        yield bool(VARIABLE_NAME.fullmatch(name)), f"env[{name[:40]!r}]", "must be a variable name (letters, digits, _)"
    if snapshot.git is not None and snapshot.git.commit is not None:
        yield bool(re.fullmatch(r"[0-9a-f]{7,64}", snapshot.git.commit)), "git.commit", "must be a hex commit id"
    for i, output in enumerate(snapshot.outputs or ()):
        yield safe_relative_path(output.path), f"outputs[{i}].path", "must be a relative path without .."
        yield bool(SHA256.fullmatch(output.sha256)), f"outputs[{i}].sha256", "must be 64 hexadecimal digits"
    cuda = snapshot.cuda
    if cuda is not None and cuda.toolkit_version is not None:
        yield bool(re.fullmatch(r"\d{1,3}(?:\.\d{1,4}){0,3}", cuda.toolkit_version)), "cuda.toolkit_version", \
            "must be a version (digits and dots)"
    if cuda is not None:
        for key, component in cuda.components.items():
            yield bool(re.fullmatch(r"[0-9A-Za-z.+_-]{1,40}", component.version)), \
                f"cuda.components.{key[:40]}.version", "must be a version"
    build = snapshot.build
    if build is not None:
        yield bool(IMAGE_REFERENCE.fullmatch(build.base.reference)), "build.base.reference", "must be an image reference"
        yield bool(IMAGE_REFERENCE.fullmatch(build.base.python_image)), "build.base.python_image", \
            "must be an image reference"
        platform = build.platform
        yield bool(PYTHON_VERSION.fullmatch(platform.python_version)), "build.platform.python_version", \
            "must be a Python version"
        yield bool(LIBC_VERSION.fullmatch(platform.libc_version)), "build.platform.libc_version", "must be X.Y"
        for name in ("implementation", "arch", "abi"):
            value = getattr(platform, name)
            yield value is None or bool(TOKEN.fullmatch(value)), f"build.platform.{name}", "must be a plain word"


def sanitize(snapshot: Snapshot) -> tuple[Snapshot, list[str]]:
    """What a live environment gave, with anything that breaks a rule left out and said why.

    Why not refuse, as for a lock: a real environment can hold a distribution with broken metadata
    or a variable with an odd name; one such thing must not cost the whole snapshot.
    """
    warnings: list[str] = []
    kept = []
    for i, dist in enumerate(snapshot.distributions):
        try:
            _distribution(dist, f"distributions[{i}]")
            kept.append(dist)
        except Invalid as exc:
            warnings.append(f"a distribution was left out of the snapshot: {exc}")
    env = snapshot.env
    if env is not None:
        bad = [name for name in env if not VARIABLE_NAME.fullmatch(name)]
        if bad:
            warnings.append(f"{len(bad)} variable(s) with names that are not identifiers were left out")
            env = {k: v for k, v in env.items() if k not in bad}
    from dataclasses import replace

    cleaned = replace(snapshot, distributions=tuple(kept), env=env)
    validate(cleaned)
    return cleaned, warnings


def validate(snapshot: Snapshot) -> None:
    """Raises Invalid naming the first field that breaks its rule."""
    for ok, field, rule in _fields(snapshot):
        _require(ok, field, rule)
    for i, dist in enumerate(snapshot.distributions):
        _distribution(dist, f"distributions[{i}] ({dist.name[:40]})")


__all__ = [
    "IMAGE_REFERENCE",
    "VARIABLE_NAME",
    "Invalid",
    "archive_matches",
    "check_size",
    "check_strings",
    "safe_relative_path",
    "sanitize",
    "validate",
]
