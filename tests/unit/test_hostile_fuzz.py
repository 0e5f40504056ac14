"""A stranger's lock, fed to every command that reads one: hostile strings in every field, zero tracebacks.

Each field of a valid lock gets a value built from what breaks renderers and shells: rich markup,
terminal escape sequences, bidi overrides, lone surrogates, NULs, newlines that would start a
Dockerfile instruction, shell substitutions, credentials. ``show``, ``diff``, ``build`` (against the
fake engine) and ``replay --image`` (likewise) must each answer with success or one clean error, and
nothing they print may carry a raw escape character or a planted secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap.cli import main
from envcap.engine import RunResult
from envcap.lock import Artifact, Distribution, GitState, Origin, OsInfo, PythonEnv, Snapshot, dumps
from envcap.snapshot import with_build_choices
from tests.fakes import FakeEngine

SECRET = "ghp_PLANTEDsecretVALUE0123456789abcd"
NASTY = [
    "[/bold]", "[red]x[/red]", "[link=http://evil]click[/link]", "\x1b[31mred\x1b[0m", "\x1b]0;owned\x07",
    "\u202egnp.exe", "\\ud800", "\x00", "\nRUN touch /pwned\n", "\r\nENV X=1", "$(id)", "`id`", "%s%n", "{0}",
    "a" * 3000, f"--token={SECRET}", f"https://user:{SECRET}@host/x", "-----BEGIN RSA PRIVATE KEY-----\nAAAA",
    "<script>alert(1)</script>", "| a | b |", "``` code", "\t\t", "é中文🙂",
]
FIELDS = [
    ("env", "OMP_NUM_THREADS"), ("env", "XLA_FLAGS"), ("env", "<name>"), ("python", "version"),
    ("python", "executable"), ("git", "remote"), ("git", "branch"), ("warnings", 0), ("unavailable", "reason"),
    ("dist", "name"), ("dist", "version"), ("dist", "location"), ("artifact", "filename"), ("artifact", "url"),
    ("os", "pretty_name"), ("cpu", "model_name"), ("build", "reference"), ("outputs", "path"), ("source", None),
]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                               HealthCheck.too_slow])
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202e]")


def base_lock() -> dict[str, Any]:
    snapshot = with_build_choices(Snapshot(
        envcap_version="0.1.0", captured_at="2026-01-01T00:00:00Z",
        python=PythonEnv(version="3.11.7", implementation="cpython", machine="x86_64", executable="/usr/bin/python3"),
        os=OsInfo(system="Linux", id="debian", codename="bookworm", libc="glibc", libc_version="2.36",
                  pretty_name="Debian"),
        env={"OMP_NUM_THREADS": "2", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"},
        git=GitState(commit="0" * 40, branch="main", remote="https://example.org/r.git"),
        distributions=(Distribution(name="six", version="1.16.0", origin=Origin(kind="index"), site="site-packages",
                                    artifacts=(Artifact("six-1.16.0-py2.py3-none-any.whl", "a" * 64,
                                                        "https://files.example/six-1.16.0-py2.py3-none-any.whl"),)),),
        warnings=("a warning",),
    ))
    return json.loads(dumps(snapshot))  # type: ignore[no-any-return]


def plant(data: dict[str, Any], field: tuple[str, Any], value: str) -> None:
    kind, key = field
    if kind == "env":
        if key == "<name>":
            data["env"][value] = "1"
        else:
            data["env"][key] = value
    elif kind in ("python", "git", "os"):
        data[kind][key] = value
    elif kind == "cpu":
        data["cpu"] = {"model_name": value}
    elif kind == "warnings":
        data["warnings"] = [value]
    elif kind == "unavailable":
        data["unavailable"] = [{"probe": "x", "reason": value}]
    elif kind == "dist":
        data["distributions"][0][key] = value
    elif kind == "artifact":
        data["distributions"][0]["artifacts"][0][key] = value
    elif kind == "build":
        data["build"]["base"]["reference"] = value
    elif kind == "outputs":
        data["outputs"] = [{"path": value, "sha256": "b" * 64, "size": 1}]
    elif kind == "source":
        data["source"] = value


def write(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=True).replace("\\\\ud800", "\\ud800")  # a real lone surrogate escape
    (folder / "envcap.lock.json").write_text(text, "utf-8")
    return folder


def check(result: Any, *, allowed: tuple[int, ...]) -> None:
    assert isinstance(result.exception, (SystemExit, type(None))), f"traceback: {result.exception!r}"
    assert result.exit_code in allowed, (result.exit_code, result.output)
    shown = result.stdout + result.stderr
    assert not RAW_CONTROL.search(shown), repr(shown[:400])
    assert SECRET not in shown
    if result.exit_code not in (0,):
        assert result.stderr.startswith("error: ") or result.exit_code in (3, 127), result.stderr[:300]


hostile = st.tuples(st.sampled_from(FIELDS), st.one_of(st.sampled_from(NASTY),
                                                         st.lists(st.sampled_from(NASTY), min_size=2, max_size=4)
                                                         .map("".join), st.text(max_size=30)))


@SETTINGS
@given(case=hostile)
def test_show(case: tuple[Any, str], tmp_path_factory: Any) -> None:
    data = base_lock()
    plant(data, *case)
    folder = write(tmp_path_factory.mktemp("show"), data)
    check(CliRunner().invoke(main, ["show", str(folder)]), allowed=(0, 4))
    check(CliRunner().invoke(main, ["show", "--json", str(folder)]), allowed=(0, 4))


@SETTINGS
@given(case=hostile, other=hostile)
def test_diff(case: tuple[Any, str], other: tuple[Any, str], tmp_path_factory: Any) -> None:
    a, b = base_lock(), base_lock()
    plant(a, *case)
    plant(b, *other)
    root = tmp_path_factory.mktemp("diff")
    left, right = write(root / "a", a), write(root / "b", b)
    for extra in ([], ["--json"], ["--markdown"]):
        result = CliRunner().invoke(main, ["diff", *extra, str(left), str(right)])
        check(result, allowed=(0, 4, 11))
        if extra == ["--markdown"] and result.exit_code == 0:  # HTML outside code spans (which show it as text)
            assert "<script>" not in re.sub(r"(`+).*?\1", "", result.stdout)


def fake_engine() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image("base:1", "sha256:" + "b" * 64)
    facts = {"version": "3.11.2", "implementation": "cpython", "soabi": "cpython-311-x86_64-linux-gnu",
             "machine": "x86_64", "libc": "glibc", "libc_version": "2.36"}
    engine.on_run = lambda spec: RunResult(exit_code=0, stdout=(json.dumps(facts) + "\n").encode())
    return engine


@SETTINGS
@given(case=hostile)
def test_build(case: tuple[Any, str], tmp_path_factory: Any) -> None:
    data = base_lock()
    plant(data, *case)
    folder = write(tmp_path_factory.mktemp("build"), data)
    engine = fake_engine()
    result = CliRunner().invoke(main, ["build", "--online", "--base-image", "base:1", str(folder)],
                                obj={"engine": engine})
    check(result, allowed=(0, 4, 6, 8))
    runs = 0
    for install in engine.installs:  # the install container: envcap's own script, envcap's own arguments
        assert install.args == ("pip", "/opt/venv", "envcap", "1000")
        assert SECRET not in json.dumps(install.labels)
    for sent in engine.builds:  # the image: settings only
        instructions = [line.split()[0] for line in sent.dockerfile.splitlines()
                        if line and not line[0].isspace() and not line.startswith("#")]
        runs += instructions.count("RUN")
        assert "touch /pwned" not in sent.dockerfile
        assert SECRET not in sent.dockerfile and SECRET not in json.dumps(sent.labels)
    assert runs == 0, "no value of the lock became an instruction"


@SETTINGS
@given(case=hostile)
def test_replay_with_an_image(case: tuple[Any, str], tmp_path_factory: Any) -> None:
    data = base_lock()
    plant(data, *case)
    root = tmp_path_factory.mktemp("replay")
    folder = write(root / "lock", data)
    (root / "work").mkdir()
    engine = fake_engine()
    engine.add_image("img:1", "sha256:" + "c" * 64)
    engine.on_run = lambda spec: RunResult(exit_code=0, stdout=b"")
    import os

    here = os.getcwd()
    os.chdir(root / "work")
    try:
        result = CliRunner().invoke(main, ["replay", "--image", "img:1", "--report", "r.json", str(folder), "--",
                                           "python", "-c", "pass", f"--token={SECRET}"], obj={"engine": engine})
    finally:
        os.chdir(here)
    check(result, allowed=(0, 4, 9))
    report = root / "work" / "r.json"
    if report.exists():
        text = report.read_text("utf-8")
        json.loads(text)
        assert SECRET not in text


def test_every_nasty_value_in_every_field_through_every_command(tmp_path: Path) -> None:
    """The whole product, not a sample: 19 fields x 23 values, each through show, diff, build and replay."""
    import os

    outcomes: dict[str, dict[int, int]] = {}
    clean = write(tmp_path / "clean", base_lock())
    (tmp_path / "work").mkdir()
    for i, field in enumerate(FIELDS):
        for j, value in enumerate(NASTY):
            data = base_lock()
            plant(data, field, value)
            folder = write(tmp_path / f"c{i}-{j}", data)
            engine = fake_engine()
            engine.add_image("img:1", "sha256:" + "c" * 64)
            runs = {
                "show": (["show", str(folder)], (0, 4)),
                "diff": (["diff", "--markdown", str(clean), str(folder)], (0, 4, 11)),
                "build": (["build", "--online", "--base-image", "base:1", str(folder)], (0, 4, 6, 8)),
                "replay": (["replay", "--image", "img:1", str(folder), "--", "python", f"--token={SECRET}"], (0, 4, 9)),
            }
            here = os.getcwd()
            os.chdir(tmp_path / "work")
            try:
                for name, (args, allowed) in runs.items():
                    if name == "replay":
                        engine.on_run = lambda spec: RunResult(exit_code=0, stdout=b"")
                    result = CliRunner().invoke(main, args, obj={"engine": engine})
                    check(result, allowed=allowed)
                    outcomes.setdefault(name, {}).setdefault(result.exit_code, 0)
                    outcomes[name][result.exit_code] += 1
            finally:
                os.chdir(here)
    print(f"\nhostile product: {len(FIELDS) * len(NASTY)} cases per command, exit codes: {outcomes}")
    assert all(sum(counts.values()) == len(FIELDS) * len(NASTY) for counts in outcomes.values())
