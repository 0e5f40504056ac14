"""``envcap snapshot`` when things go wrong: one sentence, a non-zero exit, no traceback, no half-written files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.cli import main
from envcap.errors import OutputError
from envcap.lock.lockset import write_lock_set

LOCK_SET = ("envcap.lock.json", "requirements.lock", "requirements.in", "pylock.toml", "Dockerfile", ".dockerignore")
INTERNALS = (".sets", ".current", ".envcap-write.lock")  # generations, the one in force, the writers' lock


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root with its bytes (to prove nothing changed and nothing was left behind)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_clean_error(result, code: int, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.stdout + result.stderr
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def previous(tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    """A good lock set from an earlier snapshot: failures must leave it exactly as it is."""
    out = tmp_path / "out"
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(LOCK_SET + INTERNALS)
    return out


def executable(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    path.chmod(0o755)
    return path


def run_and_check_untouched(cli, previous: Path, args: list[str], code: int, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    before = tree(previous.parent)
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(previous), *args])
    assert_one_clean_error(result, code, *fragments)
    assert tree(previous.parent) == before


def test_python_that_does_not_exist(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_and_check_untouched(cli, previous, ["--python", str(tmp_path / "no" / "python")], 3, "does not exist")


def test_python_name_not_on_path(cli, previous: Path) -> None:  # type: ignore[no-untyped-def]
    run_and_check_untouched(cli, previous, ["--python", "python9.99"], 3, "python9.99")


def test_python_is_a_folder_without_an_interpreter(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "just-a-folder"
    folder.mkdir()
    run_and_check_untouched(cli, previous, ["--python", str(folder)], 3, "folder")


def test_python_is_not_executable(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "python"
    plain.write_text("print('hi')\n", "utf-8")
    plain.chmod(0o644)
    run_and_check_untouched(cli, previous, ["--python", str(plain)], 3, "not executable")


def test_python_is_another_program_that_succeeds(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = executable(tmp_path / "python", "#!/bin/sh\necho 'hello, I am not python'\n")
    run_and_check_untouched(cli, previous, ["--python", str(fake)], 3, "did not answer like a Python interpreter")


def test_python_is_another_program_that_fails(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = executable(tmp_path / "python", "#!/bin/sh\necho 'Segmentation fault' >&2\nexit 139\n")
    run_and_check_untouched(cli, previous, ["--python", str(fake)], 3, "exit 139", "Segmentation fault")


def test_python_is_a_binary_that_is_not_python(cli, previous: Path) -> None:  # type: ignore[no-untyped-def]
    run_and_check_untouched(cli, previous, ["--python", "/bin/ls"], 3, "/bin/ls")


def test_python_prints_json_but_not_the_probes(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = executable(tmp_path / "python", "#!/bin/sh\necho '[1, 2, 3]'\n")
    run_and_check_untouched(cli, previous, ["--python", str(fake)], 3, "incomplete probe report")


def test_python_prints_a_probe_report_of_the_wrong_shape(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = json.dumps({"python": {"version": 3}, "distributions": []})
    fake = executable(tmp_path / "python", f"#!/bin/sh\necho '{report}'\n")
    run_and_check_untouched(cli, previous, ["--python", str(fake)], 3, "unexpected shape", "python.version")


def test_python_prints_distributions_of_the_wrong_shape(cli, previous: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = json.dumps({"python": {"version": "3.11.7"}, "distributions": "many"})
    fake = executable(tmp_path / "python", f"#!/bin/sh\necho '{report}'\n")
    run_and_check_untouched(cli, previous, ["--python", str(fake)], 3, "unexpected shape")


def test_out_below_a_regular_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As root no permission bit stops a write; a path below a regular file fails for everyone."""
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n", "utf-8")
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(blocker / "out")])
    assert_one_clean_error(result, 5, "cannot write into")
    assert tree(tmp_path) == {"a-file": b"keep me\n"}


