"""Which nodes share an environment: "identical" as explain sees it, not byte for byte.

Why not compare the probes' JSON: two nodes of one rack differ in facts that cannot change a result
(a few MB of memory the firmware keeps, a kernel patch release, the path of a scratch folder), and in
facts the scheduler sets per allocation (``CUDA_VISIBLE_DEVICES=2,3`` on one node, ``0,1`` on the
next). Byte equality would give every node its own class. So nodes are first grouped by their exact
facts (cheap), then exact groups merge when explain finds nothing between them above ``info`` and the
same facts are known on both; what still differs inside a class is kept as ``varies``. Allocation
variables are left out of every comparison, the reference's included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from envcap.explain import diff
from envcap.explain.derive import enrich
from envcap.explain.facts import FactView, facts_of
from envcap.lock import Snapshot

# Set by the batch system for each allocation, so they differ between nodes of one environment.
ALLOCATION_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                            "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "WORLD_SIZE", "LOCAL_WORLD_SIZE"})


@dataclass(frozen=True)
class Group:
    nodes: tuple[str, ...]
    snapshot: Snapshot  # the first node's, standing for all
    varies: tuple[str, ...] = ()


def steady(snapshot: Snapshot) -> Snapshot:
    """The snapshot without what the scheduler or the moment decide (allocation variables, capture time)."""
    env = None if snapshot.env is None else {k: v for k, v in snapshot.env.items() if k not in ALLOCATION_ENV}
    return replace(snapshot, env=env, captured_at=None, digest=None)


def group(members: Sequence[tuple[str, Snapshot]]) -> list[Group]:
    """Nodes into classes of environments explain cannot tell apart; the biggest first, then by first node."""
    exact: dict[tuple[object, ...], list[tuple[str, Snapshot, FactView]]] = {}
    for name, snapshot in members:
        view = facts_of(enrich(snapshot))
        exact.setdefault(_key(view), []).append((name, snapshot, view))
    ordered = sorted(exact.values(), key=lambda g: -len(g))
    classes: list[tuple[list[str], Snapshot, FactView, set[str]]] = []
    for members_of in ordered:
        names = [m[0] for m in members_of]
        _, snapshot, view = members_of[0]
        for class_names, class_snapshot, class_view, varies in classes:
            if _same_facts(class_view, view):
                report = diff(class_snapshot, snapshot)
                if not report.significant:
                    class_names.extend(names)
                    varies.update(f.fact for f in report.findings)
                    break
        else:
            classes.append((names, snapshot, view, set()))
    order = {name: i for i, (name, _) in enumerate(members)}
    groups = [Group(tuple(sorted(names, key=order.__getitem__)), snapshot, tuple(sorted(varies)))
              for names, snapshot, _, varies in classes]
    return sorted(groups, key=lambda g: (-len(g.nodes), order[g.nodes[0]]))


def _key(view: FactView) -> tuple[object, ...]:
    values = tuple(sorted((k, _hashable(v)) for k, v in view.values.items()))
    return values, tuple(sorted(view.unknown)), tuple(sorted(view.derived))


def _hashable(value: object) -> object:
    if isinstance(value, (frozenset, set)):
        return tuple(sorted(map(str, value)))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def _same_facts(a: FactView, b: FactView) -> bool:
    """The same facts known: a node whose GPU could not be read is not like one whose GPU could.

    Known, not present: in a closed family (``pkg.``, ``env.``) a missing member is known to be absent.
    """
    facts = a.values.keys() | b.values.keys() | a.unknown | b.unknown
    return all(a.known(fact) == b.known(fact) for fact in facts)


__all__ = ["ALLOCATION_ENV", "Group", "group", "steady"]
