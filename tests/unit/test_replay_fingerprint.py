"""``envcap replay`` of a fingerprinted lock: the image's kernels are measured beside the workload and compared.

The fake engine answers the fingerprint script with recorded kernels; which bits it answers depends on the
environment the replay gives the container, as NumPy's dispatch would.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcap.engine import RunResult, RunSpec
from envcap.lock import Fingerprint, load_snapshot
from envcap.probe.fingerprint import fingerprint_source
from envcap.replay import replay
from envcap.replay.render import render_json, render_markdown, render_text
from tests.unit.test_replay import Container, engine_for, host_facts, image_facts, make_lock, no_gpu, request

__all__ = ["host_facts"]  # the module-scoped fixture, shared


def kernel(values: list[float]) -> Fingerprint:
    import hashlib

    raw = struct.pack(f"<{len(values)}d", *values)
    return Fingerprint(sha256=hashlib.sha256(raw).hexdigest(), dtype="float64", shape=(len(values),),
                       sample=raw.hex())


PLAIN = {"numpy.exp_f64": kernel([1.0, 2.0]), "numpy.gemm_f64": kernel([3.0])}
CAPPED = {"numpy.exp_f64": kernel([1.0, math.nextafter(2.0, 0.0)]), "numpy.gemm_f64": kernel([3.0])}


def output(kernels: dict[str, Fingerprint]) -> bytes:
    from envcap._serde import to_json

    return json.dumps({"fingerprint_version": 1, "kernels": to_json(kernels), "total_seconds": 0.5}).encode()


@dataclass
class Measuring(Container):
    """Answers the fingerprint script too: capped bits when the replay capped NumPy's dispatch."""

    fingerprints: int = 0
    fingerprint_env: dict[str, str] | None = None
    fail_fingerprint: bool = False

    def __call__(self, spec: RunSpec) -> RunResult:
        if spec.stdin_data == fingerprint_source().encode():
            self.fingerprints += 1
            self.fingerprint_env = dict(spec.env)
            if self.fail_fingerprint:
                return RunResult(1, stderr=b"Segmentation fault in libopenblas")
            capped = "NPY_DISABLE_CPU_FEATURES" in spec.env
            return RunResult(0, stdout=output(CAPPED if capped else PLAIN))
        return super().__call__(spec)


def test_a_fingerprinted_lock_is_fingerprinted_in_the_image_and_compared(tmp_path: Path,
                                                                          host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts, fingerprints=PLAIN, env={"NPY_DISABLE_CPU_FEATURES": "X86_V4"})
    container = Measuring(image_facts(host_facts))
    report = replay(request(tmp_path), engine=engine_for(container), host_gpu=no_gpu)
    assert container.fingerprints == 1
    assert container.fingerprint_env is not None
    assert container.fingerprint_env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4"  # the workload's environment
    part = report.fingerprint
    assert part is not None and (part.compared, part.identical) == (2, 1)
    (difference,) = part.differences
    assert difference.kernel == "numpy.exp_f64" and difference.kind == "rounding"
    assert "largest ULP distance 1 " in difference.detail
    facts = {d.fact: d for d in report.comparison.differences} if report.comparison else {}
    assert facts["fingerprint.numpy.exp_f64"].severity == "medium"
    saved = load_snapshot(Path(report.replay_dir))
    assert saved.fingerprints == CAPPED  # B's fingerprint is kept with B
    assert "Numeric fingerprint: 2 kernels compared, 1 compute the same bits, 1 differ" in render_text(report)
    assert "fingerprint.numpy.exp_f64" in render_markdown(report)
    assert json.loads(render_json(report))["fingerprint"]["differences"][0]["kind"] == "rounding"


def test_a_lock_without_fingerprint_is_not_fingerprinted_unless_asked(tmp_path: Path,
                                                                      host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts)
    container = Measuring(image_facts(host_facts))
    report = replay(request(tmp_path), engine=engine_for(container), host_gpu=no_gpu)
    assert container.fingerprints == 0 and report.fingerprint is None
    report = replay(request(tmp_path, fingerprint=True), engine=engine_for(container), host_gpu=no_gpu)
    assert container.fingerprints == 1
    assert report.fingerprint is not None and "no fingerprint to compare with" in (report.fingerprint.note or "")
    assert load_snapshot(Path(report.replay_dir)).fingerprints == PLAIN


def test_a_fingerprint_that_fails_in_the_image_is_a_warning_not_a_failed_replay(tmp_path: Path,
                                                                                 host_facts: dict[str, Any]) -> None:
    make_lock(tmp_path / "lock", host_facts, fingerprints=PLAIN)
    container = Measuring(image_facts(host_facts), fail_fingerprint=True)
    report = replay(request(tmp_path), engine=engine_for(container), host_gpu=no_gpu)
    assert report.status == "ok"
    assert report.fingerprint is not None and "Segmentation fault" in (report.fingerprint.note or "")
    assert load_snapshot(Path(report.replay_dir)).fingerprints is None
