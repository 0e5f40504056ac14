"""requirements.lock, requirements.in and pylock.toml from one snapshot holding every kind of origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.pylock import Pylock
from packaging.version import Version

from envcap.emit.pylock import render_pylock
from envcap.emit.requirements import render_requirements_in, render_requirements_lock
from envcap.fs import sha256_file
from envcap.lock import Artifact, Distribution, Origin, PythonEnv, Snapshot
from envcap.lock.disposition import dispositions, pins
from envcap.snapshot.hashes import ArtifactResolver, local_index_for

TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
HASH_LINE = re.compile(r"^    --hash=sha256:([0-9a-f]{64})( \\)?$")


def sha(char: str) -> str:
    return char * 64


@pytest.fixture
def torch_release(tmp_path: Path):  # type: ignore[no-untyped-def]
    """torch's local-version wheel found in a find-links folder, as on a host with /opt/wheels."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / TORCH_WHEEL).write_bytes(b"not really a wheel, but hashed like one")
    resolver = ArtifactResolver(tmp_path / "cache", find_links=[str(wheels)], offline=True)
    release = resolver.resolve_one("torch", "2.13.0+cpu")
    assert release.artifacts and release.artifacts[0].sha256 == sha256_file(wheels / TORCH_WHEEL)
    return release


@pytest.fixture
def snapshot(torch_release) -> Snapshot:  # type: ignore[no-untyped-def]
    dists = (
        Distribution(name="six", version="1.16.0", requested=True, artifacts=(
            Artifact("six-1.16.0-py2.py3-none-any.whl", sha("a"), "https://files.example/six-1.16.0-py2.py3-none-any.whl", 11053),
            Artifact("six-1.16.0.tar.gz", sha("b"), "https://files.example/six-1.16.0.tar.gz", 34041))),
        Distribution(name="markupsafe", version="2.1.5", requested=False, artifacts=(
            Artifact("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", sha("c"),
                     "https://files.example/m1.whl"),
            Artifact("MarkupSafe-2.1.5-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", sha("d"),
                     "https://files.example/m2.whl"))),
        Distribution(name="torch", version="2.13.0+cpu", requested=True, artifacts=torch_release.artifacts,
                     index_url=torch_release.index_url),
        Distribution(name="my-project", version="0.1", requested=True,
                     origin=Origin(kind="editable", url="file:///home/u/my-project")),
        Distribution(name="from-git", version="0.3", requested=True,
                     origin=Origin(kind="vcs", url="https://github.com/org/from-git.git", vcs="git",
                                   commit="0123456789abcdef0123456789abcdef01234567", requested_revision="main")),
        Distribution(name="local-file", version="3.0",
                     origin=Origin(kind="file", url="file:///tmp/local_file-3.0-py3-none-any.whl", sha256=sha("e"))),
        Distribution(name="remote-archive", version="4.0", requested=True,
                     origin=Origin(kind="url", url="https://files.example/remote_archive-4.0.tar.gz", sha256=sha("f"))),
        Distribution(name="no-hash-url", version="4.1", origin=Origin(kind="url", url="https://files.example/x.tar.gz")),
        Distribution(name="vanished", version="0.0.1"),
        Distribution(name="apt-thing", version="1.0", site="dist-packages", installer="debian",
                     artifacts=(Artifact("apt_thing-1.0-py3-none-any.whl", sha("9"),
                                          "https://files.example/apt_thing-1.0-py3-none-any.whl"),)),
    )
    return Snapshot(python=PythonEnv(version="3.11.7", platform="linux-x86_64"), distributions=dists,
                    captured_at="2026-01-01T00:00:00Z").with_digest()


def parse_requirements_lock(text: str) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """Returns ({requirement: [hashes]}, [option lines], {name: left-out kind})."""
    entries: dict[str, list[str]] = {}
    options: list[str] = []
    left_out: dict[str, str] = {}
    current = None
    in_left_out = False
    for line in text.splitlines():
        if line.startswith("# Left out"):
            in_left_out = True
        elif in_left_out and line.startswith("#   "):
            name_version, _, kind = line[4:].partition(": ")
            left_out[name_version] = kind
        elif line.startswith("#") or not line:
            continue
        elif line.startswith("--"):
            options.append(line)
        elif line.startswith("    "):
            match = HASH_LINE.match(line)
            assert match, f"bad hash line {line!r}"
            assert current is not None
            entries[current].append(match.group(1))
        else:
            assert line.endswith(" \\"), f"a requirement line must continue into its hashes: {line!r}"
            current = line[:-2]
            entries[current] = []
    return entries, options, left_out


