"""``envcap fleet``'s library side: ask every node for its environment, group them, explain the differences.

The order: read the reference lock (if any) before touching the cluster, so a wrong DIR costs nothing;
ask the cluster which nodes there are; send one task to every usable node at once; read each answer
into a Snapshot with the same code ``envcap snapshot`` uses; group the nodes (``classes``); compare each
class with the reference using explain's rules, the ones ``envcap diff`` uses.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envcap import __version__
from envcap.cluster import Cluster, NodeRun, Selection
from envcap.cluster.classes import ALLOCATION_ENV, group, steady
from envcap.cluster.report import EnvClass, FleetReport, NodeProblem, ProblemKind, VariableChanges
from envcap.cluster.task import (
    FactSource,
    PartResult,
    TaskAnswer,
    TaskPlan,
    fingerprint_source,
    node_command,
    part_of,
    probe_part,
    read_answer,
)
from envcap.errors import ClusterError, EnvcapError, UsageError
from envcap.explain import diff
from envcap.lock import Snapshot, load_lock
from envcap.probe import parse_probe_output, snapshot_from_facts

SNAPSHOT_IMAGE = "@snapshot"  # --image without a name: on each node, the image built from the lock in DIR
LOCK_DIGEST_LABEL = "io.envcap.lock-digest"
NO_SUCH_IMAGE = re.compile(r"No such image|Unable to find image|image not known|not found locally", re.I)
REDACTED = "<redacted>"


@dataclass(frozen=True)
class FleetRequest:
    selection: Selection = field(default_factory=Selection)
    python: str = "python3"
    lock_dir: Path | None = None  # the reference; None: the fleet's most common environment
    image: str | None = None  # run the probe in this image on each node (SNAPSHOT_IMAGE: the lock's own)
    fingerprint: bool = False
    timeout: float = 60.0  # per node: to be given the node, and again to answer


class FleetUnanswered(ClusterError):
    """No node gave an environment; the report still says why for each."""

    def __init__(self, report: FleetReport) -> None:
        kinds: dict[str, int] = {}
        for problem in report.problems:
            kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
        counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        super().__init__(f"none of the {len(report.asked)} nodes asked gave an environment ({counts}).",
                         hint="each node's reason is listed above; `sinfo -R` says why nodes are down, "
                              "and --timeout gives slow nodes longer")
        self.report = report


def survey(request: FleetRequest, cluster: Cluster, *, clock: Callable[[], float] = time.monotonic,
           token: str | None = None) -> FleetReport:
    started = clock()
    lock = load_lock(request.lock_dir) if request.lock_dir is not None else None
    sources: tuple[FactSource, ...] = (fingerprint_source(),) if request.fingerprint else ()
    plan = _plan(request, lock, sources, token or secrets.token_hex(4))
    nodes = cluster.nodes(request.selection)
    usable = [node for node in nodes if node.usable]
    problems = [NodeProblem(node.name, "down", node.reason or node.state) for node in nodes if not node.usable]
    runs = cluster.run(usable, node_command(plan)) if usable else ()
    members: list[tuple[str, Snapshot]] = []
    notes: list[str] = []
    for run in runs:
        snapshot, problem = read_node(run, request, sources, notes)
        if problem is not None:
            problems.append(problem)
        elif snapshot is not None:
            members.append((run.node, snapshot))
    classes, reference_source = _classes(members, lock, request.lock_dir)
    if any(set(s.env or ()) & ALLOCATION_ENV for _, s in members):
        notes.append("Variables the scheduler sets for each allocation (" + ", ".join(sorted(ALLOCATION_ENV & {
            k for _, s in members for k in (s.env or {})})) + ") are left out of every comparison.")
    order = {node.name: i for i, node in enumerate(nodes)}
    report = FleetReport(
        kind=cluster.kind, where=cluster.where, reference="snapshot" if lock is not None else "majority",
        reference_source=reference_source, mode="image" if request.image else "interpreter", python=request.python,
        image=_image_text(request, lock), fingerprint=request.fingerprint, asked=tuple(n.name for n in nodes),
        classes=classes, problems=tuple(sorted(problems, key=lambda p: order.get(p.node, len(order)))),
        notes=tuple(notes), seconds=clock() - started)
    if not classes:
        raise FleetUnanswered(report)
    return report


def _plan(request: FleetRequest, lock: Snapshot | None, sources: Sequence[FactSource], token: str) -> TaskPlan:
    image = label = None
    env: dict[str, str] = {}
    if request.image == SNAPSHOT_IMAGE:
        if lock is None or not lock.digest:
            raise UsageError("--image without an image name runs the snapshot's own image, so it needs the snapshot DIR.",
                             hint="pass DIR (envcap fleet .envcap --slurm --image), or name the image: --image=IMG")
        label = f"{LOCK_DIGEST_LABEL}={lock.digest}"
    elif request.image:
        image = request.image
    if request.image and lock is not None:
        env = container_env(lock)
    parts = (probe_part(), *(part_of(source) for source in sources))
    return TaskPlan(python=request.python, parts=parts, timeout=request.timeout, image=image, image_label=label,
                    env=env, token=token)


def container_env(lock: Snapshot) -> dict[str, str]:
    """The lock's numerics variables inside the image, as replay sets them (none the scheduler decides, no secrets)."""
    return {k: v for k, v in (lock.env or {}).items()
            if k not in ALLOCATION_ENV and REDACTED not in v and "\n" not in v}


def _image_text(request: FleetRequest, lock: Snapshot | None) -> str | None:
    if request.image == SNAPSHOT_IMAGE:
        return f"the image labelled {LOCK_DIGEST_LABEL}={lock.digest}" if lock else None
    return request.image


