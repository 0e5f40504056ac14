"""The README's first command, for real: the whole loop on the bundled example ends with outputs compared.

Run on a copy of the example (``ENVCAP_DEMO_DIR``) so a developer's own ``examples/train/.envcap`` is
never replaced by a test.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]
REPO = Path(__file__).resolve().parents[2]


def test_the_demo_snapshots_builds_replays_and_finds_the_outputs_the_same(tmp_path: Path, base_image: str) -> None:
    env = os.environ | {"ENVCAP_DEMO_DIR": str(tmp_path / "train"), "ENVCAP_DEMO_EPOCHS": "20",
                        "ENVCAP_TEST_BASE_IMAGE": base_image}
    done = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=1800, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "same      out/metrics.json" in done.stdout + done.stderr  # the report goes to stderr, beside the workload
    report = json.loads((tmp_path / "train" / ".envcap-demo-report.json").read_text())
    assert [f["status"] for f in report["outputs"]["files"]] == ["same"] and report["exit_code"] == 0
    lock = json.loads((tmp_path / "train" / ".envcap" / "envcap.lock.json").read_text())
    assert str(tmp_path / "train" / ".venv") in lock["python"]["prefix"], "the project's venv, not envcap's own"
    assert "numpy" in {d["name"] for d in lock["distributions"]}
