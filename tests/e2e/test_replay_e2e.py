"""``envcap replay`` for real: the example training script, replayed in an image built by a real engine.

The host venv is Python 3.11.7 and the local Debian base image has Python 3.11.2, a real patch-level
difference the report must show. envcap runs as a separate process (``python -m envcap.cli``), so
exit codes, signals and Ctrl-C are the real ones; the engine is asked afterwards whether any
container was left behind.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcap.engine import ContainerEngine, connect
from envcap.replay import REPLAY_LABEL
from envcap.workload import hook
from tests.e2e.workloads import SLEEPER

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train"
NONROOT = "1000:1000"
NOISE = ("import json, os, pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); "
         "(p / 'noise.json').write_text(json.dumps({'value': int.from_bytes(os.urandom(4), 'big')}))")


def envcap(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def engine(docker_client: object) -> ContainerEngine:
    return connect()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Path:
    """The example project: a venv with its requirements, a snapshot with a native baseline, the image."""
    root = tmp_path_factory.mktemp("replay-e2e")
    for name in ("train.py", "requirements.txt"):
        shutil.copy(EXAMPLE / name, root / name)
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    subprocess.run([str(root / ".venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-r", str(root / "requirements.txt")], check=True)
    done = envcap("snapshot", "--python", ".venv/bin/python", "--outputs", "out/*.json", "--",
                  ".venv/bin/python", "train.py", "--epochs", "30", cwd=root)
    assert done.returncode == 0, done.stderr
    done = envcap("build", "--base-image", base_image, cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr
    return root


def replay(project: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``envcap replay`` with the project's lock; ``args`` are options, then ``--`` and the command."""
    return envcap("replay", str(project / ".envcap"), *args, cwd=cwd or project)


def last_report(project: Path) -> dict[str, object]:
    folders = sorted(p for p in (project / ".envcap" / "replays").iterdir() if p.is_dir())
    data = json.loads((folders[-1] / "report.json").read_text())
    assert isinstance(data, dict)
    return data


def test_replay_of_the_example_shows_the_python_patch_difference(project: Path, engine: ContainerEngine) -> None:
    done = replay(project, "--outputs", "out/*.json", "--report", "r.json", "--markdown", "r.md", "--",
                  "python", "train.py", "--epochs", "30")
    assert done.returncode == 0, done.stderr
    assert "epochs=30 loss=" in done.stdout  # the workload's own output, streamed through
    host_python = platform.python_version()
    assert host_python != "3.11.2", "this machine's interpreter should differ from the image's"
    assert "python.version" in done.stderr
    assert f"{host_python} (snapshot) → 3.11.2 (replay)" in done.stderr
    report = json.loads((project / "r.json").read_text())
    differences = {d["fact"]: d for d in report["comparison"]["differences"]}
    assert differences["python.version"]["original"] == host_python
    assert differences["python.version"]["replay"] == "3.11.2"
    assert report["comparison"]["stack_identical"] is False
    assert report["outputs"]["baseline"].startswith("the native run")
    assert [f["path"] for f in report["outputs"]["files"]] == ["out/metrics.json"]
    assert "| `python.version` |" in (project / "r.md").read_text()
    saved = Path(report["replay_dir"])
    assert json.loads((saved / "envcap.lock.json").read_text())["python"]["version"] == "3.11.2"
    metrics = project / "out" / "metrics.json"
    assert metrics.stat().st_uid == os.getuid()  # written inside, owned by the user outside
    assert engine.containers(REPLAY_LABEL) == []


@pytest.mark.parametrize(("command", "code"), [
    (("sh", "-c", "exit 0"), 0),
    (("sh", "-c", "exit 3"), 3),
    (("sh", "-c", "kill -TERM $$"), 143),
])
def test_exit_code_passes_through(project: Path, engine: ContainerEngine, command: tuple[str, ...],
                                  code: int) -> None:
    done = replay(project, "--", *command)
    assert done.returncode == code, done.stderr
    if code == 143:
        assert "killed by SIGTERM" in done.stderr
    assert last_report(project)["exit_code"] == code
    assert engine.containers(REPLAY_LABEL) == []


def test_command_not_found_inside_the_image(project: Path, engine: ContainerEngine) -> None:
    done = replay(project, "--", "no-such-program-in-the-image")
    assert done.returncode == 127
    assert "'no-such-program-in-the-image' (or a command it runs) was not found inside the image" in done.stderr
    report = last_report(project)
    assert report["status"] == "command-not-found"
    assert (Path(str(report["replay_dir"])) / "envcap.lock.json").is_file()  # the probe ran before it


