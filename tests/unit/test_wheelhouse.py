"""The wheelhouse: target tags, the recorded target platform, fetching by hash into the cache."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from packaging.tags import Tag

from envcap.build.target import TargetPlatform, platform_tags, wheel_rank
from envcap.build.vendor import tree_digest
from envcap.build.wheelhouse import FetchStats, Wheelhouse
from envcap.emit.plan import build_choices
from envcap.errors import ArtifactError
from envcap.lock import Artifact, OsInfo, PythonEnv, Snapshot


def test_manylinux_tags_run_from_the_images_glibc_down_with_legacy_aliases() -> None:
    tags = platform_tags("glibc", "2.36", "x86_64")

    assert tags[0] == "manylinux_2_36_x86_64"
    assert tags.index("manylinux_2_17_x86_64") + 1 == tags.index("manylinux2014_x86_64")
    assert tags.index("manylinux_2_5_x86_64") + 1 == tags.index("manylinux1_x86_64")
    assert tags[-1] == "linux_x86_64"
    assert "manylinux_2_37_x86_64" not in tags
    arm = platform_tags("glibc", "2.31", "aarch64")
    assert arm[-3:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
    assert platform_tags("musl", "1.2", "x86_64") == ["musllinux_1_2_x86_64", "musllinux_1_1_x86_64",
                                                      "musllinux_1_0_x86_64", "linux_x86_64"]


def test_wheels_rank_in_pips_order_for_the_target() -> None:
    target = TargetPlatform(python_version="3.11.2", libc_version="2.36")
    ranks = {tag: i for i, tag in enumerate(target.tags())}

    compiled = wheel_rank("numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ranks)
    abi3 = wheel_rank("cryptography-44.0.0-cp39-abi3-manylinux_2_34_x86_64.whl", ranks)
    pure = wheel_rank("packaging-24.2-py3-none-any.whl", ranks)
    assert compiled is not None and abi3 is not None and pure is not None
    assert compiled < abi3 < pure
    assert wheel_rank("numpy-2.2.6-cp312-cp312-manylinux_2_17_x86_64.whl", ranks) is None
    assert wheel_rank("numpy-2.2.6-cp311-cp311-manylinux_2_39_x86_64.whl", ranks) is None
    assert wheel_rank("numpy-2.2.6-cp311-cp311-musllinux_1_2_x86_64.whl", ranks) is None
    assert wheel_rank("not a wheel name.whl", ranks) is None
    assert Tag("cp311", "cp311", "manylinux_2_36_x86_64") == target.tags()[0]


def test_the_lock_records_the_official_images_platform_and_a_given_base_keeps_the_hosts_glibc() -> None:
    snapshot = Snapshot(python=PythonEnv(version="3.12.3", implementation="cpython", abi_tag="cp312",
                                         machine="aarch64"),
                        os=OsInfo(id="debian", codename="bookworm", libc="glibc", libc_version="2.39"))

    official = TargetPlatform.from_record(build_choices(snapshot).platform, "lock")
    given = TargetPlatform.from_record(build_choices(snapshot, "in-house/python:3.12").platform, "lock")

    assert (official.python_version, official.arch, official.libc_version, official.abi) == \
        ("3.12.3", "aarch64", "2.36", "cp312")  # python:3.12.3-slim-bookworm's glibc, not the host's
    assert official.key() == "cpython-3.12-cp312-aarch64-glibc-2.36"
    assert given.libc_version == "2.39"


def local_artifact(folder: Path, name: str, data: bytes) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return Artifact(name, hashlib.sha256(data).hexdigest(), (folder / name).as_uri(), len(data))


def test_fetch_fills_the_cache_by_hash_and_reuses_it(tmp_path: Path) -> None:
    artifacts = [local_artifact(tmp_path / "src", f"p{i}-1.0-py3-none-any.whl", bytes([i]) * (1000 + i))
                 for i in range(12)]
    house = Wheelhouse(tmp_path / "cache", workers=4)
    seen: list[int] = []
    first = FetchStats()

    paths = house.fetch(artifacts, on_bytes=seen.append, stats=first)

    assert sum(seen) == sum(a.size or 0 for a in artifacts) == first.downloaded_bytes
    for artifact in artifacts:
        path = paths[artifact.sha256]
        assert path == tmp_path / "cache" / "sha256" / artifact.sha256[:2] / artifact.sha256 / artifact.filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    second = FetchStats()
    house.fetch(artifacts, stats=second)
    assert (second.downloaded_bytes, second.reused) == (0, 12)


def test_a_damaged_cache_entry_is_fetched_again(tmp_path: Path) -> None:
    artifact = local_artifact(tmp_path / "src", "p-1.0-py3-none-any.whl", b"good bytes")
    house = Wheelhouse(tmp_path / "cache")
    path = house.fetch([artifact])[artifact.sha256]
    path.write_bytes(b"bit rot")
    stats = FetchStats()

    house.fetch([artifact], stats=stats)

    assert path.read_bytes() == b"good bytes" and stats.downloaded_bytes == len(b"good bytes")


def test_a_mismatch_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    artifact = local_artifact(tmp_path / "src", "p-1.0-py3-none-any.whl", b"good bytes")
    (tmp_path / "src" / artifact.filename).write_bytes(b"evil bytes")

    with pytest.raises(ArtifactError, match="p-1.0-py3-none-any.whl does not match the lock"):
        Wheelhouse(tmp_path / "cache").fetch([artifact])

    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_fetch_over_http_checks_hashes_too(tmp_path: Path, http_index: tuple[str, Path]) -> None:
    base, folder = http_index
    data = b"x" * 300_000
    (folder / "big-1.0-py3-none-any.whl").write_bytes(data)
    good = Artifact("big-1.0-py3-none-any.whl", hashlib.sha256(data).hexdigest(), f"{base}/big-1.0-py3-none-any.whl")
    missing = Artifact("gone-1.0-py3-none-any.whl", "e" * 64, f"{base}/gone-1.0-py3-none-any.whl")
    house = Wheelhouse(tmp_path / "cache")

    assert house.fetch([good])[good.sha256].read_bytes() == data
    with pytest.raises(ArtifactError, match=r"cannot download gone-1.0-py3-none-any.whl from 127.0.0.1:\d+"):
        house.fetch([missing])


def test_tree_digest_follows_sources_not_build_output(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("A = 1\n")
    before = tree_digest(tmp_path)
    for noise in ("build/lib/mod.py", "pkg/__pycache__/mod.cpython-311.pyc", "pkg.egg-info/PKG-INFO", ".git/HEAD"):
        (tmp_path / noise).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / noise).write_text("noise")
    assert tree_digest(tmp_path) == before
    (tmp_path / "pkg" / "mod.py").write_text("A = 2\n")
    assert tree_digest(tmp_path) != before
    (tmp_path / "pkg" / "mod.py").write_text("A = 1\n")
    (tmp_path / "pkg" / "new.py").write_text("")
    assert tree_digest(tmp_path) != before


def test_ctrl_c_returns_while_a_server_still_hangs(tmp_path: Path) -> None:
    import _thread
    import socket

    release = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def hang() -> None:  # accepts, reads the request, never answers until released
        conn, _ = listener.accept()
        conn.recv(4096)
        threading.Timer(0.3, _thread.interrupt_main).start()  # the user presses Ctrl-C meanwhile
        release.wait(30)
        conn.close()

    server = threading.Thread(target=hang, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    stuck = Artifact("slow-1.0-py3-none-any.whl", "f" * 64, f"http://127.0.0.1:{port}/slow-1.0-py3-none-any.whl")
    try:
        with pytest.raises(KeyboardInterrupt):
            Wheelhouse(tmp_path / "cache").fetch([stuck])
        assert server.is_alive() and not release.is_set(), "fetch returned without waiting for the server"
    finally:
        release.set()
        listener.close()
