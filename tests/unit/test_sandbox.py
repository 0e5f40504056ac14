"""Sources built in the sandbox, against the fake engine: the container's flags, what it may leave, the cache
keys, the backend's hash checks, and pyproject.toml read from hostile archives without extracting them.

The sdists are real tar.gz/zip files; only the engine (FakeSandbox) and pip download (FakeBackendIndex) are fakes.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from envcap.build import build
from envcap.build.backends import DEFAULT_REQUIRES, parse_requires, requires_from_sdist
from envcap.build.sandbox import BACKEND, OUT, SCRIPT, SRC
from envcap.build.wheelhouse import Wheelhouse
from envcap.engine import MANAGED_LABEL
from envcap.errors import ArtifactError
from tests.fakes import FakeBackendIndex, FakeEngine, FakeSandbox, sdist_bytes
from tests.unit.test_build import IMAGE_FACTS, LocalIndex, dist, fake_engine, make_snapshot, options, write_lock

PYPROJECT = "[build-system]\nrequires = ['flit_core>=3.2,<4']\nbuild-backend = 'flit_core.buildapi'\n"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    return LocalIndex(tmp_path / "index")


def sdist_lock(tmp_path: Path, index: LocalIndex, files: dict[str, str] | None = None, name: str = "thepkg",
               version: str = "1.0") -> Path:
    sdist = index.add(f"{name}-{version}.tar.gz", sdist_bytes(name, version, files))
    return write_lock(tmp_path / "lock", make_snapshot(dist(name, version, sdist)))


def run_build(lock: Path, engine: FakeEngine, backends: FakeBackendIndex, tmp_path: Path, **kwargs: object) -> object:
    return build(lock, engine, options(**kwargs), wheelhouse=Wheelhouse(tmp_path / "cache" / "wheels",
                                                                         runner=backends, lookup=backends))


def sandboxed(**kwargs: object) -> tuple[FakeEngine, FakeSandbox]:
    engine = fake_engine()
    sandbox = FakeSandbox(IMAGE_FACTS, **kwargs)  # type: ignore[arg-type]
    engine.on_run = sandbox
    return engine, sandbox


# -- the container --------------------------------------------------------------------------------
def test_the_sandbox_has_no_network_runs_as_the_user_and_writes_only_its_output(tmp_path: Path,
                                                                                index: LocalIndex) -> None:
    lock = sdist_lock(tmp_path, index, {"pyproject.toml": PYPROJECT, "setup.py": ""})
    engine, sandbox = sandboxed()

    run_build(lock, engine, FakeBackendIndex(), tmp_path)

    [run] = sandbox.runs
    spec = run.spec
    assert spec.network_disabled is True and spec.gpus is False
    assert spec.user == f"{os.getuid()}:{os.getgid()}"
    mounts = {m.target: m.read_only for m in spec.mounts}
    assert mounts == {SRC: True, BACKEND: True, OUT: False}
    assert spec.labels == {MANAGED_LABEL: "true", "io.envcap.purpose": "sandbox-build"}
    assert spec.entrypoint[:3] == ("/bin/sh", "-c", SCRIPT)
    assert spec.entrypoint[-2:] == ("sdist", "thepkg-1.0.tar.gz")  # arguments, never pasted into the script
    assert "thepkg" not in SCRIPT and "--no-index" in SCRIPT and "--require-hashes" in SCRIPT
    assert run.backend_requirements.startswith("flit-core==1.0 --hash=sha256:")
    for mount in spec.mounts:  # the temporary folders are gone afterwards
        assert not Path(mount.source).exists()


def test_a_failed_compile_is_one_sentence_with_the_logs_end_and_a_hint(tmp_path: Path, index: LocalIndex) -> None:
    lock = sdist_lock(tmp_path, index)
    log = b"".join(b"noise line %d\n" % i for i in range(5000)) + b"gcc: error: numpy/core.c: No such file\n" \
        + b"error: command 'gcc' failed with exit code 1\n"
    engine, _ = sandboxed(exit_code=1, log=log)

    with pytest.raises(ArtifactError) as caught:
        run_build(lock, engine, FakeBackendIndex(), tmp_path)

    message = caught.value.message
    assert message.startswith("building thepkg 1.0 from source in the network-less sandbox failed (exit 1): ")
    assert message.endswith("error: command 'gcc' failed with exit code 1.")
    assert "noise line 4999 | gcc: error" in message and "noise line 4990" not in message and "\n" not in message
    assert caught.value.hint is not None
    assert "pin a wheel of thepkg" in caught.value.hint and "compilers" in caught.value.hint
    assert "--online" in caught.value.hint
    assert engine.builds == []


def test_pips_framing_of_a_failed_step_gives_the_steps_own_last_words() -> None:
    from envcap.build.sandbox import failure_lines

    log = """Processing /envcap/src/cext-1.0.tar.gz
