"""``envcap build`` for real: a real venv, its snapshot, an image from a real engine, checked from inside.

The base image is the local Debian one (Python 3.11.2) made by the e2e fixtures; the host's venv is
Python 3.11, so its cp311 wheels fit both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcap.build import BuildOptions, prepare
from envcap.cli import main
from envcap.emit.requirements import pins
from envcap.engine import ContainerEngine, RunSpec, connect
from envcap.lock.store import load_snapshot

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


def snapshot(python: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "envcap", "snapshot", "--python", str(python), "--out", str(out)],
                   check=True, capture_output=True)
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


def test_one_changed_version_builds_a_new_image(first_build: dict[str, object], tmp_path: Path, base_image: str,
                                                engine: ContainerEngine) -> None:
    python = make_venv(tmp_path / "venv", "numpy==2.2.6", "packaging==24.1")
    changed = build(snapshot(python, tmp_path / "lock"), base_image)

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
    project = tmp_path / "mywork"
    (project / "mywork").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
        "[project]\nname = 'mywork'\nversion = '0.3.1'\n")
    (project / "mywork" / "__init__.py").write_text("ANSWER = 42\n")
    python = make_venv(tmp_path / "venv", "packaging==24.2", "-e", str(project))

    result = build(snapshot(python, tmp_path / "lock"), base_image)

    assert result["vendored"] == ["mywork==0.3.1 (editable)"]
    found = inside(engine, str(result["tag"]), (
        "import importlib.metadata as m, json, mywork\n"
        "print(json.dumps({'answer': mywork.ANSWER, 'version': m.version('mywork'), 'file': mywork.__file__}))\n"))
    assert found["answer"] == 42 and found["version"] == "0.3.1"
    assert str(found["file"]).startswith("/opt/venv/"), "installed from the vendored wheel, not a host path"
