"""The task every node runs, seen from envcap's side: the command line that carries it, and its answer.

Why the scripts travel inside the command line (``python -c``, zlib and base64): nodes share nothing
with the machine envcap runs on, not a file system, not envcap; a command line is the one thing every
batch system hands to a node unchanged. The probe (~60 kB) packs to ~25 kB, well under Linux's limit
for one argument (128 kB).

Parts: the probe always, and any other stdlib script whose JSON joins the probe's facts (the numeric
fingerprint suite, ``--fingerprint``). A part is a ``FactSource``: its source, its arguments, and how
its output joins the facts, so the fleet needs no change when a part is added.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from envcap.cluster import NodeCommand
from envcap.errors import UsageError

TASK_SCRIPT = Path(__file__).with_name("_task.py")
MARKER = "ENVCAP-FLEET-RESULT "
FINGERPRINT_MODULE = "envcap.probe.fingerprint"
Facts = dict[str, object]
PartError = Literal["timeout", "start"]
TaskError = Literal["no-runtime", "no-image"]


class FactSource(Protocol):
    """A stdlib-only script run on every node beside the probe, and how its output joins the probe's facts."""

    name: str
    args: tuple[str, ...]

    def source(self) -> str: ...

    def merge(self, facts: Facts, stdout: str) -> Facts:
        """The probe's facts with this part's output added; ValueError when the output is not its JSON."""
        ...


@dataclass(frozen=True)
class Part:
    name: str
    source: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskPlan:
    python: str  # the interpreter on the node (``--python``); in image mode it only starts the container
    parts: tuple[Part, ...]
    timeout: float  # for all parts together, once the task runs on the node
    image: str | None = None  # run the parts inside this image through the node's docker or podman
    image_label: str | None = None  # or inside the image carrying this label on each node (the lock's digest)
    env: dict[str, str] = field(default_factory=dict)  # set inside the container (the lock's variables)
    token: str = "0"  # names this survey's jobs and containers


@dataclass(frozen=True)
class PartResult:
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: PartError | None = None
    detail: str = ""


@dataclass(frozen=True)
class TaskAnswer:
    host: str | None
    python: str | None
    runtime: str | None  # docker, podman; None in interpreter mode, or when the node has none
    image: str | None  # the image the parts ran in (an id where it was found by the lock's label)
    error: TaskError | None
    parts: dict[str, PartResult]


def node_command(plan: TaskPlan) -> NodeCommand:
    """``PY -c BOOT``: BOOT unpacks the task script and its configuration, then runs it."""
    config = {"parts": [{"name": p.name, "source": p.source, "args": list(p.args)} for p in plan.parts],
              "timeout": plan.timeout, "image": plan.image, "image_label": plan.image_label, "env": plan.env, "token": plan.token}
    boot = ("import base64,json,zlib\n"
            "u=lambda s:zlib.decompress(base64.b64decode(s)).decode('utf-8')\n"
            "g={'__name__':'envcap_fleet_task'}\n"
            f"exec(u('{_pack(TASK_SCRIPT.read_text('utf-8'))}'),g)\n"
            f"raise SystemExit(g['main'](json.loads(u('{_pack(json.dumps(config))}'))))\n")
    return NodeCommand(argv=(plan.python, "-c", boot), timeout=plan.timeout, label=f"envcap-fleet-{plan.token}")


def _pack(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def read_answer(stdout: str) -> TaskAnswer | None:
    """The task's answer line, whatever else the node printed around it; None when there is none or it is damaged."""
    line = next((line for line in reversed(stdout.splitlines()) if line.startswith(MARKER)), None)
    if line is None:
        return None
    try:
        data = json.loads(zlib.decompress(base64.b64decode(line[len(MARKER):].strip(), validate=True)))
    except (binascii.Error, zlib.error, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("parts"), dict):
        return None
    parts = {}
    for name, raw in data["parts"].items():
        if not isinstance(raw, dict):
            return None
        error = raw.get("error")
        parts[str(name)] = PartResult(
            returncode=raw["rc"] if isinstance(raw.get("rc"), int) else None,
            stdout=_text(raw.get("stdout")), stderr=_text(raw.get("stderr")),
            error=error if error in ("timeout", "start") else None, detail=_text(raw.get("detail")))
    return TaskAnswer(host=_text(data.get("host")) or None, python=_text(data.get("python")) or None,
                      runtime=_text(data.get("runtime")) or None, image=_text(data.get("image")) or None,
                      error=_task_error(data.get("error")), parts=parts)


def _task_error(value: object) -> TaskError | None:
    if value == "no-runtime":
        return "no-runtime"
    if value == "no-image":
        return "no-image"
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# ------------------------------------------------------------------------------------------ parts

def probe_part() -> Part:
    from envcap.probe import probe_source

    return Part("probe", probe_source(), ("--skip-git",))


class _ModuleFacts:
    """A fact source from a module that offers ``script_source() -> str`` and ``facts_from_output(str) -> dict``."""

    def __init__(self, name: str, module: object) -> None:
        self.name = name
        self.args: tuple[str, ...] = ()
        self.module = module

    def source(self) -> str:
        return str(self.module.script_source())  # type: ignore[attr-defined]  # checked by fingerprint_source

    def merge(self, facts: Facts, stdout: str) -> Facts:
        fragment = self.module.facts_from_output(stdout)  # type: ignore[attr-defined]
        if not isinstance(fragment, Mapping):
            raise ValueError(f"the {self.name} part gave no facts")
        return merge_facts(facts, fragment)


def fingerprint_source() -> FactSource:
    """The numeric fingerprint suite (issue 11), when this build has it.

    The contract: a module ``envcap.probe.fingerprint`` with ``script_source()`` (a stdlib-only script
    that prints JSON, run in the target interpreter) and ``facts_from_output(stdout)`` (the fragment of
    probe facts it adds, for example ``{"fingerprints": {...}}`` in the shape the lock records).
    """
    try:
        module = importlib.import_module(FINGERPRINT_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is None or not FINGERPRINT_MODULE.startswith(exc.name):
            raise
        module = None
    if module is None or not all(callable(getattr(module, n, None)) for n in ("script_source", "facts_from_output")):
        raise UsageError("--fingerprint is not available in this build (it has no numeric fingerprint suite).",
                         hint="leave out --fingerprint; the environment is still compared fact by fact")
    return _ModuleFacts("fingerprint", module)


def merge_facts(facts: Mapping[str, object], fragment: Mapping[str, object]) -> Facts:
    """The facts with a part's fragment added: mappings merge key by key, anything else replaces."""
    merged: Facts = dict(facts)
    for key, value in fragment.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_facts(old, value)
        else:
            merged[key] = value
    return merged


def part_of(source: FactSource) -> Part:
    return Part(source.name, source.source(), source.args)


__all__ = ["FactSource", "Part", "PartResult", "TaskAnswer", "TaskPlan", "fingerprint_source", "merge_facts",
           "node_command", "probe_part", "read_answer"]
