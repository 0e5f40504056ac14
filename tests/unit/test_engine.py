"""Finding an engine, and the fake that stands in for it (no Docker needed here)."""

from __future__ import annotations

import inspect
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envcap.engine import ContainerEngine, candidate_endpoints, connect
from envcap.engine.docker_engine import DockerEngine, short_reason, split_ref
from envcap.engine.errors import EngineUnavailable
from tests.fakes import FakeEngine


def test_docker_host_is_the_only_place_looked_when_set() -> None:
    assert candidate_endpoints({"DOCKER_HOST": "tcp://build-box:2375"}) == ["tcp://build-box:2375"]


def test_without_docker_host_dockers_socket_then_podmans() -> None:
    found = candidate_endpoints({"XDG_RUNTIME_DIR": "/run/user/1234"})

    assert found == ["unix:///var/run/docker.sock", "unix:///run/user/1234/podman/podman.sock",
                     "unix:///run/podman/podman.sock"]


def test_no_engine_names_where_it_looked_and_how_to_start_one(tmp_path: Path) -> None:
    endpoint = f"unix://{tmp_path}/docker.sock"

    with pytest.raises(EngineUnavailable) as caught:
        connect(environ={"DOCKER_HOST": endpoint})

    assert endpoint in caught.value.message
    assert caught.value.hint and "dockerd" in caught.value.hint and "DOCKER_HOST" in caught.value.hint
    assert caught.value.exit_code == 7


@pytest.fixture
def not_an_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket that answers HTTP with garbage: something listens, but it is no engine."""
    path = tmp_path / "odd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join(2)
    server.close()


def test_a_socket_that_is_no_engine_is_reported_as_unavailable(not_an_engine: str) -> None:
    with pytest.raises(EngineUnavailable, match="cannot reach a container engine: looked at unix://"):
        connect(environ={"DOCKER_HOST": not_an_engine}, timeout=5)


@pytest.mark.parametrize("ref, expected", [
    ("envcap:abc", ("envcap", "abc")),
    ("envcap", ("envcap", None)),
    ("registry.local:5000/team/env:v1", ("registry.local:5000/team/env", "v1")),
    ("registry.local:5000/team/env", ("registry.local:5000/team/env", None)),
    ("img@sha256:" + "a" * 64, ("img@sha256:" + "a" * 64, None)),
])
def test_split_ref(ref: str, expected: tuple[str, str | None]) -> None:
    assert split_ref(ref) == expected


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_fake_and_docker_engines_offer_every_protocol_method() -> None:
    wanted = _public_methods(ContainerEngine)  # type: ignore[type-abstract]

    for implementation in (FakeEngine, DockerEngine):
        offered = _public_methods(implementation)
        missing = set(wanted) - set(offered)
        assert not missing, f"{implementation.__name__} lacks {missing}"
        for name, signature in wanted.items():
            assert list(offered[name].parameters) == list(signature.parameters), (implementation.__name__, name)


def test_nothing_touches_docker_at_import_time() -> None:
    import subprocess
    import sys

    code = ("import sys, envcap.engine, envcap.engine.docker_engine, envcap.build, envcap.cli.build; "
            "print('docker' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("error, reason", [
    (ConnectionError("('Connection aborted.', PermissionError(13, 'Permission denied'))"), "permission denied"),
    (ConnectionError("HTTPConnectionPool(host='x', port=1): Max retries exceeded (Connection refused)"),
     "connection refused"),
    (FileNotFoundError(2, "No such file or directory"), "no such socket"),
    (ValueError("something new"), "ValueError"),
])
def test_engine_failures_are_told_in_a_few_words(error: Exception, reason: str) -> None:
    assert short_reason(error) == reason
    engine = DockerEngine("unix:///var/run/docker.sock")
    message = engine._unavailable(error)
    assert message.message == f"cannot reach the container engine at unix:///var/run/docker.sock: {reason}."
    assert ("docker group" in (message.hint or "")) == (reason == "permission denied")


class _Engine:
    """A unix socket that answers like an engine: ``/_ping`` (with or without ``Api-Version``), ``/version``,
    and 404 for anything else; it records the paths asked."""

    def __init__(self, path: Path, api_version: str | None) -> None:
        import http.server
        import socketserver

        self.paths: list[str] = []
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                engine.paths.append(self.path)
                status, body, headers = 404, b'{"message": "no such image"}', {}
                if self.path == "/_ping" or self.path.endswith("/_ping"):
                    status, body = 200, b"OK"
                    headers = {"Api-Version": api_version} if api_version else {}
                elif self.path == "/version":
                    status, body = 200, b'{"ApiVersion": "1.39"}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json" if status != 200 or "version" in self.path
                                 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
                pass

            def address_string(self) -> str:
                return "unix"

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("header, asked", [
    ("1.40", ["/_ping", "/v1.40/_ping", "/v1.40/images/img/json"]),  # the ping names the version: no /version
    (None, ["/_ping", "/version", "/v1.39/_ping", "/v1.39/images/img/json"]),  # an engine that does not: asked
])
def test_the_api_version_comes_from_the_first_ping(tmp_path: Path, header: str | None, asked: list[str]) -> None:
    server = _Engine(tmp_path / "engine.sock", header)
    try:
        engine = DockerEngine(f"unix://{tmp_path / 'engine.sock'}", timeout=5)
        engine.ping()  # the first contact: makes the client
        engine.ping()  # an existing client pings
        assert engine.image("img") is None
        engine.close()
    finally:
        server.close()
    assert server.paths == asked
