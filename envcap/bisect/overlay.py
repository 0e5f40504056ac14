"""An intermediate environment as one thin layer on A's image: some of B's wheels in, some of A's packages out.

Why a layer and not a full build per candidate: a full build installs every wheel again (half a minute for
scikit-learn's stack here); a layer on A's image installs only what differs (seconds), and Docker keeps A's
layers. Like ``envcap build`` it is hermetic and content-addressed: wheels come from the hash-checked cache,
pip installs them with ``--no-index --require-hashes``, and the image carries a digest of exactly what went in,
so the same candidate is never built twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envcap.build.wheelhouse import Wheelhouse, link_or_copy
from envcap.build.wheels import Choice
from envcap.engine import BuildEvent, ContainerEngine
from envcap.fs import atomic_write

OVERLAY_LABEL = "io.envcap.bisect-overlay"
BASE_LABEL = "io.envcap.bisect-base"  # the image the layer sits on, so a layer can be found (and removed) by it
OVERLAY_REPOSITORY = "envcap-bisect"
PIP_VENV = "/opt/envcap-overlay-pip"
# pip's own wheel, as Debian's python3-venv and the official python images ship it: run from the wheel, it costs
# a second where making a throwaway venv (ensurepip) costs five; the venv stays the fallback.
PIP_WHEELS = ("/usr/share/python-wheels/pip-*.whl", "/usr/local/lib/python3*/ensurepip/_bundled/pip-*.whl",
              "/usr/lib/python3*/ensurepip/_bundled/pip-*.whl")


@dataclass(frozen=True)
class Overlay:
    image_id: str
    tag: str
    built: bool  # False: found under its digest
    seconds: float


def overlay_digest(base_id: str, install: Sequence[Choice], remove: Sequence[str]) -> str:
    payload = {"format": 2, "base": base_id, "remove": sorted(remove),
               "install": sorted([c.name, c.version, c.artifact.filename, c.artifact.sha256.lower()] for c in install)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_overlay(base_id: str, venv: str, user: str, install: Sequence[Choice], remove: Sequence[str],
                   digest: str) -> str:
    steps = [f'PIP_WHEEL="$(ls {" ".join(PIP_WHEELS)} 2>/dev/null | head -n 1)"',
             f'if [ -n "$PIP_WHEEL" ]; then PIP="python3 $PIP_WHEEL/pip"; '
             f'else python3 -m venv {PIP_VENV} && PIP={PIP_VENV}/bin/pip; fi']
    pip = f"$PIP --python {venv}/bin/python"
    if remove:
        steps.append(f"{pip} uninstall --yes {' '.join(sorted(remove))}")
    if install:
        steps.append(f"{pip} install --no-cache-dir --no-index --no-deps --require-hashes "
                     "--find-links /envcap/overlay -r /envcap/overlay/requirements.txt")
    steps.append(f"rm -rf {PIP_VENV} /envcap/overlay")
    lines = [
        "# An intermediate environment of `envcap bisect`: A's image, with the packages below swapped.",
        f"FROM {base_id}",
        "USER root",
        "COPY overlay/ /envcap/overlay/",
        "RUN " + " \\\n && ".join(steps),
        f"USER {user}",
        f'LABEL "{OVERLAY_LABEL}"="{digest}"',
        "",
    ]
    return "\n".join(lines)


def overlay_requirements(install: Sequence[Choice]) -> str:
    lines = []
    for choice in sorted(install, key=lambda c: c.name):
        lines.append(f"{choice.name}=={choice.version} \\")
        lines.append(f"    --hash=sha256:{choice.artifact.sha256.lower()}")
    return "\n".join(lines) + "\n"


def build_overlay(engine: ContainerEngine, *, base_id: str, venv: str, user: str, install: Sequence[Choice],
                  remove: Sequence[str], wheelhouse: Wheelhouse, workdir: Path,
                  on_event: Callable[[BuildEvent], None] | None = None,
                  clock: Callable[[], float] = time.monotonic) -> Overlay:
    """The layer's image: found by its digest, else built from hash-checked wheels with no network."""
    started = clock()
    digest = overlay_digest(base_id, install, remove)
    tag = f"{OVERLAY_REPOSITORY}:{digest.split(':', 1)[1][:24]}"
    found = engine.image(tag)
    if found is not None and found.labels.get(OVERLAY_LABEL) == digest:
        return Overlay(found.id, tag, False, clock() - started)
    paths = wheelhouse.fetch([c.artifact for c in install])
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="overlay-", dir=workdir))
    try:
        for choice in install:
            source = paths[choice.artifact.sha256.lower()]
            link_or_copy(source, folder / "overlay" / source.name)
        (folder / "overlay").mkdir(exist_ok=True)
        atomic_write(folder / "overlay" / "requirements.txt", overlay_requirements(install))
        atomic_write(folder / "Dockerfile", render_overlay(base_id, venv, user, install, remove, digest))
        info = engine.build(folder, tag=tag, labels={OVERLAY_LABEL: digest, BASE_LABEL: base_id}, on_event=on_event)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Overlay(info.id, tag, True, clock() - started)


__all__ = ["BASE_LABEL", "OVERLAY_LABEL", "Overlay", "build_overlay", "overlay_digest", "overlay_requirements", "render_overlay"]
