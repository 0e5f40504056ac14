"""The probe's readers against crafted and recorded inputs.

The probe is a stdlib-only script meant to run inside other interpreters, so these tests load it
from its file (as a container's python would) rather than through ``envcap.probe``; each test gets
a fresh module, so the module-level ``UNAVAILABLE`` list starts empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "probe"



# ---------------------------------------------------------------------------- distributions

def make_dist(site: Path, folder: str, files: dict[str, str | bytes | None]) -> Path:
    """A dist-info/egg-info folder with the given files (None: the file is absent)."""
    path = site / folder
    path.mkdir(parents=True)
    for name, content in files.items():
        if content is None:
            continue
        target = path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, "utf-8")
    return path


def metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\nlong description: Version: 9\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site-packages with one distribution of every origin the probe must tell apart."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    make_dist(site, "Requested_Pkg-1.0.dist-info", {
        "METADATA": metadata("Requested_Pkg", "1.0"), "INSTALLER": "pip\n", "REQUESTED": ""})
    make_dist(site, "dependency-2.0.dist-info", {"METADATA": metadata("dependency", "2.0"), "INSTALLER": "uv\n"})
    make_dist(site, "from_git-0.3.dist-info", {
        "METADATA": metadata("from-git", "0.3"), "INSTALLER": "pip", "REQUESTED": "",
        "direct_url.json": json.dumps({
            "url": "https://alice:s3cr3tpass@github.com/org/from-git.git",
            "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567",
                         "requested_revision": "main"},
            "subdirectory": "python"})})
    make_dist(site, "editable_proj-0.1.dev0.dist-info", {
        "METADATA": metadata("editable-proj", "0.1.dev0"), "INSTALLER": "pip", "REQUESTED": "",
        "direct_url.json": json.dumps({"url": "file:///home/u/proj", "dir_info": {"editable": True}})})
    make_dist(site, "local_dir-1.2.dist-info", {
        "METADATA": metadata("local-dir", "1.2"), "INSTALLER": "pip",
        "direct_url.json": json.dumps({"url": "file:///srv/src/local-dir", "dir_info": {}})})
    make_dist(site, "local_file-3.0.dist-info", {
        "METADATA": metadata("local-file", "3.0"), "INSTALLER": "pip",
        "direct_url.json": json.dumps({"url": "file:///tmp/local_file-3.0-py3-none-any.whl",
                                       "archive_info": {"hashes": {"sha256": "a" * 64}}})})
    make_dist(site, "remote_archive-4.0.dist-info", {
        "METADATA": metadata("remote-archive", "4.0"), "INSTALLER": "pip",
        "direct_url.json": json.dumps({"url": "https://bob:pw@files.example/remote_archive-4.0.tar.gz",
                                       "archive_info": {"hash": "sha256=" + "b" * 64}})})
    make_dist(site, "no_metadata-5.0.dist-info", {"INSTALLER": "pip"})
    make_dist(site, "no_version-6.0.dist-info", {"METADATA": "Metadata-Version: 2.1\nName: no-version\n\n"})
    make_dist(site, "garbage_meta-7.0.dist-info", {"METADATA": b"\xff\xfe\x00\x81not rfc822\x00"})
    make_dist(site, "bad_direct_url-8.0.dist-info", {
        "METADATA": metadata("bad-direct-url", "8.0"), "direct_url.json": "{not json"})
    make_dist(site, "url_not_string-8.1.dist-info", {
        "METADATA": metadata("url-not-string", "8.1"), "direct_url.json": json.dumps({"url": 5, "dir_info": {}})})
    make_dist(site, "Legacy_Egg-0.9-py3.11.egg-info", {"PKG-INFO": metadata("Legacy_Egg", "0.9")})
    (site / "bare_egg-1.1-py3.11.egg-info").write_text(metadata("bare-egg", "1.1"), "utf-8")
    (site / "not_a_dist").mkdir()
    (site / "module.py").write_text("", "utf-8")
    return site


def by_name(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["name"]): r for r in records}


def test_every_distribution_is_reported_none_dropped(probe: ModuleType, site: Path) -> None:
    dists = by_name(probe.distributions_facts([str(site)]))
    assert set(dists) == {
        "requested-pkg", "dependency", "from-git", "editable-proj", "local-dir", "local-file", "remote-archive",
        "no-metadata", "no-version", "garbage-meta", "bad-direct-url", "url-not-string", "legacy-egg", "bare-egg"}


def test_names_are_canonical_and_display_names_kept(probe: ModuleType, site: Path) -> None:
    dist = by_name(probe.distributions_facts([str(site)]))["requested-pkg"]
    assert dist["display_name"] == "Requested_Pkg"
    assert dist["version"] == "1.0"
    assert dist["location"] == str(site)
    assert dist["site"] == "site-packages"


def test_requested_and_installer(probe: ModuleType, site: Path) -> None:
    dists = by_name(probe.distributions_facts([str(site)]))
    assert dists["requested-pkg"]["requested"] is True
    assert dists["requested-pkg"]["installer"] == "pip"
    assert dists["dependency"]["requested"] is False
    assert dists["dependency"]["installer"] == "uv"
    assert dists["dependency"]["origin"] == {"kind": "index", "url": None}


def test_vcs_origin_keeps_commit_and_drops_credentials(probe: ModuleType, site: Path) -> None:
    origin = by_name(probe.distributions_facts([str(site)]))["from-git"]["origin"]
    assert origin == {"kind": "vcs", "url": "https://github.com/org/from-git.git", "vcs": "git",
                      "commit": "0123456789abcdef0123456789abcdef01234567", "requested_revision": "main",
                      "subdirectory": "python"}


def test_editable_directory_file_and_url_origins(probe: ModuleType, site: Path) -> None:
    dists = by_name(probe.distributions_facts([str(site)]))
    assert dists["editable-proj"]["origin"] == {"kind": "editable", "url": "file:///home/u/proj", "subdirectory": None}
    assert dists["local-dir"]["origin"] == {"kind": "directory", "url": "file:///srv/src/local-dir",
                                            "subdirectory": None}
    assert dists["local-file"]["origin"] == {"kind": "file", "url": "file:///tmp/local_file-3.0-py3-none-any.whl",
                                             "sha256": "a" * 64}
    # The legacy "hash" key of PEP 610 is read too; the password in the URL is not kept.
    assert dists["remote-archive"]["origin"] == {"kind": "url", "url": "https://files.example/remote_archive-4.0.tar.gz",
                                                 "sha256": "b" * 64}


def test_broken_metadata_is_reported_not_fatal(probe: ModuleType, site: Path) -> None:
    dists = by_name(probe.distributions_facts([str(site)]))
    assert dists["no-metadata"]["version"] == "5.0"  # from the folder name
    assert "no METADATA file" in dists["no-metadata"]["problems"]
    assert dists["no-version"]["version"] == "6.0"
    assert any("no version" in p for p in dists["no-version"]["problems"])
    assert dists["garbage-meta"]["version"] == "7.0"
    assert dists["garbage-meta"]["problems"]
    assert any("direct_url.json" in p for p in dists["bad-direct-url"]["problems"])
    assert any("direct_url.json" in p for p in dists["url-not-string"]["problems"])


def test_body_text_that_looks_like_a_header_is_not_read(probe: ModuleType, site: Path) -> None:
    """METADATA's body says 'Version: 9'; only the header block counts."""
    assert by_name(probe.distributions_facts([str(site)]))["requested-pkg"]["version"] == "1.0"


