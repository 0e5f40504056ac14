"""A lock is input from a stranger: every field that can reach a name, a path, a line or a variable is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap.errors import EnvcapError, LockfileError
from envcap.lock import Artifact, Distribution, Origin, OutputFingerprint, PythonEnv, Snapshot, dumps, loads
from envcap.snapshot import with_build_choices

SHA = "a" * 64


def good() -> dict[str, Any]:
    snapshot = with_build_choices(Snapshot(
        python=PythonEnv(version="3.11.7", implementation="cpython", machine="x86_64"),
        env={"OMP_NUM_THREADS": "2"},
        distributions=(Distribution(name="six", version="1.16.0", origin=Origin(kind="index"), artifacts=(
            Artifact(filename="six-1.16.0-py2.py3-none-any.whl", sha256=SHA,
                     url="https://files.example/six-1.16.0-py2.py3-none-any.whl"),)),),
        outputs=(OutputFingerprint(path="out/metrics.json", sha256=SHA, size=3),),
    ))
    data: dict[str, Any] = json.loads(dumps(snapshot))
    return data


def test_a_good_lock_reads() -> None:
    snapshot = loads(json.dumps(good()))
    assert snapshot.distributions[0].name == "six"


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["distributions"][0]["artifacts"][0].update(filename="../../../../tmp/x-1.0.tar.gz"),
     "distributions[0] (six).artifacts[0].filename"),
    (lambda d: d["distributions"][0]["artifacts"][0].update(filename="evil-1.0-py3-none-any.whl"),
     "distributions[0] (six).artifacts[0].filename"),
    (lambda d: d["distributions"][0]["artifacts"][0].update(sha256="zz"), "artifacts[0].sha256"),
    (lambda d: d["distributions"][0]["artifacts"][0].update(url="ftp://x/six-1.16.0.tar.gz"), "artifacts[0].url"),
    (lambda d: d["distributions"][0].update(version="1.0 --index-url http://evil"), "version"),
    (lambda d: d["distributions"][0].update(name="six\nRUN id"), "name"),
    (lambda d: d["env"].update({"OMP_X 1\nRUN touch /pwned\nENV OMP_Y": "1"}), "env["),
    (lambda d: d["outputs"][0].update(path="../../etc/passwd"), "outputs[0].path"),
    (lambda d: d["outputs"][0].update(path="/etc/passwd"), "outputs[0].path"),
    (lambda d: d["build"]["base"].update(reference="python:3.11\nRUN curl evil"), "build.base.reference"),
    (lambda d: d["build"]["platform"].update(libc_version="2.36; rm -rf /"), "build.platform.libc_version"),
    (lambda d: d["python"].update(version="3.11.7-slim\nFROM evil"), "python.version"),
    (lambda d: d["distributions"][0].update(origin={"kind": "vcs", "url": "ext::sh -c touch% /tmp/pwned",
                                                    "commit": "abc1234"}), "origin.url"),
    (lambda d: d["distributions"][0].update(origin={"kind": "directory", "url": "file:///p",
                                                    "subdirectory": "../.."}), "origin.subdirectory"),
    (lambda d: d.update(git={"commit": "$(id)", "dirty": False}), "git.commit"),
])
def test_a_hostile_field_is_refused_with_its_name(change: Any, field: str) -> None:
    data = good()
    change(data)
    with pytest.raises(LockfileError) as caught:
        loads(json.dumps(data))
    assert field in caught.value.message and "is refused" in caught.value.message


def test_a_lone_surrogate_anywhere_is_refused_not_a_traceback() -> None:
    text = json.dumps(good()).replace('"2"', '"\\ud800"')
    with pytest.raises(LockfileError, match="unpaired surrogate"):
        loads(text)


def test_secrets_in_a_strangers_lock_go_no_further() -> None:
    data = good()
    data["env"]["XLA_FLAGS"] = "--xla_dump_to=/tmp --api_token=s3cr3t-value"
    data["distributions"][0]["artifacts"][0]["url"] = "https://bob:hunter2@files.example/six-1.16.0-py2.py3-none-any.whl"
    snapshot = loads(json.dumps(data))
    written = dumps(snapshot)
    assert "s3cr3t-value" not in written and "hunter2" not in written


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.lists(st.sampled_from(["python", "env", "distributions", 0, "artifacts", "filename", "url", "version",
                                      "build", "base", "reference", "platform", "outputs", "path", "git", "origin"]),
                     min_size=1, max_size=4),
       value=st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3), st.dictionaries(st.text(max_size=8),
                                                                                           JSON_SCALARS, max_size=3)))
def test_any_damage_is_a_lock_error_or_a_valid_lock(path: list[Any], value: Any) -> None:
    data = good()
    target: Any = data
    try:
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        return
    try:
        loads(json.dumps(data))
    except EnvcapError as exc:
        assert isinstance(exc, LockfileError)


def test_validation_reads_a_real_lock_written_by_snapshot(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from envcap.cli import main

    result = CliRunner().invoke(main, ["snapshot", "--offline", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    loads((tmp_path / "s" / "envcap.lock.json").read_text())
