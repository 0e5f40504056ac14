"""Nothing from a lock runs on the host, for real: a hostile sdist, projects outside the lock's reach, a
symlink to a secret. Each is built by the real engine from the local base image and checked inside the image.

The hostile sdist's setup.py writes a marker file at a host path and tries the network. It runs, but in the
sandbox: the marker is written into the container's /tmp (and so never appears on the host), the connection
fails, and what setup.py saw is compiled into the package, which the image then imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcap.cli import main
from envcap.engine import ContainerEngine, connect
from envcap.lock import Artifact
from envcap.snapshot import write_snapshot
from tests.e2e.test_build_e2e import build, inside, make_venv, snapshot
from tests.fakes import sdist_bytes
from tests.unit.test_build import dist, make_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]

HOSTILE_SETUP = """\
import os, socket
from setuptools import setup

MARKER = {marker!r}
with open(MARKER, "w") as handle:  # a host path, if this ran on the host
    handle.write("pwned")
try:
    socket.create_connection(("1.1.1.1", 443), timeout=5).close()
    network = "reached"
except OSError as exc:
    network = "blocked: " + type(exc).__name__
try:
    socket.getaddrinfo("pypi.org", 443)
    dns = "resolved"
except OSError:
    dns = "blocked"
with open(os.path.join("thepkg", "_seen.py"), "w") as handle:
    handle.write("NETWORK = %r\\nDNS = %r\\nUID = %d\\nMARKER_WRITTEN = %r\\n"
                 % (network, dns, os.getuid(), os.path.exists(MARKER)))