def test_requirements_lock_pins_every_reinstallable_dist_with_its_hashes(snapshot: Snapshot) -> None:
    entries, options, left_out = parse_requirements_lock(render_requirements_lock(snapshot))
    expected = {f"{d.name}=={d.version}": sorted({a.sha256 for a in d.artifacts})
                for d in snapshot.distributions if d.name in ("six", "markupsafe", "torch", "apt-thing")}
    expected["remote-archive @ https://files.example/remote_archive-4.0.tar.gz"] = [sha("f")]
    expected["local-file @ file:///tmp/local_file-3.0-py3-none-any.whl"] = [sha("e")]  # issue 10: local wheels too
    assert entries == expected
    assert all(entries.values())


def test_local_version_torch_carries_its_index(snapshot: Snapshot) -> None:
    _, options, _ = parse_requirements_lock(render_requirements_lock(snapshot))
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]


def test_vendored_and_missing_are_listed_as_left_out(snapshot: Snapshot) -> None:
    _, _, left_out = parse_requirements_lock(render_requirements_lock(snapshot))
    assert left_out == {"from-git==0.3": "vendored", "my-project==0.1": "vendored",
                        "no-hash-url==4.1": "missing", "vanished==0.0.1": "missing"}


def test_every_left_out_or_system_dist_has_a_warning_sentence(snapshot: Snapshot) -> None:
    notes = {item.dist.name: item.note for item in dispositions(snapshot)}
    for name in ("from-git", "my-project", "no-hash-url", "vanished", "apt-thing"):
        assert notes[name] and name in notes[name], name
    assert notes["six"] is None and notes["torch"] is None and notes["local-file"] is None  # pinned by its hash
    assert "0123456789abcdef0123456789abcdef01234567" in notes["from-git"]
    assert "dist-packages" in notes["apt-thing"]


def test_requirements_lock_header_names_python_and_digest(snapshot: Snapshot) -> None:
    text = render_requirements_lock(snapshot)
    assert f"lock digest {snapshot.digest}" in text
    assert "Python 3.11.7 on linux-x86_64" in text


def test_requirements_in_lists_what_the_user_asked_for(snapshot: Snapshot) -> None:
    lines = [line for line in render_requirements_in(snapshot).splitlines() if not line.startswith("#")]
    assert lines == [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        "from-git @ git+https://github.com/org/from-git.git@0123456789abcdef0123456789abcdef01234567",
        "-e file:///home/u/my-project",
        "remote-archive @ https://files.example/remote_archive-4.0.tar.gz",
        "six==1.16.0",
        "torch==2.13.0+cpu",
    ]


def load_pylock(snapshot: Snapshot) -> tuple[Pylock, dict[str, object]]:
    data = tomllib.loads(render_pylock(snapshot))
    return Pylock.from_dict(data), data


def test_pylock_validates_with_packaging(snapshot: Snapshot) -> None:
    lock, data = load_pylock(snapshot)
    assert lock.lock_version == Version("1.0")
    assert lock.created_by == "envcap"
    assert str(lock.requires_python) == "==3.11.*"
    assert data["tool"] == {"envcap": {"lock-digest": snapshot.digest, "version": data["tool"]["envcap"]["version"]}}


def test_pylock_packages_match_the_lock(snapshot: Snapshot) -> None:
    lock, _ = load_pylock(snapshot)
    by_name = {str(p.name): p for p in lock.packages}
    assert set(by_name) >= {name for name, _ in pins(snapshot)}
    for name, version in pins(snapshot):
        package = by_name[name]
        assert package.version == Version(version)
        dist = snapshot.distribution(name)
        assert dist is not None
        files = list(package.wheels or []) + ([package.sdist] if package.sdist else [])
        assert sorted((f.name, f.hashes["sha256"]) for f in files) == sorted((a.filename, a.sha256)
                                                                             for a in dist.artifacts)
    assert by_name["torch"].index == "https://download.pytorch.org/whl/cpu"
    assert by_name["six"].index == "https://pypi.org/simple"
    assert by_name["six"].sdist is not None and by_name["six"].sdist.size == 34041
    vcs = by_name["from-git"].vcs
    assert vcs is not None and vcs.commit_id == "0123456789abcdef0123456789abcdef01234567" and vcs.type == "git"
    directory = by_name["my-project"].directory
    assert directory is not None and directory.editable is True and directory.path == "/home/u/my-project"
    assert "vanished" not in by_name and "no-hash-url" not in by_name


