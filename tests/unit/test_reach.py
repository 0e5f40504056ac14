"""How far a lock reaches on this disk: local origins outside its project, a project's links leading out,
git commits fetched with git alone, and the exported tree unpacked member by member.

Real folders, real symlinks and a real git repository; only the engine (FakeSandbox) and pip download are fakes.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcap.build import build, prepare
from envcap.build.reach import project_roots, project_tree
from envcap.build.vcs import SAFE_CONFIG, unpack_tree
from envcap.build.vendor import tree_digest
from envcap.build.wheelhouse import Wheelhouse
from envcap.cli import main
from envcap.errors import ArtifactError
from envcap.fs import sha256_file
from envcap.lock import Origin
from tests.fakes import FakeBackendIndex, FakeEngine, FakeSandbox, make_wheel
from tests.unit.test_build import BASE, IMAGE_FACTS, dist, fake_engine, make_snapshot, options, write_lock

PYPROJECT = "[build-system]\nrequires = ['setuptools>=61']\n[project]\nname = '{name}'\nversion = '0.1'\n"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def project(folder: Path, name: str = "mine") -> Path:
    (folder / name).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    (folder / name / "__init__.py").write_text("VALUE = 1\n")
    return folder


def sandboxed() -> tuple[FakeEngine, FakeSandbox, Wheelhouse]:
    engine = fake_engine()
    sandbox = FakeSandbox(IMAGE_FACTS)
    engine.on_run = sandbox
    backends = FakeBackendIndex(git=True)
    return engine, sandbox, Wheelhouse(Path(os.environ["ENVCAP_CACHE_DIR"]) / "wheels", runner=backends,
                                       lookup=backends)


# -- the project's reach --------------------------------------------------------------------------
def test_the_project_is_the_lock_folders_parent_or_the_git_top_level(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".envcap").mkdir(parents=True)
    assert project_roots(tmp_path / "proj" / ".envcap") == (tmp_path / "proj",)
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "sub" / "locks" / "one").mkdir(parents=True)
    assert project_roots(tmp_path / "repo" / "sub" / "locks" / "one") == (tmp_path / "repo" / "sub" / "locks",
                                                                         tmp_path / "repo")
    (tmp_path / "alone").mkdir()
    assert project_roots(tmp_path / "alone" / "envcap.lock.json") == (tmp_path,)


def test_a_local_project_outside_the_lock_project_is_left_out_until_allowed(tmp_path: Path) -> None:
    inside = project(tmp_path / "proj" / "pkgs" / "inner", "inner")
    outside = project(tmp_path / "elsewhere" / "outer", "outer")
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("inner", "0.1", origin=Origin(kind="editable", url=inside.as_uri())),
        dist("outer", "0.1", origin=Origin(kind="directory", url=outside.as_uri()))))
    engine, sandbox, wheelhouse = sandboxed()

    refused = build(lock, engine, options(), wheelhouse=wheelhouse)

    assert refused.vendored == ("inner==0.1 (editable)",)
    [note] = refused.left_out
    assert note.startswith(f"outer==0.1: its source {outside} lies outside the project {tmp_path / 'proj'}")
    assert note.endswith(f"add `envcap build --allow-path {outside}`")
    assert [sorted(run.source) for run in sandbox.runs] == [["inner/__init__.py", "pyproject.toml"]]

    allowed = build(lock, engine, options(allow_paths=(tmp_path / "elsewhere",)), wheelhouse=wheelhouse)
    assert allowed.vendored == ("inner==0.1 (editable)", "outer==0.1 (directory)") and allowed.left_out == ()
    assert allowed.digest != refused.digest


def test_a_local_file_pinned_by_its_hash_is_read_only_inside_the_project(tmp_path: Path) -> None:
    """A local archive with a recorded hash is fetched like an index file: the reach applies to it as well."""
    inner = make_wheel(tmp_path / "proj" / "wheels", "innerw", "1.0", {"innerw.py": "A = 1\n"})
    outer = make_wheel(tmp_path / "elsewhere", "outerw", "1.0", {"outerw.py": "A = 1\n"})
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("innerw", "1.0", origin=Origin(kind="file", url=inner.as_uri(), sha256=sha256_file(inner))),
        dist("outerw", "1.0", origin=Origin(kind="file", url=outer.as_uri(), sha256=sha256_file(outer)))))
    engine, sandbox, wheelhouse = sandboxed()

    result = build(lock, engine, options(), wheelhouse=wheelhouse)

    assert [f.split("/")[-1] for f in engine.installs[0].files if f.startswith("wheels/")] == [
        "innerw-1.0-py3-none-any.whl"]
    [note] = result.left_out
    assert note.startswith(f"outerw==1.0: its source {outer} lies outside the project")
    allowed = build(lock, engine, options(allow_paths=(outer.parent,)), wheelhouse=wheelhouse)
    assert allowed.left_out == () and sandbox.runs == []


def test_an_outside_path_is_refused_before_anything_there_is_read(tmp_path: Path) -> None:
    """A path that does not exist outside the project is a note, not "no longer exists": nothing is looked at."""
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("ghost", "1.0", origin=Origin(kind="directory", url="file:///root/.ssh"))))
    inputs = prepare(lock, fake_engine(), options())
    assert inputs.wheels.vendored == () and "its source /root/.ssh lies outside the project" in \
        inputs.wheels.left_out[0]


def test_a_link_out_of_the_project_reaches_nothing(tmp_path: Path) -> None:
    """A lock path inside the project that is a symlink to a folder elsewhere counts as elsewhere."""
    outside = project(tmp_path / "elsewhere" / "outer", "outer")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "vendor").symlink_to(outside)
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("outer", "0.1", origin=Origin(kind="directory", url=(tmp_path / "proj" / "vendor").as_uri()))))
    assert prepare(lock, fake_engine(), options()).wheels.vendored == ()


def test_cli_allow_path_is_repeatable(cli: CliRunner, tmp_path: Path) -> None:
    outside = project(tmp_path / "elsewhere" / "outer", "outer")
    # no backend to fetch: the command's own wheelhouse would ask the real index for one
    (outside / "pyproject.toml").write_text("[build-system]\nrequires = []\n[project]\nname = 'outer'\n"
                                            "version = '0.1'\n")
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("outer", "0.1", origin=Origin(kind="directory", url=outside.as_uri()))))
    engine = fake_engine()
    engine.on_run = FakeSandbox(IMAGE_FACTS)

    refused = cli.invoke(main, ["build", str(lock), "--base-image", BASE], obj={"engine": engine})
    assert refused.exit_code == 0, refused.output
    assert "left out of the image: outer==0.1: its source" in " ".join(refused.stderr.split())
    assert "--allow-path" in refused.stderr
    allowed = cli.invoke(main, ["build", str(lock), "--base-image", BASE, "--json", "--allow-path", "/nonexistent",
                                "--allow-path", str(tmp_path / "elsewhere")], obj={"engine": engine})
    assert allowed.exit_code == 0, allowed.output
    assert "lies outside" not in allowed.output and '"outer==0.1 (directory)"' in allowed.stdout


# -- a project's own links ------------------------------------------------------------------------
def test_a_symlink_leading_out_of_the_project_is_neither_digested_nor_copied(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET 42")
    root = project(tmp_path / "proj" / "mine")
    (root / "mine" / "leak.txt").symlink_to(secret)
    (root / "mine" / "dots.txt").symlink_to("../../../secret.txt")
    (root / "mine" / "ok.txt").write_text("fine")
    (root / "mine" / "alias.txt").symlink_to("ok.txt")
    (root / "mine" / "pkgdir").symlink_to(root / "mine")  # an absolute link that stays inside (a loop)
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(
        dist("mine", "0.1", origin=Origin(kind="editable", url=root.as_uri()))))
    before = tree_digest(root)
    secret.write_text("changed secret")
    assert tree_digest(root) == before, "the secret's content is never read"
    engine, sandbox, wheelhouse = sandboxed()

    result = build(lock, engine, options(), wheelhouse=wheelhouse)

    [run] = sandbox.runs
    assert run.source == {"mine/__init__.py": "VALUE = 1\n", "mine/alias.txt": "-> ok.txt", "mine/ok.txt": "fine",
                          "mine/pkgdir": "-> .", "pyproject.toml": PYPROJECT.format(name="mine")}
    assert not any("SECRET" in text or "secret" in text for text in run.source.values())
    notes = [n for n in result.notes if "leads outside the project" in n]
    assert sorted(n.split("the symlink ")[1].split(" ")[0] for n in notes) == ["mine/dots.txt", "mine/leak.txt"]


def test_the_walk_skips_build_output_and_special_files(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    for noise in ("build/lib/x.py", ".venv/bin/python", "mine.egg-info/PKG-INFO", "mine/__pycache__/x.pyc"):
        (root / noise).parent.mkdir(parents=True, exist_ok=True)
        (root / noise).write_text("noise")
    os.mkfifo(root / "mine" / "pipe")
    tree = project_tree(root)
    assert [e.relative for e in tree.entries] == ["mine/__init__.py", "pyproject.toml"] and tree.skipped == ()


# -- git ------------------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository inside the project: commit A is locked, commit B (later) is what the branch now says."""
    root = project(tmp_path / "proj" / "deps" / "gitpkg", "gitpkg")
    (root / "gitpkg" / "escape").symlink_to("/etc/passwd")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "A")
    locked = git(root, "rev-parse", "HEAD")
    (root / "gitpkg" / "__init__.py").write_text("VALUE = 2\n")
    git(root, "commit", "-q", "-am", "B")
    hook = root / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/hook-ran\n")
    hook.chmod(0o755)
    return root, locked


