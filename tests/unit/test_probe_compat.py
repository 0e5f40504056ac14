"""The probe's promise to old interpreters: it runs on Python 3.8 and newer with the standard library alone.

The rest of envcap needs 3.10, and mypy checks the probe with this venv's Python, so nothing else would
notice a 3.9+ habit creeping in. Three layers, from always-available to the real thing:

* ``ast.parse(..., feature_version=(3, 8))`` and ruff's per-file target (test_quality) catch newer syntax;
* vermin catches newer standard-library use where a name shows it (``functools.cache``, ``math.lcm``);
* neither sees a runtime ``list[str]`` or ``int | None``, and the probe's readers swallow their own
  exceptions, so the probe is also run for real in every 3.8-3.10 this machine has, and each section
  must come back filled.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.probe import PROBE_SCRIPT, probe_source, run_probe

OLDEST = (3, 8)
SYSTEM_PYTHON = "/usr/bin/python3"
BIN = Path(sys.executable).parent
# every reader the probe guards; None in one of them means it raised (the reason is in "unavailable")
GUARDED_SECTIONS = ("python", "pip_config", "os", "cpu", "gpu", "cuda", "blas", "toolchain", "env")


def test_probe_source_parses_as_python_3_8() -> None:
    ast.parse(probe_source(), filename=str(PROBE_SCRIPT), feature_version=OLDEST)


def test_vermin_finds_nothing_newer_than_3_8() -> None:
    target = "-t={}.{}-".format(*OLDEST)  # this version or older
    done = subprocess.run([str(BIN / "vermin"), "--no-tips", "--violations", target, str(PROBE_SCRIPT)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_typing_is_not_imported_when_the_probe_runs(tmp_path: Path) -> None:
    """Its types live under TYPE_CHECKING: importing typing would cost every snapshot 2-7 ms."""
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-X", "importtime", str(PROBE_SCRIPT), "--skip-git"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "json" in imported  # the listing is there at all
    assert not imported & {"typing", "typing_extensions"}


def older_python(version: str) -> str | None:
    """pyenv's build of that version, else pythonX.Y on PATH, if it really is that version."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True)
    on_path = shutil.which(f"python{version}")
    for candidate in [*map(str, candidates), *([on_path] if on_path else [])]:
        try:
            done = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, check=False, timeout=30)
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10"])
def test_probe_runs_on_an_older_python(version: str, tmp_path: Path) -> None:
    python = older_python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyenv's, or python{version} on PATH)")
    cold = run_probe(python, cwd=str(tmp_path), cache_root=tmp_path / "cache", deep=True)
    warm = run_probe(python, cwd=str(tmp_path), cache_root=tmp_path / "cache")
    assert cold["python"]["version"].startswith(version + ".")
    for facts in (cold, warm):
        broken = [s for s in GUARDED_SECTIONS if facts[s] is None]
        assert not broken, f"{broken} raised on {version}: {facts['unavailable']}"
        assert facts["distributions"], "pip at least is installed"
    for section in ("python", "distributions", "os", "cpu", "blas", "toolchain", "cuda"):
        assert cold[section] == warm[section], section
    # how a container is probed: the text on stdin, nothing on the path but the standard library
    done = subprocess.run([python, "-I", "-S", "-", "--skip-git"], input=probe_source(), capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    piped = json.loads(done.stdout)
    assert [s for s in GUARDED_SECTIONS if piped[s] is None] == [], piped["unavailable"]
    assert piped["python"] == cold["python"]
