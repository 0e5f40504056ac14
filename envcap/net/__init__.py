"""envcap's one HTTP client: the index look-ups of ``snapshot`` and the downloads of ``build`` share it.

Why one: two stacks meant two behaviours (one bypassed ``HTTPS_PROXY``, one ignored pip's ``cert``),
and neither could say why a request failed. Here every request takes the same path: pip's CA bundle
or client certificate, ``trusted-host``, the proxy pip would pick (``HTTPS_PROXY``/``NO_PROXY`` or
pip's ``proxy``, through a CONNECT tunnel for HTTPS), credentials from the index URL or ``.netrc``
(sent, never logged: every URL in a log line or a message goes through :func:`redact`), gzip,
keep-alive pools shared by the worker threads, capped redirects, and one short reason per failure.

The client itself is ``envcap.net.client.HttpClient``; urllib3 is imported on its first request,
not with these modules: a warm snapshot makes none, and the import alone costs about a tenth of it.
pip's settings are read by ``envcap.net.pipconf``.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

LOG = logging.getLogger("envcap.net")

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_TIMEOUT = 20.0
# Connections per host at most: 12-16 fetched 150 simple pages as fast as curl on the bench machine;
# from about 20 on, its egress proxy sometimes held a request for 5 s. The resolver uses fewer on
# small machines (envcap.snapshot.hashes.default_workers).
DEFAULT_POOL_SIZE = 16
USER_AGENT = "envcap"

FailureKind = Literal["connect", "dns", "timeout", "proxy", "tls", "redirects", "protocol", "status", "local"]
# The failures that mean "nothing answered" (as opposed to an answer envcap could not use).
NO_ANSWER: frozenset[FailureKind] = frozenset({"connect", "dns", "timeout", "proxy", "tls"})

def redact(text: str) -> str:
    """``https://user:secret@host/x`` -> ``https://<redacted>@host/x``, anywhere in ``text``: the one
    redaction engine (``envcap.redact``), imported when first needed."""
    from envcap.redact import text as redact_text

    return redact_text(text)


def strip_credentials(url: str) -> str:
    """``https://user:secret@host/x`` -> ``https://host/x``: the form the lock records (it may be published)."""
    from envcap.probe._probe import strip_credentials as strip

    return strip(url)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without userinfo, and (user, password) when it had some (percent-decoded, as pip does)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return clean, (urllib.parse.unquote(user), urllib.parse.unquote(password))


class RequestFailed(Exception):
    """A request that got no usable answer, with one short reason safe to show (no credentials).

    Why not an EnvcapError: callers turn it into their own sentence (a per-package warning, an
    ``IndexUnreachable``, an ``ArtifactError``); it never reaches the command line as it is.
    """

    def __init__(self, kind: FailureKind, url: str, reason: str, *, proxy: str | None = None,
                 status: int | None = None) -> None:
        self.kind = kind
        self.url = redact(url)
        self.reason = redact(reason)
        self.proxy = redact(proxy) if proxy else None
        self.status = status
        super().__init__(f"{self.url}: {self.reason}")

    @property
    def no_answer(self) -> bool:
        """True when nothing answered at all (refused, unresolvable, proxy refusal, TLS, timeout)."""
        return self.kind in NO_ANSWER


@dataclass(frozen=True)
class Response:
    """A whole answer: the status and the (decoded) body of the last URL after redirects."""

    url: str
    status: int
    body: bytes
    content_type: str = ""


class Fetcher(Protocol):
    """What the resolver needs of a client (tests pass a fake)."""

    def get(self, url: str, *, accept: str = "*/*") -> Response: ...


class Downloader(Protocol):
    """What the wheelhouse needs of a client: the bytes as served, or RequestFailed."""

    def stream(self, url: str, chunk: int = 1 << 20) -> Iterator[bytes]: ...


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """How to reach hosts: pip's settings and the environment's, resolved once (see ``pipconf``).

    ``credentials`` maps a netloc (host[:port]) to (user, password) from the index URLs' userinfo;
    ``netrc_default_hosts`` are the index hosts that a ``default`` entry of .netrc may log in to
    (a ``machine`` entry applies to its own host wherever the request goes, as requests does).
    """

    ca_bundle: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    proxy: str | None = None  # pip's --proxy: wins over the environment's, as in pip
    credentials: tuple[tuple[str, str, str], ...] = ()
    netrc_file: str | None = None
    netrc_default_hosts: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    pool_size: int = DEFAULT_POOL_SIZE

    def __repr__(self) -> str:  # never the passwords
        return (f"ClientConfig(ca_bundle={self.ca_bundle!r}, client_cert={self.client_cert!r}, "
                f"trusted_hosts={self.trusted_hosts!r}, proxy={redact(self.proxy or '')!r}, "
                f"credentials=<{len(self.credentials)} hosts>, netrc_file={self.netrc_file!r})")


def proxy_for(url: str, pip_proxy: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy a request to ``url`` goes through, chosen as pip (requests) chooses it.

    pip's ``proxy`` setting applies to every URL; otherwise ``https_proxy``/``http_proxy`` (either case,
    lower case winning) or ``all_proxy`` apply unless ``no_proxy`` names the host.
    """
    if pip_proxy:
        return pip_proxy
    env = os.environ if environ is None else environ
    parts = urllib.parse.urlsplit(url)

    def variable(name: str) -> str | None:
        return env.get(name.lower()) or env.get(name.upper()) or None

    proxy = variable(f"{parts.scheme}_proxy") or variable("all_proxy")
    if not proxy or not parts.hostname:
        return None
    return None if bypasses_proxy(parts, variable("no_proxy") or "") else proxy


def bypasses_proxy(parts: urllib.parse.SplitResult, no_proxy: str) -> bool:
    """requests' NO_PROXY rules: ``*``, a host or domain suffix (``.corp``, ``corp``), ``host:port``, a CIDR."""
    import ipaddress

    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    for raw in no_proxy.replace(",", " ").split():
        entry = raw.lower().lstrip("*").lstrip(".")
        if raw == "*":
            return True
        if not entry:
            continue
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


__all__ = ["DEFAULT_POOL_SIZE", "MAX_REDIRECTS", "NO_ANSWER", "ClientConfig", "Downloader", "FailureKind", "Fetcher",
           "RequestFailed", "Response", "bypasses_proxy", "proxy_for", "redact",
           "split_credentials", "strip_credentials"]
