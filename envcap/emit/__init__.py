"""Emitters: the files generated from a lock for other tools (pip, uv, docker), never read back.

Why a room of their own: ``snapshot`` writes them beside the lock for people and CI systems, and
``build`` renders the same Dockerfile for its context, both from the lock alone. A later stage that
finds one of them changed says so and ignores it; the lock is the only input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from envcap.lock import LOCK_FILENAME, Snapshot, dumps_with_digest

GENERATED = ("requirements.lock", "requirements.in", "pylock.toml", "Dockerfile", ".dockerignore")


def generated_files(snapshot: Snapshot) -> dict[str, str]:
    """Every generated output of the lock, by file name, rendered in memory."""
    from envcap.emit.dockerfile import render_dockerfile, render_dockerignore
    from envcap.emit.plan import make_plan
    from envcap.emit.pylock import render_pylock
    from envcap.emit.requirements import render_requirements_in, render_requirements_lock
    from envcap.lock.disposition import dispositions

    has_vendored = any(item.kind == "vendored" for item in dispositions(snapshot))
    plan = make_plan(snapshot, has_vendored=has_vendored)
    return {
        "requirements.lock": render_requirements_lock(snapshot),
        "requirements.in": render_requirements_in(snapshot),
        "pylock.toml": render_pylock(snapshot),
        "Dockerfile": render_dockerfile(plan),
        ".dockerignore": render_dockerignore(),
    }


def lock_set(snapshot: Snapshot) -> dict[str, str]:
    """The lock and its outputs: what ``envcap snapshot`` writes, as one set."""
    return lock_set_and_digest(snapshot)[0]


def lock_set_and_digest(snapshot: Snapshot) -> tuple[dict[str, str], str]:
    """The lock set and the lock's digest as written, which every output names (whatever
    ``snapshot.digest`` said: the set cannot disagree with itself)."""
    text, digest = dumps_with_digest(snapshot)
    return {LOCK_FILENAME: text} | generated_files(replace(snapshot, digest=digest)), digest


def stale_outputs(folder: Path, expected: dict[str, str]) -> list[str]:
    """One note naming the outputs in ``folder`` that differ from what the lock generates now.

    Why a note and not a refusal: they are never read, so an edit cannot change what is built;
    but someone who edited requirements.lock expecting that must be told it had no effect.
    """
    changed = []
    for name, text in expected.items():
        try:
            actual = (folder / name).read_text("utf-8")
        except FileNotFoundError:
            continue  # a deleted output is fine: nothing needs it
        except (OSError, UnicodeDecodeError):
            actual = None
        if actual != text:
            changed.append(name)
    if not changed:
        return []
    return [f"{', '.join(changed)} in {folder} differ{'s' if len(changed) == 1 else ''} from what "
            f"{LOCK_FILENAME} generates (edited by hand, or written from another version of the lock); they are "
            f"outputs only, so envcap ignores them and builds from {LOCK_FILENAME}"]


__all__ = ["GENERATED", "generated_files", "lock_set", "lock_set_and_digest", "stale_outputs"]