setup(name="thepkg", version="1.0", packages=["thepkg"])
"""
SEEN = ("import json, thepkg, thepkg._seen as s\n"
        "print(json.dumps({'network': s.NETWORK, 'dns': s.DNS, 'uid': s.UID, 'marker': s.MARKER_WRITTEN,\n"
        "                  'file': thepkg.__file__}))\n")


@pytest.fixture(scope="module")
def engine(docker_client: object) -> ContainerEngine:
    return connect()


def sandbox_containers() -> list[str]:
    import docker

    client = docker.from_env()
    try:
        return [c.id for c in client.containers.list(all=True, filters={"label": "io.envcap.purpose=sandbox-build"})]
    finally:
        client.close()


def test_a_hostile_sdist_runs_only_in_the_sandbox_and_its_wheel_reaches_the_image(
        tmp_path: Path, base_image: str, engine: ContainerEngine) -> None:
    marker = Path(f"/tmp/envcap-pwned-{uuid.uuid4().hex}")
    data = sdist_bytes("thepkg", "1.0", {
        "setup.py": HOSTILE_SETUP.format(marker=str(marker)), "thepkg/__init__.py": "VALUE = 7\n",
        "PKG-INFO": "Metadata-Version: 2.1\nName: thepkg\nVersion: 1.0\n"})
    served = tmp_path / "served" / "thepkg-1.0.tar.gz"
    served.parent.mkdir()
    served.write_bytes(data)
    artifact = Artifact(filename=served.name, sha256=hashlib.sha256(data).hexdigest(), url=served.as_uri(),
                        size=len(data))
    lock = tmp_path / "lock"
    write_snapshot(make_snapshot(dist("thepkg", "1.0", artifact)), lock)
    before = set(sandbox_containers())

    result = build(lock, base_image)

    assert not marker.exists(), "setup.py wrote to the host"
    assert result["built_from_sdist"] == ["thepkg==1.0"]
    assert any("thepkg 1.0 has no wheel" in w and "sandbox" in w for w in result["warnings"])  # type: ignore[union-attr]
    seen = inside(engine, str(result["tag"]), SEEN)
    assert seen["marker"] is True, "setup.py did run (in the sandbox, where its marker went into the container's /tmp)"
    assert str(seen["network"]).startswith("blocked") and seen["dns"] == "blocked"
    assert seen["uid"] == os.getuid()
    assert str(seen["file"]).startswith("/opt/venv/")
    assert set(sandbox_containers()) <= before, "the sandbox container was removed"


def test_a_compile_failure_in_the_sandbox_is_one_sentence_with_its_log(tmp_path: Path, base_image: str) -> None:
    data = sdist_bytes("brokenpkg", "1.0", {
        "setup.py": "import sys\nprint('brokenpkg: cannot find cblas.h', file=sys.stderr)\nsys.exit(3)\n",
        "PKG-INFO": "Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n"})
    served = tmp_path / "brokenpkg-1.0.tar.gz"
    served.write_bytes(data)
    artifact = Artifact(filename=served.name, sha256=hashlib.sha256(data).hexdigest(), url=served.as_uri())
    lock = tmp_path / "lock"
    write_snapshot(make_snapshot(dist("brokenpkg", "1.0", artifact)), lock)

    done = CliRunner().invoke(main, ["build", str(lock), "--base-image", base_image])

    assert done.exit_code == 6, done.output
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: building brokenpkg 1.0 from source in the network-less sandbox failed (exit 1)")
    assert "cannot find cblas.h" in done.stderr
    assert "hint: pin a wheel of brokenpkg" in done.stderr


def project(root: Path, name: str, extra: str = "") -> Path:
    (root / name).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
        f"[project]\nname = '{name}'\nversion = '0.2'\n{extra}")
    (root / name / "__init__.py").write_text("ANSWER = 42\n")
    return root


def test_a_project_outside_the_locks_project_comes_only_with_allow_path(tmp_path: Path, base_image: str,
                                                                        engine: ContainerEngine) -> None:
    outside = project(tmp_path / "elsewhere" / "outerpkg", "outerpkg")
    python = make_venv(tmp_path / "proj" / ".venv", "packaging==24.2", "-e", str(outside))
    lock = snapshot(python, tmp_path / "proj" / ".envcap")

    refused = build(lock, base_image)

    assert refused["vendored"] == []
    [note] = refused["left_out"]  # type: ignore[misc]
    assert note.startswith("outerpkg==0.2: its source") and f"--allow-path {outside}" in note

    allowed = build(lock, base_image, "--allow-path", str(tmp_path / "elsewhere"))
    assert allowed["vendored"] == ["outerpkg==0.2 (editable)"] and allowed["left_out"] == []
    found = inside(engine, str(allowed["tag"]), "import json, outerpkg\nprint(json.dumps({'a': outerpkg.ANSWER}))\n")
    assert found == {"a": 42}


def test_a_symlink_to_a_secret_outside_the_project_stays_out_of_the_image(tmp_path: Path, base_image: str,
                                                                          engine: ContainerEngine) -> None:
    secret = tmp_path / "secret.txt"
    token = f"SECRET-{uuid.uuid4().hex}"
    secret.write_text(token)
    root = project(tmp_path / "proj" / "linked", "linked",
                   "[tool.setuptools.package-data]\nlinked = ['*.txt']\n")
    (root / "linked" / "notes.txt").write_text("plain package data")
    (root / "linked" / "secret.txt").symlink_to(secret)
    (root / "linked" / "alias.txt").symlink_to("notes.txt")
    python = make_venv(tmp_path / "proj" / ".venv", "packaging==24.2", "-e", str(root))
    lock = snapshot(python, tmp_path / "proj" / ".envcap")

    result = build(lock, base_image)

    assert result["vendored"] == ["linked==0.2 (editable)"]
    assert any("linked/secret.txt" in n and "leads outside the project" in n for n in result["notes"])  # type: ignore[union-attr]
    found = inside(engine, str(result["tag"]), (
        "import json, os, linked\n"
        f"token = {token!r}\n"
        "folder = os.path.dirname(linked.__file__)\n"
        "hits = [os.path.join(d, f) for top in ('/opt', '/home', '/tmp', '/usr/local')\n"
        "        for d, _, files in os.walk(top) for f in files\n"
        "        if token.encode() in open(os.path.join(d, f), 'rb').read()]\n"
        "print(json.dumps({'files': sorted(os.listdir(folder)), 'hits': hits,\n"
        "                  'alias': open(os.path.join(folder, 'alias.txt')).read()}))\n"))
    assert found["hits"] == [], "the secret's bytes are nowhere in the image"
    assert "secret.txt" not in found["files"] and "notes.txt" in found["files"]  # type: ignore[operator]
    assert found["alias"] == "plain package data", "a link that stays inside still works"
    assert json.dumps(found).count(token) == 0
