"""Planted secrets, the fast part: every carrier of issue 9 through every entry point and emitter, zero leaks.

Each case plants unique credential-shaped markers (tests/planted.py) where real configuration holds
them and scans everything that comes out. Three layers, with hypothesis for the breadth:

- the probe's readers and the redaction engine, one marker at a time (1,200 cases): the allow-listed
  variables (env_facts), a command line (argv, one argument or split by the shell), direct_url.json,
  pip's settings (the probe's reader and the host's), a git remote (the lock, the image label), and
  the message helpers every printed line and report goes through;
- the lock set (lock, requirements.lock/.in, pylock.toml, Dockerfile), the image's labels and env and
  ``show``, with up to eight markers planted at once in a probe's report (200 cases);
- ``replay --image`` against the fake engine with markers in the workload's arguments and in the
  lock: report.json, --report, --markdown, the printed report and the -v call log (40 cases).

tests/e2e/test_planted_secrets_e2e.py plants the same kinds through real snapshot, build and replay
runs. Each leak these found is fixed in the engine and kept below as a regression case.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap import redact, textsafe
from envcap.cli import main
from envcap.engine import RunResult
from envcap.lock import Artifact, Distribution, GitState, Origin, OsInfo, PythonEnv, Snapshot, dumps
from envcap.probe import _probe, snapshot_from_facts
from envcap.snapshot import with_build_choices
from tests.fakes import FakeEngine
from tests.planted import CARRIERS, URL_CARRIERS, Planted, leaks, plant, wrap

FAST = settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
EMITTERS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])
REPLAYS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
ENV_NAMES = ("XLA_FLAGS", "TF_XLA_FLAGS", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_DEBUG_FILE", "OMP_PLACES",
             "OMP_NUM_THREADS", "TORCH_LOGS", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "MKL_VERBOSE")
VEHICLES = ("env", "argv-one", "argv-split", "messages", "log", "url", "pip-config", "git-remote")
randoms = st.randoms(use_true_random=False)


def assert_no_leak(planted: list[Planted], outputs: dict[str, str]) -> None:
    found = leaks(planted, outputs)
    assert not found, "planted secrets were written:\n" + "\n".join(
        f"  {carrier} in {where}: {text!r}" for carrier, text, where in found[:10])


# -- layer 1: the readers and the engine, one marker at a time --------------------------------------
def through(vehicle: str, item: Planted, rnd: random.Random, tmp: Path) -> dict[str, str]:
    value = wrap(rnd, item.text)
    if vehicle in ("url", "pip-config", "git-remote") and item.carrier not in URL_CARRIERS \
            and any(c.isspace() for c in item.text):
        vehicle = "messages"  # a URL holds no blank (pip would read two URLs): free text goes elsewhere
    if vehicle == "env":
        name = rnd.choice(ENV_NAMES)
        recorded = _probe.env_facts({name: value, "PATH": "/usr/bin"})
        return {"env_facts": json.dumps(recorded), "lock env": json.dumps(redact.document({"env": {name: value}}))}
    if vehicle == "argv-one":
        return {"argv": json.dumps(redact.argv(["python", "train.py", value, "--epochs", "3"]))}
    if vehicle == "argv-split":
        return {"argv": json.dumps(redact.argv(["python", "train.py", *value.split(" ")]))}
    if vehicle == "messages":  # every printed line, note, table cell and JSON answer goes through these
        return {"terminal": textsafe.terminal(value), "markup": textsafe.markup(value), "md": textsafe.md(value),
                "md_code": textsafe.md_code(value), "json": textsafe.json_text({"message": value, "v": [value]})}
    if vehicle == "log":
        return {"call log": _log_line(value)}
    url = item.text if item.carrier in URL_CARRIERS else f"https://example.org/simple/?q={item.text}"
    if vehicle == "url":
        origins = [_probe.origin_from_direct_url({"url": url, "vcs_info": {"vcs": "git", "commit_id": "a" * 40}}),
                   _probe.origin_from_direct_url({"url": url, "archive_info": {"hashes": {"sha256": "b" * 64}}}),
                   _probe.origin_from_direct_url({"url": url, "dir_info": {"editable": True}})]
        return {"direct_url": json.dumps(origins), "strip": _probe.strip_credentials(url),
                "document": json.dumps(redact.document({"url": url, "index_url": url, "find_links": [url]}))}
    if vehicle == "pip-config":
        return _pip_config(url, rnd, tmp)
    remote = url if rnd.random() < 0.7 else item.text
    return {"remote (lock)": _probe.strip_credentials(remote), "remote (label)": str(redact.public_source(remote))}


def _log_line(text: str) -> str:
    from envcap import _log

    captured: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(self.format(record))

    handler = Keep()
    record = logging.LogRecord("envcap.subprocess", logging.DEBUG, __file__, 1, "run %s", (text,), None)
    handler.addFilter(_log._Redacting(textsafe.terminal))
    handler.handle(record)
    return "\n".join(captured)


def _pip_config(url: str, rnd: random.Random, tmp: Path) -> dict[str, str]:
    """PIP_* variables and pip.conf files as the probe (in the target) and envcap (on the host) read them."""
    from envcap.net.pipconf import read_pip_settings

    prefix = tmp / "prefix"
    prefix.mkdir(exist_ok=True)
    key = rnd.choice(["index-url", "extra-index-url", "find-links"])
    header = rnd.choice(["[global]\n", "[install]\n", ""])  # no header: the file cannot be parsed at all
    (prefix / "pip.conf").write_text(f"{header}{key} = {url}\npassword = {url}\n")
    environ = {"PIP_" + key.upper().replace("-", "_"): url, "PIP_CONFIG_FILE": str(prefix / "pip.conf")}
    saved = dict(os.environ)
    _probe.UNAVAILABLE.clear()
    try:
        os.environ.update(environ)
        probed = _probe.pip_config_facts()
        reasons = list(_probe.UNAVAILABLE)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _probe.UNAVAILABLE.clear()
    host = read_pip_settings(str(prefix), environ)
    return {"probe pip_config": json.dumps(probed), "probe unavailable": json.dumps(reasons),
            "host lock record": json.dumps(dataclasses.asdict(host.redacted())),
            "host problems": json.dumps(host.problems), "host repr": repr(host)}


@FAST
@given(rnd=randoms, carrier=st.sampled_from(sorted(CARRIERS)), vehicle=st.sampled_from(VEHICLES))
def test_one_marker_through_each_reader_and_renderer(rnd: random.Random, carrier: str, vehicle: str,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    item = plant(rnd, carrier)
    assert_no_leak([item], through(vehicle, item, rnd, tmp_path_factory.getbasetemp()))


# -- layer 2: a probe report with many markers -> the lock set, the image, show ---------------------
def lock_facts() -> dict[str, Any]:
    snapshot = with_build_choices(Snapshot(
        envcap_version="0.1.0", captured_at="2026-01-01T00:00:00Z",
        python=PythonEnv(version="3.11.7", implementation="cpython", machine="x86_64", executable="/usr/bin/python3"),
        os=OsInfo(system="Linux", id="debian", codename="bookworm", libc="glibc", libc_version="2.36",
                  pretty_name="Debian"),
        env={"OMP_NUM_THREADS": "2"},
        git=GitState(commit="0" * 40, branch="main", remote="https://example.org/r.git"),
        distributions=(
            Distribution(name="six", version="1.16.0", origin=Origin(kind="index"), site="site-packages",
                         artifacts=(Artifact("six-1.16.0-py2.py3-none-any.whl", "a" * 64,
                                             "https://files.example/six-1.16.0-py2.py3-none-any.whl"),)),
            Distribution(name="tool", version="0.1", origin=Origin(kind="vcs", url="https://example.org/tool.git",
                                                                   vcs="git", commit="c" * 40)),
            Distribution(name="blob", version="2.0", origin=Origin(kind="url", url="https://example.org/blob.whl")),
        ),
    ))
    data: dict[str, Any] = json.loads(dumps(snapshot))
    data["pip_config"] = {"index_url": None, "extra_index_urls": [], "find_links": [], "no_index": False,
                          "sources": []}
    return data


def plant_in_facts(data: dict[str, Any], item: Planted, rnd: random.Random) -> None:
    """Where a probe's report holds such a value: URLs only where URLs go, free text where text goes."""
    if item.carrier in URL_CARRIERS or (" " not in item.text and "\n" not in item.text):
        url = item.text if item.carrier in URL_CARRIERS else f"https://example.org/x?q={item.text}"
        places = ["env", "remote", "vcs", "archive", "index_url", "extra_index", "find_links", "artifact"]
    else:
        url = ""
        places = ["env", "env", "unavailable", "warning"]
    where = rnd.choice(places)
    if where == "env":
        data["env"][rnd.choice(ENV_NAMES)] = wrap(rnd, item.text)
    elif where == "remote":
        data["git"]["remote"] = url if rnd.random() < 0.7 else item.text
    elif where == "vcs":
        data["distributions"][1]["origin"]["url"] = url
    elif where == "archive":
        data["distributions"][2]["origin"]["url"] = url
    elif where == "index_url":
        data["pip_config"]["index_url"] = url
    elif where == "extra_index":
        data["pip_config"]["extra_index_urls"].append(url)
    elif where == "find_links":
        data["pip_config"]["find_links"].append(url)
    elif where == "unavailable":
        data.setdefault("unavailable", []).append({"probe": "pip-config", "reason": wrap(rnd, item.text)})
    elif where == "warning":
        data.setdefault("warnings", []).append(wrap(rnd, item.text))
    else:
        data["distributions"][0]["artifacts"][0]["url"] = url


