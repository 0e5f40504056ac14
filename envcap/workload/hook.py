"""The host side of the replay hook: put it in a folder the container mounts, read what it wrote.

Why ``sitecustomize`` on ``PYTHONPATH`` rather than a ``.pth`` file: a ``.pth`` is read only in
site directories, and the image's site-packages must not be modified by a replay; a folder on
``PYTHONPATH`` is searched before site-packages, so Python imports our ``sitecustomize`` first, and
the hook imports the image's own one after it (see ``sitecustomize.py``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

HOOK_SOURCE = Path(__file__).with_name("sitecustomize.py")
LAUNCH_SOURCE = Path(__file__).with_name("launch.py")
PROBE_SOURCE = Path(__file__).parent.parent / "probe" / "_probe.py"
MOUNT_TARGET = "/envcap-hook"
HOST_FACTS = "host-facts.json"  # what launch.py read of the machine
# The launcher's own folder: not importable by name (a hyphen), so the workload, which has the hook folder on
# PYTHONPATH, can never import the launcher or the probe as ``launch`` or ``_probe``.
LAUNCH_FOLDER = "envcap-launch"
# The same names as in sitecustomize.py, which runs alone in the workload (importing it here would run it).
OUT_ENV = "ENVCAP_HOOK_OUT"
ROOT_ENV = "ENVCAP_PROJECT_ROOT"


def install(folder: Path, *, uid: int | None = None, gid: int | None = None, launcher: bool = False) -> Path:
    """Copies the hook into ``folder`` (created), owned by the container's user so it can write there;
    ``launcher``: the launcher and the probe it reads the machine with too (see ``launch_command``).

    Why the chown: when envcap runs as root but the workload as another user (``--user``), a
    root-owned 0700 folder would be neither readable nor writable inside the container.
    """
    folder.mkdir(parents=True, exist_ok=True)
    made = [folder]
    copies = [(HOOK_SOURCE, folder / "sitecustomize.py")]
    if launcher:
        (folder / LAUNCH_FOLDER).mkdir(exist_ok=True)
        made.append(folder / LAUNCH_FOLDER)
        copies += [(source, folder / LAUNCH_FOLDER / source.name) for source in (LAUNCH_SOURCE, PROBE_SOURCE)]
    for source, target in copies:
        shutil.copyfile(source, target)
    if uid is not None and os.getuid() == 0 and uid != 0:
        for path in (*made, *(target for _, target in copies)):
            os.chown(path, uid, gid if gid is not None else -1)
    return folder


def launch_command(python: str, target: str = MOUNT_TARGET) -> tuple[str, ...]:
    """The entrypoint that reads the machine's facts into the hook folder, then runs the workload's command.

    ``python`` is the image's interpreter by its absolute path (the one the probe ran on); ``-I``
    keeps the workload's ``PYTHONPATH`` (and this hook) out of the launcher's own start-up.
    """
    return (python, "-I", f"{target}/{LAUNCH_FOLDER}/{LAUNCH_SOURCE.name}", f"{target}/{HOST_FACTS}", "--")


def remove_launcher(folder: Path) -> None:
    """The launcher's copies, once the run is over: the replay's folder keeps what was found, not the tools."""
    shutil.rmtree(folder / LAUNCH_FOLDER, ignore_errors=True)


def read_host_facts(folder: Path) -> dict[str, Any] | None:
    """What the launcher read of the machine, or None when it wrote nothing (it could not run, or failed)."""
    try:
        data = json.loads((folder / HOST_FACTS).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def environment(target: str = MOUNT_TARGET, pythonpath: str | None = None,
                project_root: str | None = None) -> dict[str, str]:
    """The variables that load the hook: ``PYTHONPATH`` (keeping the workload's own), the out dir, and
    the project whose imported modules it lists."""
    path = target if not pythonpath else f"{target}{os.pathsep}{pythonpath}"
    env = {"PYTHONPATH": path, OUT_ENV: target}
    if project_root:
        env[ROOT_ENV] = project_root
    return env


def read_records(folder: Path) -> dict[str, Any] | None:
    """The flags left by the workload's main process, or None when no framework was imported."""
    main = _main_record(folder)
    flags = dict(main["flags"]) if main else {}
    return flags or None


def read_modules(folder: Path) -> tuple[str, ...] | None:
    """The project files the main process imported (relative to the project), or None when unknown."""
    main = _main_record(folder)
    modules = main.get("modules") if main else None
    return tuple(str(m) for m in modules) if isinstance(modules, list) else None


def _main_record(folder: Path) -> dict[str, Any] | None:
    """The record of the workload's main process.

    Each Python process writes its own file; the main one is the process whose parent wrote none
    (DataLoader workers and the like are its children). Where several qualify, the first started
    (lowest pid) is taken.
    """
    records = []
    for path in sorted(folder.glob("precision-*.json")):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("flags"), dict) and isinstance(data.get("pid"), int):
            records.append(data)
    if not records:
        return None
    pids = {r["pid"] for r in records}
    roots = [r for r in records if r.get("ppid") not in pids] or records
    main: dict[str, Any] = min(roots, key=lambda r: int(r["pid"]))
    return main
