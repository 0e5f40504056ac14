"""The lock set is replaced whole or not at all: SIGKILL at every rename, concurrent writers, a full or read-only disk.

Real processes, real file systems: strace kills ``envcap snapshot`` as it enters its Nth rename (for
every N the run has), and after each kill the folder must hold one whole set, every time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envcap.lock import load_snapshot

ENVCAP = str(Path(sys.executable).parent / "envcap")
OUTPUTS = ("requirements.lock", "requirements.in", "pylock.toml", "Dockerfile")
pytestmark = pytest.mark.slow


def snapshot(out: Path, base: str, *prefix: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*prefix, ENVCAP, "snapshot", "--offline", "--out", str(out), "--base-image", base],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def named_digest(text: str) -> str | None:
    found = re.search(r"sha256:[0-9a-f]{64}", text)
    return found.group(0) if found else None


def whole_set(out: Path, *, killed: bool = False) -> str:
    """The digest of the one set the folder holds; fails when its files come from two snapshots.

    After a SIGKILL the writer could not clean up: a half-written generation or a temporary symlink may
    remain, out of sight (never in force); the next writer sweeps them. Otherwise none may be left.
    """
    lock = load_snapshot(out)
    assert lock.digest is not None
    for name in OUTPUTS:
        assert named_digest((out / name).read_text("utf-8")) == lock.digest, name
    if not killed:
        assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tmp")) and not list(out.glob(".*.link"))
    return lock.digest


def renames_of_one_run(out: Path, tmp: Path) -> int:
    log = tmp / "strace.log"
    snapshot(out, "second:1", "strace", "-f", "-qq", "-e", "trace=rename,renameat,renameat2", "-o", str(log))
    return sum(1 for line in log.read_text().splitlines() if re.search(r"\brename(at2?)?\(", line))


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (the suite's setup installs it)")
def test_sigkill_at_every_rename_leaves_one_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = snapshot(out, "first:1")
    assert first.returncode == 0
    digest_a = whole_set(out)
    count = renames_of_one_run(tmp_path / "counted", tmp_path)
    assert count >= 3, "a snapshot over an earlier one renames several times"
    seen = set()
    for n in range(1, count + 2):
        killed = snapshot(out, "second:1", "strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=rename,renameat,renameat2", "-e",
                          f"inject=rename,renameat,renameat2:signal=SIGKILL:when={n}", check=False)
        digest = whole_set(out, killed=True)
        seen.add("A" if digest == digest_a else "B")
        if killed.returncode == 0:
            break  # n went past the last rename: the run finished
        snapshot(out, "first:1")  # back to A for the next kill point (and the leftovers swept)
        whole_set(out)
    print(f"\nlockset crash test: {count} renames, killed at each; sets seen afterwards: {sorted(seen)}")
    assert seen == {"A", "B"}, "some kill points must leave the old set and the last switch the new one"


def test_concurrent_snapshots_never_mix(tmp_path: Path) -> None:
    out = tmp_path / "out"
    snapshot(out, "base:0")
    bases = ["base:1", "base:2", "base:3", "base:4"]
    for _ in range(6):
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda base: snapshot(out, base, check=False), bases))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        whole_set(out)


def _mounted(kind: str, target: Path) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    argv = {"tmpfs": ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)]}[kind]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def test_a_full_disk_leaves_the_previous_set_and_no_temporary_files(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mounted("tmpfs", disk):
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        out = disk / "out"
        snapshot(out, "first:1")
        before = whole_set(out)
        try:
            with open(disk / "filler", "wb") as handle:
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
        except OSError:
            pass  # the disk is full now
        done = snapshot(out, "second:1", check=False)
        assert done.returncode == 5 and done.stderr.startswith("error: "), done.stderr
        assert "Traceback" not in done.stderr
        assert whole_set(out) == before
        assert not [p for p in (out / ".sets").iterdir() if p.name.endswith(".partial")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_read_only_folder_is_one_error(tmp_path: Path) -> None:
    out = tmp_path / "ro" / "out"
    snapshot(out, "first:1")
    before = whole_set(out)
    view = tmp_path / "view"
    view.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(tmp_path / "ro"), str(view)],
                                           check=False).returncode != 0:
        pytest.skip("a read-only bind mount needs root (CI runs as root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        done = snapshot(view / "out", "second:1", check=False)
        assert done.returncode == 5 and "Traceback" not in done.stderr, done.stderr
        assert whole_set(out) == before
    finally:
        subprocess.run(["umount", str(view)], check=False)
