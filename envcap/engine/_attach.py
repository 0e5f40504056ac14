"""Running a container: its creation, the output reader thread, the stdin feeder, Ctrl-C's grace period.

Why threads, and why apart from the engine's client: Ctrl-C must reach the main thread while a
container streams, without cutting a multiplexed frame in half or losing the workload's last words;
this module carries that subtlety, over the SDK's low-level client given to it.
"""

from __future__ import annotations

import contextlib
import os
import socket as _socket
import threading
import time
from collections.abc import Callable
from typing import Any

from envcap.engine import (
    MANAGED_LABEL,
    OutputCallback,
    OutputStream,
    RunResult,
    RunSpec,
    _init,
    keep_signals_for_the_main_thread,
)
from envcap.engine.errors import EngineError
from envcap.engine.leftovers import owner_label

STOP_GRACE_S = 10  # how long a workload may take to shut down after Ctrl-C before it is killed


def start_stdin(raw: Any, spec: RunSpec) -> threading.Thread:
    """Writes stdin in a thread (a large script must not block reading the output), then half-closes."""

    def half_close() -> None:
        with contextlib.suppress(Exception):
            if hasattr(raw, "shutdown_write"):  # paramiko (ssh://)
                raw.shutdown_write()
            else:
                raw.shutdown(_socket.SHUT_WR)

    def feed() -> None:
        keep_signals_for_the_main_thread()
        try:
            if spec.stdin_data is not None:
                raw.sendall(spec.stdin_data)
            elif spec.interactive:
                while True:
                    data = os.read(0, 65536)
                    if not data:
                        break
                    raw.sendall(data)
        except OSError:
            pass
        finally:
            # With a TTY the end of the user's input is a ^D byte, not a close: half-closing the
            # attach there ends the output stream too, and the rest of the workload's output is lost.
            if not spec.tty:
                half_close()

    thread = threading.Thread(target=feed, name="envcap-stdin", daemon=True)
    thread.start()
    return thread


