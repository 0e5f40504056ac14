"""Shared fixtures: environment isolation (autouse), a CLI runner, the canned runner and fakes."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from tests.netserve import TlsFiles, make_tls_files

ISOLATED_PREFIXES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_REQUIRE_VIRTUALENV")
ISOLATED_NAMES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ENVCAP_CACHE_DIR", "XDG_CACHE_HOME",
                  "SOURCE_DATE_EPOCH")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests must not depend on the machine's settings, nor leave caches in the user's home.

    The cache directory is shared by the whole session (hash look-ups are immutable and cost
    network time); tests that check caching point ENVCAP_CACHE_DIR at their own folder.
    """
    for name in list(os.environ):
        if name.startswith(ISOLATED_PREFIXES) or name in ISOLATED_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(_session_cache(tmp_path_factory)))
    yield


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("envcap-cache"))
    return _CACHE[0]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).resolve().parent / "data"


PROBE_FILE = Path(__file__).resolve().parent.parent / "envcap" / "probe" / "_probe.py"


@pytest.fixture
def probe() -> ModuleType:
    """A private copy of the probe script as a module, so tests call its readers directly."""
    spec = importlib.util.spec_from_file_location("envcap_probe_under_test", PROBE_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Real venvs by requirements, made once (see tests/venvs.py); ENVCAP_TEST_VENVS keeps them across sessions."""
    from tests.venvs import VenvCache

    root = os.environ.get("ENVCAP_TEST_VENVS")
    return VenvCache(Path(root) if root else tmp_path_factory.getbasetemp() / "venvs")


# Variables that steer numerics libraries. Some machines set them for every process (this one exports
# OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE); a test that measures a library's own defaults, or that
# snapshots an environment, must not inherit them.
NUMERICS_PREFIXES = ("OPENBLAS_", "GOTO_", "OMP_", "MKL_", "KMP_", "NPY_", "ATEN_", "ONEDNN_", "DNNL_", "BLIS_",
                     "NVIDIA_TF32_", "TORCH_ALLOW_TF32")


@pytest.fixture
def clean_numerics_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(NUMERICS_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a server certificate for 127.0.0.1/localhost, made once for every test that serves TLS."""
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("no openssl CLI to make a test certificate")
    return files
