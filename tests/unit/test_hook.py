"""The replay hook, run for real in child interpreters the way the container starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from envcap.workload import hook

REPO = Path(__file__).resolve().parents[2]
TORCH_WHEEL_VERSION = "2.13.0"  # the one torch this machine installs from local disk


def run_with_hook(python: str, code: str, folder: Path, extra_path: list[Path] | None = None,
                  cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pythonpath = os.pathsep.join(str(p) for p in extra_path) if extra_path else None
    env.update(hook.environment(str(folder), pythonpath))
    return subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)


def fake_module(root: Path, name: str, body: str) -> Path:
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return root


def test_nothing_is_written_when_no_framework_was_imported(tmp_path: Path) -> None:
    folder = hook.install(tmp_path / "hook")
    marker = tmp_path / "imported"
    fakes = fake_module(tmp_path / "fakes", "torch", f"open({str(marker)!r}, 'w').close()\n")
    done = run_with_hook(sys.executable, "import json; print('ok')", folder, [fakes])
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n" and done.stderr == ""
    assert not marker.exists(), "the hook imported torch itself"
    assert list(folder.glob("precision-*.json")) == []
    assert hook.read_records(folder) is None


def test_flags_of_a_framework_the_workload_imported_are_read_at_exit(tmp_path: Path) -> None:
    folder = hook.install(tmp_path / "hook")
    fakes = fake_module(tmp_path / "fakes", "jax", (
        "__version__ = '0.4.30'\n"
        "class _Config:\n"
        "    jax_default_matmul_precision = None\n"
        "    jax_enable_x64 = False\n"
        "config = _Config()\n"))
    code = "import jax; jax.config.jax_default_matmul_precision = 'highest'; jax.config.jax_enable_x64 = True"
    done = run_with_hook(sys.executable, code, folder, [fakes])
    assert done.returncode == 0, done.stderr
    flags = hook.read_records(folder)
    assert flags == {"jax.version": "0.4.30", "jax.default_matmul_precision": "highest", "jax.enable_x64": True}


def test_exit_code_and_output_of_the_workload_are_untouched(tmp_path: Path) -> None:
    folder = hook.install(tmp_path / "hook")
    done = run_with_hook(sys.executable, "import sys; print('x'); sys.exit(3)", folder)
    assert (done.returncode, done.stdout, done.stderr) == (3, "x\n", "")


def test_the_shadowed_sitecustomize_still_runs(tmp_path: Path) -> None:
    folder = hook.install(tmp_path / "hook")
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.IMAGE_SITECUSTOMIZE = True\n")
    done = run_with_hook(sys.executable, "import builtins, sitecustomize; "
                         "print(builtins.IMAGE_SITECUSTOMIZE, sitecustomize.__file__)", folder, [other])
    assert done.returncode == 0, done.stderr
    flag, module_file = done.stdout.split()
    assert flag == "True"
    assert Path(module_file).parent == folder


def test_the_main_process_wins_over_its_children(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    for pid, ppid, value in ((10, 1, "main"), (11, 10, "worker"), (12, 10, "worker")):
        (folder / f"precision-{pid}.json").write_text(json.dumps(
            {"pid": pid, "ppid": ppid, "argv": [], "flags": {"torch.float32_matmul_precision": value}}))
    (folder / "precision-99.json").write_text("{half a file")
    assert hook.read_records(folder) == {"torch.float32_matmul_precision": "main"}


@pytest.fixture(scope="module")
def torch_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv with the real torch (CPU wheel from the local wheel directory pip is configured with)."""
    root = tmp_path_factory.mktemp("torch-venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = str(root / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"torch=={TORCH_WHEEL_VERSION}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return python


@pytest.mark.slow
@pytest.mark.network
def test_real_torch_flags_as_the_workload_left_them(tmp_path: Path, torch_python: str) -> None:
    folder = hook.install(tmp_path / "hook")
    code = ("import torch\n"
            "torch.backends.cudnn.benchmark = True\n"
            "torch.set_float32_matmul_precision('high')\n"
            "torch.use_deterministic_algorithms(True, warn_only=True)\n")
    done = run_with_hook(torch_python, code, folder)
    assert done.returncode == 0, done.stderr
    flags = hook.read_records(folder)
    assert flags is not None
    assert flags["torch.version"].startswith(TORCH_WHEEL_VERSION)
    assert flags["torch.backends.cudnn.benchmark"] is True
    assert flags["torch.float32_matmul_precision"] == "high"
    assert flags["torch.deterministic_algorithms"] is True
    assert flags["torch.deterministic_algorithms_warn_only"] is True
    assert flags["torch.backends.cudnn.deterministic"] is False
    assert isinstance(flags["torch.backends.cuda.matmul.allow_tf32"], bool)
