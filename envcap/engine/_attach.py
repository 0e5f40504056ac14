"""Streaming a container's stdio: the output reader thread and the stdin feeder.

Why threads, and why apart from the engine: Ctrl-C must reach the main thread while a container
streams, without cutting a multiplexed frame in half or losing the workload's last words; these
two pieces carry that subtlety and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import socket as _socket
import threading
from typing import Any

from envcap.engine import OutputCallback, OutputStream, RunSpec, keep_signals_for_the_main_thread


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