def test_a_git_dependency_is_the_locked_commit_fetched_by_git_alone(tmp_path: Path, repo: tuple[Path, str]) -> None:
    root, locked = repo
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(dist("gitpkg", "0.1", origin=Origin(
        kind="vcs", vcs="git", url=root.as_uri(), commit=locked))))
    engine, sandbox, wheelhouse = sandboxed()

    result = build(lock, engine, options(), wheelhouse=wheelhouse)

    assert result.vendored == ("gitpkg==0.1 (vcs)",)
    [run] = sandbox.runs
    assert run.source["gitpkg/__init__.py"] == "VALUE = 1\n", "commit A, not the branch's B"
    assert "gitpkg/escape" not in run.source and not (tmp_path / "hook-ran").exists()
    assert any("gitpkg/escape in its repository is a link leading outside it" in n for n in result.notes)
    assert isinstance(wheelhouse.runner, FakeBackendIndex)
    gits = [c for c in wheelhouse.runner.calls if c[0] == "git"]
    assert gits and all(c[1:1 + len(SAFE_CONFIG)] == SAFE_CONFIG for c in gits)
    assert "core.hooksPath=/dev/null" in SAFE_CONFIG and "protocol.ext.allow=never" in SAFE_CONFIG
    assert not any("checkout" in c or "clone" in c or "submodule" in c for c in gits)

    engine.images.clear()
    engine.add_image(BASE, "sha256:" + "b" * 64)
    build(lock, engine, options(), wheelhouse=wheelhouse)
    assert len(sandbox.runs) == 1, "the same commit is not built again"
    assert len([c for c in wheelhouse.runner.calls if c[0] == "git"]) == len(gits), "nor fetched again"


