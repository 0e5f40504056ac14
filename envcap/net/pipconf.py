"""pip's own settings for an interpreter, read the way pip reads them, without running pip.

Why host-side and not in the probe: the settings decide where envcap's own requests go (the index,
its CA bundle, the proxy, credentials), and the probe's report is written into the lock, which must
never hold a password. So the one reader lives here: it returns the settings with credentials for
the requests, and :meth:`PipSettings.redacted` is what the lock records.

pip's rules, followed here (pip/_internal/configuration.py and cli/parser.py):

- files, lowest priority first: global (``$XDG_CONFIG_DIRS/pip/pip.conf`` then ``/etc/pip.conf``),
  user (``~/.pip/pip.conf`` then ``$XDG_CONFIG_HOME/pip/pip.conf``; skipped when ``PIP_CONFIG_FILE``
  names a file that exists), site (``PREFIX/pip.conf`` of the target interpreter), then
  ``PIP_CONFIG_FILE``; ``PIP_CONFIG_FILE=/dev/null`` (os.devnull) means no file at all;
- a key in ``[install]`` of any file beats the same key in ``[global]`` of any file, and ``PIP_*``
  variables beat both; a later value replaces an earlier one whole (lists too); empty values are
  ignored; names are compared lower-case with ``_`` as ``-``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envcap.lock.records import PipConfig
from envcap.net import (
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    ClientConfig,
    redact,
    split_credentials,
    strip_credentials,
)

# The settings envcap uses, by pip's option name; aliases map to it (``-i``'s long forms).
KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "cert", "client-cert", "trusted-host", "proxy")
ALIASES = {"pypi-url": "index-url"}
LIST_KEYS = frozenset({"extra-index-url", "find-links", "trusted-host"})
SECTIONS = ("global", "install")  # lowest priority first; pip adds the command's own section last
TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE = frozenset({"n", "no", "f", "false", "off", "0"})


@dataclass(frozen=True, repr=False)
class PipSettings:
    """What pip would use for ``pip install`` in the target. URLs keep their credentials: never write them.

    ``problems`` are sentences for the snapshot's warnings (a file that could not be parsed, a value
    pip would refuse); like every other field shown anywhere, they name paths, never contents.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    proxy: str | None = None
    sources: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"PipSettings(index_url={redact(self.index_url or '')!r}, "
                f"extra_index_urls={tuple(redact(u) for u in self.extra_index_urls)!r}, "
                f"find_links={tuple(redact(u) for u in self.find_links)!r}, no_index={self.no_index!r}, "
                f"sources={self.sources!r})")

    def redacted(self) -> PipConfig:
        """The lock's record: the same settings with every credential removed."""
        return PipConfig(
            index_url=strip_credentials(self.index_url) if self.index_url else None,
            extra_index_urls=tuple(strip_credentials(u) for u in self.extra_index_urls),
            find_links=tuple(strip_credentials(u) for u in self.find_links),
            no_index=self.no_index,
            sources=self.sources,
        )

    def client_config(self, environ: Mapping[str, str] | None = None, *, timeout: float | None = None,
                      pool_size: int | None = None) -> ClientConfig:
        """How envcap's client reaches the indexes these settings name, as pip's session would.

        The CA bundle: pip's ``cert``, else REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (requests reads them),
        else OpenSSL's defaults (which honour SSL_CERT_FILE). Credentials: the userinfo of the index
        and find-links URLs, by host; a ``.netrc`` (``$NETRC`` or ``~/.netrc``) for the same hosts.
        """
        import urllib.parse

        env = os.environ if environ is None else environ
        credentials: dict[str, tuple[str, str, str]] = {}
        hosts: list[str] = []
        for url in (self.index_url, *self.extra_index_urls, *self.find_links):
            if not url or "://" not in url:
                continue
            clean, auth = split_credentials(url)
            parts = urllib.parse.urlsplit(clean)
            if parts.hostname:
                hosts.append(parts.hostname.lower())
            if auth is not None and parts.netloc.lower() not in credentials:
                credentials[parts.netloc.lower()] = (parts.netloc.lower(), auth[0], auth[1])
        bundle = self.cert or env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None
        home = env.get("HOME") or os.path.expanduser("~")
        return ClientConfig(ca_bundle=bundle, client_cert=self.client_cert, trusted_hosts=self.trusted_hosts,
                            proxy=self.proxy, credentials=tuple(credentials.values()),
                            netrc_file=env.get("NETRC") or os.path.join(home, ".netrc"),
                            netrc_default_hosts=tuple(dict.fromkeys(hosts)),
                            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                            pool_size=DEFAULT_POOL_SIZE if pool_size is None else pool_size)