def test_files_written_as_a_non_root_user_belong_to_that_user(project: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    uid, gid = (int(x) for x in NONROOT.split(":"))
    if os.getuid() == 0:
        os.chown(work, uid, gid)
    else:  # not root: the user's own ids are the non-root ones
        uid, gid = os.getuid(), os.getgid()
    done = replay(project, "--user", f"{uid}:{gid}", "--", "sh", "-c", "id -u > made-inside.txt",
                  cwd=work)
    assert done.returncode == 0, done.stderr
    made = work / "made-inside.txt"
    assert made.read_text().strip() == str(uid)
    assert (made.stat().st_uid, made.stat().st_gid) == (uid, gid)


def test_outputs_and_repeat_detect_a_planted_nondeterministic_output(project: Path, engine: ContainerEngine) -> None:
    done = replay(project, "--outputs", "out/noise.json", "--repeat", "2", "--", "python", "-c", NOISE)
    assert done.returncode == 0, done.stderr
    assert "not deterministic" in done.stderr
    report = last_report(project)
    assert report["repeat"]["runs"] == 2 and report["repeat"]["identical"] is False
    (pair,) = report["repeat"]["pairs"]
    (item,) = pair["files"]
    assert item["path"] == "out/noise.json" and item["status"] == "differs"
    assert item["numeric"]["differing"] == 1 and item["numeric"]["at"] == "value"

    again = replay(project, "--outputs", "out/noise.json", "--", "python", "-c", NOISE)
    assert again.returncode == 0, again.stderr
    second = last_report(project)
    assert second["outputs"]["baseline"] == f"the earlier replay {report['replay_id']}"
    assert [f["status"] for f in second["outputs"]["files"]] == ["differs"]
    assert engine.containers(REPLAY_LABEL) == []


def test_missing_image_gives_a_sentence_and_exit_9(project: Path) -> None:
    done = replay(project, "--image", "envcap-no-such-image:1", "--", "true")
    assert done.returncode == 9
    assert "error: the engine at" in done.stderr and "has no image envcap-no-such-image:1" in done.stderr
    assert last_report(project)["status"] == "replay-failed"


def test_ctrl_c_reaches_the_workload_and_leaves_no_container(project: Path, engine: ContainerEngine) -> None:
    process = subprocess.Popen([sys.executable, "-m", "envcap", "replay", str(project / ".envcap"), "--",
                                "python", "-c", SLEEPER], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        assert engine.containers(REPLAY_LABEL)  # the workload's (the probe's may still be going too)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed assertion must not leave the replay (and its container) running
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert (project / "saw-sigint.txt").read_text() == "yes"  # the workload itself got the SIGINT
    assert "saving a checkpoint before exiting" in out, err  # and what it printed while stopping still streams
    assert "error: interrupted" in err
    deadline = time.monotonic() + 10
    while engine.containers(REPLAY_LABEL) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.containers(REPLAY_LABEL) == []
    assert last_report(project)["status"] == "interrupted"


def test_piped_stdin_reaches_the_workload(project: Path) -> None:
    """`producer | envcap replay -- CMD`: the data arrives, and EOF too (the workload ends)."""
    done = subprocess.run([sys.executable, "-m", "envcap", "replay", str(project / ".envcap"), "--",
                           "python", "-c", "import sys; print('GOT', sys.stdin.read().strip()[::-1])"],
                          cwd=project, input="olleh", capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "GOT hello" in done.stdout


def test_a_terminal_is_passed_through_as_a_tty(project: Path) -> None:
    """With envcap on a terminal, the workload sees one too (progress bars, pdb, prompts work)."""
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "envcap", "replay", str(project / ".envcap"), "--",
                                    "python", "-c", "import sys; print('TTY', sys.stdin.isatty(), sys.stdout.isatty())"],
                                   cwd=project, stdin=follower, stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        _, stderr = process.communicate(timeout=300)
        seen = b""
        while True:  # the terminal's output, read until the last writer is gone
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b"TTY True True" in seen, seen[-2000:]


def test_a_second_replay_of_the_image_starts_no_probe_container_and_changes_nothing_the_workload_sees(
        project: Path, tmp_path: Path) -> None:
    """The image's facts are kept from the first replay; the second runs only the workload's container, with the
    launcher in front of it (it reads the machine, then execs the command). The workload's process (environment,
    signal dispositions, parent, arguments) and snapshot B are the same either way."""
    # The status is read by the workload's own process (exec), once the shell has no child left: a shell's mask
    # changes while it waits for one.
    show = ("sh", "-c", "env | sort | grep -v '^HOSTNAME='; echo $0 $# \"$1\"; "
            "exec grep -E '^(Sig(Blk|Ign|Cgt)|PPid)' /proc/self/status", "zero", "one arg")
    env = dict(os.environ, ENVCAP_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-m", "envcap", "-v", "replay", str(project / ".envcap"), "--", *show],
                           cwd=project, env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL, check=False) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert [done.stderr.count(": create container from ") for done in runs] == [2, 1]
    launcher = f"{hook.MOUNT_TARGET}/{hook.LAUNCH_FOLDER}/launch.py"
    assert launcher in runs[1].stderr and launcher not in runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert "SigIgn:\t0000000000000000" in runs[1].stdout and "zero 1 one arg" in runs[1].stdout
    assert "PPid:\t1\n" in runs[1].stdout  # the child of the init, as without the launcher (it execs)
    folders = sorted(p for p in (project / ".envcap" / "replays").iterdir() if p.is_dir())[-2:]
    probed, launched = (json.loads((folder / "envcap.lock.json").read_text()) for folder in folders)
    assert probed["digest"] == launched["digest"]  # the same facts (captured_at aside)