# ----------------------------------------------------------------------------------- one node

def read_node(run: NodeRun, request: FleetRequest, sources: Sequence[FactSource],
              notes: list[str]) -> tuple[Snapshot | None, NodeProblem | None]:
    """One node's answer: its environment, or why it has none (a note when only an extra part failed)."""
    node = run.node
    if run.outcome == "refused":
        kind: ProblemKind = "busy" if "busy" in run.detail.lower() else "refused"
        return None, NodeProblem(node, kind, f"the batch system would not start the task: {run.detail}")
    if run.outcome == "timeout":
        return None, NodeProblem(node, "timeout", run.detail or "no answer in time")
    if run.outcome == "lost":
        return None, NodeProblem(node, "failed", run.detail or "the task was lost")
    answer = read_answer(run.stdout)
    if answer is None:
        return None, _no_answer(run, request)
    if answer.error == "no-runtime":
        return None, NodeProblem(node, "no-runtime", "the node has no container runtime (docker or podman) to run "
                                                    "the image in")
    if answer.error == "no-image":
        return None, NodeProblem(node, "no-image", f"the node's {answer.runtime or 'runtime'} has no image built "
                                                   "from this snapshot (build it there, or load or pull it)")
    probe = answer.parts.get("probe")
    if probe is None:
        return None, NodeProblem(node, "bad-output", "the task's answer has no probe report")
    problem = _part_problem(node, "probe", probe, answer, request)
    if problem is not None:
        return None, problem
    where = f"{request.python} on {node}" if not request.image else f"python3 in the image on {node}"
    try:
        facts: dict[str, object] = parse_probe_output(probe.stdout, probe.stderr, probe.returncode or 0, where)
        for source in sources:
            facts = _merge_part(node, source, answer, facts, request, notes)
        return snapshot_from_facts(facts, envcap_version=__version__, source="probe"), None
    except EnvcapError as exc:
        return None, NodeProblem(node, "bad-output", exc.message.rstrip("."))


def _merge_part(node: str, source: FactSource, answer: TaskAnswer, facts: dict[str, object],
                request: FleetRequest, notes: list[str]) -> dict[str, object]:
    part = answer.parts.get(source.name)
    problem = _part_problem(node, source.name, part, answer, request) if part else \
        NodeProblem(node, "bad-output", f"no {source.name} report")
    if problem is None and part is not None:
        try:
            return source.merge(facts, part.stdout)
        except ValueError as exc:
            problem = NodeProblem(node, "bad-output", str(exc))
    notes.append(f"{node}: the {source.name} part gave nothing ({problem.reason if problem else 'no output'}), "
                 f"so its facts are unknown there.")
    return facts


def _part_problem(node: str, name: str, part: PartResult, answer: TaskAnswer,
                  request: FleetRequest) -> NodeProblem | None:
    if part.error == "timeout":
        return NodeProblem(node, "timeout", f"the {name} did not finish within {request.timeout:g} s")
    if part.error == "start":
        return NodeProblem(node, "failed", part.detail or f"the {name} could not start")
    if part.returncode not in (0, None):
        last = _last_line(part.stderr) or "no message"
        if answer.runtime and NO_SUCH_IMAGE.search(part.stderr):
            return NodeProblem(node, "no-image", f"the node's {answer.runtime} does not have the image ({last})")
        place = "in the image" if answer.runtime else f"with {request.python}"
        return NodeProblem(node, "failed", f"the {name} failed {place} (exit {part.returncode}: {last})")
    return None


def _no_answer(run: NodeRun, request: FleetRequest) -> NodeProblem:
    if run.detail:  # Slurm said why (the interpreter could not be started)
        return NodeProblem(run.node, "failed", run.detail)
    last = _last_line(run.stderr) or _last_line(run.stdout)
    if run.returncode not in (0, None):
        why = f"exit {run.returncode}: {last}" if last else f"exit {run.returncode}"
        return NodeProblem(run.node, "failed", f"the task failed with {request.python} ({why})")
    return NodeProblem(run.node, "bad-output", f"the task ended without envcap's report ({last or 'no output'})")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# ------------------------------------------------------------------------------------ classes

def _classes(members: Sequence[tuple[str, Snapshot]], lock: Snapshot | None,
             lock_dir: Path | None) -> tuple[tuple[EnvClass, ...], str]:
    groups = group([(name, steady(snapshot)) for name, snapshot in members])
    if not groups:
        return (), str(lock_dir) if lock_dir else "the most common environment"
    if lock is not None:
        reference = steady(lock)
        source = str(lock_dir)
    else:
        reference = groups[0].snapshot
        source = f"class 1 ({', '.join(groups[0].nodes[:6])}{' ...' if len(groups[0].nodes) > 6 else ''})"
    classes = tuple(
        EnvClass(number=i, nodes=g.nodes, report=diff(reference, g.snapshot), variables=variables(reference, g.snapshot),
                 varies=g.varies, is_reference=lock is None and i == 1)
        for i, g in enumerate(groups, start=1))
    return classes, source


def variables(reference: Snapshot, nodes: Snapshot) -> VariableChanges:
    a: Mapping[str, str] = reference.env or {}
    b: Mapping[str, str] = nodes.env or {}
    if reference.env is None or nodes.env is None:
        return VariableChanges()
    return VariableChanges(missing=tuple(sorted(a.keys() - b.keys())), added=tuple(sorted(b.keys() - a.keys())),
                           changed=tuple(sorted(k for k in a.keys() & b.keys() if a[k] != b[k])))


__all__ = ["SNAPSHOT_IMAGE", "FleetRequest", "FleetUnanswered", "container_env", "read_node", "survey", "variables"]