def test_out_that_is_a_regular_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n", "utf-8")
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(blocker)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert tree(tmp_path) == {"a-file": b"keep me\n"}


def test_out_on_a_read_only_mount(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """/proc/sys is read-only even for root: EROFS/EACCES must become the same one-line error."""
    target = Path("/proc/sys/envcap-out")
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(target)])
    assert_one_clean_error(result, 5, "cannot write")
    assert not target.exists()


def test_write_failure_in_the_middle_leaves_no_partial_generation(previous: Path) -> None:
    """A file of the new set cannot be written (a name the file system refuses): nothing of it is left."""
    before = tree(previous)
    with pytest.raises(OutputError):
        write_lock_set(previous, {"a.txt": "a", "b/c.txt": "b"}, generation="broken")
    assert tree(previous) == before
    assert [p.name for p in (previous / ".sets").iterdir()] == [os.readlink(previous / ".current").split("/")[-1]]


def test_a_failing_rename_leaves_the_previous_set_whole(previous: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (previous / "Dockerfile").unlink()
    (previous / "Dockerfile").mkdir()
    before = tree(previous)
    os.utime(previous / "envcap.lock.json", (0, 0))
    result = cli.invoke(main, ["snapshot", "--offline", "--out", str(previous), "--base-image", "other:1"])
    assert result.exit_code == 5
    assert tree(previous) == before
    assert not [p for p in previous.parent.rglob("*.tmp")]


def test_success_leaves_no_temporary_files_and_modes_are_readable(previous: Path) -> None:
    assert not list(previous.parent.rglob("*.tmp")) and not list(previous.rglob("*.partial"))
    for name in LOCK_SET:
        mode = stat.S_IMODE((previous / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_files_follow_the_umask(tmp_path: Path) -> None:
    """A user with umask 077 gets files only they can read (they were forced to 0644 before)."""
    envcap = Path(sys.executable).parent / "envcap"
    done = subprocess.run(["sh", "-c", f"umask 077 && {envcap} snapshot --offline --out {tmp_path / 'o'}"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    for name in LOCK_SET:
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o600, name


def test_json_output_is_one_document(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)  # as when envcap's venv is the activated one
    result = cli.invoke(main, ["snapshot", "--offline", "--json", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["format"] == 1 and document["kind"] == "snapshot"
    assert sorted(Path(f).name for f in document["files"]) == sorted(LOCK_SET)
    assert document["snapshot"]["python"]["executable"] == sys.executable
    assert document["interpreter"] == f"{sys.prefix}/bin/python (from VIRTUAL_ENV)"
    assert any("envcap itself runs in" in n for n in document["notes"])


def test_debug_shows_the_traceback(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli.invoke(main, ["--debug", "snapshot", "--python", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ProbeError"


def test_real_process_for_a_missing_interpreter(tmp_path: Path) -> None:
    envcap = Path(sys.executable).parent / "envcap"
    done = subprocess.run([str(envcap), "snapshot", "--python", str(tmp_path / "missing"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.splitlines()[0] == f"error: the interpreter {tmp_path / 'missing'} does not exist."
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_system_python_dist_packages_are_each_named_in_a_warning(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Debian's python3: apt's dist-packages cannot be rebuilt from an index as they are; none is dropped silently."""
    from envcap.lock import load_snapshot

    result = cli.invoke(main, ["snapshot", "--offline", "--python", "/usr/bin/python3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr
    snapshot = load_snapshot(tmp_path / "o")
    apt = [d for d in snapshot.distributions if d.site == "dist-packages"]
    assert apt
    for dist in apt:
        assert any(w.startswith(f"{dist.name} {dist.version} ") for w in snapshot.warnings), dist.name
    lock = (tmp_path / "o" / "requirements.lock").read_text()
    for dist in apt:
        assert f"{dist.name}=={dist.version}" in lock  # pinned, or listed as left out
