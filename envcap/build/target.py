"""Whose Python and C library the wheels must fit: the image's, not the host's.

Why its own module: the wheel choice, the image digest and ``--context`` all need the target,
and it has two sources that must agree: the platform the lock recorded at snapshot time
(``Snapshot.build.platform``) and, when the base image is at hand, what its own ``python3`` says.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, replace

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envcap.engine import ContainerEngine, ImageInfo, RunSpec
from envcap.engine.errors import EngineError
from envcap.errors import BuildError, OutputError
from envcap.fs import atomic_write, cache_dir
from envcap.lock import Platform

# The oldest glibc each architecture's manylinux tags go down to (manylinux1 is glibc 2.5).
MANYLINUX_FLOOR = {"x86_64": 5, "i686": 5}
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
# Asked inside the base image: what its python3 is, for choosing wheels (cached by image id).
PLATFORM_SCRIPT = (
    "import json, platform, sys, sysconfig\n"
    "libc, libc_version = platform.libc_ver()\n"
    "print(json.dumps({'version': platform.python_version(), 'implementation': sys.implementation.name,\n"
    "                  'soabi': sysconfig.get_config_var('SOABI'), 'machine': platform.machine(),\n"
    "                  'libc': libc, 'libc_version': libc_version}))\n"
)


@dataclass(frozen=True)
class TargetPlatform:
    """The interpreter and C library wheels must fit: the image's, not the host's."""

    python_version: str  # 3.11.2
    arch: str = "x86_64"
    libc: str = "glibc"  # glibc | musl
    libc_version: str = "2.17"
    implementation: str = "cpython"
    abi: str | None = None  # cp311 (cp313t for a free-threaded build); None: cpXY
    source: str = "lock"  # where these facts come from: lock, base image probe, override

    @classmethod
    def from_record(cls, platform: Platform, source: str) -> TargetPlatform:
        return cls(python_version=platform.python_version, arch=platform.arch, libc=platform.libc,
                   libc_version=platform.libc_version, implementation=platform.implementation, abi=platform.abi,
                   source=source)

    @property
    def major_minor(self) -> tuple[int, int]:
        parts = [int(p) for p in re.findall(r"\d+", self.python_version)[:2]]
        return (parts[0], parts[1]) if len(parts) == 2 else (3, 0)

    def platforms(self) -> list[str]:
        return platform_tags(self.libc, self.libc_version, self.arch)

    def tags(self) -> list[Tag]:
        """Most preferred first, as pip orders them for this interpreter."""
        version = self.major_minor
        platforms = self.platforms()
        if self.implementation == "cpython":
            abi = self.abi or f"cp{version[0]}{version[1]}"
            head = list(cpython_tags(python_version=version, abis=[abi], platforms=platforms))
            interpreter = f"cp{version[0]}{version[1]}"
        else:
            short = {"pypy": "pp", "graalpy": "graalpy"}.get(self.implementation, self.implementation[:2])
            interpreter = f"{short}{version[0]}{version[1]}"
            head = list(generic_tags(interpreter=interpreter, abis=[self.abi] if self.abi else None,
                                     platforms=platforms))
        return head + list(compatible_tags(python_version=version, interpreter=interpreter, platforms=platforms))

    def key(self) -> str:
        """What decides the wheel choice, as one string (part of the image digest)."""
        return f"{self.implementation}-{'.'.join(map(str, self.major_minor))}-{self.abi or ''}-{self.arch}-" \
               f"{self.libc}-{self.libc_version}"

    def describe(self) -> str:
        abi = self.abi or f"cp{self.major_minor[0]}{self.major_minor[1]}"
        return f"Python {self.python_version} ({abi}), {self.libc} {self.libc_version}, {self.arch}"


def platform_tags(libc: str, libc_version: str, arch: str) -> list[str]:
    """manylinux/musllinux platform tags from the newest the C library allows down to the oldest."""
    numbers = [int(p) for p in re.findall(r"\d+", libc_version)[:2]] or [2, 17]
    major, minor = (numbers + [0])[:2]
    tags: list[str] = []
    if libc == "musl":
        tags = [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
    else:
        floor = MANYLINUX_FLOOR.get(arch, 17)
        for m in range(minor, floor - 1, -1):
            tags.append(f"manylinux_{major}_{m}_{arch}")
            legacy = LEGACY_MANYLINUX.get((major, m))  # 2010 and 1 exist only where the floor reaches them
            if legacy:
                tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def wheel_rank(filename: str, ranks: dict[Tag, int]) -> int | None:
    """The position of the wheel's best tag in the target's order (lower is better), None if none fits."""
    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        return None
    positions = [ranks[t] for t in wheel_tags if t in ranks]
    return min(positions) if positions else None


def probe_platform(engine: ContainerEngine, image: ImageInfo, ref: str) -> TargetPlatform:
    """The base image's own Python and C library, asked once per image id and cached."""
    cache_file = cache_dir() / "bases" / f"{image.id.split(':')[-1]}.json"
    try:
        facts = json.loads(cache_file.read_text("utf-8"))
    except (OSError, ValueError):
        facts = None
    if not isinstance(facts, dict):
        try:
            done = engine.run(RunSpec(image=image.id, command=(), entrypoint=("python3", "-c", PLATFORM_SCRIPT),
                                      network_disabled=True, labels={"io.envcap.purpose": "platform-probe"}))
        except EngineError as exc:
            raise BuildError(f"cannot run python3 in the base image {ref}: {exc.message}",
                             hint="the base image needs python3 and python3-venv; choose another with --base-image") \
                from None
        try:
            facts = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            facts = None
        if not isinstance(facts, dict):
            raise BuildError(f"python3 in the base image {ref} did not describe itself (exit {done.exit_code}).",
                             hint="the base image needs a working python3 and python3-venv")
        with contextlib.suppress(OutputError):  # a cache that cannot be written only costs time
            atomic_write(cache_file, json.dumps(facts, sort_keys=True))
    soabi = str(facts.get("soabi") or "")
    version = str(facts.get("version") or "3")
    implementation = str(facts.get("implementation") or "cpython")
    abi = None
    if implementation == "cpython":
        major_minor = "".join(version.split(".")[:2])
        threaded = soabi.startswith(f"cpython-{major_minor}t")
        abi = f"cp{major_minor}{'t' if threaded else ''}"
    libc = "glibc" if facts.get("libc") == "glibc" else "musl" if "musl" in soabi else "glibc"
    libc_version = str(facts.get("libc_version") or ("1.2" if libc == "musl" else "2.17"))
    return TargetPlatform(python_version=version, arch=str(facts.get("machine") or "x86_64"), libc=libc,
                          libc_version=libc_version, implementation=implementation, abi=abi,
                          source=f"base image {ref}")


