"""The image's facts kept by image (envcap.replay.image_facts): what the key holds, what is kept, how the machine's
sections are put back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from envcap.engine import Mount, RunSpec
from envcap.replay import image_facts

SPEC = RunSpec(image="sha256:" + "a" * 64, command=("python", "train.py"), workdir="/home/alice/proj", user="1000:1000",
               env={"HOME": "/tmp", "OMP_NUM_THREADS": "2"}, mounts=(Mount("/home/alice/proj", "/home/alice/proj"),), init=True,
               labels={"io.envcap.replay": "one"})
ARGV = ("python3", "-", "--skip-git", "--search-path")


def key(spec: RunSpec = SPEC, argv: tuple[str, ...] = ARGV, source: str = "probe v1",
        endpoint: str = "unix:///var/run/docker.sock") -> str:
    return image_facts.cache_key(endpoint, spec, argv, source)


def test_the_key_holds_what_the_probe_sees_and_nothing_else() -> None:
    """The command, the replay's own label and the terminal are not the probe's business; everything else is."""
    assert key(replace(SPEC, command=("sh", "-c", "x"), labels={"io.envcap.replay": "two"}, tty=True)) == key()
    changed = [
        replace(SPEC, image="sha256:" + "b" * 64),
        replace(SPEC, env={**SPEC.env, "OMP_NUM_THREADS": "4"}),
        replace(SPEC, env={**SPEC.env, "PYTHONPATH": "/home/alice/proj/src"}),
        replace(SPEC, user="0:0"),
        replace(SPEC, workdir="/home/alice/proj/sub"),
        replace(SPEC, mounts=(*SPEC.mounts, Mount("/data", "/data", read_only=True))),
        replace(SPEC, init=False),
        replace(SPEC, entrypoint=("/entry.sh",)),
    ]
    keys = {key(spec) for spec in changed} | {key(argv=(*ARGV, "--deep")), key(source="probe v2"),
                                               key(endpoint="unix:///run/podman/podman.sock"), key()}
    assert len(keys) == len(changed) + 4


def test_no_value_of_a_variable_is_written(tmp_path: Path) -> None:
    secret = "hf_" + "Zq8" * 12
    spec = replace(SPEC, env={**SPEC.env, "HF_TOKEN": secret})
    facts = {"python": {"executable": "/opt/venv/bin/python3"}, "unavailable": []}
    image_facts.store(key(spec), facts, root=tmp_path)
    (written,) = tmp_path.rglob("*.json")
    assert secret not in written.read_text()
    assert image_facts.load(key(spec), root=tmp_path) == facts
    assert image_facts.load(key(), root=tmp_path) is None


def test_a_damaged_or_foreign_entry_is_not_taken(tmp_path: Path) -> None:
    facts = {"python": {"executable": "/opt/venv/bin/python3"}, "unavailable": []}
    image_facts.store(key(), facts, root=tmp_path)
    (written,) = tmp_path.rglob("*.json")
    written.write_text(written.read_text().replace(key(), "0" * 64))  # another key's reading under this name
    assert image_facts.load(key(), root=tmp_path) is None
    written.write_text("{not json")
    assert image_facts.load(key(), root=tmp_path) is None
    image_facts.forget(key(), root=tmp_path)
    assert not written.exists()


def reading(**changes: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "probe_version": 2,
        "python": {"version": "3.11.2", "executable": "/opt/venv/bin/python3"},
        "distributions": [{"name": "numpy", "location": "/opt/venv/lib/python3.11/site-packages"}],
        "os": {"kernel": "6.1.0"}, "cpu": {"model_name": "EPYC"}, "gpu": {"status": "no-nvml"},
        "toolchain": {"gcc": {"path": "/usr/bin/gcc", "version": "12.2.0"}, "nvcc": None},
        "unavailable": [{"probe": "gpu[0].ecc_mode", "reason": "not supported"},
                        {"probe": "gpu.cuda_driver_version", "reason": "x"}, {"probe": "cpu", "reason": "y"}],
        "search_path": ["/usr/lib/python3.11", "/opt/venv/lib/python3.11/site-packages"],
    }
    facts.update(changes)
    return facts


def test_the_kept_part_leaves_out_the_machine_and_where_it_looked() -> None:
    kept = image_facts.image_part(reading(), ["/home/alice/proj"])
    assert kept is not None
    assert not {"os", "cpu", "gpu", "search_path"} & set(kept)
    assert kept["unavailable"] == []  # the machine's readers' failures go with their sections
    assert kept["python"]["version"] == "3.11.2"


@pytest.mark.parametrize("changes", [
    {"search_path": ["/usr/lib/python3.11", "/home/alice/proj/src"]},  # a mounted folder searched for distributions
    {"distributions": [{"name": "mine", "location": "/home/alice/proj/.venv/lib"}]},  # a path in a mounted folder
    {"python": {"version": "3.11.2", "executable": "/home/alice/proj/.venv/bin/python"}},
    {"python": {"version": "3.11.2", "executable": "python3"}},  # the launcher needs an absolute path
    {"unavailable": [{"probe": "blas", "reason": "TimeoutExpired"}]},  # perhaps only this time
    {"toolchain": {"gcc": {"path": "/usr/bin/gcc", "version": None}}},
    {"search_path": None},  # a probe without --search-path: where it looked is unknown
])
def test_readings_that_may_differ_next_time_are_not_kept(changes: dict[str, Any]) -> None:
    assert image_facts.image_part(reading(**changes), ["/home/alice/proj"]) is None


def test_a_mount_at_the_root_keeps_nothing() -> None:
    assert image_facts.image_part(reading(), ["/"]) is None


def test_with_host_puts_the_machines_sections_read_now_in_place() -> None:
    kept = image_facts.image_part(reading(), ["/home/alice/proj"])
    assert kept is not None
    host = {"os": {"kernel": "6.8.0"}, "cpu": {"model_name": "Xeon"}, "gpu": None,
            "unavailable": [{"probe": "gpu", "reason": "NVML failed"}]}
    whole = image_facts.with_host(kept, host)
    assert whole["os"] == {"kernel": "6.8.0"} and whole["cpu"] == {"model_name": "Xeon"} and whole["gpu"] is None
    assert whole["unavailable"] == [{"probe": "gpu", "reason": "NVML failed"}]
    assert whole["python"] == kept["python"] and image_facts.interpreter(kept) == "/opt/venv/bin/python3"