def test_pylock_and_requirements_lock_hold_the_same_distributions(snapshot: Snapshot) -> None:
    lock, _ = load_pylock(snapshot)
    entries, _, _ = parse_requirements_lock(render_requirements_lock(snapshot))
    in_requirements = {re.split(r"==| @ ", key)[0] for key in entries}
    in_pylock = {str(p.name) for p in lock.packages if p.vcs is None and p.directory is None}
    assert in_pylock == in_requirements


def test_pylock_survives_unusual_characters_in_paths_and_urls(snapshot: Snapshot) -> None:
    from dataclasses import replace

    odd = Distribution(name="odd", version="1.0", origin=Origin(kind="directory",
                                                                url='file:///home/u/with "quotes" \\ and é'))
    lock, _ = load_pylock(replace(snapshot, distributions=snapshot.distributions + (odd,)))
    directory = next(p for p in lock.packages if str(p.name) == "odd").directory
    assert directory is not None and directory.path == '/home/u/with "quotes" \\ and é'


def test_pylock_survives_characters_outside_the_bmp(snapshot: Snapshot) -> None:
    from dataclasses import replace

    odd = Distribution(name="emoji", version="1.0", origin=Origin(kind="directory", url="file:///home/u/proj-\U0001F600"))
    lock, _ = load_pylock(replace(snapshot, distributions=snapshot.distributions + (odd,)))
    assert any(str(p.name) == "emoji" for p in lock.packages)


@pytest.mark.parametrize("name, version, index", [
    ("torch", "2.13.0+cpu", "https://download.pytorch.org/whl/cpu"),
    ("torch", "2.3.0+cu121", "https://download.pytorch.org/whl/cu121"),
    ("torchvision", "0.18.0+rocm6.0", "https://download.pytorch.org/whl/rocm6.0"),
    ("Torch", "2.5.0+xpu", "https://download.pytorch.org/whl/xpu"),
    ("torch", "2.13.0", None),  # the public release is on PyPI
    ("numpy", "2.0.0+cpu", None),  # not from PyTorch's index
    ("torch", "2.3.0+mybuild", None),
])
def test_local_index_for(name: str, version: str, index: str | None) -> None:
    assert local_index_for(name, version) == index


def test_an_empty_snapshot_gives_an_empty_requirements_lock() -> None:
    empty = Snapshot(python=PythonEnv(version="3.12.1")).with_digest()
    entries, options, left_out = parse_requirements_lock(render_requirements_lock(empty))
    assert (entries, options, left_out) == ({}, [], {})


def test_an_empty_snapshot_gives_a_valid_pylock() -> None:
    empty = Snapshot(python=PythonEnv(version="3.12.1")).with_digest()
    lock, _ = load_pylock(empty)
    assert lock.packages == [] and str(lock.requires_python) == "==3.12.*"


def test_conda_installs_are_pinned_with_a_warning() -> None:
    from envcap.lock.disposition import dispose

    dist = Distribution(name="numpy", version="1.26.4", installer="conda",
                        artifacts=(Artifact("numpy-1.26.4.tar.gz", sha("1"), "https://files.example/n.tar.gz"),))
    item = dispose(dist)
    assert item.kind == "pinned" and item.note is not None and "conda" in item.note


def test_distributions_outside_site_packages_are_warned_about() -> None:
    from envcap.lock.disposition import dispose

    dist = Distribution(name="six", version="1.16.0", site="other", location="/srv/vendor",
                        artifacts=(Artifact("six-1.16.0.tar.gz", sha("1"), "https://files.example/six.tar.gz"),))
    assert dispose(dist).note is not None


def test_conda_libraries_get_one_warning_and_stay_out_of_the_pins() -> None:
    from envcap.emit.requirements import render_requirements_lock
    from envcap.lock.disposition import conda_note

    libs = tuple(Distribution(name=f"lib{i}", version="1.0", installer="conda", origin=Origin(kind="conda", build="h0"))
                 for i in range(10))
    snap = Snapshot(python=PythonEnv(version="3.11.7"), distributions=libs).with_digest()
    note = conda_note(snap)
    assert note is not None and note.startswith("10 conda packages") and "and 2 more" in note
    text = render_requirements_lock(snap)
    assert "lib0==1.0 \\" not in text and "#   lib0==1.0: conda" in text
