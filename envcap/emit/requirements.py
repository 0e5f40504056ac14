"""Installer-facing locks derived from a snapshot: requirements.lock, requirements.in, pylock.toml.

Why three: ``requirements.lock`` (name==version plus every artifact hash) is what pip and uv install
today with ``--require-hashes``; ``pylock.toml`` is the standard (PEP 751) form of the same pins,
with each file's URL; ``requirements.in`` lists only what the user asked for, so ``pip-compile``
can re-resolve it later when they want upgrades rather than a replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from envcap import __version__
from envcap.lock import Artifact, Distribution, Snapshot
from envcap.snapshot.hashes import PYPI_SIMPLE

# pip, setuptools and wheel are pinned like everything else: a different pip in the image is a
# different installer, and setuptools' pkg_resources is imported by training code.


@dataclass(frozen=True)
class Disposition:
    """What envcap does with one distribution when it rebuilds the environment."""

    dist: Distribution
    kind: str  # pinned | url | vendored | missing
    note: str | None = None  # the sentence for the snapshot's warnings (None: nothing to say)


def dispose(dist: Distribution) -> Disposition:
    origin = dist.origin.kind if dist.origin else "index"
    where = dist.origin.url if dist.origin and dist.origin.url else dist.location
    if origin in ("editable", "directory"):
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} is installed from the local folder "
                           f"{where}{' (editable)' if origin == 'editable' else ''}: `envcap build` builds it into "
                           "a wheel on the host and installs that in the image; it is not in requirements.lock.")
    if origin == "conda":
        return Disposition(dist, "conda")  # one warning for all of them: see conda_note
    if origin == "vcs":
        commit = dist.origin.commit if dist.origin else None
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} comes from {where} at commit "
                           f"{commit or 'unknown'}: `envcap build` builds that commit into a wheel on the host; "
                           "it is not in requirements.lock (pip cannot hash-check a repository).")
    if origin == "file":
        return Disposition(dist, "vendored", f"{dist.name} {dist.version} was installed from the local file {where}: "
                           "`envcap build` copies that file into the image if it still exists; it is not in "
                           "requirements.lock.")
    if origin == "url" and dist.origin and dist.origin.sha256:
        return Disposition(dist, "url")
    if origin == "url":
        return Disposition(dist, "missing", f"{dist.name} {dist.version} was installed from {where} without a "
                           "recorded hash: it is left out of requirements.lock; install it by hand.")
    if not dist.artifacts:
        return Disposition(dist, "missing", f"{dist.name} {dist.version} was not found on any index or local "
                           "folder, so no hash could be pinned: it is left out of requirements.lock and the image.")
    if dist.site == "other":
        return Disposition(dist, "pinned", f"{dist.name} {dist.version} was found outside site-packages, in "
                           f"{dist.location} (a --target folder or PYTHONPATH); the image installs the same version "
                           "from the index into its virtual environment instead.")
    if dist.site == "dist-packages" or dist.installer == "conda":
        source = "the system package manager (dist-packages)" if dist.site == "dist-packages" else "conda"
        return Disposition(dist, "pinned", f"{dist.name} {dist.version} was installed by {source}; the lock pins "
                           "the same version from the index, whose build may differ.")
    return Disposition(dist, "pinned")


def conda_note(snapshot: Snapshot) -> str | None:
    """One sentence for every conda package without Python metadata (an environment has dozens)."""
    libraries = [d for d in snapshot.distributions if d.origin is not None and d.origin.kind == "conda"]
    if not libraries:
        return None
    shown = ", ".join(f"{d.name} {d.version}" for d in libraries[:8])
    more = f" and {len(libraries) - 8} more" if len(libraries) > 8 else ""
    return (f"{len(libraries)} conda packages without Python metadata ({shown}{more}) are recorded for comparison "
            "but not rebuilt: the image takes its libraries (BLAS, CUDA) from pip wheels; recreate them with "
            "conda where the exact build matters.")


def dispositions(snapshot: Snapshot) -> list[Disposition]:
    return [dispose(d) for d in sorted(snapshot.distributions, key=lambda d: d.name)]


def local_indexes(snapshot: Snapshot) -> list[str]:
    return sorted({d.index_url for d in snapshot.distributions if d.index_url})


def render_requirements_lock(snapshot: Snapshot) -> str:
    python = snapshot.python.version if snapshot.python else "unknown"
    platform = snapshot.python.platform if snapshot.python else "unknown"
    lines = [
        "#",
        f"# This file is generated by envcap {__version__} from envcap.lock.json; edit the snapshot, not this.",
        f"# Python {python} on {platform}; lock digest {snapshot.digest or 'unset'}.",
        "#",
        "#    pip install --require-hashes --no-deps -r requirements.lock",
        "#    uv pip sync requirements.lock",
        "#",
    ]
    for index in local_indexes(snapshot):
        lines.append(f"--extra-index-url {index}")
    left_out = []
    for item in dispositions(snapshot):
        dist = item.dist
        if item.kind == "pinned":
            lines.append(f"{dist.name}=={dist.version} \\")
            hashes = sorted({a.sha256 for a in dist.artifacts})
            for i, digest in enumerate(hashes):
                lines.append(f"    --hash=sha256:{digest}" + (" \\" if i < len(hashes) - 1 else ""))
        elif item.kind == "url" and dist.origin and dist.origin.url:
            lines.append(f"{dist.name} @ {dist.origin.url} \\")
            lines.append(f"    --hash=sha256:{dist.origin.sha256}")
        else:
            left_out.append(item)
    if left_out:
        lines.append("#")
        lines.append("# Left out (see the warnings in envcap.lock.json):")
        for item in left_out:
            lines.append(f"#   {item.dist.name}=={item.dist.version}: {item.kind}")
    return "\n".join(lines) + "\n"


def render_requirements_in(snapshot: Snapshot) -> str:
    """The distributions the user asked for (pip's REQUESTED marker), for pip-compile to re-resolve."""
    requested = [d for d in snapshot.distributions if d.requested]
    lines = ["# What the user installed by name (REQUESTED), pinned as captured.",
             "# Loosen a pin and run `pip-compile --generate-hashes requirements.in` to re-resolve."]
    if not requested:
        lines.append("# (no distribution carries pip's REQUESTED marker; see requirements.lock)")
    for index in local_indexes(snapshot):
        lines.append(f"--extra-index-url {index}")
    for dist in sorted(requested, key=lambda d: d.name):
        item = dispose(dist)
        if item.kind == "vendored" and dist.origin and dist.origin.kind == "vcs" and dist.origin.url:
            lines.append(f"{dist.name} @ {dist.origin.vcs or 'git'}+{dist.origin.url}@{dist.origin.commit}")
        elif item.kind == "vendored" and dist.origin and dist.origin.kind == "editable" and dist.origin.url:
            lines.append(f"-e {dist.origin.url}")
        elif item.kind == "vendored" and dist.origin and dist.origin.url:
            lines.append(f"{dist.name} @ {dist.origin.url}")
        else:
            lines.append(f"{dist.name}=={dist.version}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML literal. JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"
    # Raw UTF-8 (a JSON \\u escape of a character outside the BMP is a surrogate pair, which TOML
    # rejects); JSON escapes quotes, backslashes and control characters but not DEL.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _file_entry(artifact: Artifact) -> str:
    return _toml({"name": artifact.filename, "url": artifact.url, "size": artifact.size,
                  "hashes": {"sha256": artifact.sha256}})


def render_pylock(snapshot: Snapshot) -> str:
    """pylock.toml (PEP 751), written directly.

    Why not packaging.pylock + tomli_w: for a 150-package ML environment (thousands of wheel
    files) they took longer than the whole rest of a warm snapshot; the tests check this output
    with ``packaging.pylock.Pylock.from_dict`` instead.
    """
    python = snapshot.python
    lines = ['lock-version = "1.0"', 'created-by = "envcap"']
    if python and python.version.count(".") >= 1 and python.version.split(".")[0].isdigit():
        major_minor = ".".join(python.version.split(".")[:2])
        lines.append(f"requires-python = {_toml('==' + major_minor + '.*')}")
    packages = 0
    for item in dispositions(snapshot):
        dist = item.dist
        origin = dist.origin
        block = ["", "[[packages]]", f"name = {_toml(canonicalize_name(dist.name))}"]
        if item.kind == "pinned":
            block.append(f"version = {_toml(dist.version)}")
            block.append(f"index = {_toml(dist.index_url or PYPI_SIMPLE)}")
            ordered = sorted(dist.artifacts, key=lambda a: a.filename)
            sdists = [a for a in ordered if not a.filename.endswith(".whl")]
            wheels = [a for a in ordered if a.filename.endswith(".whl")]
            if sdists:
                block.append(f"sdist = {_file_entry(sdists[0])}")
            if wheels:
                block.append("wheels = [")
                block.extend(f"    {_file_entry(w)}," for w in wheels)
                block.append("]")
        elif item.kind == "url" and origin and origin.url and origin.sha256:
            block.append(f"version = {_toml(dist.version)}")
            block.append("archive = " + _toml({"url": origin.url, "hashes": {"sha256": origin.sha256}}))
        elif origin and origin.kind == "vcs" and origin.url and origin.commit:
            block.append("vcs = " + _toml({"type": origin.vcs or "git", "url": origin.url,
                                           "requested-revision": origin.requested_revision,
                                           "commit-id": origin.commit, "subdirectory": origin.subdirectory}))
        elif origin and origin.kind in ("editable", "directory") and origin.url:
            path = origin.url[7:] if origin.url.startswith("file://") else origin.url
            block.append(f"version = {_toml(dist.version)}")
            block.append("directory = " + _toml({"path": path, "editable": origin.kind == "editable",
                                                 "subdirectory": origin.subdirectory}))
        else:
            continue  # missing: nothing an installer could use
        lines.extend(block)
        packages += 1
    if not packages:
        lines.append("packages = []")  # PEP 751 requires the key even when nothing is pinnable
    lines += ["", "[tool.envcap]", f"lock-digest = {_toml(snapshot.digest or '')}",
              f"version = {_toml(__version__)}"]
    return "\n".join(lines) + "\n"


def pins(snapshot: Snapshot, kinds: Iterable[str] = ("pinned",)) -> list[tuple[str, str]]:
    wanted = set(kinds)
    return [(i.dist.name, i.dist.version) for i in dispositions(snapshot) if i.kind in wanted]