class OutputReader(threading.Thread):
    """Reads the attached container's output to its end in a thread of its own.

    Why a thread: a KeyboardInterrupt raised inside the socket read would cut a multiplexed frame
    in half; here the main thread takes Ctrl-C while this one keeps the stream whole. The caller
    waits on ``finished``, not on ``join()``: a Ctrl-C that interrupts ``Thread.join`` leaves
    ``is_alive()`` reporting False for a thread that still runs (CPython's bpo-45274 handling).
    """

    def __init__(self, sock: Any, tty: bool, on_output: OutputCallback | None, out: bytearray,
                 err: bytearray) -> None:
        super().__init__(name="envcap-output", daemon=True)
        self.sock, self.tty, self.on_output, self.out, self.err = sock, tty, on_output, out, err
        self.failure: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        from docker.utils.socket import frames_iter

        keep_signals_for_the_main_thread()
        try:
            for stream_no, chunk in frames_iter(self.sock, self.tty):  # type: ignore[no-untyped-call]
                name: OutputStream = "stderr" if stream_no == 2 else "stdout"
                if self.on_output is not None:
                    self.on_output(chunk, name)
                elif name == "stderr":
                    self.err.extend(chunk)
                else:
                    self.out.extend(chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread (a callback's Ctrl-C too)
            self.failure = exc
        finally:
            self.finished.set()


def create_container(api: Any, spec: RunSpec, *, stand_in_init: bool,
                     image_config: Callable[[], dict[str, Any]]) -> str:
    """Creates the container a RunSpec describes, labelled as envcap's and with its owner (``leftovers``).

    ``stand_in_init``: the engine has no init binary, so the command runs under envcap's (``_init``).
    ``image_config`` is asked only where the image's own entrypoint matters.
    """
    import docker

    mounts = [docker.types.Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
              for m in spec.mounts]
    host_config = api.create_host_config(
        mounts=mounts or None,
        device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.gpus else None,
        network_mode="none" if spec.network_disabled else None,
        init=True if spec.init and not stand_in_init else None,
    )
    wants_stdin = spec.stdin_data is not None or spec.interactive
    command, entrypoint = list(spec.command), list(spec.entrypoint) if spec.entrypoint is not None else None
    if spec.init and stand_in_init:
        entrypoint, command = _init.wrap(entrypoint, command, image_config())
    if spec.commit is not None and entrypoint is not None and not image_config().get("Entrypoint"):
        # A committed image keeps the container's entrypoint unless it is replaced by a non-empty one, and
        # "none" cannot be written back: an image without one runs the script as its command instead.
        command, entrypoint = [*entrypoint, *command], None
    created = api.create_container(
        image=spec.image,
        command=command or None,
        entrypoint=entrypoint,
        working_dir=spec.workdir,
        user=spec.user or "",
        environment=dict(spec.env) or None,
        labels={MANAGED_LABEL: "true", **owner_label(), **spec.labels},
        tty=spec.tty,
        stdin_open=wants_stdin,
        host_config=host_config,
    )
    return str(created["Id"])


def run_attached(api: Any, container_id: str, spec: RunSpec, on_output: OutputCallback | None,
                 could_not_start: Callable[[Exception], EngineError]) -> RunResult:
    """Attaches to a created container, starts it, streams it to its end and reads its exit.

    Attached before the start so no early output is lost. Ctrl-C passes SIGINT to the workload
    (``interrupt``); the SDK's own exceptions reach the caller, which maps them.
    """
    import docker

    wants_stdin = spec.stdin_data is not None or spec.interactive
    out = bytearray()
    err = bytearray()
    try:
        sock = api.attach_socket(container_id, params={"stdin": 1 if wants_stdin else 0, "stdout": 1,
                                                       "stderr": 1, "stream": 1})
    except docker.errors.APIError as exc:  # Podman prepares the container here: a bad --user fails now
        raise could_not_start(exc) from None
    raw = getattr(sock, "_sock", sock)
    with contextlib.suppress(Exception):
        raw.settimeout(None)  # a quiet workload is not a dead engine
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        raise could_not_start(exc) from None
    feeder = start_stdin(raw, spec) if wants_stdin else None
    first = bytearray()  # the start of its error output: an init that could not start the command says so

    def heard(chunk: bytes, stream: OutputStream) -> None:
        if len(first) < 512 and (stream == "stderr" or spec.tty):
            first.extend(chunk[:512])
        if on_output is not None:
            on_output(chunk, stream)
        else:
            (err if stream == "stderr" else out).extend(chunk)

    reader = OutputReader(sock, spec.tty, heard, out, err)
    reader.start()
    try:
        while not reader.finished.wait(0.2):  # the main thread waits where Ctrl-C can reach it
            pass
    except KeyboardInterrupt:
        interrupt(api, container_id, reader)
        raise
    finally:
        with contextlib.suppress(Exception):
            sock.close()
    if isinstance(reader.failure, KeyboardInterrupt):  # raised by the on_output callback
        interrupt(api, container_id, reader)
        raise reader.failure
    if reader.failure is not None:
        raise reader.failure
    if feeder is not None:
        feeder.join(timeout=1)
    status = api.wait(container_id)
    state = api.inspect_container(container_id).get("State", {})
    code = int(status.get("StatusCode", -1))
    if spec.init and code == 1:
        code = _init.exec_failure(bytes(first)) or code  # catatonit's 1 for "no such command" is 127 elsewhere
    return RunResult(exit_code=code, stdout=bytes(out), stderr=bytes(err),
                     oom_killed=bool(state.get("OOMKilled")), container_id=container_id)


def interrupt(api: Any, container_id: str, reader: OutputReader) -> None:
    """Ctrl-C: pass SIGINT to the workload and keep streaming what it prints while it shuts down,
    for a grace period; a second Ctrl-C, or the end of the grace period, stops it for good."""
    with contextlib.suppress(Exception):
        api.kill(container_id, signal="SIGINT")
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while not reader.finished.wait(0.2) and time.monotonic() < deadline:
            pass
    except KeyboardInterrupt:
        pass
    if not reader.finished.is_set():
        with contextlib.suppress(Exception):
            api.kill(container_id)
