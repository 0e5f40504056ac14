"""Local stand-ins for the network: an index served from a thread (HTTP or HTTPS), a CONNECT proxy.

Why real sockets and not a fake client: proxies, TLS, gzip, redirects and credentials are the part
of envcap.net that can go wrong, and only a socket shows what actually went over the wire.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import select
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# path -> (status, headers, body); a callable gets the request handler and returns the same
Route = tuple[int, dict[str, str], bytes] | Callable[["_Handler"], tuple[int, dict[str, str], bytes]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class LocalIndex:
    """A threaded HTTP(S) server with fixed routes; it records every request it answers."""

    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    require_auth: str | None = None  # "user:password": anything else gets 401
    url: str = ""
    server: http.server.ThreadingHTTPServer | None = None

    def simple_json(self, name: str, files: list[tuple[str, bytes]], base: str = "../../files/") -> bytes:
        """A PEP 691 page for ``name`` listing ``files`` (filename, content), each with its real sha256."""
        entries = [{"filename": filename, "url": f"{base}{filename}", "size": len(content),
                    "hashes": {"sha256": hashlib.sha256(content).hexdigest()}} for filename, content in files]
        for filename, content in files:
            self.routes[f"/files/{filename}"] = (200, {"Content-Type": "application/octet-stream"}, content)
        page = json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": entries}).encode()
        self.routes[f"/simple/{name}/"] = (200, {"Content-Type": "application/vnd.pypi.simple.v1+json"}, page)
        return page


class _Handler(http.server.BaseHTTPRequestHandler):
    index: LocalIndex
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        index = self.index
        index.seen.append(Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        if index.require_auth is not None:
            import base64

            expected = "Basic " + base64.b64encode(index.require_auth.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, {"WWW-Authenticate": 'Basic realm="index"'}, b"login please")
                return
        route = index.routes.get(self.path)
        if route is None:
            self._send(404, {}, b"not here")
            return
        status, headers, body = route(self) if callable(route) else route
        self._send(status, headers, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def gzipped(body: bytes, headers: dict[str, str] | None = None) -> Callable[[_Handler], tuple[int, dict[str, str], bytes]]:
    """A route that answers gzip-compressed when the client asks for it, and plain otherwise."""

    def route(handler: _Handler) -> tuple[int, dict[str, str], bytes]:
        if "gzip" in (handler.headers.get("Accept-Encoding") or ""):
            return 200, {**(headers or {}), "Content-Encoding": "gzip"}, gzip.compress(body)
        return 200, dict(headers or {}), body

    return route


@contextmanager
def serve_index(tls: TlsFiles | None = None, host: str = "127.0.0.1") -> Iterator[LocalIndex]:
    index = LocalIndex()
    handler = type("Handler", (_Handler,), {"index": index})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    index.server = server
    index.url = f"{scheme}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what a client trusts (pip's `cert`)
    cert: Path  # the server's certificate, signed by ca, for 127.0.0.1 and localhost
    key: Path


def make_tls_files(folder: Path) -> TlsFiles | None:
    """A private CA and a server certificate signed by it (openssl CLI); None where openssl is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                   "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n", "utf-8")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
         "-subj", "/CN=envcap test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", "2", "-extfile", str(ext)],
    ]
    try:
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return TlsFiles(ca=ca, cert=cert, key=key)


@dataclass
class ConnectProxy:
    """A CONNECT proxy on 127.0.0.1 that records the targets it was asked for.

    ``refuse``: None tunnels; a status line such as "403 Forbidden" refuses every CONNECT with it.
    """

    refuse: str | None = None
    tunnelled: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every request line, CONNECT or not
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@contextmanager
def serve_proxy(refuse: str | None = None) -> Iterator[ConnectProxy]:
    proxy = ConnectProxy(refuse=refuse)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            text, _, rest = head.partition(b"\r\n\r\n")
            lines = text.decode("latin-1").split("\r\n")
            proxy.requests.append(lines[0])
            proxy.headers.append({k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])})
            method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if proxy.refuse:
                client.sendall(f"HTTP/1.1 {proxy.refuse}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            proxy.tunnelled.append(target)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            _pipe(client, upstream)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 10)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
