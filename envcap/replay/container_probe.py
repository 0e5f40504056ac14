"""Snapshot B: the lock's own stdlib probe, piped into the image's python3 (envcap is not installed there).

Why the same script: the two snapshots are then taken by the same code, so a difference is a real
difference, not a difference of method.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Generic, TypeVar

from envcap import __version__
from envcap.engine import ContainerEngine, RunSpec, keep_signals_for_the_main_thread
from envcap.errors import EnvcapError
from envcap.lock import Snapshot, now_utc
from envcap.probe import parse_probe_output, probe_source, snapshot_from_facts

T = TypeVar("T")
ARCH_SCRIPT = "import json, torch; print(json.dumps(list(torch.cuda.get_arch_list())))"


def probe_argv(*, deep: bool) -> tuple[str, ...]:
    """The probe's command in the image; ``--search-path`` says where it looked, for ``image_facts``."""
    return ("python3", "-", "--skip-git", "--search-path") + (("--deep",) if deep else ())


def probe_in_container(engine: ContainerEngine, spec: RunSpec, *, deep: bool, image: str) -> dict[str, Any]:
    """The probe's raw answer from a container of the image (``search_path`` included)."""
    result = engine.run(replace(spec, command=probe_argv(deep=deep), stdin_data=probe_source().encode("utf-8"),
                                tty=False, interactive=False))
    return parse_probe_output(result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"),
                              result.exit_code, f"python3 in the image {image}")


def snapshot_of(facts: Mapping[str, Any]) -> Snapshot:
    """Snapshot B from the probe's raw answer (whole, or the image's kept part with the host's read now)."""
    data = {name: value for name, value in facts.items() if name != "search_path"}
    return snapshot_from_facts(data, envcap_version=__version__, captured_at=now_utc(), source="probe")


class BackgroundJob(Generic[T]):
    """Any other script run in a container beside the workload (the numeric fingerprint), as ProbeJob runs the probe.

    An EnvcapError becomes a sentence for the report's warnings; anything else is a bug, raised in ``wait``.
    """

    def __init__(self, task: Callable[[], T], name: str, what: str) -> None:
        self.task, self.name, self.what = task, name, what
        self.result: T | None = None
        self.problem: str | None = None
        self.failure: BaseException | None = None
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            keep_signals_for_the_main_thread()
        try:
            self.result = self.task()
        except EnvcapError as exc:
            self.problem = f"{self.what}: {exc.message}"
        except BaseException as exc:  # noqa: BLE001 - a bug in a thread: handed to the caller, who re-raises it
            self.failure = exc

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()

    def wait(self) -> tuple[T | None, str | None]:
        if self.thread is not None:
            self.thread.join()
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return self.result, self.problem


class ProbeJob(BackgroundJob[tuple[dict[str, Any], Snapshot]]):
    """The in-container probe, run now or in a thread beside the workload.

    Why a thread for CPU replays: the probe's container costs as much as the workload's start
    (~0.3 s); run one after the other, they would double replay's overhead over ``docker run``. It
    reads static facts, so running it beside the workload changes nothing it reports.
    """

    def __init__(self, engine: ContainerEngine, spec: RunSpec, *, deep: bool, image: str) -> None:
        def probe() -> tuple[dict[str, Any], Snapshot]:
            facts = probe_in_container(engine, spec, deep=deep, image=image)
            return facts, snapshot_of(facts)

        super().__init__(probe, "envcap-replay-probe", "the image could not be probed, so nothing is compared")

    @property
    def facts(self) -> dict[str, Any] | None:
        """The probe's raw answer, for ``image_facts``."""
        return self.result[0] if self.result is not None else None

    def snapshot(self) -> tuple[Snapshot | None, str | None]:
        """(snapshot B, why there is none); a bug in the probe's thread is raised here, not hidden."""
        result, problem = self.wait()
        return (result[1] if result is not None else None), problem


def ask_arch_list(engine: ContainerEngine, spec: RunSpec) -> tuple[list[str] | None, str | None]:
    """torch.cuda.get_arch_list() inside the image: what the framework itself says it was built for."""
    try:
        result = engine.run(replace(spec, command=("python3", "-c", ARCH_SCRIPT), gpus=False, stdin_data=None,
                                    tty=False, interactive=False))
    except EnvcapError as exc:
        return None, exc.message
    if result.exit_code != 0:
        tail = (result.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        return None, f"torch in the image could not be asked ({tail[:200]})"
    try:
        value = json.loads(result.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "torch in the image gave no architecture list"
    if not isinstance(value, list):
        return None, "torch in the image gave no architecture list"
    return [str(v) for v in value], None
