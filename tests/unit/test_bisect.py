"""``envcap bisect`` without a real engine: ddmin, installable intermediate sets, candidates, layers, and the
whole session against the fake engine, whose "workload" computes its output from the versions really installed
in each image (read back from what was built) and from the variables it was given.

The real thing, with real wheels and images, is tests/e2e/test_bisect_e2e.py.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from envcap._subprocess import Completed
from envcap.bisect import BisectRequest, bisect, render_text, to_document
from envcap.bisect.candidates import candidates, run_env
from envcap.bisect.ddmin import ddmin, split
from envcap.bisect.overlay import OVERLAY_LABEL, build_overlay, overlay_digest, render_overlay
from envcap.bisect.resolve import PackageSets, PipCompile, parse_compiled, wheel_requirements
from envcap.build.wheelhouse import Wheelhouse
from envcap.build.wheels import Choice
from envcap.cli import main
from envcap.engine import RunResult, RunSpec
from envcap.lock import Cpu, Gpu, GpuDevice, Snapshot
from tests.fakes import FakeEngine
from tests.unit.test_build import BASE, BASE_ID, IMAGE_FACTS, LocalIndex, dist, make_snapshot, write_lock


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------ ddmin
def counting(outcomes: Callable[[frozenset[str]], str]) -> tuple[Callable[[frozenset[str]], Any], list[frozenset[str]]]:
    seen: list[frozenset[str]] = []

    def test(subset: frozenset[str]) -> Any:
        seen.append(subset)
        return outcomes(subset)

    return test, seen


def test_split_keeps_order_and_sizes() -> None:
    assert split(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e"], ["f", "g"]]
    assert split(["a"], 2) == [["a"]]


def test_ddmin_finds_one_culprit_among_many() -> None:
    test, seen = counting(lambda s: "B" if "sklearn" in s else "A")
    changes = ["click", "joblib", "numpy", "packaging", "sklearn", "threadpoolctl", "tz", "threads"]
    assert ddmin(changes, test) == ("sklearn",)
    assert len(seen) <= 8


def test_ddmin_keeps_an_interacting_pair_and_survives_unresolved_outcomes() -> None:
    def outcome(s: frozenset[str]) -> str:
        if {"a", "b"} <= s:
            return "B"
        return "other" if "c" in s else "A"  # c makes the workload crash unless the pair is there

    assert set(ddmin(list("abcdef"), counting(outcome)[0])) == {"a", "b"}


# ------------------------------------------------------------------------------------------------ resolve
TABLE: dict[tuple[str, str], tuple[str, ...]] = {
    ("scipy", "1.11.4"): ("numpy<1.28.0,>=1.21.6",),
    ("scipy", "1.14.1"): ("numpy<2.3,>=1.23.5",),
    ("numpy", "1.26.4"): (), ("numpy", "2.1.3"): (),
    ("wheel", "0.48.0"): ("packaging>=24.0",),
    ("packaging", "23.1"): (), ("packaging", "24.1"): (),
    ("sk", "1.5"): ("numpy>=2; python_version >= '3.9'", "pandas; extra == 'docs'"),
    ("sk", "1.3"): (),
}


def snap(**versions: str) -> Snapshot:
    return make_snapshot(*(dist(name, version) for name, version in versions.items()))


def sets(a: Snapshot, b: Snapshot, compiler: Any = None) -> PackageSets:
    return PackageSets(a, b, lambda n, v: TABLE.get((n, v)), compiler=compiler)


def test_a_substitution_that_breaks_a_requirement_moves_what_it_needs() -> None:
    s = sets(snap(numpy="1.26.4", scipy="1.11.4", packaging="23.1", wheel="0.48.0"),
             snap(numpy="2.1.3", scipy="1.14.1", packaging="24.1", wheel="0.48.0"))
    alone = s.resolve(frozenset({"numpy"}))
    assert alone.problem is None and alone.coupled == ("scipy",)
    assert alone.versions["numpy"] == "2.1.3" and alone.versions["scipy"] == "1.14.1"
    assert s.resolve(frozenset({"scipy"})).coupled == ()  # SciPy 1.14 runs on NumPy 1.26
    # A lives with wheel 0.48 beside packaging 23.1: that conflict is A's own, so nothing moves for it
    assert s.resolve(frozenset()).versions == s.a


def test_markers_and_extras_are_evaluated_for_the_image() -> None:
    s = sets(snap(sk="1.3", numpy="1.26.4"), snap(sk="1.5", numpy="2.1.3"))
    assert s.resolve(frozenset({"sk"})).coupled == ("numpy",)  # the extra's pandas is not required


def test_where_no_mix_of_a_and_b_fits_pip_compile_resolves_with_a_as_constraints() -> None:
    calls: list[tuple[dict[str, str], dict[str, str]]] = []

    def compiler(requested: Mapping[str, str], constraints: Mapping[str, str]) -> Any:
        calls.append((dict(requested), dict(constraints)))
        return {"sk": ("1.5", ("a" * 64,)), "numpy": ("2.0.2", ("b" * 64,)), "packaging": ("23.1", ())}

    a = snap(sk="1.3", numpy="1.26.4", packaging="23.1")
    b = replace(snap(sk="1.5", packaging="23.1"), distributions=snap(sk="1.5", packaging="23.1").distributions)
    resolution = sets(a, b, compiler).resolve(frozenset({"sk"}))
    assert calls == [({"sk": "1.5"}, {"packaging": "23.1"})]  # A's pins minus what is in conflict
    assert resolution.compiled == {"numpy": "2.0.2"} and resolution.hashes["numpy"] == ("b" * 64,)
    assert sets(a, b).resolve(frozenset({"sk"})).problem is not None  # and without pip-compile: said so


def test_pip_compile_output_is_parsed_with_its_hashes(tmp_path: Path) -> None:
    text = ("numpy==2.1.3 \\\n    --hash=sha256:" + "1" * 64 + " \\\n    --hash=sha256:" + "2" * 64 + "\n"
            "Scikit_Learn==1.5.2 \\\n    --hash=sha256:" + "3" * 64 + "\n")
    assert parse_compiled(text) == {"numpy": ("2.1.3", ("1" * 64, "2" * 64)), "scikit-learn": ("1.5.2", ("3" * 64,))}

    def runner(argv: Any, *, timeout: float = 0, cwd: str | None = None, env: Any = None, stdin: Any = None) -> Completed:
        assert "--generate-hashes" in argv and argv[argv.index("--constraint") + 1] == "constraints.txt"
        folder = Path(str(cwd))
        assert (folder / "constraints.txt").read_text() == "numpy==1.26.4\n"
        (folder / "requirements.txt").write_text(text)
        return Completed(tuple(argv), 0, "", "")

    compile_ = PipCompile(tmp_path, runner=runner, program="pip-compile")
    assert compile_({"scikit-learn": "1.5.2"}, {"numpy": "1.26.4"})["numpy"][0] == "2.1.3"  # type: ignore[index]


def wheel_bytes(name: str, version: str, requires: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires)
        archive.writestr(f"{name}-{version}.dist-info/METADATA", meta)
        archive.writestr(f"{name}/__init__.py", f"__version__ = {version!r}\n")
    return buffer.getvalue()


def test_requirements_are_read_from_the_wheel(tmp_path: Path) -> None:
    path = tmp_path / "scipy-1.14.1-py3-none-any.whl"
    path.write_bytes(wheel_bytes("scipy", "1.14.1", ("numpy<2.3,>=1.23.5",)))
    assert wheel_requirements(path) == ("numpy<2.3,>=1.23.5",)
    assert wheel_requirements(tmp_path / "missing.whl") is None


# ------------------------------------------------------------------------------------------------ candidates
def test_candidates_group_threads_and_caps_and_list_what_cannot_be_varied(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path)
    a = replace(make_snapshot(released(index, "numpy", "1.26.4"), released(index, "click", "8.1.3")), env={"OMP_NUM_THREADS": "1", "TZ": "UTC",
                                                          "CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "<redacted>"},
                cpu=Cpu(logical_cores=8, physical_cores=4, numeric_flags=("avx", "avx2", "fma")),
                gpu=Gpu(status="ok", driver_version="535.1", devices=(GpuDevice(0, "NVIDIA A100", "8.0"),)))
    b = replace(make_snapshot(released(index, "numpy", "1.26.4"), dist("click", "8.1.7")),
                env={"OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "1"},
                cpu=Cpu(logical_cores=8, physical_cores=4, numeric_flags=("avx", "avx2", "fma", "avx512f", "avx512cd",
                                                                          "avx512bw", "avx512dq", "avx512vl")),
                gpu=Gpu(status="ok", driver_version="550.2", devices=(GpuDevice(0, "NVIDIA H100", "9.0"),)),
                python=replace(a.python, version="3.12.1") if a.python else None)
    here = Cpu(logical_cores=2, physical_cores=1, numeric_flags=b.cpu.numeric_flags if b.cpu else ())
    found = candidates(a, b, here, match=True)
    labels = {g.label: g for g in found.groups}
    assert set(labels) == {"TZ", "thread counts", "ISA caps"}  # B's click has no pinned file: untested
    assert [d.fact for d in labels["thread counts"].differences] == ["env.OMP_NUM_THREADS"]
    caps = {d.name: (d.a, d.b) for d in labels["ISA caps"].differences}
    assert caps["NPY_DISABLE_CPU_FEATURES"][0] and caps["NPY_DISABLE_CPU_FEATURES"][1] is None  # only A is capped
    assert caps["OPENBLAS_CORETYPE"] == ("Haswell", None)
    untested = {u.fact: u for u in found.untested}
    assert {"gpu.compute_capability", "gpu.driver", "python.version", "env.CUDA_VISIBLE_DEVICES", "pkg.click"} <= set(
        untested)
    assert "cpu.isa" not in untested  # both sides' instruction sets are within this CPU's: caps play A
    assert found.env_a["TZ"] == "UTC" and "HF_TOKEN" not in found.env_a
    assert run_env(a, here, match=False) == {"OMP_NUM_THREADS": "1", "TZ": "UTC"}


# ------------------------------------------------------------------------------------------------ overlay
def choice(index: LocalIndex, name: str, version: str, requires: tuple[str, ...] = ()) -> Choice:
    artifact = index.add(f"{name}-{version}-py3-none-any.whl", wheel_bytes(name, version, requires))
    return Choice(name, version, artifact, False, (artifact.sha256,))


def test_a_layer_is_content_addressed_hermetic_and_built_once(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    install = [choice(index, "scikit_learn", "1.5.2"), choice(index, "joblib", "1.4.2")]
    digest = overlay_digest("sha256:base", install, ["tzdata"])
    assert digest == overlay_digest("sha256:base", list(reversed(install)), ["tzdata"])
    assert digest != overlay_digest("sha256:other", install, ["tzdata"])
    text = render_overlay("sha256:base", "/opt/venv", "envcap", install, ["tzdata"], digest)
    assert text.splitlines()[1] == "FROM sha256:base"
    assert "--no-index --no-deps --require-hashes" in text and "uninstall --yes tzdata" in text
    engine = FakeEngine()
    wheelhouse = Wheelhouse(tmp_path / "wheels")
    first = build_overlay(engine, base_id="sha256:base", venv="/opt/venv", user="envcap", install=install,
                          remove=["tzdata"], wheelhouse=wheelhouse, workdir=tmp_path / "ctx")
    again = build_overlay(engine, base_id="sha256:base", venv="/opt/venv", user="envcap", install=install,
                          remove=["tzdata"], wheelhouse=wheelhouse, workdir=tmp_path / "ctx")
    assert first.built and not again.built and first.image_id == again.image_id
    (sent,) = engine.builds
    assert sent.labels == {OVERLAY_LABEL: digest, "io.envcap.bisect-base": "sha256:base"}
    requirements = sent.files["overlay/requirements.txt"].decode()
    assert f"--hash=sha256:{install[0].artifact.sha256}" in requirements
    assert "overlay/joblib-1.4.2-py3-none-any.whl" in sent.files


# ------------------------------------------------------------------------------------------------ the session
@dataclass
class Workload:
    """The fake engine's containers: the platform probe, or the workload, whose output depends on the versions
    installed in its image (read back from what the fake engine built) and on its variables."""

    engine: FakeEngine
    decide: Callable[[dict[str, str], dict[str, str]], dict[str, str]]  # (versions, env) -> {file: content}
    noise: bool = False
    specs: list[RunSpec] = field(default_factory=list)

    def installed(self, image_id: str) -> dict[str, str]:
        for install in self.engine.installs:  # the install image of A's or B's own image
            committed = self.engine.images.get(install.tag)
            if image_id == install.tag or (committed is not None and committed.id == image_id):
                return dict(re.findall(r"^([a-z0-9_.-]+)==(\S+) ", install.requirements, re.M))
        build = next(b for b in self.engine.builds if image_id in (b.image_id, b.tag))
        parent = re.search(r"^FROM (\S+)", build.dockerfile, re.M)
        assert parent
        versions = self.installed(parent.group(1))
        if "overlay/requirements.txt" not in build.files:  # an image's settings on top of its install image
            return versions
        removed = re.search(r"uninstall --yes ([^\\\n]+)", build.dockerfile)
        for name in (removed.group(1).split() if removed else ()):
            versions.pop(name, None)
        versions.update(re.findall(r"^([a-z0-9_.-]+)==(\S+) ", build.files["overlay/requirements.txt"].decode(), re.M))
        return versions

    def __call__(self, spec: RunSpec) -> RunResult:
        if spec.image == BASE_ID:  # build's probe of the base image's Python
            return RunResult(0, stdout=(json.dumps(IMAGE_FACTS) + "\n").encode())
        self.specs.append(spec)
        env = dict(spec.env)
        command = list(spec.command)
        while command and command[0] in ("env", "-u"):
            if command[0] == "-u":
                env.pop(command[1], None)
                command = command[2:]
            else:
                command = command[1:]
        files = self.decide(self.installed(spec.image), env)
        if self.noise:
            files["noise.json"] = str(len(self.specs))
        out = Path(spec.workdir or "/") / "out"
        out.mkdir(exist_ok=True)
        for name, content in files.items():
            (out / name).write_text(content)
        return RunResult(0)


def session(tmp_path: Path, a: Snapshot, b: Snapshot, decide: Callable[[dict[str, str], dict[str, str]], dict[str, str]],
            **changes: Any) -> tuple[Any, Workload]:
    write_lock(tmp_path / "A", a)
    write_lock(tmp_path / "B", b)
    engine = FakeEngine()
    engine.add_image(BASE, BASE_ID)
    workload = Workload(engine, decide, noise=changes.pop("noise", False))
    engine.on_run = workload
    work = tmp_path / "work"
    work.mkdir()
    request = BisectRequest(a_dir=tmp_path / "A", b_dir=tmp_path / "B", command=("python", "train.py"),
                            outputs=("out/*.json",), cwd=work, base_image=BASE, **changes)
    return bisect(request, engine=engine, host=lambda: None), workload


def released(index: LocalIndex, name: str, version: str, *requires: str) -> Any:
    return dist(name, version, index.add(f"{name}-{version}-py3-none-any.whl", wheel_bytes(name, version, requires)))


def test_the_session_names_the_one_upgrade_that_changes_the_output(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "sk", "1.3", "jl>=1.0"), released(index, "jl", "1.3"),
                      released(index, "tp", "3.2"), released(index, "click", "8.1.3"))
    b = make_snapshot(released(index, "sk", "1.5", "jl>=1.2", "tp>=3.1"), released(index, "jl", "1.4"),
                      released(index, "tp", "3.5"), released(index, "click", "8.1.7"))
    report, workload = session(tmp_path, a, b, lambda versions, env: {"km.json": versions["sk"]})
    assert report.status == "found"
    assert [(c.fact, c.a, c.b) for c in report.culprits] == [("pkg.sk", "1.3", "1.5")]
    assert {c.fact for c in report.harmless} == {"pkg.jl", "pkg.tp", "pkg.click"}
    assert report.b_as_locked == "B" and report.deciding_files == ("out/km.json",)
    assert [r.config for r in report.runs[:6]] == ["A", "A", "A + all", "A + all", "B as locked", "B as locked"]
    assert all(r.outcome in ("A", "B") for r in report.runs)
    document = to_document(report)
    assert {"fact", "a", "b"} <= set(document["culprits"][0])
    assert {"index", "config", "applied", "coupled", "outputs", "outcome", "seconds", "image_built"} <= set(
        document["runs"][0])
    assert json.loads((Path(report.folder) / "report.json").read_text())["culprits"] == document["culprits"]
    assert "pkg.sk: 1.3 → 1.5" in render_text(report)
    assert report.builds == len(workload.engine.builds)


def test_a_thread_variable_and_a_variable_only_a_set(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = replace(make_snapshot(released(index, "np", "1.26")), env={"OMP_NUM_THREADS": "1", "OLD_FLAG": "1"})
    b = replace(make_snapshot(released(index, "np", "1.26")), env={"OMP_NUM_THREADS": "2"})

    def decide(versions: dict[str, str], env: dict[str, str]) -> dict[str, str]:
        return {"dot.json": env.get("OMP_NUM_THREADS", "?")}

    report, workload = session(tmp_path, a.with_digest(), b.with_digest(), decide, match=False)
    assert [(c.fact, c.a, c.b) for c in report.culprits] == [("env.OMP_NUM_THREADS", "1", "2")]
    assert [(c.fact, c.a, c.b) for c in report.harmless] == [("env.OLD_FLAG", "1", None)]
    unsetting = [s for s in workload.specs if s.command[:3] == ("env", "-u", "OLD_FLAG")]
    assert unsetting  # A's image sets OLD_FLAG itself: applying B's side unsets it


def test_numpy_needs_scipy_moved_and_scipy_alone_is_tried(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "numpy", "1.26.4"), released(index, "scipy", "1.11.4", "numpy<1.28"),
                      released(index, "click", "8.1.3"))
    b = make_snapshot(released(index, "numpy", "2.1.3"), released(index, "scipy", "1.14.1", "numpy>=1.23.5"),
                      released(index, "click", "8.1.7"))
    report, _ = session(tmp_path, a, b, lambda versions, env: {"p.json": versions["numpy"][0]})
    assert [c.fact for c in report.culprits] == ["pkg.numpy"]
    numpy_alone = next(r for r in report.runs if r.applied == ("pkg.numpy",))
    assert numpy_alone.coupled == ("scipy",)
    assert next(r for r in report.runs if r.applied == ("pkg.scipy",)).outcome == "A"
    assert any("applied with scipy" in note for note in report.notes)


def test_unstable_outputs_are_set_aside_and_candidates_run_twice(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "sk", "1.3"), released(index, "click", "8.1.3"))
    b = make_snapshot(released(index, "sk", "1.5"), released(index, "click", "8.1.7"))
    report, _ = session(tmp_path, a, b, lambda versions, env: {"km.json": versions["sk"]}, noise=True)
    assert report.unstable_files == ("out/noise.json",) and report.deciding_files == ("out/km.json",)
    assert [c.fact for c in report.culprits] == ["pkg.sk"]
    candidates_runs = [r for r in report.runs if r.config not in ("A", "A + all", "B as locked")]
    assert candidates_runs and len(candidates_runs) % 2 == 0


def test_outputs_that_do_not_differ_here_leave_only_the_untested(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "click", "8.1.3"))
    b = make_snapshot(released(index, "click", "8.1.7"), python="3.12.1")
    report, _ = session(tmp_path, a, b, lambda versions, env: {"x.json": "same"}, check_b=False)
    assert report.status == "no-difference" and not report.culprits
    assert [c.fact for c in report.harmless] == ["pkg.click"]
    assert "python.version" in {u.fact for u in report.untested}


def test_a_release_with_no_file_for_the_image_is_untested_not_a_failed_run(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "sk", "1.3"), released(index, "click", "8.1.3"))
    windows_only = dist("click", "8.1.7", index.add("click-8.1.7-cp311-cp311-win_amd64.whl"))
    b = make_snapshot(released(index, "sk", "1.5"), windows_only)
    report, _ = session(tmp_path, a, b, lambda versions, env: {"km.json": versions["sk"]})
    assert [c.fact for c in report.culprits] == ["pkg.sk"]
    (untested,) = [u for u in report.untested if u.fact == "pkg.click"]
    assert "no file that installs in A's image" in untested.why
    assert all(r.outcome != "failed" for r in report.runs)


def test_the_cli_needs_outputs_and_a_command(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli.invoke(main, ["bisect", str(tmp_path), str(tmp_path), "--", "python", "x.py"])
    assert result.exit_code == 2 and "--outputs" in result.stderr
    result = cli.invoke(main, ["bisect", str(tmp_path), str(tmp_path), "--outputs", "out/*"], obj={"engine": FakeEngine()})
    assert result.exit_code == 2 and "no command to bisect" in result.stderr


BISECT_KEYS = {"format", "kind", "bisect_id", "created_at", "envcap_version", "a", "b", "a_digest", "b_digest",
               "command", "patterns", "workdir", "status", "message", "culprits", "harmless", "harmless_proof",
               "untested", "notes", "candidates", "runs", "builds", "images_reused", "seconds", "setup_seconds",
               "deciding_files", "unstable_files", "matched", "b_as_locked", "folder"}


def test_bisect_json_contract(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "index")
    a = make_snapshot(released(index, "sk", "1.3"), released(index, "click", "8.1.3"))
    b = make_snapshot(released(index, "sk", "1.5"), released(index, "click", "8.1.7"))
    report, _ = session(tmp_path, a, b, lambda versions, env: {"km.json": versions["sk"]})
    document = to_document(report)
    assert set(document) == BISECT_KEYS and document["kind"] == "bisect-report" and document["format"] == 1
    assert set(document["culprits"][0]) == {"fact", "a", "b", "kind", "group"}
    assert set(document["runs"][0]) == {"index", "config", "applied", "coupled", "compiled", "image", "image_built",
                                        "build_seconds", "exit_code", "outputs", "outcome", "seconds", "note"}
    assert set(document["untested"][0]) == {"fact", "a", "b", "severity", "why"} if document["untested"] else True