def test_a_commit_the_repository_lacks_is_one_sentence(tmp_path: Path, repo: tuple[Path, str]) -> None:
    root, _ = repo
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(dist("gitpkg", "0.1", origin=Origin(
        kind="vcs", vcs="git", url=root.as_uri(), commit="f" * 40))))
    engine, _, wheelhouse = sandboxed()
    with pytest.raises(ArtifactError, match=r"has no commit ffffffffffff, which the lock names for gitpkg 0.1"):
        build(lock, engine, options(), wheelhouse=wheelhouse)


@pytest.mark.parametrize(("origin", "expected"), [
    (Origin(kind="vcs", vcs="hg", url="https://hg.example/x", commit="a" * 40), "envcap fetches only git"),
    (Origin(kind="vcs", vcs="git", url="https://git.example/x.git", commit="main"), "records no full commit id"),
    (Origin(kind="vcs", vcs="git", url="file:///srv/elsewhere/x.git", commit="a" * 40), "lies outside the project"),
])
def test_repositories_envcap_will_not_fetch_are_left_out_with_why(tmp_path: Path, origin: Origin,
                                                                  expected: str) -> None:
    lock = write_lock(tmp_path / "proj" / ".envcap", make_snapshot(dist("x", "1.0", origin=origin)))
    engine, _, wheelhouse = sandboxed()
    result = build(lock, engine, options(), wheelhouse=wheelhouse)
    [note] = result.left_out
    assert note.startswith("x==1.0: ") and expected in note
    assert isinstance(wheelhouse.runner, FakeBackendIndex) and wheelhouse.runner.calls == []


def test_an_exported_tree_is_unpacked_only_inside_its_folder(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        def add(name: str, data: bytes = b"", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)

        add("ok/file.py", b"print(1)")
        add("../escape.txt", b"x")
        add("/abs.txt", b"x")
        add("ok/../../up.txt", b"x")
        add("ok/link", type=tarfile.SYMTYPE, linkname="../../outside")
        add("ok/abs-link", type=tarfile.SYMTYPE, linkname="/etc")
        add("ok/abs-link/passwd", b"overwritten?")
        add("ok/good-link", type=tarfile.SYMTYPE, linkname="file.py")
        add("ok/hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        add("ok/dev", type=tarfile.CHRTYPE)
    (tmp_path / "tree.tar").write_bytes(buffer.getvalue())
    dest = tmp_path / "out" / "dest"
    dest.parent.mkdir()

    skipped = unpack_tree(tmp_path / "tree.tar", dest)

    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "ok", "ok/abs-link", "ok/abs-link/passwd", "ok/file.py", "ok/good-link"]
    assert not (dest / "ok" / "abs-link").is_symlink(), "the refused link's folder is a plain folder inside"
    assert set(skipped) == {"../escape.txt", "/abs.txt", "ok/../../up.txt", "ok/link", "ok/abs-link", "ok/hard",
                            "ok/dev"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tree.tar"]
