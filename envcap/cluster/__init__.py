"""The cluster seen by envcap: a small Protocol over a batch system, so the fleet survey never touches Slurm.

Why a Protocol: ``envcap fleet`` asks two things of a cluster, which nodes there are (and which of them
can take a task now) and to run one command on each of a set of nodes; how a backend does it is its own
business. ``envcap.cluster.slurm`` answers with ``sinfo`` and one ``srun`` per node; a Kubernetes backend
would answer with the node list and an indexed Job, and the survey and its report stay the same. Unit
tests pass a fake cluster (tests/fakes.py) instead of patching subprocesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ClusterKind = Literal["slurm"]
# ran: the command started on the node and exited (with any status); refused: the batch system would not
# start it (down, busy, no such node); timeout: it did not finish in time and was stopped; lost: the
# batch system's own client failed (not installed, crashed).
RunOutcome = Literal["ran", "refused", "timeout", "lost"]


@dataclass(frozen=True)
class Selection:
    """Which nodes to ask: all of a partition, its first ``count``, or a node list (a hostlist expression)."""

    partition: str | None = None
    count: int | None = None
    nodelist: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    usable: bool  # can take a task now (up and responding); an unusable node is reported, never waited for
    state: str  # the batch system's own word for it: idle, mixed, down*, drained ...
    reason: str | None = None  # why it is out of service, as the administrators wrote it
    partition: str | None = None


@dataclass(frozen=True)
class NodeCommand:
    """What one task runs on a node: an argv (no shell), and how long it may take once it runs there."""

    argv: tuple[str, ...]
    timeout: float
    label: str = "envcap-fleet"  # the batch system's job name, so a person can find and cancel the tasks


@dataclass(frozen=True)
class NodeRun:
    node: str
    outcome: RunOutcome
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    detail: str = ""  # the batch system's own sentence when it refused, timed out or failed


class Cluster(Protocol):
    kind: ClusterKind

    @property
    def where(self) -> str:
        """A few words naming the cluster, for the report (``Slurm 22.05.8, cluster envcap-test``)."""
        ...

    def nodes(self, selection: Selection) -> tuple[Node, ...]:
        """The selected nodes, in the batch system's order, each with whether it can take a task now."""
        ...

    def run(self, nodes: Sequence[Node], command: NodeCommand) -> tuple[NodeRun, ...]:
        """Runs ``command`` once on every node, all of them at once as far as the backend allows.

        Must return within about ``2 * command.timeout`` plus the backend's own overhead, whatever
        the nodes do: one run per node, in the order given.
        """
        ...


__all__ = ["Cluster", "ClusterKind", "Node", "NodeCommand", "NodeRun", "RunOutcome", "Selection"]