def test_header_reading_skips_other_headers_and_stops_at_the_body(probe: ModuleType) -> None:
    """The fast path passes over lines that start with another letter and splits only the header block;
    what it reads must stay what the plain line-by-line reading gave."""
    text = ("Metadata-Version: 2.1\r\nClassifier: Name: not-this\nname : First_Name\nName: second\n"
            "Summary: Version: 0\n  Version: continuation\nVERSION:\t1.0.post1 \nRequires-Dist: Dep_A>=1\n"
            "requires-dist: dep.b ; extra == 'Fast_IO'\n\x0cVersion: 7\n \nRequires-Dist: after-blank\n\n"
            "Name: body\nVersion: 9\n")
    requires: list[tuple[str, str | None]] = []
    assert probe.parse_metadata_headers(text, requires) == {"name": "First_Name", "version": "1.0.post1"}
    assert requires == [("dep-a", None), ("dep-b", "fast-io")]
    assert probe.parse_metadata_headers("Name: x\nVersion: 1") == {"name": "x", "version": "1"}


def test_egg_info_folder_and_bare_file(probe: ModuleType, site: Path) -> None:
    dists = by_name(probe.distributions_facts([str(site)]))
    assert dists["legacy-egg"]["metadata_format"] == "egg-info"
    assert dists["legacy-egg"]["origin"]["kind"] == "egg-info"
    assert dists["legacy-egg"]["installer"] is None
    assert dists["legacy-egg"]["requested"] is None
    assert dists["bare-egg"]["version"] == "1.1"
    assert dists["bare-egg"]["metadata_format"] == "egg-info"


