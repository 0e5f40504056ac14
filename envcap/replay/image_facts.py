"""What the probe says about an image, kept by image so that a replay need not start a second container.

Why: snapshot B used to cost a container of its own beside the workload's, about half of a replay's
overhead over ``docker run`` on a small machine. An image never changes under its id, and nearly
everything the probe reports is decided by its files and by how the container is started (the
interpreter, the distributions, pip's settings, the CUDA and BLAS libraries, the compilers, the
numerics variables). The rest is decided by the machine (``HOST_SECTIONS``: the kernel, the CPU,
the GPUs) and is read again for every replay, inside the workload's own container, by the probe's
own readers (``envcap/workload/launch.py``); ``with_host`` puts the two together.

What a kept reading is keyed by, so that a different answer is never taken for the same one: the
engine, the image id, the probe script's own digest and arguments, and every option of the run
that the probe sees (variables, user, working folder, mounts, init). The key is a digest: no
variable's value is written.

What is never kept, because it could change while the key stays the same:
- readings that name a path at or under a mounted folder, or that searched one for distributions:
  mounted files are the host's and change between replays;
- readings where a reader failed (``unavailable`` outside the host's sections) or a tool found on
  ``PATH`` gave no version: the failure may have been passing (a time-out), and keeping it would
  repeat it in every later replay;
- deep readings (``--deep``: thread pools and the framework's runtime state follow the CPUs and
  GPUs) and GPU replays (the probe runs before the workload there anyway): the caller keeps
  those out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from envcap import _log
from envcap.engine import ContainerEngine, RunSpec
from envcap.errors import EnvcapError
from envcap.fs import atomic_write, cache_dir
from envcap.probe import probe_source
from envcap.probe._probe import HOST_SECTIONS
from envcap.replay.container_probe import ProbeJob, probe_argv
from envcap.replay.image import ReplayImage

LOGGER = _log.get("replay")
FORMAT = 1  # bump when what is kept, or how it is keyed, changes meaning
FOLDER = "replay-image-facts"
Facts = dict[str, Any]


def cache_key(endpoint: str, spec: RunSpec, probe_argv: Iterable[str], probe_source: str) -> str:
    """The digest of everything that decides the probe's answer in this image, the machine left out."""
    document = {
        "format": FORMAT,
        "endpoint": endpoint,
        "image": spec.image,
        "probe": hashlib.sha256(probe_source.encode("utf-8")).hexdigest(),
        "argv": list(probe_argv),
        "entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "env": sorted(spec.env.items()),
        "user": spec.user,
        "workdir": spec.workdir,
        "mounts": [[m.source, m.target, m.read_only] for m in spec.mounts],
        "gpus": spec.gpus,
        "init": spec.init,
        "network_disabled": spec.network_disabled,
    }
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _path(key: str, root: Path | None) -> Path:
    return (root or cache_dir()) / FOLDER / f"{key[:40]}.json"


