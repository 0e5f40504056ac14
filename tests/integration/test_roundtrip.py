"""The round trip, for real: snapshot a venv, install its requirements.lock elsewhere, snapshot again.

Needs PyPI (hashes and files). Two installers: ``pip install --require-hashes --no-deps -r`` and
``uv pip sync``; both must rebuild exactly the same set of (name, version).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.lock import load_snapshot

pytestmark = [pytest.mark.network, pytest.mark.slow]

PINS = ("six==1.16.0", "packaging==24.1", "markupsafe==2.1.5")  # markupsafe: a compiled wheel
BIN = Path(sys.executable).parent


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path, cwd=path.parent)
    return path / "bin" / "python"


def snapshot(python: Path, out: Path) -> set[tuple[str, str]]:
    run(BIN / "envcap", "snapshot", "--python", python, "--out", out, cwd=out.parent)
    return {(d.name, d.version) for d in load_snapshot(out).distributions}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[tuple[str, str]]]:
    work = tmp_path_factory.mktemp("roundtrip")
    python = venv(work / "a")
    run(python, "-m", "pip", "install", "--quiet", *PINS, cwd=work)
    packages = snapshot(python, work / "lock-a")
    return work / "lock-a", packages


def test_source_snapshot_pins_everything(source: tuple[Path, set[tuple[str, str]]]) -> None:
    lock_dir, packages = source
    assert {("six", "1.16.0"), ("packaging", "24.1"), ("markupsafe", "2.1.5")} <= packages
    assert {name for name, _ in packages} >= {"pip"}
    text = (lock_dir / "requirements.lock").read_text()
    assert "# Left out" not in text  # everything came from an index
    for name, version in packages:
        assert f"{name}=={version} \\" in text


def test_pip_install_of_the_lock_rebuilds_the_same_set(source: tuple[Path, set[tuple[str, str]]],
                                                       tmp_path: Path) -> None:
    lock_dir, packages = source
    python = venv(tmp_path / "b")
    run(python, "-m", "pip", "install", "--require-hashes", "--no-deps", "-r", lock_dir / "requirements.lock",
        cwd=tmp_path)
    again = snapshot(python, tmp_path / "lock-b")
    assert again == packages


def uv_sync(python: Path, lock: Path, tmp_path: Path) -> None:
    """``uv pip sync`` into ``python``'s venv, with uv's own cache and no user configuration."""
    env = dict(os.environ, UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_CONFIG="1")
    done = subprocess.run([str(BIN / "uv"), "pip", "sync", "--python", str(python), str(lock)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_uv_pip_sync_of_the_lock_rebuilds_the_same_set(source: tuple[Path, set[tuple[str, str]]],
                                                       tmp_path: Path) -> None:
    lock_dir, packages = source
    python = venv(tmp_path / "c")
    uv_sync(python, lock_dir / "requirements.lock", tmp_path)
    again = snapshot(python, tmp_path / "lock-c")
    assert again == packages
    installers = {d.name: d.installer for d in load_snapshot(tmp_path / "lock-c").distributions}
    assert installers["six"] == "uv"


def test_uv_installs_pylock_toml_into_the_same_set(source: tuple[Path, set[tuple[str, str]]],
                                                   tmp_path: Path) -> None:
    """PEP 751: uv consumes envcap's pylock.toml directly, each file checked against its sha256."""
    lock_dir, packages = source
    python = venv(tmp_path / "d")
    uv_sync(python, lock_dir / "pylock.toml", tmp_path)
    assert snapshot(python, tmp_path / "lock-d") == packages


def test_pins_and_hashes_survive_the_round_trip(source: tuple[Path, set[tuple[str, str]]], tmp_path: Path) -> None:
    """Snapshotting the rebuilt venv gives the same requirements.lock entries, hashes included."""
    lock_dir, _ = source
    python = venv(tmp_path / "d")
    run(python, "-m", "pip", "install", "--require-hashes", "--no-deps", "-r", lock_dir / "requirements.lock",
        cwd=tmp_path)
    snapshot(python, tmp_path / "lock-d")

    def entries(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert entries(tmp_path / "lock-d" / "requirements.lock") == entries(lock_dir / "requirements.lock")
