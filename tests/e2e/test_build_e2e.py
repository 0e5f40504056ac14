"""``envcap build`` for real: a real venv, its snapshot, an image from a real engine, checked from inside.

The base image is the local Debian one (Python 3.11.2) made by the e2e fixtures; the host's venv is
Python 3.11, so its cp311 wheels fit both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcap.build import BuildOptions, prepare
from envcap.cli import main
from envcap.engine import ContainerEngine, RunSpec, connect
from envcap.lock import load_snapshot
from envcap.lock.disposition import pins

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]

PINS = ("numpy==2.2.6", "packaging==24.2")
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json, sys, numpy\n"
    "print(json.dumps({'dists': sorted([d.metadata['Name'].lower().replace('_', '-'), d.version]\n"
    "                                  for d in m.distributions()),\n"
    "                  'numpy_sum': float(numpy.arange(5).sum()), 'prefix': sys.prefix,\n"
    "                  'numpy_file': numpy.__file__}))\n"
)


def make_venv(root: Path, *requirements: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *requirements], check=True)
    return root / "bin" / "python"


def make_project(root: Path, name: str, version: str, init: str) -> Path:
    """A one-module setuptools project, as a workload's own package looks."""
    project = root / name
    (project / name).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
        f"[project]\nname = '{name}'\nversion = '{version}'\n")
    (project / name / "__init__.py").write_text(init)
    return project


def snapshot(python: Path, out: Path, **variables: str) -> Path:
    subprocess.run([sys.executable, "-m", "envcap", "snapshot", "--python", str(python), "--out", str(out)],
                   check=True, capture_output=True, env=os.environ | variables)
    return out


def build(lock: Path, base_image: str, *extra: str) -> dict[str, object]:
    done = CliRunner().invoke(main, ["build", str(lock), "--base-image", base_image, "--json", *extra])
    assert done.exit_code == 0, done.output + (str(done.exception) if done.exception else "")
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def inside(engine: ContainerEngine, image: str, code: str) -> dict[str, object]:
    done = engine.run(RunSpec(image=image, command=("python", "-c", code), network_disabled=True))
    assert done.exit_code == 0, done.stderr.decode()
    data = json.loads(done.stdout.decode())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def engine(docker_client: object) -> ContainerEngine:
    return connect()


@pytest.fixture(scope="module")
def lock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build-e2e")
    python = make_venv(root / "venv", *PINS)
    return snapshot(python, root / "lock")


@pytest.fixture(scope="module")
def first_build(lock: Path, base_image: str) -> dict[str, object]:
    return build(lock, base_image)


def test_every_pinned_distribution_is_installed_at_its_pinned_version(first_build: dict[str, object], lock: Path,
                                                                     engine: ContainerEngine) -> None:
    found = inside(engine, str(first_build["tag"]), LIST_DISTRIBUTIONS)

    pinned = sorted([name, version] for name, version in pins(load_snapshot(lock)))
    assert found["dists"] == pinned, "the image's venv holds exactly the locked distributions"
    assert {"numpy", "packaging", "pip"} <= {name for name, _ in pinned}
    assert found["numpy_sum"] == 10.0
    assert found["prefix"] == "/opt/venv" and str(found["numpy_file"]).startswith("/opt/venv/")


def test_the_image_is_labelled_and_carries_no_wheels(first_build: dict[str, object], lock: Path,
                                                     engine: ContainerEngine) -> None:
    info = engine.image(str(first_build["tag"]))
    assert info is not None and info.id == first_build["image"]
    snap = load_snapshot(lock)
    assert info.labels["io.envcap.lock-digest"] == snap.digest
    assert info.labels["io.envcap.build-digest"] == first_build["digest"]
    assert info.labels["io.envcap.version"]
    leftovers = inside(engine, info.id, (
        "import json, os\n"
        "wheels = [os.path.join(d, f) for top in ('/opt', '/home', '/tmp', '/root', '/usr/local', '/var')\n"
        "          for d, _, files in os.walk(top) for f in files if f.endswith('.whl')]\n"
        "print(json.dumps({'envcap': os.path.exists('/envcap'), 'wheels': wheels, 'uid': os.getuid()}))\n"))
    assert leftovers == {"envcap": False, "wheels": [], "uid": 1000}


def test_unchanged_inputs_are_a_cache_hit(first_build: dict[str, object], lock: Path, base_image: str) -> None:
    again = build(lock, base_image)

    assert again["cached"] is True and first_build["cached"] is False
    assert again["image"] == first_build["image"] and again["tag"] == first_build["tag"]


def test_one_changed_version_builds_a_new_image_and_leaves_nothing_dangling(
        first_build: dict[str, object], tmp_path: Path, base_image: str, engine: ContainerEngine,
        docker_client: object) -> None:
    python = make_venv(tmp_path / "venv", "numpy==2.2.6", "packaging==24.1")
    lock = snapshot(python, tmp_path / "lock")
    started = time.time() - 1
    changed = build(lock, base_image)

    assert _dangling_since(docker_client, started) == [], "a first build (install + image) left an untagged image"
    assert changed["cached"] is False
    assert changed["tag"] != first_build["tag"] and changed["image"] != first_build["image"]
    found = inside(engine, str(changed["tag"]), LIST_DISTRIBUTIONS)
    assert ["packaging", "24.1"] in found["dists"]  # type: ignore[operator]