def image_outputs(snapshot: Snapshot) -> dict[str, str]:
    from envcap.emit.plan import make_plan

    plan = make_plan(snapshot)
    return {"image labels": json.dumps(plan.labels), "image env": json.dumps(plan.env)}


@EMITTERS
@given(rnd=randoms, count=st.integers(1, 8))
def test_many_markers_through_the_lock_set_the_image_and_show(rnd: random.Random, count: int,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    from envcap.emit import lock_set

    data = lock_facts()
    planted = [plant(rnd) for _ in range(count)]
    for item in planted:
        plant_in_facts(data, item, rnd)
    snapshot = with_build_choices(snapshot_from_facts(data)).with_digest()
    outputs = dict(lock_set(snapshot)) | image_outputs(snapshot)
    folder = tmp_path_factory.mktemp("lock")
    (folder / "envcap.lock.json").write_text(outputs["envcap.lock.json"])
    for args in (["show", str(folder)], ["show", "--json", str(folder)]):
        shown = CliRunner().invoke(main, args)
        assert shown.exit_code == 0, shown.output
        outputs[" ".join(args[:-1])] = shown.stdout + shown.stderr
    assert_no_leak(planted, outputs)


# -- layer 3: replay --image with markers in the workload's arguments and in the lock ----------------
@REPLAYS
@given(rnd=randoms, count=st.integers(1, 6))
def test_replay_reports_never_carry_a_marker(rnd: random.Random, count: int,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    from envcap.emit import lock_set

    root = tmp_path_factory.mktemp("replay")
    data = lock_facts()
    in_lock = [plant(rnd) for _ in range(count)]
    for item in in_lock:
        plant_in_facts(data, item, rnd)
    snapshot = with_build_choices(snapshot_from_facts(data)).with_digest()
    (root / "lock").mkdir()
    (root / "lock" / "envcap.lock.json").write_text(lock_set(snapshot)["envcap.lock.json"])
    (root / "work").mkdir()
    in_argv = [plant(rnd) for _ in range(count)]
    argv: list[str] = []
    for item in in_argv:
        argv += [wrap(rnd, item.text)] if rnd.random() < 0.5 else wrap(rnd, item.text).split(" ")
    engine = FakeEngine()
    engine.add_image("img:1", "sha256:" + "c" * 64)
    engine.on_run = lambda spec: RunResult(exit_code=0, stdout=b"")
    here = os.getcwd()
    os.chdir(root / "work")
    try:
        result = CliRunner().invoke(main, ["-v", "replay", "--image", "img:1", "--report", "r.json", "--markdown",
                                           "r.md", str(root / "lock"), "--", "python", "train.py", *argv],
                                    obj={"engine": engine})
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            outputs[str(path.relative_to(root))] = path.read_text("utf-8", "replace")
    assert len(outputs) > 4
    assert_no_leak(in_lock + in_argv, outputs)


# -- regression cases: each leak the suite found, fixed in the engine -------------------------------
@pytest.mark.parametrize("text, secret", [
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGSECRETxPGPx\n-----END PGP PRIVATE KEY BLOCK-----", "SECRETxPGPx"),
    ("https://h/callback#access_token=SECRETxFRAGx&token_type=bearer", "SECRETxFRAGx"),
    ("https://h/simple/?subscription-key=SECRETxSUBx", "SECRETxSUBx"),
    ("https://h/simple/?api-key=SECRETxAPIx", "SECRETxAPIx"),
    ("https://h/simple/?access_key=SECRETxACCx&x=1", "SECRETxACCx"),
    ("https://h/x.whl?X-Goog-Signature=SECRETxGOOGx", "SECRETxGOOGx"),
    ("https://h/simple/?session=SECRETxSESSx", "SECRETxSESSx"),
    ("--xla_flag=hf_token=SECRETxNESTx", "SECRETxNESTx"),
    ("--xla_flag=signature=SECRETxSIGx", "SECRETxSIGx"),
    ("user:password=SECRETxCOLONx", "SECRETxCOLONx"),
])
def test_secrets_the_suite_found_in_text_are_redacted(text: str, secret: str) -> None:
    assert secret not in _probe.redact_text(text)
    assert secret not in redact.text(f"XLA_FLAGS={text}")


@pytest.mark.parametrize("argv, secret", [
    (["curl", "-H", "Authorization:", "token", "SECRETxTOKx"], "SECRETxTOKx"),
    (["tool", "authorization=Bearer", "SECRETxBEARx"], "SECRETxBEARx"),
    (["tool", "passwd", "=", "SECRETxEQx"], "SECRETxEQx"),
    (["tool", "1,--access-key", "SECRETxCOMMAx"], "SECRETxCOMMAx"),
    (["tool", "{access_key:", "SECRETxBRACEx}"], "SECRETxBRACEx"),
    (["tool", "-----BEGIN", "EC", "PRIVATE", "KEY-----\nSECRETxKEYx\n-----END", "EC", "PRIVATE", "KEY-----"],
     "SECRETxKEYx"),
])
def test_secrets_split_over_arguments_are_redacted(argv: list[str], secret: str) -> None:
    assert secret not in " ".join(redact.argv(argv))


def test_what_is_not_a_secret_in_a_command_line_stays() -> None:
    argv = ["python", "train.py", "--max_new_tokens", "5", "--tokenizer", "bert", "--epochs", "3", "--lr=0.1"]
    assert redact.argv(argv) == argv


def test_an_image_label_names_no_query_fragment_or_parameter_of_a_remote() -> None:
    assert redact.public_source("https://gitlab.example.org/g/p.git;private_token=SECRETxSEMIx") == \
        "https://gitlab.example.org/g/p.git"


# -- printing paths besides the one catch site ------------------------------------------------------
def test_the_live_build_bar_shows_a_step_safely() -> None:
    """The bar's description is rich markup: a step quoting '[/bold]' (an ENV value from a lock) crashed
    an interactive build with MarkupError; a secret in a step would have been shown too."""
    import io

    from rich.console import Console

    from envcap.cli.build import _Progress
    from envcap.engine import BuildEvent

    progress = _Progress(verbose=False)
    progress.live = True
    progress.out = Console(file=io.StringIO(), force_terminal=True, width=200)
    progress.start()
    progress.build_event(BuildEvent("step", 'ENV XLA_FLAGS="[/bold] --token=ghp_PLANTEDsecretVALUE0123456789abcd"',
                                    step=3, total=9))
    progress.stop()
    shown = progress.out.file.getvalue()  # type: ignore[attr-defined]
    assert "PLANTEDsecret" not in shown and "XLA_FLAGS" in shown


def test_verbose_build_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    from envcap.cli.build import _Progress
    from envcap.engine import BuildEvent

    progress = _Progress(verbose=True)
    progress.live = False
    progress.build_event(BuildEvent("log", "Collecting x from https://u:PLANTEDpw123@idx.example/simple/x"))
    progress.build_event(BuildEvent("step", "RUN echo Bearer PLANTEDbearerVALUE123", step=1, total=2))
    assert "PLANTED" not in capsys.readouterr().err


# The words of the prefilter, their parts and case variants, and characters whose case folding is
# not ASCII's (the Kelvin sign, the long s, dotless i): where the fast path could disagree.
_PREFILTER_ALPHABET = st.sampled_from(
    ["a", "b", "e", "g", "h", "i", "k", "p", "s", "t", "w", "x", "y", "z", "_", "-", "/", ".", ":", "0", "@", "?",
     "=", "A", "B", "K", "S", "J", "\u212a", "\u017f", "\u0131", "\u0130", "\u00e9",
     *_probe._MAYBE_SECRET_WORDS, *(w.upper() for w in _probe._MAYBE_SECRET_WORDS),
     *(w.title() for w in _probe._MAYBE_SECRET_WORDS)])


@settings(max_examples=1500, deadline=None)
@given(parts=st.lists(_PREFILTER_ALPHABET, max_size=12))
def test_the_fast_prefilter_answers_as_the_regex_does(parts: list[str]) -> None:
    """may_hold_secret skips the regex for ASCII text; its answer must stay the regex's, or a secret
    that only the regex saw would be written as it is."""
    text = "".join(parts)
    assert _probe.may_hold_secret(text) == bool(_probe._MAYBE_SECRET_RE.search(text)), text


def test_the_fast_prefilter_keeps_plain_artifact_urls_whole() -> None:
    url = ("https://files.pythonhosted.org/packages/ab/cd/0123456789abcdef0123456789abcdef0123456789abcdef0123"
           "456789ab/numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not _probe.may_hold_secret(url)
    assert _probe.may_hold_secret(url + "?X-Amz-Signature=abc") and _probe.may_hold_secret("https://u@h/x")
    assert _probe.may_hold_secret("MIG-1234") and _probe.may_hold_secret("\u212aey")  # Kelvin sign: the regex's case