Building wheel for cext (pyproject.toml): finished with status 'error'
error: subprocess-exited-with-error
× Building wheel for cext (pyproject.toml) did not run successfully.
│ exit code: 1
╰─> [3 lines of output]
    running build_ext
    cext.c:1:10: fatal error: cblas.h: No such file or directory
    error: command '/usr/bin/gcc' failed with exit code 1
    [end of output]
note: This error originates from a subprocess, and is likely not a problem with pip.
ERROR: Failed building wheel for cext
hint: See above for details."""
    lines = [line.strip() for line in log.splitlines()]
    assert failure_lines(lines) == ["Building wheel for cext (pyproject.toml) did not run successfully.",
                                    "running build_ext", "cext.c:1:10: fatal error: cblas.h: No such file or directory",
                                    "error: command '/usr/bin/gcc' failed with exit code 1"]


@pytest.mark.parametrize(("plant", "wheel_name", "expected"), [
    (lambda out: (out / "thepkg-1.0-py3-none-any.whl").unlink() or
     (out / "thepkg-1.0-py3-none-any.whl").symlink_to("/etc/passwd"), None, "a link or special file"),
    (lambda out: (out / "thepkg-2.0-py3-none-any.whl").write_bytes(b"x"), None, "left 2 wheels instead of one"),
    (None, "other-1.0-py3-none-any.whl", "a wheel of another project"),
    (lambda out: (out / "thepkg-1.0-py3-none-any.whl").unlink(), None, "left 0 wheels"),
])
def test_what_the_sandbox_leaves_is_taken_only_as_one_plain_wheel_of_the_project(
        tmp_path: Path, index: LocalIndex, plant: object, wheel_name: str | None, expected: str) -> None:
    lock = sdist_lock(tmp_path, index)
    engine, _ = sandboxed(plant=plant, wheel_name=wheel_name)

    with pytest.raises(ArtifactError, match=expected):
        run_build(lock, engine, FakeBackendIndex(), tmp_path)
    assert engine.builds == []
    assert not list((tmp_path / "cache" / "wheels").glob("built/*/*/*"))


# -- the cache ------------------------------------------------------------------------------------
def test_built_wheels_are_cached_by_hashes_of_source_target_and_backend(tmp_path: Path, index: LocalIndex) -> None:
    lock = sdist_lock(tmp_path, index, {"pyproject.toml": PYPROJECT})
    engine, sandbox = sandboxed()
    backends = FakeBackendIndex()

    run_build(lock, engine, backends, tmp_path)
    engine.images.pop(engine.builds[0].tag)  # the image is gone: the context is assembled again
    run_build(lock, engine, backends, tmp_path)
    assert len(sandbox.runs) == 1, "the same sdist, target and backend: built once"
    assert len(backends.downloads()) == 1, "the backend set is remembered by its requirements and platform"

    run_build(lock, engine, backends, tmp_path, target_glibc="2.35")
    assert len(sandbox.runs) == 2, "another target platform: another wheel"

    built = sorted((tmp_path / "cache" / "wheels" / "built").glob("*/*/*.whl"))
    assert len(built) == 2
    for path in built:
        prefix, key = path.parent.parent.name, path.parent.name
        assert len(key) == 64 and set(key) <= set("0123456789abcdef") and key.startswith(prefix)
        assert "thepkg" not in str(path.parent)


def test_a_changed_backend_file_builds_the_wheel_again(tmp_path: Path, index: LocalIndex) -> None:
    lock = sdist_lock(tmp_path, index, {"pyproject.toml": PYPROJECT})
    engine, sandbox = sandboxed()
    run_build(lock, engine, FakeBackendIndex(), tmp_path)
    for tag in [sent.tag for sent in engine.builds] + [made.tag for made in engine.installs]:
        engine.images.pop(tag)  # the image and its install image gone: the next build starts over

    class NewerBackend(FakeBackendIndex):
        @staticmethod
        def wheel(name: str) -> tuple[str, bytes]:
            return "flit_core-1.1-py3-none-any.whl", b"a newer backend"

    for memo in (tmp_path / "cache" / "wheels" / "backends").rglob("*.json"):
        memo.unlink()  # a new backend release since the set was remembered
    run_build(lock, engine, NewerBackend(), tmp_path)
    assert len(sandbox.runs) == 2
    assert "flit-core==1.1" in sandbox.runs[1].backend_requirements


# -- the backend: fetched as wheels, vouched for by the index --------------------------------------
def test_the_backend_is_fetched_as_wheels_for_the_sandboxs_python(tmp_path: Path, index: LocalIndex) -> None:
    lock = sdist_lock(tmp_path, index, {"pyproject.toml": PYPROJECT})
    engine, _ = sandboxed()
    backends = FakeBackendIndex()

    run_build(lock, engine, backends, tmp_path)

    [argv] = backends.downloads()
    assert "--only-binary=:all:" in argv
    assert argv[argv.index("--python-version") + 1] == "3.11" and argv[argv.index("--abi") + 1] == "cp311"
    assert argv[argv.index("--implementation") + 1] == "cp"
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and platforms[-1] == "linux_x86_64"
    assert argv[argv.index("--") + 1:] == ("flit_core<4,>=3.2",)


@pytest.mark.parametrize(("setup", "expected"), [
    ({"tampered": {"flit-core"}}, r"flit_core-1.0-py3-none-any.whl, fetched to build thepkg 1.0, cannot be vouched "
                                  r"for: the index publishes another sha256"),
    ({"unlisted": {"flit-core"}}, "the index does not list it"),
    ({"returncode": 1}, r"cannot fetch the build backend of thepkg 1.0 \(flit_core<4,>=3.2\) as wheels for "
                        r"Python 3.11.2 .*No matching distribution"),
])
def test_a_backend_the_index_does_not_vouch_for_builds_nothing(tmp_path: Path, index: LocalIndex,
                                                                setup: dict[str, object], expected: str) -> None:
    lock = sdist_lock(tmp_path, index, {"pyproject.toml": PYPROJECT})
    engine, sandbox = sandboxed()

    with pytest.raises(ArtifactError, match=expected):
        run_build(lock, engine, FakeBackendIndex(**setup), tmp_path)  # type: ignore[arg-type]
    assert sandbox.runs == [] and engine.builds == []
    assert not list((tmp_path / "cache" / "wheels").rglob("flit_core-*.whl"))


# -- pyproject.toml from a stranger's archive ------------------------------------------------------
def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data if info.isfile() else None


GOOD = b"[build-system]\nrequires = ['hatchling']\n"
EVIL = b"[build-system]\nrequires = ['evil-backend']\n"


def read(tmp_path: Path, data: bytes, name: str = "x-1.0.tar.gz") -> tuple[str, ...]:
    path = tmp_path / name
    path.write_bytes(data)
    return requires_from_sdist(path, "x 1.0")


def test_traversal_and_nested_members_are_never_taken_for_the_pyproject(tmp_path: Path) -> None:
    data = tar_with([member("../../pyproject.toml", EVIL), member("/pyproject.toml", EVIL),
                     member("x-1.0/sub/pyproject.toml", EVIL), member("x-1.0/../pyproject.toml", EVIL),
                     member("x-1.0/pyproject.toml", GOOD)])
    assert read(tmp_path, data) == ("hatchling",)
    assert not (tmp_path.parent / "pyproject.toml").exists() and not Path("/pyproject.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-1.0.tar.gz"], "nothing was extracted"


def test_a_missing_pyproject_gives_pips_default_backend(tmp_path: Path) -> None:
    assert read(tmp_path, tar_with([member("x-1.0/setup.py", b"print('never run')")])) == DEFAULT_REQUIRES
    assert read(tmp_path, tar_with([member("x-1.0/pyproject.toml", b"[tool.black]\n")])) == DEFAULT_REQUIRES


@pytest.mark.parametrize("hostile", [
    member("x-1.0/pyproject.toml", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    member("x-1.0/pyproject.toml", type=tarfile.LNKTYPE, linkname="x-1.0/setup.py"),
    member("x-1.0/pyproject.toml", type=tarfile.CHRTYPE),
    member("x-1.0/pyproject.toml", b"#" * (300 << 10)),
])
def test_a_pyproject_that_is_a_link_a_device_or_huge_is_refused(tmp_path: Path,
                                                               hostile: tuple[tarfile.TarInfo, bytes | None]) -> None:
    with pytest.raises(ArtifactError, match="is not a plain file of at most 256 KiB"):
        read(tmp_path, tar_with([member("x-1.0/setup.py", b""), hostile]))


def test_an_archive_too_large_to_scan_is_refused_without_reading_it_all(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import envcap.build.backends as backends

    monkeypatch.setattr(backends, "MAX_MEMBERS", 10)
    many = [member(f"x-1.0/data/{i}.txt", b"x") for i in range(20)]
    with pytest.raises(ArtifactError, match="too large to look into"):
        read(tmp_path, tar_with([*many, member("x-1.0/pyproject.toml", GOOD)]))
    monkeypatch.setattr(backends, "MAX_MEMBERS", 50_000)
    monkeypatch.setattr(backends, "MAX_SCANNED_BYTES", 1 << 20)
    with pytest.raises(ArtifactError, match="too large to look into"):
        read(tmp_path, tar_with([member("x-1.0/big.bin", b"\0" * (2 << 20)), member("x-1.0/pyproject.toml", GOOD)]))


@pytest.mark.parametrize(("data", "expected"), [
    (b"not an archive at all", "is not a readable archive"),
    (tar_with([member("x-1.0/pyproject.toml", b"[build-system\nrequires=")]), "cannot be read"),
    (tar_with([member("x-1.0/pyproject.toml", b"\xff\xfe")]), "cannot be read"),
    (tar_with([member("x-1.0/pyproject.toml", b"[build-system]\nrequires = 'setuptools'\n")]), "not a list"),
    (tar_with([member("x-1.0/pyproject.toml", b"[build-system]\nrequires = ['--index-url=http://evil']\n")]),
     "not a requirement"),
    (tar_with([member("x-1.0/pyproject.toml", b"[build-system]\nrequires = ['pkg @ https://evil/x.whl']\n")]),
     "by URL"),
])
def test_a_broken_or_hostile_build_system_is_refused_naming_the_sdist(tmp_path: Path, data: bytes,
                                                                       expected: str) -> None:
    with pytest.raises(ArtifactError, match=expected):
        read(tmp_path, data)


def test_zip_sdists_are_read_by_their_one_member_too(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../pyproject.toml", EVIL)
        archive.writestr("x-1.0/pyproject.toml", GOOD)
    assert read(tmp_path, buffer.getvalue(), "x-1.0.zip") == ("hatchling",)

    linked = io.BytesIO()
    with zipfile.ZipFile(linked, "w") as archive:
        info = zipfile.ZipInfo("x-1.0/pyproject.toml")
        info.external_attr = (0o120777 << 16)  # a symlink member
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="not a plain file"):
        read(tmp_path, linked.getvalue(), "x-1.0.zip")


def test_requirements_are_normalised_sorted_and_capped() -> None:
    assert parse_requires(b"[build-system]\nrequires = ['wheel', 'Setuptools >= 61', 'wheel']\n", "x") == \
        ("Setuptools>=61", "wheel")
    many = ", ".join(f"'pkg{i}'" for i in range(100))
    with pytest.raises(ArtifactError, match="names 100 build requirements"):
        parse_requires(f"[build-system]\nrequires = [{many}]\n".encode(), "x")
