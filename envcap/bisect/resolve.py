"""Intermediate package sets: A's lock with some of B's releases, kept installable.

Why not substitute blindly: NumPy 2 with A's SciPy 1.11 imports and crashes, which would make a harmless
package look guilty (or hide a guilty one). Each set is checked against the ``Requires-Dist`` of its wheels
(read from the wheel cache, offline). Where a substitution breaks a requirement, the packages it needs move
to B's versions too ("coupled"): B is consistent, so this always ends, and the set stays within versions A or
B really had. Only where no mix of A's and B's versions fits (B's version of a dependency was never locked, or
is not installable here) is a consistent set resolved with pip-tools' ``pip-compile --generate-hashes``, A's
pins as constraints; the versions it picks are named in the report.
"""

from __future__ import annotations

import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Protocol

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envcap._subprocess import RunFailed, Runner, run
from envcap.lock import Snapshot

RequirementsOf = Callable[[str, str], tuple[str, ...] | None]  # (name, version) -> Requires-Dist, None: unknown


@dataclass(frozen=True)
class Conflict:
    dependent: str
    dependency: str
    wanted: str  # the specifier, e.g. >=1.23.5,<2.3
    found: str | None  # the version in the set, None: not installed
    dependent_version: str = ""

    def text(self) -> str:
        found = f"{self.found} is in the set" if self.found else "it is not in the set"
        return f"{self.dependent} needs {self.dependency}{self.wanted} but {found}"


@dataclass(frozen=True)
class Resolution:
    versions: dict[str, str]  # the whole set: name -> version (a package removed from A is absent)
    requested: tuple[str, ...]
    coupled: tuple[str, ...] = ()  # moved to B's version because a requested change needs it
    compiled: dict[str, str] = field(default_factory=dict)  # chosen by pip-compile: neither A's nor B's version
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pip-compile's hashes of those
    problem: str | None = None  # no installable set: why

    def changed_from(self, a: Mapping[str, str]) -> tuple[str, ...]:
        names = set(self.versions) | set(a)
        return tuple(sorted(n for n in names if self.versions.get(n) != a.get(n)))


class Compiler(Protocol):
    def __call__(self, requested: Mapping[str, str], constraints: Mapping[str, str]) -> dict[str, tuple[
            str, tuple[str, ...]]] | str: ...


def marker_environment(snapshot: Snapshot) -> dict[str, str]:
    """Where the set will be installed: the image's platform, as the lock recorded it."""
    env = {key: str(value) for key, value in default_environment().items()}
    platform = snapshot.build.platform if snapshot.build else None
    version = platform.python_version if platform else (snapshot.python.version if snapshot.python else None)
    if version:
        env["python_full_version"] = version
        env["python_version"] = ".".join(version.split(".")[:2])
    env.update({"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"})
    if platform:
        env["platform_machine"] = platform.arch
    return env


