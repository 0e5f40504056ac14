"""The probe for real on this machine: in envcap's venv, in the system python3, in a fresh venv.

Nothing is faked here: each test starts the interpreter it names and reads what the probe printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envcap.errors import ProbeError
from envcap.probe import PROBE_SCRIPT, probe_source, run_probe, snapshot_from_facts

SECTIONS = {"probe_version", "python", "distributions", "pip_config", "os", "cpu", "gpu", "cuda", "blas",
            "toolchain", "env", "git", "torch_runtime", "unavailable"}
SYSTEM_PYTHON = "/usr/bin/python3"


def dist_names(facts: dict[str, Any]) -> set[str]:
    return {d["name"] for d in facts["distributions"]}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python3 -m venv`` with pip, plus one editable distribution dropped in by hand."""
    root = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    site = next((root / "lib").glob("python3*/site-packages"))
    meta = site / "my_project-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: my-project\nVersion: 0.1\n", "utf-8")
    (meta / "INSTALLER").write_text("pip\n", "utf-8")
    (meta / "REQUESTED").write_text("", "utf-8")
    (meta / "direct_url.json").write_text(json.dumps({"url": "file:///home/u/my-project",
                                                      "dir_info": {"editable": True}}), "utf-8")
    return root


def test_probe_in_envcaps_venv_has_every_section(tmp_path: Path) -> None:
    facts = run_probe(sys.executable, cwd=str(tmp_path))
    assert set(facts) >= SECTIONS
    python = facts["python"]
    assert python["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert python["prefix"] == sys.prefix
    assert python["is_venv"] is True
    assert python["abi_tag"] == f"cp{sys.version_info[0]}{sys.version_info[1]}"
    names = dist_names(facts)
    assert {"envcap", "click", "jinja2", "packaging", "pytest"} <= names
    envcap = next(d for d in facts["distributions"] if d["name"] == "envcap")
    assert envcap["origin"]["kind"] == "editable"
    assert facts["os"]["kernel"] == os.uname().release
    assert facts["cpu"]["logical_cores"] == os.cpu_count()
    assert facts["gpu"]["status"] in ("ok", "no-nvml", "no-driver", "no-gpu")
    assert facts["git"] is None  # tmp_path is not a repository
    assert facts["torch_runtime"] is None  # only --deep imports torch
    snapshot = snapshot_from_facts(facts)
    assert snapshot.distribution("envcap") is not None


def test_probe_in_the_system_python(tmp_path: Path) -> None:
    facts = run_probe(SYSTEM_PYTHON, cwd=str(tmp_path))
    assert set(facts) >= SECTIONS
    assert facts["python"]["is_venv"] is False
    assert facts["python"]["prefix"] == "/usr"
    assert facts["python"]["executable"] == SYSTEM_PYTHON
    assert "envcap" not in dist_names(facts)
    apt = [d for d in facts["distributions"] if d["site"] == "dist-packages"]
    assert apt, "Debian's python3 keeps its packages in dist-packages"
    assert all(d["location"].endswith("dist-packages") for d in apt)


def test_probe_describes_the_target_venv_not_envcaps(fresh_venv: Path, tmp_path: Path) -> None:
    facts = run_probe(str(fresh_venv / "bin" / "python"), cwd=str(tmp_path))
    assert facts["python"]["prefix"] == str(fresh_venv)
    assert facts["python"]["is_venv"] is True
    names = dist_names(facts)
    assert "envcap" not in names and "click" not in names
    assert {"pip", "my-project"} <= names
    editable = next(d for d in facts["distributions"] if d["name"] == "my-project")
    assert editable["origin"] == {"kind": "editable", "url": "file:///home/u/my-project", "subdirectory": None}
    assert editable["requested"] is True


def test_a_venv_folder_is_accepted_for_its_interpreter(fresh_venv: Path, tmp_path: Path) -> None:
    facts = run_probe(str(fresh_venv), cwd=str(tmp_path))
    assert facts["python"]["prefix"] == str(fresh_venv)


def test_pythonpath_of_envcaps_process_does_not_leak_into_the_target(fresh_venv: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra"
    (extra / "leaked-9.9.dist-info").mkdir(parents=True)
    (extra / "leaked-9.9.dist-info" / "METADATA").write_text("Name: leaked\nVersion: 9.9\n\n", "utf-8")
    monkeypatch.setenv("PYTHONPATH", str(extra))
    facts = run_probe(str(fresh_venv / "bin" / "python"), cwd=str(tmp_path))
    assert "leaked" not in dist_names(facts)


def test_snapshot_cli_of_another_venv_warns_about_the_editable(fresh_venv: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from envcap.cli import main
    from envcap.lock import load_snapshot

    out = tmp_path / "lock"
    result = cli.invoke(main, ["snapshot", "--python", str(fresh_venv / "bin" / "python"), "--out", str(out),
                               "--offline"])
    assert result.exit_code == 0, result.output + result.stderr
    snapshot = load_snapshot(out)
    assert snapshot.python is not None and snapshot.python.prefix == str(fresh_venv)
    assert {d.name for d in snapshot.distributions} >= {"pip", "my-project"}
    assert any("my-project" in w and "editable" in w for w in snapshot.warnings)
    assert "my-project" in result.stderr
    assert "my-project==0.1: vendored" in (out / "requirements.lock").read_text()


def test_secrets_in_the_environment_never_reach_the_output(tmp_path: Path) -> None:
    secrets = {"HF_TOKEN": "hf_leakcheckleakcheckleakcheck01", "AWS_SECRET_ACCESS_KEY": "leak/CHECK/secret/0123456789",
               "TORCH_HUB_TOKEN": "tok-leakcheck-777", "NCCL_DEBUG_FILE": "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"}
    facts = run_probe(sys.executable, cwd=str(tmp_path), extra_env={**secrets, "OMP_NUM_THREADS": "3"})
    text = json.dumps(facts)
    for value in secrets.values():
        assert value not in text
    assert facts["env"]["OMP_NUM_THREADS"] == "3"
    assert facts["env"]["TORCH_HUB_TOKEN"] == "<redacted>"


def test_probe_source_runs_from_stdin_in_an_isolated_interpreter(tmp_path: Path) -> None:
    """How a container without envcap is probed: the script's text piped into ``python -I -``."""
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-", "--skip-git"], input=probe_source(), capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert set(facts) >= SECTIONS
    assert facts["python"]["executable"] == SYSTEM_PYTHON
    assert facts["git"] is None


def test_search_path_says_where_distributions_were_looked_for(tmp_path: Path) -> None:
    """Replay keeps the image's facts only when no mounted folder was among these (envcap.replay.image_facts)."""
    done = subprocess.run([SYSTEM_PYTHON, "-", "--skip-git", "--search-path"], input=probe_source(),
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"],
                                                                              "PYTHONPATH": str(tmp_path / "src")},
                          check=False)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert str(tmp_path / "src") in facts["search_path"]
    assert all(os.path.isabs(p) for p in facts["search_path"])
    assert {d["location"] for d in facts["distributions"]} <= set(facts["search_path"])
    plain = subprocess.run([SYSTEM_PYTHON, "-", "--skip-git"], input=probe_source(), capture_output=True, text=True,
                           cwd=tmp_path, check=True)
    assert "search_path" not in json.loads(plain.stdout)


def test_the_host_sections_are_the_ones_host_facts_reads(probe: Any) -> None:
    """The launcher reads the machine with host_facts; the probe's own answer takes the same sections from it."""
    assert set(probe.host_facts()) == set(probe.HOST_SECTIONS) == {"os", "cpu", "gpu"}
    facts = probe.collect(probe.parse_args(["--skip-git"]))
    assert {name: facts[name] for name in probe.HOST_SECTIONS} == probe.host_facts()


def test_probe_cache_file_is_written_and_gives_the_same_facts(tmp_path: Path) -> None:
    first = run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    cache_files = list((tmp_path / "cache" / "probe").glob("*.json"))
    assert len(cache_files) == 1
    cached = json.loads(cache_files[0].read_text())
    assert cached["probe_version"] == first["probe_version"]
    second = run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    for section in ("python", "distributions", "os", "cpu", "blas", "toolchain", "cuda"):
        assert first[section] == second[section], section


def test_a_corrupt_probe_cache_is_ignored(tmp_path: Path) -> None:
    run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    (cache_file,) = (tmp_path / "cache" / "probe").glob("*.json")
    cache_file.write_text("{truncated", "utf-8")
    facts = run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    assert facts["python"]["version"]
    assert json.loads(cache_file.read_text())["probe_version"] == facts["probe_version"]


def test_the_compiled_probe_answers_as_the_script_does(tmp_path: Path) -> None:
    """With a cache the probe runs from a compiled copy (-c LOADER): the same facts as ``python _probe.py``,
    and the working folder is not on its sys.path (a dist-info there would otherwise be listed)."""
    stray = tmp_path / "stray_dist-9.9.dist-info"
    stray.mkdir()
    (stray / "METADATA").write_text("Metadata-Version: 2.1\nName: stray-dist\nVersion: 9.9\n", "utf-8")
    first = run_probe(SYSTEM_PYTHON, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    (copy,) = (tmp_path / "cache" / "probe").glob("*.code")
    second = run_probe(SYSTEM_PYTHON, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    plain = json.loads(subprocess.run([SYSTEM_PYTHON, str(PROBE_SCRIPT), "--cwd", str(tmp_path)], cwd=tmp_path,
                                      capture_output=True, text=True, check=True).stdout)
    for section in ("python", "distributions", "pip_config", "os", "env", "git"):
        assert first[section] == second[section] == plain[section], section
    assert "stray-dist" not in dist_names(first)
    assert copy.read_bytes().startswith(hashlib.sha256(PROBE_SCRIPT.read_bytes()).hexdigest().encode())


@pytest.mark.parametrize("damage", [b"", b"garbage\n\x00\x01", b"0" * 64 + b"|other-tag|0|'x'\n\xe3\x00"])
def test_a_damaged_or_foreign_compiled_probe_is_compiled_again(tmp_path: Path, damage: bytes) -> None:
    run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    (copy,) = (tmp_path / "cache" / "probe").glob("*.code")
    good = copy.read_bytes()
    copy.write_bytes(damage + good[len(damage):] if damage.startswith(b"0") else damage)
    facts = run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    assert facts["python"]["executable"] and copy.read_bytes() == good


def test_the_probe_runs_as_a_script_when_its_cache_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder would be", "utf-8")
    facts = run_probe(sys.executable, cache_root=tmp_path / "cache", cwd=str(tmp_path))
    assert facts["python"]["executable"]


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "work"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q", "-b", "trunk")
    (repo / "train.py").write_text("print(1)\n", "utf-8")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    git("remote", "add", "origin", "https://someone:ghp_notreal0000@git.example/org/work.git")
    return repo


def test_git_state_clean_then_dirty(git_repo: Path) -> None:
    clean = run_probe(sys.executable, cwd=str(git_repo))["git"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert clean == {"commit": head, "branch": "trunk", "dirty": False, "diff_sha256": None,
                     "remote": "https://git.example/org/work.git", "root": str(git_repo), "base": head,
                     "changed_files": []}
    (git_repo / "train.py").write_text("print(2)\n", "utf-8")
    dirty = run_probe(sys.executable, cwd=str(git_repo))["git"]
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=git_repo, capture_output=True, check=True).stdout
    assert dirty["dirty"] is True and dirty["changed_files"] == ["train.py"]
    assert dirty["diff_sha256"] == hashlib.sha256(diff).hexdigest()


def test_the_snapshot_folder_is_not_the_workloads_code(git_repo: Path) -> None:
    """Issue 10: committing .envcap/ (or editing it) is no code change; measured against the snapshot's commit."""
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    (git_repo / ".envcap").mkdir()
    (git_repo / ".envcap" / "envcap.lock.json").write_text("{}\n", "utf-8")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".envcap"], cwd=git_repo,
                   check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "lock"],
                   cwd=git_repo, check=True)
    from envcap.probe._probe import git_facts

    later = git_facts(str(git_repo), base)
    assert later is not None and later["changed_files"] == [] and later["diff_sha256"] is None
    assert later["commit"] != base and later["base"] == base
    (git_repo / "train.py").write_text("print(3)\n", "utf-8")
    edited = git_facts(str(git_repo), base)
    assert edited is not None and edited["changed_files"] == ["train.py"] and edited["diff_sha256"]


def test_probe_script_is_stdlib_only() -> None:
    """It must import nothing outside the standard library at module level (pynvml only when asked)."""
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-c",
                           "import runpy, sys; sys.argv=['p', '--skip-git']; "
                           f"runpy.run_path({str(PROBE_SCRIPT)!r}, run_name='__main__')"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["distributions"] == []  # -S: no site-packages on the path at all


def test_probe_error_for_a_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="does not exist"):
        run_probe(str(tmp_path / "nope" / "python"))


def test_git_is_asked_only_where_a_work_tree_may_be(git_repo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside any repository the probe answers None without starting git (what git status says there);
    a subfolder of a work tree, a bare repository and GIT_DIR all still ask git."""
    from envcap.probe import _probe

    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    (git_repo / "sub").mkdir()
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    outside = tmp_path / "plain" / "deeper"
    outside.mkdir(parents=True)
    assert _probe.may_be_in_repository(str(git_repo / "sub")) and _probe.may_be_in_repository(str(bare))
    assert run_probe(sys.executable, cwd=str(git_repo / "sub"))["git"]["root"] == str(git_repo)
    if not _probe.may_be_in_repository(str(tmp_path)):  # tmp_path may itself sit inside a work tree
        assert not _probe.may_be_in_repository(str(outside))

        def no_git(*args: object, **kwargs: object) -> list[None]:
            raise AssertionError("git was started outside any repository")

        monkeypatch.setattr(_probe, "run_many", no_git)
        assert _probe.git_facts(str(outside)) is None
        monkeypatch.setenv("GIT_DIR", str(git_repo / ".git"))
        assert _probe.may_be_in_repository(str(outside))
