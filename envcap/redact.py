"""The one redaction engine, for every output: locks, Dockerfiles, labels, reports, logs, messages.

Why it lives in the probe script: the probe runs in interpreters where envcap is not installed
(containers, cluster nodes) and must already redact what it reads; envcap then applies the very
same functions to everything it writes, so there is one set of rules to test and to extend.
"""

from __future__ import annotations

import re
from typing import Any

from envcap.probe._probe import (
    REDACTED,
    looks_random,
    may_hold_secret,
    redact_argv,
    redact_text,
    redact_value,
    strip_credentials,
)

_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+\.[A-Za-z]{2,}|[A-Za-z0-9-]+):(?!//)(.+)$")


def text(value: str) -> str:
    return redact_text(value)


def value(name: str, raw: str) -> str:
    return redact_value(name, raw)


def argv(args: list[str] | tuple[str, ...]) -> list[str]:
    return redact_argv(list(args))


_VARIABLE_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Fields that hold one URL: credentials are dropped whole, so the URL stays usable.
URL_FIELDS = frozenset({"url", "index_url", "remote", "index_urls", "extra_index_urls", "find_links"})


def document(data: Any) -> Any:
    """Every string of a JSON-shaped value redacted; a variable's value (a key like ``HF_TOKEN``) by its name too."""
    if isinstance(data, str):
        return redact_text(data)
    if isinstance(data, dict):
        return {str(k): _field(str(k), v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [document(item) for item in data]
    return data


def _field(key: str, item: Any) -> Any:
    if key in URL_FIELDS:
        if isinstance(item, str):
            return strip_credentials(item)
        if isinstance(item, list):
            return [strip_credentials(u) if isinstance(u, str) else document(u) for u in item]
    if isinstance(item, str) and _VARIABLE_NAME.fullmatch(key):
        return redact_value(key, item)
    return document(item)


def public_source(remote: str | None) -> str | None:
    """What a git remote may say in an image label: an http(s) URL with no user, token or local path.

    ``git@github.com:org/repo.git`` becomes ``https://github.com/org/repo.git``; a local path, a
    ``file://`` URL or an scp-like remote with an absolute path (someone's home) gives None.
    """
    if not remote:
        return None
    remote = remote.strip()
    if re.search(r"[\s\"'<>\\`\x00-\x1f\x7f]", remote):
        return None  # not a URL anyone would write; it never reaches a label
    if remote.startswith(("https://", "http://")):
        cleaned = redact_text(remote)
        cleaned = re.sub(r"^(https?://)[^/@]*@", r"\1", cleaned)  # no user name either, redacted or not
        cleaned = re.split(r"[?#;]", cleaned, maxsplit=1)[0]  # no query, fragment or ;parameters at all
        return cleaned if REDACTED not in cleaned else None
    if remote.startswith("ssh://"):
        host_path = re.sub(r"^ssh://(?:[^/@]*@)?", "", remote)
        host, _, path = host_path.partition("/")
        host = host.split(":", 1)[0]
        return f"https://{host}/{path}" if host and path and not path.startswith("~") else None
    match = _SCP_LIKE.match(remote)
    if match and "." in match.group(1) and not match.group(2).startswith(("/", "~")):
        return f"https://{match.group(1)}/{match.group(2)}"
    return None





def lock_document(data: dict[str, Any]) -> dict[str, Any]:
    """A lock's JSON with every string redacted; artifact records (thousands, from an index) cheaply.

    Why a fast path for artifacts: a file name and a sha256 cannot hold a credential once validated,
    and a URL that no rule could match (no userinfo, no ``key=value``, no token shape) is kept whole;
    a ``;token=`` parameter once slipped past a narrower check (userinfo, query, fragment only).
    """
    out = {key: document(value) for key, value in data.items() if key != "distributions"}
    dists = data.get("distributions")
    if isinstance(dists, list):
        out["distributions"] = [
            {key: (_artifacts(value) if key == "artifacts" else document(value)) for key, value in dist.items()}
            if isinstance(dist, dict) else document(dist) for dist in dists]
    elif "distributions" in data:
        out["distributions"] = document(dists)
    return out


def _artifacts(items: Any) -> Any:
    if not isinstance(items, list):
        return document(items)
    cleaned = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("url"), str) and not may_hold_secret(item["url"]):
            cleaned.append(item)
        else:
            cleaned.append(document(item))
    return cleaned


__all__ = ["REDACTED", "argv", "document", "lock_document", "looks_random", "public_source", "text", "value"]