def wheel_requirements(path: Path) -> tuple[str, ...] | None:
    """``Requires-Dist`` of a wheel, read from its METADATA; None when the file is not a readable wheel."""
    try:
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if not names:
                return None
            text = wheel.read(names[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return None
    return tuple(HeaderParser().parsestr(text).get_all("Requires-Dist") or ())


def conflicts(versions: Mapping[str, str], requirements: RequirementsOf, env: Mapping[str, str]) -> list[Conflict]:
    from packaging.version import InvalidVersion, Version

    found = []
    for name, version in sorted(versions.items()):
        for line in requirements(name, version) or ():
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({**env, "extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            installed = versions.get(dependency)
            try:
                ok = installed is not None and requirement.specifier.contains(Version(installed), prereleases=True)
            except InvalidVersion:
                ok = True  # a version packaging cannot read: not envcap's to judge
            if not ok:
                found.append(Conflict(name, dependency, str(requirement.specifier), installed, version))
    return found


class PackageSets:
    """A's pins with B's version of some packages, made consistent (see the module's docstring)."""

    def __init__(self, a: Snapshot, b: Snapshot, requirements: RequirementsOf, *, env: Mapping[str, str] | None = None,
                 compiler: Compiler | None = None) -> None:
        self.a = {d.name: d.version for d in a.distributions}
        self.b = {d.name: d.version for d in b.distributions}
        self.changes = {n for n in set(self.a) | set(self.b) if self.a.get(n) != self.b.get(n)}
        self.requirements = requirements
        self.env = dict(env or marker_environment(a))
        self.compiler = compiler
        self._memo: dict[frozenset[str], Resolution] = {}
        # A conflict A or B already lives with (uv's seeded wheel 0.48 beside packaging 23.1) is not caused by
        # a change: it is tolerated, so nothing moves for it and applying nothing gives exactly A.
        self.tolerated = set(conflicts(self.a, requirements, self.env) + conflicts(self.b, requirements, self.env))

    def _conflicts(self, versions: Mapping[str, str]) -> list[Conflict]:
        return [c for c in conflicts(versions, self.requirements, self.env) if c not in self.tolerated]

    def compose(self, applied: set[str]) -> dict[str, str]:
        versions = dict(self.a)
        for name in applied:
            if name in self.b:
                versions[name] = self.b[name]
            else:
                versions.pop(name, None)
        return versions

    def resolve(self, requested: frozenset[str]) -> Resolution:
        if requested not in self._memo:
            self._memo[requested] = self._resolve(requested)
        return self._memo[requested]

    def _resolve(self, requested: frozenset[str]) -> Resolution:
        applied = set(requested)
        for _ in range(len(self.changes) + 1):
            versions = self.compose(applied)
            found = self._conflicts(versions)
            if not found:
                coupled = tuple(sorted(applied - requested))
                return Resolution(versions=versions, requested=tuple(sorted(requested)), coupled=coupled)
            moved = False
            for conflict in found:
                if self._fixes(conflict) and conflict.dependency not in applied:
                    applied.add(conflict.dependency)
                    moved = True
                elif conflict.dependent in self.changes and conflict.dependent not in applied:
                    applied.add(conflict.dependent)
                    moved = True
            if not moved:
                return self._compile(requested, applied, found)
        return self._compile(requested, applied, self._conflicts(self.compose(applied)))

    def _fixes(self, conflict: Conflict) -> bool:
        """Would B's version of the dependency satisfy the requirement?"""
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version

        version = self.b.get(conflict.dependency)
        if version is None or conflict.dependency not in self.changes:
            return False
        try:
            return SpecifierSet(conflict.wanted).contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False

    def _compile(self, requested: frozenset[str], applied: set[str], found: list[Conflict]) -> Resolution:
        why = "; ".join(c.text() for c in found[:3])
        if self.compiler is None:
            return Resolution(versions={}, requested=tuple(sorted(requested)),
                              problem=f"no mix of A's and B's versions is installable ({why}), and pip-compile "
                                      "is not available")
        involved = {c.dependent for c in found} | {c.dependency for c in found} | applied
        wanted = {n: self.b[n] for n in requested if n in self.b}
        constraints = {n: v for n, v in self.a.items() if n not in involved}
        answer = self.compiler(wanted, constraints)
        if isinstance(answer, str):
            return Resolution(versions={}, requested=tuple(sorted(requested)),
                              problem=f"no installable set ({why}); pip-compile: {answer}")
        versions = {name: version for name, (version, _) in answer.items()}
        compiled = {n: v for n, v in versions.items() if v not in (self.a.get(n), self.b.get(n))}
        coupled = tuple(sorted(n for n in versions if n not in requested and versions[n] != self.a.get(n)
                               and n not in compiled))
        return Resolution(versions=versions, requested=tuple(sorted(requested)), coupled=coupled, compiled=compiled,
                          hashes={n: answer[n][1] for n in compiled})


# ------------------------------------------------------------------------------------------------ pip-compile
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
HASH_LINE = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def pip_compile_program() -> str | None:
    beside = Path(sys.executable).parent / "pip-compile"
    return str(beside) if beside.exists() else shutil.which("pip-compile")


def parse_compiled(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``name==version`` and its ``--hash`` lines, as pip-compile --generate-hashes writes them."""
    pins: dict[str, tuple[str, tuple[str, ...]]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = PIN_LINE.match(line.strip())
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), ())
        for digest in HASH_LINE.findall(line):
            if current is not None:
                version, hashes = pins[current]
                pins[current] = (version, hashes + (digest,))
    return pins


@dataclass
class PipCompile:
    """pip-tools' documented command (never its internals, which ride on pip's)."""

    workdir: Path
    runner: Runner = run
    program: str | None = None
    calls: int = 0

    def __call__(self, requested: Mapping[str, str], constraints: Mapping[str, str]) -> dict[
            str, tuple[str, tuple[str, ...]]] | str:
        program = self.program or pip_compile_program()
        if program is None:
            return "pip-compile is not installed (pip install 'envcap[bisect]')"
        self.calls += 1
        folder = self.workdir / f"compile-{self.calls}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "requirements.in").write_text("".join(f"{n}=={v}\n" for n, v in sorted(requested.items())))
        (folder / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        argv = [program, "--quiet", "--no-header", "--no-annotate", "--generate-hashes", "--allow-unsafe",
                "--no-emit-index-url", "--strip-extras", "--constraint", "constraints.txt", "--output-file",
                "requirements.txt", "requirements.in"]
        try:
            done = self.runner(argv, timeout=900, cwd=str(folder))
        except RunFailed as exc:
            return str(exc)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            return " ".join(lines[-3:])[:400] or f"exit {done.returncode}"
        return parse_compiled((folder / "requirements.txt").read_text("utf-8"))


__all__ = ["Compiler", "Conflict", "PackageSets", "PipCompile", "Resolution", "conflicts", "marker_environment",
           "parse_compiled", "pip_compile_program", "wheel_requirements"]
