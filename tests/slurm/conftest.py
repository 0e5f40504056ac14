"""Fleet fixtures: a real Slurm cluster on this machine (scripts/ensure-slurm.sh).

The cluster: one slurmd here (envcap-host, partition envcap, the default) and four in containers
(node1..node4, partition fleet; node3 different on purpose), plus node9, defined and never started.
scripts/test.sh starts it before pytest; run alone, pytest starts it here and stops it at the end if it
was not running before. Tests that need it are skipped only where it cannot be started at all, and
then loudly: the reason is printed on stderr and in pytest's summary.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.machine import unavailable

REPO = Path(__file__).resolve().parents[2]
ENSURE = REPO / "scripts" / "ensure-slurm.sh"


def _start() -> tuple[str | None, str]:
    """(SLURM_CONF, why not) after making the cluster answer."""
    done = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, check=False, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["ensure-slurm.sh failed without a message"])[-1]
    return done.stdout.strip().splitlines()[-1], ""


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    status = os.environ.get("ENVCAP_SLURM_STATUS")
    conf = os.environ.get("ENVCAP_SLURM_CONF")
    started_here = False
    if status is None:  # not started through scripts/test.sh
        was_up = subprocess.run(["bash", str(ENSURE), "--status"], check=False, capture_output=True).returncode == 0
        conf, problem = _start()
        started_here = conf is not None and not was_up
        status = "ready" if conf else f"unavailable: {problem}"
    elif status == "ready" and conf:
        # started by test.sh, but a node may have been taken down since: ensure again (idempotent, fast)
        conf, problem = _start()
        status = "ready" if conf else f"unavailable: {problem}"
    if status != "ready" or not conf:
        unavailable(f"NO SLURM CLUSTER COULD BE STARTED, fleet test skipped: {status}")
    yield conf
    if started_here:
        subprocess.run(["bash", str(ENSURE), "--stop"], check=False, capture_output=True)


@pytest.fixture
def slurm_env(slurm_conf: str) -> dict[str, str]:
    """The environment envcap runs in: this cluster's slurm.conf, no numerics variables of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_", "SLURM_"))}
    env["SLURM_CONF"] = slurm_conf
    return env

