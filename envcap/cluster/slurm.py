"""Slurm behind the Cluster Protocol: ``sinfo`` for the nodes, one ``srun`` per node for the tasks.

Why one ``srun`` per node and not one job over all of them: a job over N nodes starts only when all N
are free, and one node that hangs holds the whole answer; a task per node lets every node answer (or
fail) on its own, with ``--immediate`` so a busy or broken node is reported instead of waited for, and a
process timeout so nothing hangs. Nothing else about the allocation is decided here: the user's own
rules apply (their ``SLURM_*`` input variables, ``--srun-arg`` for an account, a QOS, GPUs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from envcap import _log
from envcap._subprocess import Completed, RunFailed, Runner, RunTimedOut, run
from envcap.cluster import ClusterKind, Node, NodeCommand, NodeRun, RunOutcome, Selection
from envcap.errors import ClusterError

LOG = _log.get("cluster")

# sinfo's long state names (%T) under which a node takes new tasks
USABLE_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned"})
# the flags sinfo appends to a state, and what each means for a task sent now
STATE_FLAGS = {
    "*": "not responding", "~": "powered down (power saving)", "#": "powering up", "%": "powering down",
    "!": "about to power down", "@": "waiting to reboot", "^": "rebooting", "$": "in a maintenance reservation",
    "-": "planned for a pending job",
}
BLOCKING_FLAGS = frozenset("*~#%!@^$")
ALLOCATION_REFUSED = re.compile(r"Unable to allocate resources: (?P<why>.+)")
STEP_CANCELLED = re.compile(r"\*\*\* (?:STEP|JOB) \S+ ON \S+ CANCELLED AT \S+ (?:DUE TO (?P<why>[A-Z ]+?) )?\*\*\*")
EXEC_FAILED = re.compile(r"execve\(\): (?P<program>[^:]+): (?P<why>.+)")
SLACK_S = 15.0  # srun's own start and teardown, over the node's time


class SlurmCluster:
    """A Slurm cluster reached through its client commands (sinfo, scontrol, srun, scancel) on this machine."""

    kind: ClusterKind = "slurm"

    def __init__(self, *, runner: Runner = run, parallel: int = 32, srun_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, query_timeout: float = 30.0) -> None:
        self.runner = runner
        self.parallel = max(1, parallel)
        self.srun_args = tuple(srun_args)
        self.env = dict(env) if env is not None else None
        self.query_timeout = query_timeout
        self.version: str | None = None

    @property
    def where(self) -> str:
        return f"Slurm {self.version}" if self.version else "Slurm"

    # -------------------------------------------------------------------------------- nodes
    def nodes(self, selection: Selection) -> tuple[Node, ...]:
        names = self._expand(selection.nodelist) if selection.nodelist else None
        argv = ["sinfo", "--noheader", "--Node", "--format=%N|%T|%P|%E"]
        if selection.partition:
            argv.append(f"--partition={selection.partition}")
        if selection.nodelist:
            argv.append(f"--nodes={selection.nodelist}")
        rows = parse_sinfo(self._query(argv).stdout)
        self.version = self.version or self._version()
        found = [_finish(row, selection.partition) for row in _unique(rows, only_default=names is None
                                                                    and not selection.partition)]
        if names is not None:
            by_name = {node.name: node for node in found}
            found = [by_name.get(name) or _unknown(name, selection.partition) for name in dict.fromkeys(names)]
        elif not found:
            raise _no_nodes(selection.partition)
        if selection.count is not None:
            found = found[: selection.count]
        return tuple(found)

    def _expand(self, nodelist: str) -> list[str]:
        done = self._query(["scontrol", "show", "hostnames", nodelist], what=f"the node list {nodelist!r}")
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def _version(self) -> str | None:
        try:
            done = self.runner(["sinfo", "--version"], timeout=self.query_timeout, env=self.env)
        except RunFailed:
            return None
        words = done.stdout.split()
        return words[-1] if done.returncode == 0 and words else None

    def _query(self, argv: list[str], what: str | None = None) -> Completed:
        try:
            done = self.runner(argv, timeout=self.query_timeout, env=self.env)
        except RunTimedOut:
            raise ClusterError(f"{argv[0]} got no answer from the Slurm controller within {self.query_timeout:g} s.",
                               hint="check that slurmctld answers: scontrol ping") from None
        except RunFailed as exc:
            raise ClusterError(f"{argv[0]} could not run ({exc}), so Slurm cannot be asked from here.",
                               hint="run envcap fleet on a login node of the cluster, where Slurm's client "
                                    "commands (sinfo, srun) are installed") from None
        if done.returncode != 0:
            last = _last_line(done.stderr) or f"exit {done.returncode}"
            if what:
                raise ClusterError(f"Slurm cannot read {what}: {last}.",
                                   hint="write it as Slurm does, for example node[1-4],gpu07")
            raise ClusterError(f"{argv[0]} failed: {last}.",
                               hint="check that slurmctld answers (scontrol ping) and that SLURM_CONF names "
                                    "this cluster's slurm.conf")
        return done

    # ---------------------------------------------------------------------------------- run
    def run(self, nodes: Sequence[Node], command: NodeCommand) -> tuple[NodeRun, ...]:
        if not nodes:
            return ()
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(nodes)), thread_name_prefix="envcap-srun") as pool:
            runs = tuple(pool.map(lambda node: self._run_one(node, command), nodes))
        if any(r.outcome == "timeout" for r in runs):
            self._cancel(command.label)
        return runs

    def srun_argv(self, node: Node, command: NodeCommand) -> list[str]:
        """``srun`` for one task on one node: refused at once when the node cannot take it (``--immediate``)."""
        wait_s = max(1, math.ceil(command.timeout))
        minutes = max(1, math.ceil((command.timeout + SLACK_S) / 60))
        argv = ["srun", f"--nodelist={node.name}", "--nodes=1", "--ntasks=1", f"--immediate={wait_s}",
                f"--time={minutes}", f"--job-name={command.label}", "--chdir=/tmp", "--quiet"]
        if node.partition:
            argv.append(f"--partition={node.partition}")
        return argv + list(self.srun_args) + list(command.argv)

    def _run_one(self, node: Node, command: NodeCommand) -> NodeRun:
        argv = self.srun_argv(node, command)
        limit = max(1, math.ceil(command.timeout)) + command.timeout + SLACK_S
        try:
            done = self.runner(argv, timeout=limit, env=self.env)
        except RunTimedOut:
            return NodeRun(node.name, "timeout", detail=f"no answer within {limit:g} s (srun was stopped)")
        except RunFailed as exc:
            return NodeRun(node.name, "lost", detail=f"srun could not run: {exc}")
        return classify(node.name, done)

    def _cancel(self, label: str) -> None:
        """Tasks whose srun was killed may still hold their node until their time limit: cancel them by name."""
        try:
            self.runner(["scancel", "--quiet", f"--name={label}"], timeout=self.query_timeout, env=self.env)
        except RunFailed as exc:
            LOG.debug("scancel --name=%s failed: %s", label, exc)


def classify(node: str, done: Completed) -> NodeRun:
    """What srun's exit says: the task ran (any status), Slurm refused it, or it was stopped."""
    stderr = done.stderr
    if done.returncode != 0:
        refused = ALLOCATION_REFUSED.search(stderr)
        if refused:
            return NodeRun(node, "refused", done.stdout, stderr, done.returncode, refused.group("why").strip())
        cancelled = STEP_CANCELLED.search(stderr)
        if cancelled:
            why = (cancelled.group("why") or "cancelled").strip().lower()
            outcome: RunOutcome = "timeout" if why == "time limit" else "lost"
            return NodeRun(node, outcome, done.stdout, stderr, done.returncode, f"Slurm stopped the task ({why})")
        failed = EXEC_FAILED.search(stderr)
        if failed:
            detail = f"{failed.group('program')} could not be started on the node ({failed.group('why').strip()})"
            return NodeRun(node, "ran", done.stdout, stderr, done.returncode, detail)
    return NodeRun(node, "ran", done.stdout, stderr, done.returncode, "")