def config_files(prefix: str | None, environ: Mapping[str, str]) -> list[tuple[str, Path]]:
    """(kind, path) in pip's loading order; an empty list for ``PIP_CONFIG_FILE=/dev/null``."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file is not None and env_file == os.devnull:
        return []
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "")
    if not xdg_dirs.strip():
        xdg_dirs = "/etc/xdg"
    files = [("global", Path(d) / "pip" / "pip.conf") for d in xdg_dirs.split(os.pathsep) if d]
    files.append(("global", Path("/etc/pip.conf")))
    if not (env_file and os.path.exists(env_file)):
        xdg_home = environ.get("XDG_CONFIG_HOME", "")
        user_dir = Path(xdg_home) if xdg_home.strip() else home / ".config"
        files += [("user", home / ".pip" / "pip.conf"), ("user", user_dir / "pip" / "pip.conf")]
    if prefix:
        files.append(("site", Path(prefix) / "pip.conf"))
    if env_file:
        files.append(("env", Path(env_file)))
    return files


def _normalize(name: str) -> str:
    name = name.lower().replace("_", "-")
    name = name[2:] if name.startswith("--") else name
    return ALIASES.get(name, name)


def read_pip_settings(prefix: str | None = None, environ: Mapping[str, str] | None = None) -> PipSettings:
    """pip's settings for an interpreter whose ``sys.prefix`` is ``prefix``, in this environment.

    Never raises for bad input: a file that cannot be read or parsed, or a value pip would refuse,
    becomes a sentence in ``problems`` that names the file or the key, never its content.
    """
    import configparser

    env = os.environ if environ is None else environ
    # "section.key" -> (value, source); a later file replaces an earlier one's value (pip's override order)
    merged: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for _kind, path in config_files(prefix, env):
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (configparser.Error, OSError, UnicodeDecodeError, ValueError):
            # configparser's message quotes the offending line, which may hold a password
            problems.append(f"could not parse {path}; pip would refuse it, and envcap ignored it.")
            continue
        for section in parser.sections():
            for key, value in parser.items(section, raw=True):
                merged[f"{section.lower()}.{_normalize(key)}"] = (value, str(path))
    for name, value in env.items():
        if name.startswith("PIP_") and name not in ("PIP_CONFIG_FILE",):
            merged[f":env:.{_normalize(name[4:])}"] = (value, f"env:{name}")
    values: dict[str, tuple[str, str]] = {}
    for section in (*SECTIONS, ":env:"):
        for key in KEYS:
            found = merged.get(f"{section}.{key}")
            if found is not None and found[0].strip():
                values[key] = found
    return _settings(values, problems)


def _settings(values: Mapping[str, tuple[str, str]], problems: list[str]) -> PipSettings:
    def text(key: str) -> str | None:
        found = values.get(key)
        return found[0].strip() if found else None

    def items(key: str) -> tuple[str, ...]:
        found = values.get(key)
        return tuple(found[0].split()) if found else ()

    no_index = False
    raw_no_index = text("no-index")
    if raw_no_index is not None:
        if raw_no_index.lower() in TRUE:
            no_index = True
        elif raw_no_index.lower() not in FALSE:
            problems.append(f"pip's no-index setting (from {values['no-index'][1]}) is not a yes/no value; "
                            "envcap took it as no.")
    index_url = items("index-url")
    sources = tuple(dict.fromkeys(source for _, source in values.values()))
    return PipSettings(
        index_url=index_url[0] if index_url else None,
        extra_index_urls=items("extra-index-url"),
        find_links=items("find-links"),
        no_index=no_index,
        cert=text("cert"),
        client_cert=text("client-cert"),
        trusted_hosts=items("trusted-host"),
        proxy=text("proxy"),
        sources=sources,
        problems=tuple(problems),
    )


def is_secure_origin(url: str, trusted_hosts: Sequence[str]) -> bool:
    """pip's rule for index and find-links URLs: https, file, localhost, or a host the user trusts."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("https", "file", ""):
        return True
    host = (parts.hostname or "").lower()
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    for entry in trusted_hosts:
        trusted = urllib.parse.urlsplit(f"//{entry.strip()}")
        if (trusted.hostname or "").lower() == host:
            return True
    return False


__all__ = ["PipSettings", "config_files", "is_secure_origin", "read_pip_settings"]