def load(key: str, *, root: Path | None = None) -> Facts | None:
    """The image's facts kept under ``key``, or None (never kept, unreadable, or another key's)."""
    try:
        data = json.loads(_path(key, root).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    facts = data.get("facts")
    if not isinstance(facts, dict) or not isinstance(facts.get("python"), dict):
        return None
    return facts


def store(key: str, facts: Facts, *, root: Path | None = None) -> None:
    """Keeps the image's part of a reading (``image_part``); a cache that cannot be written only costs time."""
    try:
        atomic_write(_path(key, root), json.dumps({"format": FORMAT, "key": key, "facts": facts}, sort_keys=True))
    except EnvcapError as exc:
        LOGGER.debug("cannot keep the image's facts: %s", exc.message)


def forget(key: str, *, root: Path | None = None) -> None:
    try:
        _path(key, root).unlink()
    except OSError:
        pass


def _host_probe(name: str) -> bool:
    """Whether an ``unavailable`` entry comes from a reader of the machine (``gpu``, ``gpu[0].ecc_mode``...)."""
    return any(name == section or name.startswith((f"{section}.", f"{section}[")) for section in HOST_SECTIONS)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _under(path: str, folders: Iterable[str]) -> bool:
    candidate = PurePosixPath(path)
    return any(candidate == PurePosixPath(folder) or PurePosixPath(folder) in candidate.parents for folder in folders)


def image_part(facts: Mapping[str, Any], mount_targets: Iterable[str]) -> Facts | None:
    """The reading without the machine's sections, or None with the reason logged when it must not be kept.

    ``facts`` is the probe's raw answer with ``search_path`` (``--search-path``).
    """
    targets = list(mount_targets)
    search_path = facts.get("search_path")
    kept: Facts = {name: value for name, value in facts.items() if name not in (*HOST_SECTIONS, "search_path")}
    unavailable = [entry for entry in facts.get("unavailable") or [] if isinstance(entry, dict)]
    kept["unavailable"] = [entry for entry in unavailable if not _host_probe(str(entry.get("probe", "")))]
    python = facts.get("python")
    why = None
    if not isinstance(search_path, list) or not all(isinstance(p, str) for p in search_path):
        why = "the probe did not say where it looked for distributions"
    elif not isinstance(python, dict) or not str(python.get("executable") or "").startswith("/"):
        why = "the probe did not name its interpreter by an absolute path"
    elif any(_under(p, targets) for p in search_path) or any(_under(s, targets) for s in _strings(kept)
                                                             if s.startswith("/")):
        why = "it reads files in a mounted folder, which may change"
    elif kept["unavailable"]:
        why = f"a reader failed ({kept['unavailable'][0].get('probe')}), perhaps only this time"
    elif any(isinstance(tool, dict) and tool.get("path") and not tool.get("version")
             for tool in (facts.get("toolchain") or {}).values()):
        why = "a compiler on PATH gave no version, perhaps only this time"
    if why:
        LOGGER.debug("the image's facts are not kept: %s", why)
        return None
    return kept


def with_host(image: Mapping[str, Any], host: Mapping[str, Any]) -> Facts:
    """A whole reading again: the image's kept part, the machine's sections read now (their failures too)."""
    facts: Facts = dict(image)
    for section in HOST_SECTIONS:
        facts[section] = host.get(section)
    kept = [entry for entry in image.get("unavailable") or [] if not _host_probe(str(entry.get("probe", "")))]
    fresh = [entry for entry in host.get("unavailable") or [] if isinstance(entry, dict)]
    facts["unavailable"] = kept + fresh
    return facts


def interpreter(image: Mapping[str, Any]) -> str:
    """The interpreter that ran the probe in the image (an absolute path): the launcher runs on it."""
    python = image.get("python")
    assert isinstance(python, dict)
    return str(python["executable"])


# -- what a replay does with them ------------------------------------------------------------
@dataclass(frozen=True)
class KeptFacts:
    """The image's part of snapshot B as an earlier replay read it (``image_facts``), and where it is kept."""

    key: str | None  # None: this replay's reading is not to be kept (deep, GPUs)
    facts: dict[str, Any] | None  # found under key, and usable: the launcher can read the machine's part

    @property
    def launcher(self) -> str | None:
        return interpreter(self.facts) if self.facts is not None else None


def kept_facts(engine: ContainerEngine, base: RunSpec, image: ReplayImage, *, deep: bool) -> KeptFacts:
    """The image's facts from an earlier replay with the same run options, when this replay can use them.

    Only for an image without an entrypoint of its own: the launcher, which reads the machine's
    facts, runs where that entrypoint would. Deep readings are never kept.
    """
    if deep:
        return KeptFacts(None, None)
    key = cache_key(engine.endpoint, base, probe_argv(deep=False), probe_source())
    facts = load(key)
    if facts is None:
        return KeptFacts(key, None)
    entrypoint = image.entrypoint
    if entrypoint is None:  # found by its label (a list does not say): ask
        info = engine.image(image.id)
        entrypoint = info.entrypoint if info is not None else None
    if entrypoint != ():
        LOGGER.debug("the image has an entrypoint of its own: probed beside the workload")
        return KeptFacts(key, None)
    LOGGER.debug("the image's facts as an earlier replay read them (%s); the machine's read by the launcher",
                 key[:12])
    return KeptFacts(key, facts)


def keep(kept: KeptFacts, probe: ProbeJob, base: RunSpec) -> None:
    """Keeps the image's part of what the probe read, for the next replay of this image with these options."""
    if kept.key is None or probe.facts is None:
        return
    part = image_part(probe.facts, [mount.target for mount in base.mounts])
    if part is not None:
        store(kept.key, part)
        LOGGER.debug("kept the image's facts for the next replay with these options (%s)", kept.key[:12])
