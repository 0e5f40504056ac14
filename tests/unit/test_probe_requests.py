"""What the user asked for: extras kept (REQUESTED records none), uv's venvs read by their roots."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from envcap.emit.requirements import render_requirements_in
from envcap.lock import PythonEnv, Snapshot
from envcap.probe import snapshot_from_facts


def dist_info(site: Path, name: str, version: str, *, requires: tuple[str, ...] = (), requested: bool = False,
              installer: str = "pip") -> None:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (folder / "METADATA").write_text("\n".join(lines) + "\n\nLong description: Requires-Dist: nothing\n")
    (folder / "INSTALLER").write_text(installer + "\n")
    if requested:
        (folder / "REQUESTED").write_text("")


def test_extras_whose_requirements_are_all_installed_are_kept(probe: ModuleType, tmp_path: Path) -> None:
    dist_info(tmp_path, "requests", "2.32.3", requested=True, requires=(
        "charset-normalizer<4,>=2", "PySocks!=1.5.7,>=1.5.6; extra == \"socks\"",
        "chardet<6,>=3.0.2; extra == \"use-chardet-on-py3\""))
    dist_info(tmp_path, "charset_normalizer", "3.4.0")
    dist_info(tmp_path, "PySocks", "1.7.1")
    dists = {d["name"]: d for d in probe.distributions_facts([str(tmp_path)])}
    assert dists["requests"]["extras"] == ["socks"]  # chardet is not installed: that extra was not asked for
    assert "extras" not in dists["pysocks"]
    snapshot = snapshot_from_facts({"python": {"version": "3.11.7"}, "distributions": list(dists.values())})
    assert "requests[socks]==2.32.3" in render_requirements_in(Snapshot(python=PythonEnv(version="3.11.7"),
                                                                        distributions=snapshot.distributions))


def test_a_uv_venv_marks_everything_requested_so_its_roots_are_what_was_asked(probe: ModuleType,
                                                                               tmp_path: Path) -> None:
    dist_info(tmp_path, "scikit_learn", "1.5.2", requested=True, installer="uv",
              requires=("numpy>=1.19.5", "scipy>=1.6.0", "joblib>=1.2.0"))
    dist_info(tmp_path, "scipy", "1.14.1", requested=True, installer="uv", requires=("numpy<2.3,>=1.23.5",))
    dist_info(tmp_path, "numpy", "2.1.3", requested=True, installer="uv")
    dist_info(tmp_path, "joblib", "1.4.2", requested=True, installer="uv")
    dist_info(tmp_path, "rich", "13.9.4", requested=True, installer="uv")
    dists = {d["name"]: d["requested"] for d in probe.distributions_facts([str(tmp_path)])}
    assert dists == {"scikit-learn": True, "rich": True, "scipy": False, "numpy": False, "joblib": False}


def test_pips_own_requested_marker_is_kept_as_it_is(probe: ModuleType, tmp_path: Path) -> None:
    dist_info(tmp_path, "a", "1.0", requested=True, requires=("b",))
    dist_info(tmp_path, "b", "1.0", requested=True)  # pip install a b: both asked for, b also needed by a
    dists = {d["name"]: d["requested"] for d in probe.distributions_facts([str(tmp_path)])}
    assert dists == {"a": True, "b": True}