def test_first_on_the_path_wins_and_shadowed_copies_are_listed(probe: ModuleType, site: Path, tmp_path: Path) -> None:
    """Like importlib: a second copy later on sys.path is not the one Python imports."""
    dist_packages = tmp_path / "usr" / "lib" / "python3" / "dist-packages"
    dist_packages.mkdir(parents=True)
    shadow = make_dist(dist_packages, "dependency-1.5.dist-info", {"METADATA": metadata("dependency", "1.5")})
    make_dist(dist_packages, "apt_only-0.5.dist-info", {"METADATA": metadata("apt-only", "0.5"), "INSTALLER": "debian"})
    dists = by_name(probe.distributions_facts([str(site), "", str(tmp_path / "missing"), str(dist_packages)]))
    assert dists["dependency"]["version"] == "2.0"
    assert dists["dependency"]["shadowed"] == [str(shadow)]
    assert dists["apt-only"]["site"] == "dist-packages"
    assert dists["apt-only"]["installer"] == "debian"


# -------------------------------------------------------------------------------------- env

SECRETS = {
    "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyzABCDEF",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "GITHUB_TOKEN": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "DATABASE_URL": "postgres://admin:hunter2@db.internal:5432/app",
    "TF_VAR_db_password": "hunter2",  # Terraform, not TensorFlow: a bare TF_ prefix must not match
    "PIP_EXTRA_INDEX_URL": "https://__token__:pypi-AgEIcHlwaS5vcmc@private.example/simple",
}


def test_nothing_outside_the_allow_list_is_captured(probe: ModuleType) -> None:
    env = {**SECRETS, "HOME": "/root", "PATH": "/usr/bin", "OMP_NUM_THREADS": "8"}
    captured = probe.env_facts(env)
    assert captured == {"OMP_NUM_THREADS": "8"}


def test_numerics_variables_are_kept_verbatim(probe: ModuleType) -> None:
    env = {
        "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "1", "MKL_CBWR": "AVX2", "OPENBLAS_NUM_THREADS": "2",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "NVIDIA_TF32_OVERRIDE": "0", "PYTHONHASHSEED": "0",
        "TF_DETERMINISTIC_OPS": "1", "XLA_FLAGS": "--xla_gpu_deterministic_ops=true", "NCCL_ALGO": "Ring",
        "CUDA_VISIBLE_DEVICES": "0,1", "TORCH_CUDA_ARCH_LIST": "8.0;8.6;9.0+PTX",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "TORCHINDUCTOR_CACHE_DIR": "/home/user/.cache/torchinductor_user_0123456789abcdefXYZ",
        "KMP_AFFINITY": "granularity=fine,compact,1,0",
    }
    assert probe.env_facts(env) == env