def test_the_digest_is_known_before_anything_is_downloaded(first_build: dict[str, object], lock: Path,
                                                          base_image: str, engine: ContainerEngine,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "empty-cache"))  # no wheel cached, no platform cached

    inputs = prepare(lock, engine, BuildOptions(base_image=base_image))

    assert inputs.digest == first_build["digest"]
    assert not (tmp_path / "empty-cache" / "wheels").exists()


def test_the_workloads_own_editable_package_comes_along(tmp_path: Path, base_image: str,
                                                        engine: ContainerEngine) -> None:
    project = make_project(tmp_path, "mywork", "0.3.1", "ANSWER = 42\n")
    python = make_venv(tmp_path / "venv", "packaging==24.2", "-e", str(project))

    result = build(snapshot(python, tmp_path / "lock"), base_image)

    assert result["vendored"] == ["mywork==0.3.1 (editable)"]
    found = inside(engine, str(result["tag"]), (
        "import importlib.metadata as m, json, mywork\n"
        "print(json.dumps({'answer': mywork.ANSWER, 'version': m.version('mywork'), 'file': mywork.__file__}))\n"))
    assert found["answer"] == 42 and found["version"] == "0.3.1"
    assert str(found["file"]).startswith("/opt/venv/"), "installed from the vendored wheel, not a host path"


def _dangling_since(engine_client: object, since: float) -> list[str]:
    """Untagged images made after ``since``: what a build leaves behind when it keeps intermediate layers."""
    images = engine_client.images.list(filters={"dangling": True})  # type: ignore[attr-defined]
    return [image.id for image in images
            if _created(image.attrs.get("Created", "")) >= since]


def _created(stamp: str) -> float:
    """Docker writes ``2026-12-01T17:10:03.123456789Z``: seconds are enough here."""
    from datetime import datetime, timezone

    head = stamp.split(".")[0].rstrip("Z")
    return datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp() if head else 0.0


def test_a_variable_only_change_reuses_the_installed_packages_and_leaves_no_dangling_image(
        first_build: dict[str, object], lock: Path, base_image: str, tmp_path: Path, engine: ContainerEngine,
        docker_client: object) -> None:
    python = Path(str(load_snapshot(lock).python.executable))
    changed = snapshot(python, tmp_path / "lock", OMP_NUM_THREADS="3")
    started = time.time() - 1

    result = build(changed, base_image)

    assert result["cached"] is False and result["digest"] != first_build["digest"]
    assert result["packages_reused"] is True and result["install_image"] == first_build["install_image"]
    assert result["wheels"] == 0, "no wheel is staged when only the settings changed"
    found = inside(engine, str(result["tag"]), "import json, os; print(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS')}))")
    assert found == {"omp": "3"}
    assert _dangling_since(docker_client, started) == []


def test_the_context_folder_builds_offline_with_a_plain_docker_build(lock: Path, base_image: str, tmp_path: Path,
                                                                    engine: ContainerEngine) -> None:
    out = tmp_path / "ctx"
    done = CliRunner().invoke(main, ["build", str(lock), "--base-image", base_image, "--context", str(out), "--json"])
    assert done.exit_code == 0, done.output
    written = json.loads(done.stdout)
    assert written["kind"] == "build-context" and written["wheels"] >= 2
    assert (out / "Dockerfile").is_file() and list((out / "wheels").glob("numpy-2.2.6-*.whl"))
    tag = "envcap-test-context:" + str(written["digest"]).split(":")[-1][:12]
    try:
        built = subprocess.run(["docker", "build", "--network", "none", "-q", "-t", tag, str(out)],
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr[-2000:]
        found = inside(engine, tag, LIST_DISTRIBUTIONS)
        assert ["numpy", "2.2.6"] in found["dists"]  # type: ignore[operator]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_the_context_folder_must_be_new_or_empty(lock: Path, base_image: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "keep.txt").write_text("mine")
    done = CliRunner().invoke(main, ["build", str(lock), "--base-image", base_image, "--context", str(tmp_path / "ctx")])
    assert done.exit_code == 2 and "not an empty folder" in done.output
    assert (tmp_path / "ctx" / "keep.txt").read_text() == "mine"


def test_a_wheel_installed_from_a_local_file_comes_along(tmp_path: Path, base_image: str,
                                                         engine: ContainerEngine) -> None:
    project = make_project(tmp_path, "localpkg", "1.2.0", "VALUE = 'from a wheel on disk'\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(project)], check=True)
    (wheel,) = (tmp_path / "dist").glob("localpkg-1.2.0-*.whl")
    python = make_venv(tmp_path / "venv", "packaging==24.2", str(wheel))

    result = build(snapshot(python, tmp_path / "lock"), base_image)

    found = inside(engine, str(result["tag"]), (
        "import importlib.metadata as m, json, localpkg\n"
        "print(json.dumps({'value': localpkg.VALUE, 'version': m.version('localpkg'), 'file': localpkg.__file__}))\n"))
    assert found == {"value": "from a wheel on disk", "version": "1.2.0",
                     "file": "/opt/venv/lib/python3.11/site-packages/localpkg/__init__.py"}
