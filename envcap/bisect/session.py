"""``envcap bisect A B --outputs GLOB -- CMD``: find, by running the workload, which differences change its outputs.

The flow:

1. what differs (``candidates``): packages, variables, each side's thread counts and ISA caps (as ``replay
   --match`` plans them); the rest is listed as untested;
2. A's image (``envcap build``, content-addressed), the wheels of B's releases (hash-checked cache);
3. the endpoints, each run twice: A as locked, A with every difference applied, and B's own image (evidence
   that the layers reproduce B); the output files that are stable and differ decide every later run, files
   that differ between two runs of one environment are left out (and candidates then run twice);
4. ddmin over the groups of differences; every candidate is A's image with a thin layer of B's wheels
   (``overlay``) and the variables set at run time; outcomes are memoised by what was applied;
5. the set found is checked: a package it needed for consistency is tried alone, and the rest applied
   together must give A's outputs (proven harmless);
6. the report, with every run as evidence, is saved in ``A/bisect/<id>/report.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from envcap import __version__
from envcap._subprocess import Runner, run
from envcap.bisect.candidates import Candidates, Group, Untested, candidates
from envcap.bisect.ddmin import Outcome, ddmin
from envcap.bisect.overlay import build_overlay
from envcap.bisect.report import BisectReport, BisectRun, BisectStatus, Culprit, RunOutcome
from envcap.bisect.resolve import PackageSets, PipCompile, Resolution, wheel_requirements
from envcap.build import BuildOptions, build
from envcap.build.inputs import BuildInputs, prepare
from envcap.build.wheelhouse import Wheelhouse
from envcap.build.wheels import Choice, choose
from envcap.engine import ContainerEngine, Mount, RunSpec
from envcap.errors import ArtifactError, EnvcapError, UsageError
from envcap.fs import atomic_write, cache_dir
from envcap.lock import Cpu, Distribution, Snapshot, load_lock, lock_path, now_utc
from envcap.replay.match import host_cpu
from envcap.replay.request import check_user, new_replay_id
from envcap.replay.run import CONTAINER_HOME, run_once

BISECT_LABEL = "io.envcap.bisect"
BISECTS = "bisect"


@dataclass(frozen=True)
class BisectRequest:
    a_dir: Path
    b_dir: Path
    command: tuple[str, ...]
    outputs: tuple[str, ...]
    cwd: Path
    base_image: str | None = None  # for A's and B's builds
    repeat: int | None = None  # runs per candidate; None: 2 for the endpoints, then 1 unless outputs are unstable
    match: bool = True  # each side with its original's thread counts and ISA caps
    user: str | None = None
    check_b: bool = True  # also run B's own image (a full build)


class Notes:
    """Where progress goes (the CLI prints it on stderr); library code never prints."""

    def __call__(self, text: str) -> None:
        pass


@dataclass
class _Config:
    """What one candidate needs: the image, the variables, the command."""

    label: str
    applied: tuple[str, ...]
    image_id: str | None = None
    image: str | None = None
    built: bool | None = None
    build_seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    coupled: tuple[str, ...] = ()
    compiled: tuple[str, ...] = ()
    problem: str | None = None


def check(request: BisectRequest) -> None:
    if not request.command:
        raise UsageError("no command to bisect was given.", hint="put it after --: envcap bisect A B --outputs "
                                                                 "'out/*.json' -- python train.py")
    if not request.outputs:
        raise UsageError("bisect needs --outputs: the files whose contents differ between A and B.",
                         hint="pass a glob, for example --outputs 'out/*.json'")
    if request.repeat is not None and request.repeat < 1:
        raise UsageError(f"--repeat {request.repeat} must be at least 1.", hint="pass --repeat 2 to run twice")
    if request.user is not None:
        check_user(request.user)


def bisect(request: BisectRequest, *, engine: ContainerEngine, host: Callable[[], Cpu | None] = host_cpu,
           runner: Runner = run, notes: Callable[[str], None] = Notes(),
           clock: Callable[[], float] = time.monotonic) -> BisectReport:
    """Runs the bisect and saves its report; raises EnvcapError only when it cannot start at all."""
    check(request)
    a, b = load_lock(request.a_dir), load_lock(request.b_dir)
    engine.ping()
    session = _Bisect(request, engine, a, b, host(), runner, notes, clock)
    report = session.run()
    session.save(report)
    return report


class _Bisect:
    def __init__(self, request: BisectRequest, engine: ContainerEngine, a: Snapshot, b: Snapshot, cpu: Cpu | None,
                 runner: Runner, notes: Callable[[str], None], clock: Callable[[], float]) -> None:
        self.request, self.engine, self.a, self.b = request, engine, a, b
        self.notes, self.clock = notes, clock
        self.started = clock()
        self.id = new_replay_id()
        self.folder = lock_path(Path(request.a_dir)).parent.absolute() / BISECTS / self.id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = request.user or f"{os.getuid()}:{os.getgid()}"
        self.candidates: Candidates = candidates(a, b, cpu, match=request.match)
        self.groups: tuple[Group, ...] = self.candidates.groups
        self.wheelhouse = Wheelhouse(cache_dir() / "wheels")
        self.compiler = PipCompile(self.folder / "compile", runner=runner)
        self.runs: list[BisectRun] = []
        self.memo: dict[frozenset[int], RunOutcome] = {}
        self.builds = 0
        self.reused = 0
        self.repeat = request.repeat or 1
        self.deciding: dict[str, tuple[str | None, str | None]] = {}  # path -> (A's sha, B's sha)
        self.notes_out: list[str] = []
        self.unstable: set[str] = set()
        self.extra_untested: list[Untested] = []
        self.setup_seconds = 0.0

    # ---------------------------------------------------------------------------------------- setup
    def _prepare(self) -> None:
        options = BuildOptions(base_image=self.request.base_image)
        self.notes("building A's image (cached when it exists)")
        self.inputs: BuildInputs = prepare(Path(self.request.a_dir), self.engine, options)
        result = build(Path(self.request.a_dir), self.engine, options)
        self._count(not result.cached)
        self.a_image, self.a_tag, self.a_built = result.image_id, result.tag, not result.cached
        target = self.inputs.target
        self.choices_a: dict[str, Choice] = {c.name: c for c in self.inputs.wheels.choices}
        self.choices_b: dict[str, Choice] = {}
        for dist in self.b.distributions:
            if self.choices_a.get(dist.name) and self.choices_a[dist.name].version == dist.version:
                continue
            try:
                for choice in choose(replace(self.b, distributions=(dist,)), target).choices:
                    self.choices_b[choice.name] = choice
            except ArtifactError as exc:
                self.notes_out.append(f"B's {dist.name} {dist.version} cannot go into A's image: {exc.message}")
        self._drop_uninstallable()
        artifacts = [c.artifact for c in (*self.choices_a.values(), *self.choices_b.values()) if not c.build_from_sdist]
        self.notes(f"checking {len(artifacts)} wheels against the lock (hash-checked cache)")
        paths = self.wheelhouse.fetch(artifacts)
        self.requirement_files = {(c.name, c.version): paths[c.artifact.sha256.lower()]
                                  for c in (*self.choices_a.values(), *self.choices_b.values())
                                  if c.artifact.sha256.lower() in paths}
        self.sets = PackageSets(self.a, self.b, self._requirements, compiler=self.compiler)
        self.setup_seconds = self.clock() - self.started

    def _drop_uninstallable(self) -> None:
        """A release of B with no file for A's image cannot be put there: untested, not a failed run."""
        kept = []
        for group in self.groups:
            missing = [d for d in group.differences if d.kind == "package" and d.b is not None
                       and d.name not in self.choices_b]
            if not missing:
                kept.append(group)
                continue
            for d in missing:
                self.extra_untested.append(Untested(d.fact, d.a or "absent", d.b or "absent", "unranked",
                                                    f"B's {d.name} {d.b} has no file that installs in A's image "
                                                    f"({self.inputs.target.describe()})"))
        self.groups = tuple(kept)

    def _requirements(self, name: str, version: str) -> tuple[str, ...] | None:
        path = self.requirement_files.get((name, version))
        return wheel_requirements(path) if path is not None else None

    def _count(self, built: bool) -> None:
        if built:
            self.builds += 1
        else:
            self.reused += 1

    # ---------------------------------------------------------------------------------------- configs
    def _config(self, chosen: frozenset[int]) -> _Config:
        groups = [self.groups[i] for i in sorted(chosen)]
        differences = [d for g in groups for d in g.differences]
        label = "A" if not groups else "A + all" if len(groups) == len(self.groups) and len(groups) > 1 else (
            "A + " + ", ".join(g.label for g in groups))
        config = _Config(label=label[:60], applied=tuple(d.fact for d in differences))
        packages = frozenset(d.name for d in differences if d.kind == "package")
        resolution = self.sets.resolve(packages)
        if resolution.problem:
            config.problem = resolution.problem
            return config
        config.coupled = resolution.coupled
        config.compiled = tuple(f"{n}=={v}" for n, v in sorted(resolution.compiled.items()))
        try:
            self._image(config, resolution)
        except EnvcapError as exc:
            config.problem = f"its image could not be built: {exc.message}"
            return config
        env = dict(self.candidates.env_a)
        unset: list[str] = []
        for difference in differences:
            if difference.kind == "package":
                continue
            if difference.b is None:
                env.pop(difference.name, None)
                if difference.name in self.candidates.baked_a:
                    unset.append(difference.name)
            else:
                env[difference.name] = difference.b
        config.env = {"HOME": CONTAINER_HOME, "PYTHONUNBUFFERED": "1"} | env
        prefix: tuple[str, ...] = ("env", *[part for name in unset for part in ("-u", name)]) if unset else ()
        config.command = prefix + self.request.command
        return config

    def _image(self, config: _Config, resolution: Resolution) -> None:
        changed = resolution.changed_from(self.sets.a)
        if not changed:
            config.image_id, config.image, config.built = self.a_image, self.a_tag, None
            return
        install: list[Choice] = []
        remove: list[str] = []
        for name in changed:
            version = resolution.versions.get(name)
            if version is None:
                remove.append(name)
            elif name in resolution.compiled:
                install.append(self._compiled_choice(name, version, resolution.hashes.get(name, ())))
            elif name in self.choices_b and self.choices_b[name].version == version:
                install.append(self.choices_b[name])
            else:
                raise ArtifactError(f"no wheel of {name} {version} was chosen for A's image.",
                                    hint="run with -v to see the candidates")
        self.notes(f"the image of {config.label}: A's image with {', '.join(changed)} swapped")
        overlay = build_overlay(self.engine, base_id=self.a_image, venv=self.inputs.plan.venv, user=self.inputs.plan.user,
                                install=install, remove=remove, wheelhouse=self.wheelhouse,
                                workdir=cache_dir() / "contexts", clock=self.clock)
        self._count(overlay.built)
        config.image_id, config.image, config.built, config.build_seconds = (overlay.image_id, overlay.tag,
                                                                             overlay.built, overlay.seconds)

    def _compiled_choice(self, name: str, version: str, hashes: tuple[str, ...]) -> Choice:
        """A release pip-compile chose: its files from the index, kept only where pip-compile's hashes agree."""
        from envcap.snapshot.hashes import ArtifactResolver

        pip = self.a.pip_config
        resolver = ArtifactResolver(cache_dir(), find_links=pip.find_links if pip else (),
                                    extra_indexes=list(pip.extra_index_urls) if pip else [])
        release = resolver.resolve_one(name, version)
        artifacts = tuple(a for a in release.artifacts if not hashes or a.sha256.lower() in hashes)
        dist = Distribution(name=name, version=version, artifacts=artifacts)
        choices = choose(replace(self.a, distributions=(dist,)), self.inputs.target).choices
        if not choices:
            raise ArtifactError(f"pip-compile chose {name} {version}, which has no file for A's image.",
                                hint="add it to B's environment and snapshot B again")
        return choices[0]

    # ---------------------------------------------------------------------------------------- runs
    def _run(self, config: _Config, *, times: int, image: str | None = None,
             image_id: str | None = None) -> list[BisectRun]:
        done = []
        for _ in range(times):
            index = len(self.runs) + 1
            if config.problem:
                record = BisectRun(index=index, config=config.label, applied=config.applied, coupled=config.coupled,
                                   compiled=config.compiled, outcome="failed", note=config.problem)
                self.runs.append(record)
                done.append(record)
                break
            spec = RunSpec(image=image_id or config.image_id or "", command=config.command,
                           workdir=str(self.request.cwd), user=self.user, env=config.env,
                           mounts=(Mount(str(self.request.cwd), str(self.request.cwd)),),
                           labels={BISECT_LABEL: self.id}, init=True)
            outcome = run_once(self.engine, spec, index=index, replay_dir=self.folder, cwd=self.request.cwd,
                               patterns=self.request.outputs, user=self.user, tty=False, interactive=False,
                               on_output=None)
            record = BisectRun(index=index, config=config.label, applied=config.applied, coupled=config.coupled,
                               compiled=config.compiled, image=image or config.image,
                               image_built=config.built if not done else False,
                               build_seconds=config.build_seconds if not done else 0.0,
                               exit_code=outcome.record.exit_code,
                               outputs={o.path: o.sha256 for o in outcome.record.outputs},
                               seconds=outcome.record.seconds)
            record = replace(record, outcome=self._classify(record))
            self.runs.append(record)
            done.append(record)
            seen = record.outcome if self.deciding else ", ".join(
                f"{path} {sha[:10]}" for path, sha in sorted(record.outputs.items())) or f"exit {record.exit_code}"
            self.notes(f"run {index}: {config.label} → {seen} ({record.seconds:.1f} s)")
        return done

    def _classify(self, run: BisectRun) -> RunOutcome:
        if run.exit_code != 0:
            return "failed"
        if not self.deciding:
            return "other"
        if all(run.outputs.get(path) == a for path, (a, _) in self.deciding.items()):
            return "A"
        if all(run.outputs.get(path) == b for path, (_, b) in self.deciding.items()):
            return "B"
        return "other"

    def outcome(self, chosen: frozenset[int]) -> Outcome:
        if chosen not in self.memo:
            config = self._config(chosen)
            runs = self._run(config, times=self.repeat)
            outcomes = {r.outcome for r in runs}
            self.memo[chosen] = runs[0].outcome if len(outcomes) == 1 else "unstable"
        result = self.memo[chosen]
        return "A" if result == "A" else "B" if result == "B" else "other"

    # ---------------------------------------------------------------------------------------- the bisect
    def run(self) -> BisectReport:
        if not self.groups:
            return self._report("no-difference", "A and B differ in nothing that can be varied here; the untested "
                                "differences below are all that is left.")
        self._prepare()
        if not self.groups:
            return self._report("no-difference", "no difference between A and B can be put into A's image here; the "
                                "untested differences below are all that is left.")
        endpoint = self.request.repeat or 2
        everything = frozenset(range(len(self.groups)))
        a_runs = self._run(self._config(frozenset()), times=endpoint)
        if any(r.exit_code != 0 for r in a_runs):
            return self._report("failed", f"the workload fails in A's image ({self._exit(a_runs)}), so there is "
                                "nothing to compare with.")
        top_runs = self._run(self._config(everything), times=endpoint)
        if any(r.outcome == "failed" for r in top_runs):
            return self._report("failed", "the workload fails in A's image with every difference applied "
                                f"({self._exit(top_runs)}); see the run's note.")
        unstable = self._decide(a_runs, top_runs)
        if unstable:
            self.repeat = max(self.repeat, 2)
        self.runs = [replace(r, outcome=self._classify(r)) for r in self.runs]
        self.memo[frozenset()] = "A" if self.deciding else "other"
        self.memo[everything] = "B" if self.deciding else "other"
        b_outcome = self._b_as_locked(endpoint)
        if not self.deciding:
            status: BisectStatus = "nondeterministic" if unstable else "no-difference"
            why = (f"the outputs differ between two runs of the same environment ({', '.join(sorted(unstable))}), "
                   "and nothing else differs" if unstable else
                   "A's outputs and A's with every difference applied are the same here: every difference that can "
                   "be varied on this machine is harmless together")
            harmless = self._culprits(range(len(self.groups))) if not unstable else ()
            return self._report(status, why + ".", harmless=harmless,
                                proof=f"run {top_runs[0].index}" if harmless else None, b_outcome=b_outcome)
        found = ddmin(list(range(len(self.groups))), self.outcome)
        found, inseparable = self._separate(found)
        rest = [i for i in range(len(self.groups)) if i not in found]
        harmless, proof = self._harmless(rest)
        names = ", ".join(self.groups[i].label for i in found)
        message = f"{len(found)} of {len(self.groups)} groups of differences change the outputs: {names}."
        return self._report("found", message, culprits=self._culprits(found), harmless=harmless, proof=proof,
                            b_outcome=b_outcome, extra_notes=inseparable)

    def _decide(self, a_runs: list[BisectRun], top_runs: list[BisectRun]) -> set[str]:
        paths = {p for r in a_runs + top_runs for p in r.outputs}
        unstable = set()
        for path in sorted(paths):
            a_values = {r.outputs.get(path) for r in a_runs}
            top_values = {r.outputs.get(path) for r in top_runs}
            if len(a_values) > 1 or len(top_values) > 1:
                unstable.add(path)
            elif a_values != top_values:
                self.deciding[path] = (next(iter(a_values)), next(iter(top_values)))
        self.unstable = unstable
        return unstable

    def _b_as_locked(self, times: int) -> RunOutcome | None:
        if not self.request.check_b:
            return None
        self.notes("building B's own image, to check that the layers reproduce it")
        try:
            result = build(Path(self.request.b_dir), self.engine, BuildOptions(base_image=self.request.base_image))
        except EnvcapError as exc:
            self.notes_out.append(f"B's own image could not be built ({exc.message}), so it was not run")
            return None
        self._count(not result.cached)
        config = _Config(label="B as locked", applied=(), env={"HOME": CONTAINER_HOME, "PYTHONUNBUFFERED": "1"}
                         | self.candidates.env_b, command=self.request.command, built=not result.cached,
                         build_seconds=result.seconds)
        runs = self._run(config, times=times, image=result.tag, image_id=result.image_id)
        outcomes = {r.outcome for r in runs}
        outcome: RunOutcome = runs[0].outcome if len(outcomes) == 1 else "unstable"
        if outcome != "B":
            self.notes_out.append(f"B's own image gives {outcome} outputs, not those of A with every difference "
                                  "applied: the rest of the difference lies in what could not be varied (untested)")
        return outcome

    def _separate(self, found: tuple[int, ...]) -> tuple[tuple[int, ...], list[str]]:
        """A package the culprits needed for consistency may be the real cause: it is tried alone."""
        packages = frozenset(d.name for i in found for d in self.groups[i].differences if d.kind == "package")
        coupled = self.sets.resolve(packages).coupled if packages else ()
        by_package = {g.differences[0].name: i for i, g in enumerate(self.groups)
                      if len(g.differences) == 1 and g.differences[0].kind == "package"}
        names = ", ".join(self.groups[i].label for i in found)
        together: list[int] = []
        for name in coupled:
            index = by_package.get(name)
            if index is None or index in found:
                continue
            if set(self.sets.resolve(frozenset({name})).coupled) & packages:
                together.append(index)  # each needs the other's B version: they cannot be tried apart
                continue
            if self.outcome(frozenset({index})) == "B":
                return (index,), [f"{names} needed {name} (B's version) to be installed; {name} alone gives B's "
                                  f"outputs, so it is the cause and {names} could not be tested without it"]
        if together:
            both = ", ".join(self.groups[i].label for i in together)
            return tuple(sorted((*found, *together))), [
                f"{names} and {both} cannot be installed apart (each needs the other's version from B); together "
                "they change the outputs, and which of them does cannot be told by running"]
        if coupled:
            return found, [f"{names} was applied with {', '.join(coupled)} (B's versions), which it requires; "
                           "those alone do not give B's outputs"]
        return found, []

    def _harmless(self, rest: list[int]) -> tuple[tuple[Culprit, ...], str | None]:
        if not rest:
            return (), None
        if self.outcome(frozenset(rest)) == "A":
            run = next((r for r in reversed(self.runs) if set(r.applied) == {d.fact for i in rest
                                                                            for d in self.groups[i].differences}), None)
            return self._culprits(rest), f"applied together to A, run {run.index if run else '?'} kept A's outputs"
        proven = [i for i in rest if any(i in key and value == "A" for key, value in self.memo.items())]
        return self._culprits(proven), "each kept A's outputs in a run that applied it" if proven else None

    def _culprits(self, indices: Iterable[int]) -> tuple[Culprit, ...]:
        return tuple(Culprit(d.fact, d.a, d.b, d.kind, self.groups[i].label)
                     for i in indices for d in self.groups[i].differences)

    @staticmethod
    def _exit(runs: list[BisectRun]) -> str:
        bad = next((r for r in runs if r.exit_code != 0), runs[0])
        return bad.note or f"exit {bad.exit_code}"

    # ---------------------------------------------------------------------------------------- the report
    def _report(self, status: BisectStatus, message: str, *, culprits: tuple[Culprit, ...] = (),
                harmless: tuple[Culprit, ...] = (), proof: str | None = None, b_outcome: RunOutcome | None = None,
                extra_notes: list[str] | None = None) -> BisectReport:
        return BisectReport(
            bisect_id=self.id, created_at=now_utc(), envcap_version=__version__, a=str(self.request.a_dir),
            b=str(self.request.b_dir), a_digest=self.a.digest, b_digest=self.b.digest, command=self.request.command,
            patterns=self.request.outputs, workdir=str(self.request.cwd), status=status, message=message,
            culprits=culprits, harmless=harmless, harmless_proof=proof,
            untested=self.candidates.untested + tuple(self.extra_untested),
            notes=tuple(self.notes_out + (extra_notes or [])), candidates=len(self.groups), runs=tuple(self.runs),
            builds=self.builds, images_reused=self.reused, seconds=self.clock() - self.started,
            setup_seconds=self.setup_seconds,
            deciding_files=tuple(sorted(self.deciding)), unstable_files=tuple(sorted(self.unstable)),
            matched=self.request.match, b_as_locked=b_outcome, folder=str(self.folder))

    def save(self, report: BisectReport) -> None:
        from envcap.bisect.report import render_json

        atomic_write(self.folder / "report.json", render_json(report))


__all__ = ["BISECTS", "BISECT_LABEL", "BisectRequest", "bisect", "check"]
