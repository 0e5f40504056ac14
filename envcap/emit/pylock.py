"""pylock.toml (PEP 751), generated from the lock and never read back."""

from __future__ import annotations

from json.encoder import encode_basestring as _json_string  # json.dumps's, ensure_ascii=False

from packaging.utils import canonicalize_name

from envcap import __version__
from envcap.lock.disposition import dispositions
from envcap.lock.records import Artifact, Snapshot
from envcap.snapshot.hashes import PYPI_SIMPLE


def _toml(value: object) -> str:
    """A TOML literal. JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"
    # Raw UTF-8 (a JSON \\u escape of a character outside the BMP is a surrogate pair, which TOML
    # rejects); JSON escapes quotes, backslashes and control characters but not DEL. The encoder's
    # string function directly: json.dumps around it cost a warm snapshot 15 ms over 7,000 strings.
    text = _json_string(str(value))
    return text.replace("\x7f", "\\u007f") if "\x7f" in text else text


def _file_entry(artifact: Artifact) -> str:
    """``_toml`` of the file's table, written out: a lock has thousands (the same text, in a third of the time)."""
    url = f", url = {_toml(artifact.url)}" if artifact.url is not None else ""
    size = f", size = {_toml(artifact.size)}" if artifact.size is not None else ""
    return f"{{name = {_toml(artifact.filename)}{url}{size}, hashes = {{sha256 = {_toml(artifact.sha256)}}}}}"


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


