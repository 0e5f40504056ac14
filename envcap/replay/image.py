"""Which image a replay runs in: ``--image``, the one an earlier replay of this lock used, or a build.

Why a memo: finding the image by the lock's digest is one engine call, while planning a build
(reading the lock, asking the base image) costs more than a replay's whole overhead target.
The memo is keyed by what decides the image: the lock's content and a ``--base-image`` override.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcap.engine import ContainerEngine
from envcap.errors import EnvcapError, ReplayError
from envcap.fs import atomic_write
from envcap.lock import Snapshot

if TYPE_CHECKING:  # the build's modules (jinja2, the wheel planner) load only when a replay must build
    from envcap.build.inputs import BuildProgress

REPLAYS = "replays"
IMAGE_MEMO = "image.json"


@dataclass(frozen=True)
class ReplayImage:
    reference: str
    id: str
    built: bool | None  # built by this replay; False: found; None: given with --image
    warnings: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None  # the image's own, () for none; None: not known yet


def resolve_image(engine: ContainerEngine, lock: Snapshot, folder: Path, *, image: str | None,
                  base_image: str | None, build_progress: BuildProgress | None = None) -> ReplayImage:
    if image:
        return _given(engine, image, lock)
    memo = _read_memo(folder)
    if memo and memo.get("lock_digest") == lock.digest and memo.get("base_image") == base_image:
        info = engine.image(str(memo.get("image_id")))
        if info is not None:
            return ReplayImage(str(memo.get("tag") or info.id), info.id, False, entrypoint=info.entrypoint)
    if base_image is None and lock.digest:
        # built earlier by `envcap build`: the newest image of this lock
        for info in engine.find_images(f"io.envcap.lock-digest={lock.digest}"):
            tag = info.tags[0] if info.tags else info.id
            _write_memo(folder, {"lock_digest": lock.digest, "image_id": info.id, "tag": tag, "base_image": None})
            return ReplayImage(tag, info.id, False, entrypoint=info.entrypoint)
    from envcap.build import BuildOptions, build

    result = build(folder, engine, BuildOptions(base_image=base_image), progress=build_progress)
    _write_memo(folder, {"lock_digest": lock.digest, "image_id": result.image_id, "tag": result.tag,
                         "base_image": base_image})
    return ReplayImage(result.tag, result.image_id, not result.cached)


def _given(engine: ContainerEngine, image: str, lock: Snapshot) -> ReplayImage:
    info = engine.image(image)
    if info is None:
        raise ReplayError(f"the engine at {engine.endpoint} has no image {image}.",
                          hint=f"pull it first (docker pull {image}), or leave out --image to build the "
                               "snapshot's image with envcap build")
    warnings = []
    built_from = info.labels.get("io.envcap.lock-digest")
    if built_from and lock.digest and built_from != lock.digest:
        warnings.append(f"{image} was built from another lock ({built_from[:19]}...), not from "
                        f"{lock.digest[:19]}...: the comparison is against this lock's snapshot")
    elif not built_from:
        warnings.append(f"{image} carries no envcap lock label, so it may not be the snapshot's image")
    return ReplayImage(image, info.id, None, tuple(warnings), entrypoint=info.entrypoint)


def _read_memo(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / REPLAYS / IMAGE_MEMO).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_memo(folder: Path, data: dict[str, Any]) -> None:
    """Remembers which image this lock was built into, so the next replay skips the build's planning."""
    try:
        atomic_write(folder / REPLAYS / IMAGE_MEMO, json.dumps(data, sort_keys=True) + "\n")
    except EnvcapError:
        pass  # only costs time next run
