"""envcap's HTTP client: sessions of pools over urllib3, redirects, TLS, proxies, credentials, failures.

Everything here runs on a cache miss only; urllib3, ssl and http.client are imported inside the
functions that need them, so importing this module costs a warm snapshot nothing.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

from envcap.net import (
    LOG,
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    USER_AGENT,
    ClientConfig,
    FailureKind,
    RequestFailed,
    Response,
    proxy_for,
    redact,
    split_credentials,
)

if TYPE_CHECKING:
    import netrc
    import ssl

    import urllib3


class _TlsKwargs(TypedDict, total=False):
    ssl_context: ssl.SSLContext
    cert_reqs: str
    assert_hostname: bool


class HttpClient:
    """Thread-safe; one per snapshot or build. Pools are made on the first request and kept."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self._lock = threading.Lock()
        self._direct: urllib3.PoolManager | None = None
        self._insecure: urllib3.PoolManager | None = None
        self._proxied: dict[tuple[str, bool], urllib3.ProxyManager] = {}
        self._ssl: ssl.SSLContext | None = None
        self._netrc: netrc.netrc | Literal[False] | None = False  # False: not read yet
        self._credentials = {netloc.lower(): (user, password) for netloc, user, password in self.config.credentials}

    # -- the public calls -------------------------------------------------------------------
    def get(self, url: str, *, accept: str = "*/*") -> Response:
        """The whole body of ``url`` (gzip asked for and undone), following up to MAX_REDIRECTS.

        An HTTP error status is an answer (returned); no answer raises RequestFailed.
        """
        if url.startswith("file:"):
            return self._get_file(url)
        started = time.perf_counter()
        response, final, via = self._open(url, {"Accept": accept}, compressed=True)
        try:
            body = response.data
        except _transport_errors() as exc:
            raise self._failure(final, exc, via) from None
        finally:
            response.release_conn()
        LOG.debug("GET %s -> %d, %d bytes in %.0f ms%s", redact(final), response.status, len(body),
                  (time.perf_counter() - started) * 1e3, f" via proxy {redact(via)}" if via else "")
        return Response(url=final, status=response.status, body=body,
                        content_type=response.headers.get("Content-Type", ""))

    def stream(self, url: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of ``url`` exactly as served (no content decoding: a hash is checked on them).

        Raises RequestFailed with kind "status" for an HTTP error, as a download has no use for one.
        """
        if url.startswith("file:"):
            path = _file_path(url)
            try:
                with open(path, "rb") as handle:
                    yield from iter(lambda: handle.read(chunk), b"")
            except OSError as exc:
                raise RequestFailed("local", url, exc.strerror or str(exc)) from None
            return
        started = time.perf_counter()
        response, final, via = self._open(url, {"Accept-Encoding": "identity"}, compressed=False)
        total = 0
        try:
            if response.status >= 400:
                raise RequestFailed("status", final, f"HTTP {response.status} {response.reason or ''}".strip(),
                                    proxy=via, status=response.status)
            try:
                for block in response.stream(chunk, decode_content=False):
                    total += len(block)
                    yield block
            except _transport_errors() as exc:
                raise self._failure(final, exc, via) from None
        finally:
            response.release_conn()
            LOG.debug("GET %s -> %d, %d bytes streamed in %.0f ms%s", redact(final), response.status, total,
                      (time.perf_counter() - started) * 1e3, f" via proxy {redact(via)}" if via else "")

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` would use, redacted (for messages)."""
        proxy = proxy_for(url, self.config.proxy)
        return redact(proxy) if proxy else None

    def close(self) -> None:
        with self._lock:
            managers = [m for m in (self._direct, self._insecure, *self._proxied.values()) if m is not None]
            self._direct = self._insecure = None
            self._proxied = {}
        for manager in managers:
            manager.clear()

    # -- requests ---------------------------------------------------------------------------
    def _open(self, url: str, headers: Mapping[str, str], *,
              compressed: bool) -> tuple[urllib3.BaseHTTPResponse, str, str | None]:
        """Sends GET, following redirects by hand: a cap, a clear error, credentials only where they belong."""
        from urllib3.util import make_headers

        current, inline = split_credentials(url)
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise RequestFailed("protocol", current, f"envcap cannot fetch {parts.scheme or 'relative'} URLs")
            send = {"User-Agent": USER_AGENT, **headers}
            if compressed:
                send.update(make_headers(accept_encoding=True))  # gzip, deflate (+ br, zstd if importable)
            auth = inline or self._auth_for(parts)
            if auth is not None:
                send.update(make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
            try:
                manager, via = self._manager_for(current)
            except RequestFailed as exc:  # a CA bundle or proxy setting that cannot be used: say for which URL
                raise RequestFailed(exc.kind, current, exc.reason, proxy=exc.proxy) from None
            try:
                response = manager.urlopen("GET", current, headers=send, redirect=False, retries=self._retries(),
                                           preload_content=False, decode_content=compressed,
                                           timeout=self._timeout())
            except _transport_errors() as exc:
                LOG.debug("GET %s failed: %r", redact(current), redact(repr(exc)))
                raise self._failure(current, exc, via) from None
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response, current, via
            response.drain_conn()
            response.release_conn()
            target, target_auth = split_credentials(urllib.parse.urljoin(current, location))
            LOG.debug("GET %s -> %d, redirected to %s", redact(current), response.status, redact(target))
            # credentials of the URL itself follow only to the same host (as requests strips them)
            same_host = urllib.parse.urlsplit(target).netloc.lower() == parts.netloc.lower()
            inline = target_auth or (inline if same_host else None)
            current = target
        raise RequestFailed("redirects", url, f"more than {MAX_REDIRECTS} redirects (last to {redact(current)})")

    def _get_file(self, url: str) -> Response:
        """A simple index or find-links page on disk: a folder answers with its index.html."""
        path = _file_path(url)
        try:
            try:
                body = (path / "index.html").read_bytes()  # the common case: a project's folder
            except (FileNotFoundError, NotADirectoryError):
                body = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            LOG.debug("GET %s -> 404 (no such file)", redact(url))
            return Response(url=url, status=404, body=b"")
        except OSError as exc:
            raise RequestFailed("local", url, exc.strerror or str(exc)) from None
        LOG.debug("GET %s -> 200, %d bytes from disk", redact(url), len(body))
        return Response(url=url, status=200, body=body)

    # -- connection set-up ------------------------------------------------------------------
    def _manager_for(self, url: str) -> tuple[urllib3.PoolManager, str | None]:
        import urllib3

        parts = urllib.parse.urlsplit(url)
        proxy = proxy_for(url, self.config.proxy)
        insecure = self._trusted(parts)
        with self._lock:
            if proxy:
                key = (proxy, insecure)
                manager = self._proxied.get(key)
                if manager is None:
                    manager = self._proxied[key] = self._make_proxy_manager(proxy, insecure, url)
                return manager, proxy
            if insecure:
                if self._insecure is None:
                    self._insecure = urllib3.PoolManager(num_pools=16, maxsize=self.config.pool_size, block=False,
                                                         **self._tls_kwargs(insecure=True))
                return self._insecure, None
            if self._direct is None:
                self._direct = urllib3.PoolManager(num_pools=16, maxsize=self.config.pool_size, block=False,
                                                   **self._tls_kwargs(insecure=False))
            return self._direct, None

    def _make_proxy_manager(self, proxy: str, insecure: bool, url: str) -> urllib3.ProxyManager:
        import urllib3

        clean, auth = split_credentials(proxy if "://" in proxy else f"http://{proxy}")
        scheme = clean.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise RequestFailed("proxy", url, f"envcap speaks to http and https proxies only, not {scheme}",
                                proxy=clean)
        proxy_headers = urllib3.make_headers(proxy_basic_auth=f"{auth[0]}:{auth[1]}") if auth else None
        return urllib3.ProxyManager(clean, num_pools=16, proxy_headers=proxy_headers,
                                    proxy_ssl_context=self._ssl_context(), maxsize=self.config.pool_size,
                                    block=False, **self._tls_kwargs(insecure=insecure))

    def _tls_kwargs(self, *, insecure: bool) -> _TlsKwargs:
        if insecure:
            import warnings

            from urllib3.exceptions import InsecureRequestWarning

            # the user named these hosts in trusted-host; pip does not warn about them either
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            return _TlsKwargs(cert_reqs="CERT_NONE", assert_hostname=False, ssl_context=self._insecure_context())
        return _TlsKwargs(ssl_context=self._ssl_context())

    def _ssl_context(self) -> ssl.SSLContext:
        """One context for every connection: loading a CA bundle costs ~20 ms, once, not per connection.

        pip's ``cert`` (or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, as requests reads them) replaces the
        default trust; without one, OpenSSL's defaults apply, which honour SSL_CERT_FILE/SSL_CERT_DIR.
        """
        if self._ssl is None:
            import ssl

            bundle = self.config.ca_bundle
            try:
                if bundle and os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                elif bundle:
                    context = ssl.create_default_context(cafile=bundle)
                else:
                    context = ssl.create_default_context()
                if self.config.client_cert:
                    context.load_cert_chain(self.config.client_cert)
            except (OSError, ssl.SSLError) as exc:
                what = "client certificate" if self.config.client_cert and bundle is None else "CA bundle"
                raise RequestFailed("tls", "", f"cannot load the {what} {self.config.client_cert or bundle}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
            self._ssl = context
        return self._ssl

    def _insecure_context(self) -> ssl.SSLContext:
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if self.config.client_cert:
            context.load_cert_chain(self.config.client_cert)
        return context

    def _trusted(self, parts: urllib.parse.SplitResult) -> bool:
        """pip's trusted-host: ``host`` for any port, ``host:port`` for that one."""
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for entry in self.config.trusted_hosts:
            trusted = urllib.parse.urlsplit(f"//{entry.strip()}")
            try:
                trusted_port = trusted.port
            except ValueError:
                continue
            if (trusted.hostname or "").lower() == host and trusted_port in (None, port):
                return True
        return False

    def _retries(self) -> urllib3.Retry:
        from urllib3.util import Retry

        # A refused or reset connection is tried again twice (pip tries 5 times, a snapshot has 150 of them).
        return Retry(total=3, connect=2, read=1, status=2, redirect=False, backoff_factor=0.1,
                     status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                     raise_on_status=False, raise_on_redirect=False)

    def _timeout(self) -> urllib3.Timeout:
        from urllib3.util import Timeout

        return Timeout(connect=min(self.config.timeout, 10.0), read=self.config.timeout)

    # -- credentials ------------------------------------------------------------------------
    def _auth_for(self, parts: urllib.parse.SplitResult) -> tuple[str, str] | None:
        """The index URL's userinfo for that host, else its .netrc entry (never logged)."""
        found = self._credentials.get(parts.netloc.lower())
        if found is None and parts.hostname:
            found = self._credentials.get(parts.hostname.lower())
        if found is not None:
            return found
        entries = self._read_netrc()
        if entries is None or not parts.hostname:
            return None
        host = parts.hostname.lower()
        entry = entries.hosts.get(host)
        if entry is None and host in self.config.netrc_default_hosts:
            entry = entries.hosts.get("default")
        if entry is None:
            return None
        login, _, password = entry
        return (login or "", password or "")

    def _read_netrc(self) -> netrc.netrc | None:
        if self._netrc is not False:  # read once; every request asks (without the lock after that)
            return self._netrc
        import netrc

        with self._lock:
            if self._netrc is False:
                entries = None
                path = self.config.netrc_file
                if path and os.path.isfile(path):
                    try:
                        entries = netrc.netrc(path)
                    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
                        # its content may be a password: the path is all a log line may show
                        LOG.debug("could not parse %s; no .netrc credentials are used", path)
                self._netrc = entries  # set once, whole: other threads read it without the lock
            return self._netrc

    # -- failures ---------------------------------------------------------------------------
    def _failure(self, url: str, exc: BaseException, proxy: str | None) -> RequestFailed:
        if isinstance(exc, RequestFailed):
            return exc
        kind, reason = describe_failure(exc, self.config.timeout)
        return RequestFailed(kind, url, reason, proxy=proxy)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request can raise: urllib3's family, the socket's and http.client's (never a bug of ours)."""
    import http.client

    from urllib3.exceptions import HTTPError

    return (HTTPError, OSError, http.client.HTTPException)


def describe_failure(exc: BaseException, timeout: float) -> tuple[FailureKind, str]:
    """One kind and one short reason for urllib3's nested exceptions (MaxRetryError(ProxyError(...)))."""
    import socket
    import ssl

    from urllib3 import exceptions as u3

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        nxt = current.original_error if isinstance(current, u3.ProxyError) else getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__ or current.__context__
            if nxt is None and current.args and isinstance(current.args[0], BaseException):
                nxt = current.args[0]
        current = nxt
    proxy = any(isinstance(e, u3.ProxyError) for e in chain)

    def first(*types: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, types)), None)

    cert = first(ssl.SSLCertVerificationError)
    if isinstance(cert, ssl.SSLCertVerificationError):
        return "tls", f"the TLS certificate is not trusted ({cert.verify_message or cert.reason})"
    if first(u3.NameResolutionError, socket.gaierror):
        host = next((getattr(getattr(e, "conn", None), "host", None) for e in chain
                     if isinstance(e, u3.NameResolutionError)), None)
        if proxy:
            return "proxy", "the proxy's host name does not resolve"
        return "dns", f"the host name {host} does not resolve" if host else "the host name does not resolve"
    if first(ConnectionRefusedError):
        return ("proxy", "the proxy refused the connection") if proxy else ("connect", "the connection was refused")
    tunnel = next((e for e in chain if proxy and isinstance(e, OSError) and "Tunnel connection failed" in str(e)), None)
    if tunnel is not None:
        return "proxy", f"the proxy refused the tunnel ({str(tunnel).split(':', 1)[1].strip()})"
    handshake = first(ssl.SSLError)
    if handshake is not None:
        return "tls", f"the TLS handshake failed ({getattr(handshake, 'reason', None) or _short(handshake)})"
    if any(isinstance(e, (u3.ConnectTimeoutError, u3.ReadTimeoutError, socket.timeout, TimeoutError))
           and not isinstance(e, u3.NewConnectionError) for e in chain):
        return ("proxy" if proxy else "timeout"), f"no answer within {timeout:g} s"
    last = chain[-1]
    if proxy:
        return "proxy", f"the proxy failed ({_short(last)})"
    if first(u3.NewConnectionError, ConnectionError):
        return "connect", f"the connection failed ({_short(last)})"
    return "protocol", _short(last)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    text = re.sub(r"<[^>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    text = re.sub(r"^HTTPS?Connection\(host=[^)]*\):\s*", "", text)
    return redact(text.strip())[:200]


def _file_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


__all__ = ["HttpClient", "describe_failure"]