def with_overrides(target: TargetPlatform, python: str | None, glibc: str | None) -> TargetPlatform:
    """``--target-python``/``--target-glibc``: the user knows better than the image or the lock."""
    if python:
        target = replace(target, python_version=python, abi=None, source=target.source + ", --target-python")
    if glibc:
        target = replace(target, libc_version=glibc, source=target.source + ", --target-glibc")
    return target


def check_fits(target: TargetPlatform, locked: Platform, base_image: str, overridden: bool) -> list[str]:
    """The image must run the lock's Python line; a different patch release is only a note."""
    lock_target = TargetPlatform.from_record(locked, "lock")
    if target.major_minor != lock_target.major_minor and not overridden:
        raise BuildError(
            f"the base image {base_image} has Python {target.python_version}, but the lock was captured with "
            f"Python {locked.python_version}: its wheels cannot be installed there.",
            hint=f"choose a base image with Python {'.'.join(map(str, lock_target.major_minor))} (--base-image)")
    if target.python_version != locked.python_version:
        return [f"the image's Python is {target.python_version}; the lock was captured with {locked.python_version}"]
    return []


__all__ = ["PLATFORM_SCRIPT", "TargetPlatform", "check_fits", "platform_tags", "probe_platform", "wheel_rank",
           "with_overrides"]
