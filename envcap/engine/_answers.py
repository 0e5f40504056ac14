"""What the Docker API's answers mean, whichever engine gave them (Docker or Podman's socket).

Pure functions over the SDK's dicts and exceptions, apart from the client so they can be read and
tested alone: which engine answered, its explanation as one clause, image names as Docker spells
them, and a few words for a broken connection instead of urllib3's nested message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Literal

from envcap.engine import ImageInfo

EngineFlavour = Literal["docker", "podman"]


def flavour_of(version: Mapping[str, Any]) -> EngineFlavour:
    """Which engine answers the Docker API, from its ``/version``: Podman names itself in a component
    ("Podman Engine") and, in some versions, in the platform's name."""
    platform = version.get("Platform")
    names = [str(platform.get("Name", "")) if isinstance(platform, dict) else ""]
    names += [str(part.get("Name", "")) for part in version.get("Components") or () if isinstance(part, dict)]
    return "podman" if any("podman" in name.lower() for name in names) else "docker"


def said(exc: Any) -> str:
    """The engine's explanation of an API error as one clause: Podman's end in a newline, some in a period."""
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split())
    return text.rstrip(".") or type(exc).__name__


def familiar(tag: str) -> str:
    """``docker.io/library/envcap:x`` -> ``envcap:x``: Podman names Docker Hub images in full, Docker does not."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return tag


def split_ref(ref: str) -> tuple[str, str | None]:
    """``registry:5000/name:tag`` -> (``registry:5000/name``, ``tag``); a digest ref keeps its ``@``."""
    if "@" in ref:
        return ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


REASONS = (("connection refused", "connection refused"), ("no such file", "no such socket"),
           ("permission denied", "permission denied"), ("timed out", "timed out"), ("timeout", "timed out"),
           ("name or service not known", "unknown host"), ("nodename nor servname", "unknown host"),
           ("no such host", "unknown host"), ("ssl", "TLS handshake failed"),
           # an engine killed in the middle of an answer (urllib3's ProtocolError, a cut chunked stream)
           ("connection broken", "the connection broke off"), ("incompleteread", "the connection broke off"),
           ("connection aborted", "the connection broke off"), ("connection reset", "the connection broke off"),
           ("remote end closed", "the connection broke off"), ("chunkedencodingerror", "the connection broke off"),
           ("protocolerror", "the connection broke off"))


def short_reason(exc: BaseException) -> str:
    """A few words for the user instead of urllib3's nested retry message."""
    text = f"{exc} {type(exc).__name__}".lower()
    for needle, reason in REASONS:
        if needle in text:
            return reason
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return f"it answered HTTP {status}, so it is not a Docker-compatible engine"
    return type(exc).__name__


def image_info(data: dict[str, Any]) -> ImageInfo:
    config = data.get("Config") or {}
    return ImageInfo(id=str(data.get("Id", "")), tags=tuple(familiar(str(t)) for t in data.get("RepoTags") or ()),
                     labels=dict(config.get("Labels") or {}), size=data.get("Size"),
                     digests=tuple(str(d) for d in data.get("RepoDigests") or ()),
                     entrypoint=tuple(str(part) for part in config.get("Entrypoint") or ()))



def offers_gpus(info: Mapping[str, Any], *, local: bool) -> bool:
    """Whether the engine's ``/info`` shows a way to pass NVIDIA GPUs: an nvidia runtime, CDI devices it
    found (Docker 28+), or, on a local socket, an nvidia spec in its CDI folders."""
    runtimes = info.get("Runtimes") or {}
    if any("nvidia" in name for name in runtimes) or "nvidia" in str(info.get("DefaultRuntime", "")):
        return True
    for device in info.get("DiscoveredDevices") or []:
        if "nvidia.com/gpu" in str(device.get("ID", "")):
            return True
    for folder in (info.get("CDISpecDirs") or []) if local else []:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if "nvidia" in entry.name:
                    return True
    return False