def parse_sinfo(text: str) -> list[Node]:
    """``sinfo --Node --format=%N|%T|%P|%E`` into nodes (one row per node and partition)."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 3 or not parts[0]:
            continue
        name, state, partition = parts[0], parts[1], parts[2]
        reason = parts[3].strip() if len(parts) > 3 else ""
        rows.append(Node(name=name, usable=state_usable(state), state=state, partition=partition or None,
                         reason=None if reason in ("", "none", "(null)") else reason))
    return rows


def state_usable(state: str) -> bool:
    base, flags = split_state(state)
    return base in USABLE_STATES and not (set(flags) & BLOCKING_FLAGS)


def split_state(state: str) -> tuple[str, str]:
    base = state.rstrip("".join(STATE_FLAGS))
    return base.lower(), state[len(base):]


def state_words(state: str) -> str:
    """``down*`` -> ``down, not responding``: the state as a reader of the report understands it."""
    base, flags = split_state(state)
    return ", ".join([base] + [STATE_FLAGS[f] for f in flags if f in STATE_FLAGS])


def _unique(rows: list[Node], *, only_default: bool) -> list[Node]:
    """One row per node, its default partition's row first; with ``only_default``, that partition's nodes only.

    Why the default partition: it is where ``srun`` would send the user's own jobs.
    """
    rows = sorted(rows, key=lambda row: not (row.partition or "").endswith("*"))
    if only_default:
        rows = [row for row in rows if (row.partition or "").endswith("*")] or rows
    seen: dict[str, Node] = {}
    for row in rows:
        seen.setdefault(row.name, row)
    return list(seen.values())


def _unknown(name: str, partition: str | None) -> Node:
    where = f"in the partition {partition}" if partition else "in this cluster"
    return Node(name=name, usable=False, state="unknown", reason=f"Slurm knows no node of this name {where}",
                partition=partition)


def _finish(row: Node, partition: str | None) -> Node:
    """The partition a task is sent to (the one asked for, else the node's own), and why a node is left out."""
    part = partition or (row.partition.rstrip("*") if row.partition else None)
    reason = None
    if not row.usable:
        said = state_words(row.state)
        reason = f"{said}: {row.reason}" if row.reason else said
    return Node(name=row.name, usable=row.usable, state=row.state, reason=reason, partition=part)


def _no_nodes(partition: str | None) -> ClusterError:
    if partition:
        return ClusterError(f"Slurm lists no nodes in the partition {partition!r} (or knows no partition of that name).",
                            hint="list the partitions and their nodes with: sinfo --summarize")
    return ClusterError("Slurm lists no nodes in this cluster.", hint="check the cluster with: sinfo --Node")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


__all__ = ["SlurmCluster", "classify", "parse_sinfo", "state_usable", "state_words"]
