"""``envcap build`` against the fake engine: what the context holds, how the image is named, when it is reused.

The locks are made by the real ``write_snapshot`` from hand-made snapshots whose artifacts are local
files (``file://`` URLs), so every download, hash check and context is real; only the engine is fake.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcap.build import BUILD_DIGEST_LABEL, CREATED_LABEL, BuildOptions, build, content_tag, prepare
from envcap.build.wheelhouse import Wheelhouse
from envcap.cli import main
from envcap.engine import BuildEvent, BuildStepFailed, RunResult
from envcap.errors import ArtifactError, BuildError, LockfileError
from envcap.lock import Artifact, Distribution, GitState, Origin, OsInfo, PythonEnv, Snapshot
from envcap.snapshot import with_build_choices, write_snapshot
from tests.fakes import FakeBuild, FakeInstall, FakeBackendIndex, FakeEngine, FakeSandbox, sdist_bytes

BASE = "envcap-test-base:bookworm"
BASE_ID = "sha256:" + "b" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE_FACTS = {"version": "3.11.2", "implementation": "cpython", "soabi": "cpython-311-x86_64-linux-gnu",
               "machine": "x86_64", "libc": "glibc", "libc_version": "2.36"}


@dataclass
class LocalIndex:
    """A folder standing in for an index: the lock's URLs point into it."""

    root: Path

    def add(self, filename: str, content: bytes | None = None) -> Artifact:
        self.root.mkdir(parents=True, exist_ok=True)
        data = content if content is not None else f"the bytes of {filename}".encode()
        path = self.root / filename
        path.write_bytes(data)
        return Artifact(filename=filename, sha256=hashlib.sha256(data).hexdigest(), url=path.as_uri(),
                        size=len(data))


def dist(name: str, version: str, *artifacts: Artifact, origin: Origin | None = None) -> Distribution:
    return Distribution(name=name, version=version, installer="pip", site="site-packages",
                        origin=origin or Origin(kind="index"), artifacts=tuple(artifacts))


def make_snapshot(*dists: Distribution, python: str = "3.11.7") -> Snapshot:
    """As ``envcap snapshot`` writes it: with the build choices recorded (which the digest covers)."""
    return with_build_choices(Snapshot(
        envcap_version="0.1.0", captured_at="2026-01-01T00:00:00Z",
        python=PythonEnv(version=python, implementation="cpython", abi_tag="cp" + "".join(python.split(".")[:2]),
                         interpreter_tag="cp" + "".join(python.split(".")[:2]), machine="x86_64",
                         platform="linux-x86_64"),
        os=OsInfo(system="Linux", id="debian", codename="bookworm", libc="glibc", libc_version="2.36"),
        git=GitState(commit=COMMIT, branch="main"),
        env={"OMP_NUM_THREADS": "1"},
        distributions=tuple(sorted(dists, key=lambda d: d.name)),
    ).with_digest())


def write_lock(folder: Path, snapshot: Snapshot) -> Path:
    write_snapshot(snapshot, folder)
    return folder


def fake_engine(facts: Mapping[str, str] = IMAGE_FACTS) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(BASE, BASE_ID)
    engine.on_run = lambda spec: RunResult(exit_code=0, stdout=(json.dumps(facts) + "\n").encode())
    return engine


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """These tests check what is cached: each gets its own cache directory."""
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    return LocalIndex(tmp_path / "index")