@pytest.mark.parametrize("name, value", [
    ("TORCH_HUB_TOKEN", "plain-value"),  # allowed prefix, secret-looking name
    ("JAX_API_KEY", "x"),
    ("NCCL_SOCKET_PASSWORD", "x"),
    ("TORCH_EXTRA", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("TRITON_DEBUG_TOKENISH", "hf_abcdefghijklmnopqrstuvwxyz"),
    ("OMP_WAIT_POLICY", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"),
    ("NCCL_DEBUG_FILE", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"),  # long random-looking string
    ("MKL_PEM", "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."),
])
def test_credential_values_are_replaced_by_the_marker(probe: ModuleType, name: str, value: str) -> None:
    assert probe.env_facts({name: value}) == {name: probe.REDACTED}


def test_credentials_inside_a_url_are_removed_and_the_rest_kept(probe: ModuleType) -> None:
    captured = probe.env_facts({"TRITON_CACHE_URL": "https://bob:s3cr3t@cache.example/path"})
    value = captured["TRITON_CACHE_URL"]
    assert "s3cr3t" not in value and "bob" not in value
    assert value == "https://<redacted>@cache.example/path"


def test_a_token_alone_in_a_url_is_removed(probe: ModuleType) -> None:
    token = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    captured = probe.env_facts({"TORCH_HUB_MIRROR": f"https://{token}@github.com/org/hub"})
    assert token not in captured["TORCH_HUB_MIRROR"]


def test_a_password_containing_at_is_removed_whole(probe: ModuleType) -> None:
    captured = probe.env_facts({"TRITON_CACHE_URL": "https://bob:p@ssw0rd@cache.example/path"})
    assert "ssw0rd" not in captured["TRITON_CACHE_URL"]
    assert "ssw0rd" not in probe.strip_credentials("https://bob:p@ssw0rd@pypi.internal/simple")


# ------------------------------------------------------------------------------- pip config

PIP_CONF = """\
[global]
index-url = https://alice:hunter2@pypi.internal.example/simple
extra-index-url =
    https://download.pytorch.org/whl/cu121
    https://__token__:pypi-AgEIcHlwaS5vcmc@private.example/simple
timeout = 60

[install]
find-links = /srv/wheels file:///mnt/wheelhouse
no-index = false
"""


@pytest.fixture
def pip_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home and XDG dirs of our own, so the machine's pip.conf files are not read."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HOME",):
        monkeypatch.setenv(name, str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-none"))
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    return home


def test_pip_config_is_read_and_credentials_stripped(probe: ModuleType, pip_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    conf = pip_home / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(PIP_CONF, "utf-8")
    facts = probe.pip_config_facts()
    assert facts["index_url"] == "https://pypi.internal.example/simple"
    assert facts["extra_index_urls"] == ["https://download.pytorch.org/whl/cu121", "https://private.example/simple"]
    assert facts["find_links"] == ["/srv/wheels", "file:///mnt/wheelhouse"]
    assert facts["no_index"] is False
    assert str(conf) in facts["sources"]
    text = json.dumps(facts)
    for secret in ("hunter2", "alice", "pypi-AgEIcHlwaS5vcmc", "__token__"):
        assert secret not in text


def test_pip_environment_variables_override_files(probe: ModuleType, pip_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    conf = pip_home / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(PIP_CONF, "utf-8")
    monkeypatch.setenv("PIP_INDEX_URL", "https://carol:pw123@mirror.example/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "yes")
    facts = probe.pip_config_facts()
    assert facts["index_url"] == "https://mirror.example/simple"
    assert facts["no_index"] is True
    assert "env:PIP_INDEX_URL" in facts["sources"]
    assert "pw123" not in json.dumps(facts)


def test_pip_config_file_variable_and_broken_file(probe: ModuleType, pip_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A file pip cannot parse is noted as unavailable; the others still count."""
    good = tmp_path / "pip-good.conf"
    good.write_text("[global]\nfind-links = /opt/wheels\n", "utf-8")
    broken = pip_home / ".pip" / "pip.conf"
    broken.parent.mkdir()
    broken.write_text("this is [not an ini file\nkey without section = 1\n", "utf-8")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(good))
    facts = probe.pip_config_facts()
    assert facts["find_links"] == ["/opt/wheels"]
    assert facts["index_url"] is None
    assert any(u["probe"] == "pip-config" and str(broken) in u["reason"] for u in probe.UNAVAILABLE)


# --------------------------------------------------------------------------------- os-release

@pytest.mark.parametrize("sample, expected", [
    ("debian-12.txt", {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm",
                       "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}),
    ("ubuntu-22.04.txt", {"ID": "ubuntu", "VERSION_ID": "22.04", "VERSION_CODENAME": "jammy",
                          "PRETTY_NAME": "Ubuntu 22.04.4 LTS", "ID_LIKE": "debian"}),
    ("alpine-3.19.txt", {"ID": "alpine", "VERSION_ID": "3.19.1", "PRETTY_NAME": "Alpine Linux v3.19"}),
])
def test_os_release_samples(probe: ModuleType, sample: str, expected: dict[str, str]) -> None:
    values = probe.parse_os_release((DATA / "os-release" / sample).read_text("utf-8"))
    for key, value in expected.items():
        assert values[key] == value
    if sample.startswith("alpine"):
        assert "VERSION_CODENAME" not in values


def test_os_release_comments_quotes_and_blank_input(probe: ModuleType) -> None:
    text = "# a comment\nID='arch'\nBUILD_ID=rolling\nANSI_COLOR=\"38;2;23;147;209\"\n\nnot a pair\n"
    assert probe.parse_os_release(text) == {"ID": "arch", "BUILD_ID": "rolling", "ANSI_COLOR": "38;2;23;147;209"}
    assert probe.parse_os_release(None) == {}
    assert probe.parse_os_release("") == {}


def test_os_facts_on_this_machine(probe: ModuleType) -> None:
    facts = probe.os_facts()
    release = probe.parse_os_release(Path("/etc/os-release").read_text("utf-8"))
    assert facts["id"] == release.get("ID")
    assert facts["codename"] == release.get("VERSION_CODENAME")
    assert facts["kernel"] == os.uname().release
    assert facts["libc"] == "glibc"
    assert facts["libc_version"] == os.confstr("CS_GNU_LIBC_VERSION").split()[1]


# ------------------------------------------------------------------------------------ cpuinfo

@pytest.fixture
def cpuinfo_from(probe: ModuleType, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Serves a recorded /proc/cpuinfo to the probe's reader; every other file is read for real."""
    real = probe.read_text

    def use(sample: str) -> dict[str, object]:
        text = (DATA / "cpuinfo" / sample).read_text("utf-8")
        monkeypatch.setattr(probe, "read_text",
                            lambda path, limit=1 << 20: text if path == "/proc/cpuinfo" else real(path, limit))
        return probe.cpu_facts()  # type: ignore[no-any-return]

    return use


def test_cpuinfo_intel_xeon_with_avx512(cpuinfo_from) -> None:  # type: ignore[no-untyped-def]
    cpu = cpuinfo_from("x86-intel-xeon-8259cl-avx512.txt")
    assert cpu["vendor"] == "GenuineIntel"
    assert cpu["model_name"] == "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
    assert (cpu["family"], cpu["model"], cpu["stepping"]) == (6, 85, 7)
    assert cpu["microcode"] == "0x5002f01"
    assert cpu["physical_cores"] == 1
    # Linux prints SSE3 as "pni": the probe reports it under its usual name
    assert cpu["numeric_flags"] == sorted(["sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
                                           "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"])


def test_cpuinfo_amd_epyc(cpuinfo_from) -> None:  # type: ignore[no-untyped-def]
    cpu = cpuinfo_from("x86-amd-epyc-zen4.txt")
    assert cpu["vendor"] == "AuthenticAMD"
    assert cpu["model_name"] == "AMD EPYC"
    assert (cpu["family"], cpu["model"], cpu["stepping"]) == (25, 17, 1)
    assert cpu["physical_cores"] == 2
    flags = set(cpu["numeric_flags"])
    assert {"avx512f", "avx512_bf16", "avx512_vnni", "avx512ifma", "avx2", "fma"} <= flags
    assert not any(f.startswith("amx") for f in flags)
    assert "avx_vnni" not in flags  # Zen 4 has AVX512-VNNI, not the VEX-encoded AVX-VNNI


def test_cpuinfo_aarch64_features(cpuinfo_from) -> None:  # type: ignore[no-untyped-def]
    cpu = cpuinfo_from("aarch64-qualcomm-oryon.txt")
    assert cpu["vendor"] == "0x51"
    assert cpu["arm_part"] == "0x001"
    assert cpu["model_name"] is None
    assert (cpu["family"], cpu["model"], cpu["stepping"]) == (None, None, None)
    assert cpu["physical_cores"] is None
    assert cpu["numeric_flags"] == ["asimd", "asimddp", "asimdhp", "bf16", "fphp", "i8mm"]


def test_cpuinfo_unreadable_is_recorded(probe: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    real = probe.read_text
    monkeypatch.setattr(probe, "read_text",
                        lambda path, limit=1 << 20: None if path == "/proc/cpuinfo" else real(path, limit))
    cpu = probe.cpu_facts()
    assert cpu["vendor"] is None and cpu["numeric_flags"] == []
    assert cpu["logical_cores"] == os.cpu_count()
    assert {"probe": "cpu", "reason": "/proc/cpuinfo is not readable"} in probe.UNAVAILABLE


def test_cpu_facts_on_this_machine_agree_with_proc(probe: ModuleType) -> None:
    cpu = probe.cpu_facts()
    text = Path("/proc/cpuinfo").read_text()
    first_flags = next(line for line in text.splitlines() if line.startswith(("flags", "Features"))).split(":")[1]
    flags = set(first_flags.split()) | ({"sse3"} if "pni" in first_flags.split() else set())
    assert set(cpu["numeric_flags"]) == flags & set(probe.NUMERIC_FLAGS)
    meminfo = Path("/proc/meminfo").read_text()
    kb = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal")).split()[1])
    assert cpu["memory_total_bytes"] == kb * 1024
    assert cpu["affinity_cores"] == len(os.sched_getaffinity(0))


def test_uuid_hash_helper_matches_sha256(probe: ModuleType) -> None:
    """The probe stores a 16-hex prefix of sha256(uuid); the GPU tests rely on that shape."""
    from tests.fakes import FakeNvml

    nvml = FakeNvml({"driver_version": "1", "cuda_driver_version": 12000,
                     "devices": [{"name": "X", "uuid": "GPU-1234", "compute_capability": [8, 0],
                                  "memory_total_bytes": 1, "mig_mode": None, "ecc_mode": None}]})
    gpu = probe.gpu_facts(nvml, "fake")
    assert gpu["devices"][0]["uuid_sha256"] == hashlib.sha256(b"GPU-1234").hexdigest()[:16]


def test_conda_packages_without_dist_info_are_listed_with_their_build(probe: ModuleType, tmp_path: Path) -> None:
    """mkl or cudatoolkit from conda have no dist-info; conda-meta's file names still tell what they are."""
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    for name in ("mkl-2023.1.0-h213fc3f_46344.json", "libblas-3.9.0-20_linux64_mkl.json",
                 "numpy-1.26.4-py311h08b1b3b_0.json", "python-3.11.7-h955ad1f_0.json", "history"):
        (meta / name).write_text("{}")
    dists = probe.merge_conda([{"name": "numpy", "version": "1.26.4"}], probe.conda_packages(str(tmp_path)))
    by_name = {d["name"]: d for d in dists}
    assert set(by_name) == {"numpy", "mkl", "libblas"}  # numpy has its dist-info; python is the interpreter
    assert by_name["mkl"]["version"] == "2023.1.0" and by_name["mkl"]["installer"] == "conda"
    assert by_name["libblas"]["origin"] == {"kind": "conda", "url": None, "build": "20_linux64_mkl"}


# ------------------------------------------------------------------------------------------ cache

@pytest.mark.parametrize("entries", [None, [], "text", 3])
def test_a_cache_file_of_the_right_version_but_wrong_shape_is_ignored(probe: ModuleType, tmp_path: Path,
                                                                     entries: object) -> None:
    """It used to lose every cached reader's section (blas, toolchain) to a TypeError."""
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"probe_version": probe.PROBE_VERSION, "entries": entries}), "utf-8")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n", "utf-8")
    cache = probe.FileCache(str(path))
    assert cache.get_or_compute("tool-x", str(tool), lambda: "1.2.3") == "1.2.3"
    cache.save()
    assert json.loads(path.read_text("utf-8"))["entries"] == {cache.key("tool-x", str(tool)): "1.2.3"}


def test_numerics_packages_known_from_conda_meta_alone_keep_the_blas_and_cuda_sections(
        probe: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conda package without a dist-info (``python -S``, a half-removed env) has no location.

    blas_facts and torch_version_module joined paths onto that None and raised, which lost the whole
    blas (or cuda) section, the conda MKL found in the prefix's lib/ included.
    """
    (tmp_path / "conda-meta").mkdir()
    for name in ("numpy-1.26.4-py311h08b1b3b_0.json", "torch-2.3.0-py311_cpu.json", "mkl-2023.1.0-h213fc3f_46344.json"):
        (tmp_path / "conda-meta" / name).write_text("{}")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libmkl_rt.so.2").write_bytes(b"")
    monkeypatch.setattr(probe.sys, "prefix", str(tmp_path))
    dist_index = {d["name"]: d for d in probe.merge_conda([], probe.conda_packages(str(tmp_path)))}
    assert dist_index["numpy"]["location"] is None
    blas = probe.blas_facts(dist_index, probe.FileCache(None))
    assert blas["libraries"] == [{"library": "mkl", "api": "blas", "version": None, "shipped_by": "mkl",
                                  "filename": "libmkl_rt.so.2"}]
    assert blas["declared"] == {}
    assert probe.torch_version_module(dist_index) is None
    assert probe.UNAVAILABLE == []