@pytest.fixture
def numpy_like(index: LocalIndex) -> Distribution:
    """A compiled distribution with wheels for several platforms, as PyPI lists them."""
    return dist("numpy", "2.2.6",
                index.add("numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
                index.add("numpy-2.2.6-cp311-cp311-manylinux_2_39_x86_64.whl"),  # newer glibc than the image's
                index.add("numpy-2.2.6-cp311-cp311-musllinux_1_2_x86_64.whl"),
                index.add("numpy-2.2.6-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
                index.add("numpy-2.2.6-cp311-cp311-win_amd64.whl"),
                index.add("numpy-2.2.6.tar.gz"))


@pytest.fixture
def packaging_like(index: LocalIndex) -> Distribution:
    return dist("packaging", "24.2", index.add("packaging-24.2-py3-none-any.whl"), index.add("packaging-24.2.tar.gz"))


def built(engine: FakeEngine) -> tuple[FakeInstall, FakeBuild]:
    """The install container (committed as the install image) and the image's own build."""
    [install] = engine.installs
    [final] = engine.builds
    return install, final


def options(**kwargs: object) -> BuildOptions:
    return BuildOptions(base_image=BASE, **kwargs)  # type: ignore[arg-type]


def test_the_install_gets_the_best_wheel_for_the_image_and_nothing_else(tmp_path: Path, numpy_like: Distribution,
                                                                        packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(numpy_like, packaging_like))
    engine = fake_engine()

    result = build(lock, engine, options())

    assert not result.cached
    install, final = built(engine)
    assert sorted(install.files) == ["requirements.lock",
                                     "wheels/numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                                     "wheels/packaging-24.2-py3-none-any.whl"]
    index_bytes = (tmp_path / "index" / "packaging-24.2-py3-none-any.whl").read_bytes()
    assert install.files["wheels/packaging-24.2-py3-none-any.whl"] == index_bytes
    assert install.network_disabled and install.image == BASE_ID
    script = engine.runs[-1].entrypoint[2]
    assert "--no-index" in script and "--require-hashes" in script
    assert install.tag.startswith("envcap-venv:") and install.args == ("uv", "/opt/venv", "envcap", "1000")
    assert install.user == "0:0" and install.labels["io.envcap.install-digest"].startswith("sha256:")
    assert final.dockerfile.startswith("# Generated by envcap") and "RUN " not in final.dockerfile
    assert f"FROM {install.tag}" in final.dockerfile and sorted(final.files) == ["Dockerfile"]
    requirements = install.requirements
    for artifact in numpy_like.artifacts + packaging_like.artifacts:
        assert f"--hash=sha256:{artifact.sha256}" in requirements
    assert result.target == "Python 3.11.2 (cp311), glibc 2.36, x86_64"
    assert "the image's Python is 3.11.2; the lock was captured with 3.11.7" in result.notes


def test_the_tag_is_the_digest_and_labels_carry_lock_commit_and_date(tmp_path: Path,
                                                                     packaging_like: Distribution) -> None:
    snapshot = make_snapshot(packaging_like)
    lock = write_lock(tmp_path / "lock", snapshot)
    engine = fake_engine()

    result = build(lock, engine, options(source_date_epoch="1700000000", tags=("team/env:v1",)))

    _, sent = built(engine)
    assert result.tag == content_tag(result.digest) == f"envcap:{result.digest[7:31]}"
    assert sent.tag == result.tag
    assert sent.labels[BUILD_DIGEST_LABEL] == result.digest
    assert sent.labels[CREATED_LABEL] == "2023-11-14T22:13:20Z"
    assert f'"io.envcap.lock-digest"="{snapshot.digest}"' in sent.dockerfile
    assert f'"io.envcap.source-commit"="{COMMIT}"' in sent.dockerfile
    assert '"io.envcap.version"="0.1.0"' in sent.dockerfile
    assert engine.images["team/env:v1"].id == result.image_id
    assert result.tags == (result.tag, "team/env:v1")


def test_unchanged_inputs_find_the_image_without_reading_any_file(tmp_path: Path, index: LocalIndex,
                                                                  packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    first = build(lock, engine, options())
    for path in index.root.iterdir():  # the cached path must not need the files: delete them
        path.unlink()
    second = build(lock, engine, options())

    assert second.cached and second.image_id == first.image_id and second.digest == first.digest
    assert len(engine.installs) == 1 and len(engine.builds) == 1  # installed once, built once
    assert len(engine.runs) == 2, "the base image's platform is asked once (cached by image id), one install"


def test_what_decides_the_image_changes_the_digest(tmp_path: Path, index: LocalIndex,
                                                   packaging_like: Distribution) -> None:
    engine = fake_engine()
    first = prepare(write_lock(tmp_path / "a", make_snapshot(packaging_like)), engine, options())
    newer = dist("packaging", "25.0", index.add("packaging-25.0-py3-none-any.whl"))
    changed_version = prepare(write_lock(tmp_path / "b", make_snapshot(newer)), engine, options())
    dated = prepare(write_lock(tmp_path / "a", make_snapshot(packaging_like)), engine,
                    options(source_date_epoch="1700000000"))
    engine.add_image(BASE, "sha256:" + "c" * 64)  # the base image was rebuilt under the same name
    rebased = prepare(write_lock(tmp_path / "a", make_snapshot(packaging_like)), engine, options())
    online = prepare(write_lock(tmp_path / "a", make_snapshot(packaging_like)), engine, options(online=True))

    digests = [first.digest, changed_version.digest, dated.digest, rebased.digest, online.digest]
    assert len(set(digests)) == len(digests)


def test_a_hash_mismatch_names_the_file_and_nothing_is_built(tmp_path: Path, index: LocalIndex) -> None:
    good = index.add("tampered-1.0-py3-none-any.whl", b"original")
    lock = write_lock(tmp_path / "lock", make_snapshot(dist("tampered", "1.0", good)))
    (index.root / good.filename).write_bytes(b"changed on the index")
    engine = fake_engine()

    with pytest.raises(ArtifactError, match="tampered-1.0-py3-none-any.whl does not match the lock") as caught:
        build(lock, engine, options())

    assert hashlib.sha256(b"changed on the index").hexdigest() in caught.value.message
    assert engine.builds == []
    cache = Path(os.environ["ENVCAP_CACHE_DIR"])
    assert not list(cache.glob(f"wheels/sha256/*/{good.sha256}/*"))
    assert not list((cache / "contexts").iterdir())


def test_no_wheel_for_the_image_and_no_sdist_stops_before_any_download(tmp_path: Path, index: LocalIndex) -> None:
    only_new = dist("fastlib", "1.0", index.add("fastlib-1.0-cp311-cp311-manylinux_2_39_x86_64.whl"))
    lock = write_lock(tmp_path / "lock", make_snapshot(only_new))
    wheelhouse = Wheelhouse(tmp_path / "wheels")

    with pytest.raises(ArtifactError, match=r"fastlib 1.0 has no wheel for the image's platform .*glibc 2.36"):
        build(lock, fake_engine(), options(), wheelhouse=wheelhouse)
    assert not (tmp_path / "wheels").exists()

    result = build(lock, fake_engine(), options(target_glibc="2.39"), wheelhouse=wheelhouse)
    assert "glibc 2.39" in result.target and result.wheels == 1


def test_a_base_image_with_another_python_is_refused(tmp_path: Path, packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine(dict(IMAGE_FACTS, version="3.12.1", soabi="cpython-312-x86_64-linux-gnu"))

    with pytest.raises(BuildError, match=r"has Python 3.12.1, but the lock was captured with Python 3.11.7"):
        build(lock, engine, options())
    assert engine.builds == []


def test_a_missing_base_image_is_pulled_and_a_missing_python3_is_explained(tmp_path: Path,
                                                                         packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    engine.remove_image(BASE)
    engine.pullable[BASE] = engine.add_image("elsewhere", BASE_ID)
    build(lock, engine, options())
    assert engine.pulls == [BASE]

    bare = fake_engine()
    bare.add_image(BASE, "sha256:" + "d" * 64)  # another image: its platform is not cached yet
    bare.on_run = lambda spec: RunResult(exit_code=127, stderr=b"python3: not found")
    with pytest.raises(BuildError, match=r"python3 in the base image .* did not describe itself \(exit 127\)"):
        build(lock, bare, options())
    assert bare.builds == []


def sandboxed(engine: FakeEngine, **kwargs: object) -> FakeSandbox:
    """The engine's runs answered as the sandbox would: platform probes, and builds that write a wheel."""
    sandbox = FakeSandbox(IMAGE_FACTS, **kwargs)  # type: ignore[arg-type]
    engine.on_run = sandbox
    return sandbox


def test_an_sdist_only_distribution_is_built_in_the_sandbox_and_pinned_by_its_new_hash(tmp_path: Path,
                                                                                        index: LocalIndex) -> None:
    sdist = index.add("puresdist-0.3.tar.gz", sdist_bytes("puresdist", "0.3"))
    lock = write_lock(tmp_path / "lock", make_snapshot(dist("puresdist", "0.3", sdist)))
    backends = FakeBackendIndex()
    engine = fake_engine()
    sandbox = sandboxed(engine)

    result = build(lock, engine, options(), wheelhouse=Wheelhouse(tmp_path / "wheels", runner=backends,
                                                                   lookup=backends))

    install, _ = built(engine)
    wheel = install.files["wheels/puresdist-0.3-py3-none-any.whl"]
    requirements = install.requirements
    assert f"--hash=sha256:{sdist.sha256}" in requirements
    assert f"--hash=sha256:{hashlib.sha256(wheel).hexdigest()}" in requirements
    assert result.built_from_sdist == ("puresdist==0.3",)
    [run] = sandbox.runs
    assert run.spec.image == BASE_ID and run.spec.network_disabled
    assert run.source == {"puresdist-0.3.tar.gz": sdist_bytes("puresdist", "0.3").decode("utf-8", "replace")}
    [download] = backends.downloads()
    assert download[download.index("--") + 1:] == ("setuptools>=40.8.0", "wheel")  # no pyproject.toml: PEP 518
    assert "setuptools==1.0 --hash=sha256:" in run.backend_requirements
    [warning] = result.warnings
    assert "puresdist 0.3 has no wheel" in warning and "network-less sandbox" in warning
    assert "optimized libraries" in warning


def test_a_sandbox_built_wheel_the_image_cannot_use_is_refused(tmp_path: Path, index: LocalIndex) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(dist("cext", "1.0", index.add("cext-1.0.tar.gz",
                                                                                      sdist_bytes("cext", "1.0")))))
    engine = fake_engine()
    sandboxed(engine, wheel_name="cext-1.0-cp312-cp312-linux_x86_64.whl")  # an image with another Python
    backends = FakeBackendIndex()

    with pytest.raises(ArtifactError, match=r"gives cext-1.0-cp312-cp312-linux_x86_64.whl, which the image"):
        build(lock, engine, options(), wheelhouse=Wheelhouse(tmp_path / "wheels", runner=backends, lookup=backends))
    assert engine.builds == []


def test_a_local_project_is_built_into_a_vendored_wheel_and_its_edits_change_the_digest(
        tmp_path: Path, packaging_like: Distribution) -> None:
    project = tmp_path / "myproj"
    (project / "myproj").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[build-system]\nrequires = ['hatchling>=1.24']\n"
                                            "build-backend = 'hatchling.build'\n"
                                            "[project]\nname = 'myproj'\nversion = '0.1'\n")
    (project / "myproj" / "__init__.py").write_text("VALUE = 1\n")
    local = dist("myproj", "0.1", origin=Origin(kind="editable", url=project.as_uri()))
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like, local))
    backends = FakeBackendIndex()
    engine = fake_engine()
    sandbox = sandboxed(engine)
    wheelhouse = Wheelhouse(tmp_path / "wheels", runner=backends, lookup=backends)

    first = build(lock, engine, options(), wheelhouse=wheelhouse)
    (project / "myproj" / "__pycache__").mkdir()
    (project / "myproj" / "__pycache__" / "x.pyc").write_bytes(b"noise")
    untouched = prepare(lock, engine, options())
    (project / "myproj" / "__init__.py").write_text("VALUE = 2\n")
    edited = prepare(lock, engine, options())

    install, _ = built(engine)
    assert "wheels/vendored/myproj-0.1-py3-none-any.whl" in install.files
    assert "myproj" not in install.requirements
    assert first.vendored == ("myproj==0.1 (editable)",)
    [run] = sandbox.runs
    assert sorted(run.source) == ["myproj/__init__.py", "pyproject.toml"]
    assert run.spec.entrypoint[-2:] == ("tree", ".")
    assert "hatchling==1.0 --hash=sha256:" in run.backend_requirements
    assert untouched.digest == first.digest
    assert edited.digest != first.digest


def test_a_vanished_local_project_stops_the_build(tmp_path: Path) -> None:
    gone = dist("gone", "1.0", origin=Origin(kind="directory", url=(tmp_path / "nowhere").as_uri()))
    lock = write_lock(tmp_path / "lock", make_snapshot(gone))

    with pytest.raises(ArtifactError, match="which no longer exists"):
        build(lock, fake_engine(), options())


def test_online_sends_no_wheels_and_lets_pip_use_the_index(tmp_path: Path, numpy_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(numpy_like))
    engine = fake_engine()

    result = build(lock, engine, options(online=True))

    install, final = built(engine)
    assert sorted(install.files) == ["requirements.lock"]  # no wheels: pip fetches them, checking every hash
    assert install.files["requirements.lock"] == (lock / "requirements.lock").read_bytes()
    assert not install.network_disabled and install.installer == "pip"
    assert final.labels["io.envcap.hermetic"] == "false" and not result.hermetic


def test_an_edited_requirements_lock_is_ignored_with_a_note(tmp_path: Path, packaging_like: Distribution) -> None:
    """Generated files are outputs only: an edit cannot change what is built, and the user is told so."""
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    text = (lock / "requirements.lock").read_text()
    (lock / "requirements.lock").write_text(text.replace(packaging_like.artifacts[0].sha256, "0" * 64))
    engine = fake_engine()

    result = build(lock, engine, options())

    install, _ = built(engine)
    assert packaging_like.artifacts[0].sha256 in install.requirements
    assert "0" * 64 not in install.requirements
    assert any("requirements.lock" in note and "ignores them" in note for note in result.notes)


def test_the_lock_alone_builds_from_the_base_image_given_to_snapshot(tmp_path: Path,
                                                                     packaging_like: Distribution) -> None:
    """Issue 8: every file but envcap.lock.json deleted, `envcap build` still uses `snapshot --base-image`."""
    written = tmp_path / "written"
    write_snapshot(make_snapshot(packaging_like), written, base_image=BASE)
    lock = tmp_path / "lock"  # what a colleague commits: the one file, nothing beside it
    lock.mkdir()
    (lock / "envcap.lock.json").write_bytes((written / "envcap.lock.json").read_bytes())
    engine = fake_engine()

    result = build(lock, engine, BuildOptions())

    install, _ = built(engine)
    assert result.base_image == BASE and install.image == BASE_ID
    assert not any("ignores them" in note for note in result.notes)  # deleted outputs are not "edited" ones
    assert sorted(path.name for path in lock.iterdir()) == ["envcap.lock.json"]  # nothing was written back
    for name in ("requirements.lock", "pylock.toml", "requirements.in", "Dockerfile", ".dockerignore"):
        (written / name).unlink()  # and the generated outputs deleted where the snapshot wrote them
    assert build(written, engine, BuildOptions()).base_image == BASE


def test_an_interrupted_build_leaves_no_tag_and_no_context(tmp_path: Path, packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    engine.build_error = KeyboardInterrupt()
    inputs = prepare(lock, engine, options())

    with pytest.raises(KeyboardInterrupt):
        build(lock, engine, options())

    assert inputs.tag not in engine.images
    assert not list((Path(os.environ["ENVCAP_CACHE_DIR"]) / "contexts").iterdir())


# -- the command ----------------------------------------------------------------------------------
def test_cli_json_result_shape(cli: CliRunner, tmp_path: Path, packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()

    first = cli.invoke(main, ["build", str(lock), "--base-image", BASE, "--json"], obj={"engine": engine})
    second = cli.invoke(main, ["build", str(lock), "--base-image", BASE, "--json"], obj={"engine": engine})

    assert first.exit_code == 0, first.output
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert {"format", "kind", "image", "tag", "cached", "digest", "base_image", "target", "hermetic"} <= set(one)
    assert one["kind"] == "build" and one["cached"] is False and two["cached"] is True
    assert one["image"] == two["image"] == engine.builds[-1].image_id
    assert one["tag"] == two["tag"] == engine.builds[-1].tag


def test_cli_failing_step_prints_the_step_and_its_log_tail(cli: CliRunner, tmp_path: Path,
                                                           packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    engine.build_events = [BuildEvent("step", "RUN pip install", step=6, total=12),
                           BuildEvent("log", "ERROR: no matching distribution")]
    engine.build_error = BuildStepFailed("the image build failed at step 6/12 (RUN pip install): exit 1",
                                         hint="see above", step="RUN pip install",
                                         log_tail=("Processing x", "ERROR: no matching distribution"))

    done = cli.invoke(main, ["build", str(lock), "--base-image", BASE], obj={"engine": engine})

    assert done.exit_code == BuildStepFailed.exit_code == 8
    assert "failed step: RUN pip install" in done.stderr
    assert "  | ERROR: no matching distribution" in done.stderr
    assert "error: the image build failed at step 6/12" in done.stderr


def test_cli_reports_an_unreachable_engine(cli: CliRunner, tmp_path: Path, packaging_like: Distribution,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")

    done = cli.invoke(main, ["build", str(lock)])

    assert done.exit_code == 7
    assert f"unix://{tmp_path}/no-engine.sock" in done.stderr
    assert "hint:" in done.stderr and "DOCKER_HOST" in done.stderr


def test_source_date_epoch_must_be_a_number(tmp_path: Path, packaging_like: Distribution) -> None:
    from envcap.errors import UsageError

    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        prepare(lock, fake_engine(), options(source_date_epoch="yesterday"))


def test_left_out_distributions_are_reported(tmp_path: Path, packaging_like: Distribution) -> None:
    nowhere = replace(dist("private", "1.0"), artifacts=())
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like, nowhere))

    result = build(lock, fake_engine(), options())

    assert [item.split(":")[0] for item in result.left_out] == ["private==1.0"]


def test_an_invalid_tag_is_refused_before_anything_is_built(cli: CliRunner, tmp_path: Path,
                                                            packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    done = cli.invoke(main, ["build", str(lock), "--base-image", BASE, "--tag", "Bad Tag"], obj={"engine": engine})
    assert done.exit_code == 2
    assert "error: --tag 'Bad Tag' is not a valid image name." in done.stderr
    assert engine.builds == []


@pytest.mark.parametrize("ref", ["team/train:v1", "localhost:5000/a/b:1.0", "envcap:0123abcd", "x"])
def test_valid_references_pass_the_tag_check(ref: str) -> None:
    from envcap.build import check_reference

    check_reference(ref)


def test_a_lock_edited_by_hand_is_said_and_labelled_with_its_content_digest(tmp_path: Path,
                                                                            packaging_like: Distribution) -> None:
    import json

    from envcap.build import prepare
    from envcap.lock import content_digest, loads

    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    path = lock / "envcap.lock.json" if lock.is_dir() else lock
    edited = json.loads(path.read_text())
    edited["env"] = {"OMP_NUM_THREADS": "8"}  # the stored digest is left as it was
    path.write_text(json.dumps(edited))
    inputs = prepare(lock, fake_engine(), BuildOptions(base_image=BASE))
    assert any("edited after the snapshot" in note for note in inputs.notes)
    assert inputs.snapshot.digest == content_digest(loads(path.read_text()))


def test_a_lock_that_differs_in_one_variable_reuses_the_installed_packages(tmp_path: Path,
                                                                         packaging_like: Distribution) -> None:
    """Issue 10: one variable changed rebuilt everything (108 s); now only the settings layer is new."""
    snapshot = make_snapshot(packaging_like)
    lock = write_lock(tmp_path / "lock", snapshot)
    engine = fake_engine()
    first = build(lock, engine, options())
    write_lock(lock, replace(snapshot, env={"OMP_NUM_THREADS": "4"}).with_digest())

    second = build(lock, engine, options())

    assert second.digest != first.digest and second.image_id != first.image_id
    assert len(engine.installs) == 1  # no second install
    first_final, second_final = engine.builds
    assert f"FROM {engine.installs[0].tag}" in second_final.dockerfile
    assert 'OMP_NUM_THREADS="4"' in second_final.dockerfile and "RUN " not in second_final.dockerfile
    assert second.packages_reused and not first.packages_reused and second.install_image == first.install_image


def test_a_failed_install_is_one_sentence_with_the_installers_last_words(tmp_path: Path,
                                                                         packaging_like: Distribution) -> None:
    lock = write_lock(tmp_path / "lock", make_snapshot(packaging_like))
    engine = fake_engine()
    engine.install_exit_code = 1
    with pytest.raises(BuildError, match=r"installing the locked packages into the image failed \(exit 1\): boom"):
        build(lock, engine, options())
    assert engine.builds == []


def test_a_cuda_base_gets_the_exact_python_once_then_the_packages_on_top(tmp_path: Path,
                                                                        packaging_like: Distribution) -> None:
    """System CUDA: the install container starts from the CUDA base with the lock's Python copied in
    (``envcap-runtime:*``, built once), so the venv's interpreter is the one the image runs."""
    from envcap.lock import CudaComponent, CudaStack, Gpu, GpuDevice

    cuda = CudaStack(components={"cuda_runtime": CudaComponent("12.4.127", "system", "/usr/local/cuda")},
                     toolkit_root="/usr/local/cuda-12.4", toolkit_version="12.4.1")
    gpu = Gpu(status="ok", binding="pynvml", driver_version="550.54.15", cuda_driver_version="12.4",
              devices=(GpuDevice(index=0, name="NVIDIA A100-SXM4-80GB", compute_capability="8.0"),))
    plain = make_snapshot(packaging_like)
    snapshot = with_build_choices(replace(plain, build=None, gpu=gpu, cuda=cuda,
                                          os=OsInfo(system="Linux", id="ubuntu", codename="jammy", libc="glibc",
                                                    libc_version="2.35")).with_digest())
    engine = fake_engine()
    cuda_base = engine.add_image("nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04", "sha256:" + "c" * 64)
    engine.add_image("python:3.11.7-slim-bullseye", "sha256:" + "d" * 64)
    lock = write_lock(tmp_path / "lock", snapshot)

    first = build(lock, engine, BuildOptions())
    write_lock(lock, replace(snapshot, env={"OMP_NUM_THREADS": "2"}).with_digest())
    second = build(lock, engine, BuildOptions())

    runtime, first_final, second_final = engine.builds
    [install] = engine.installs
    assert runtime.tag.startswith("envcap-runtime:") and install.image == runtime.tag
    assert f"FROM {cuda_base.tags[0]}\n" in runtime.dockerfile
    assert "COPY --from=python /usr/local/ /usr/local/" in runtime.dockerfile and runtime.labels["io.envcap.managed"]
    assert f"FROM {install.tag}\n" in first_final.dockerfile and f"FROM {install.tag}\n" in second_final.dockerfile
    assert first.base_image == second.base_image == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
