"""The rule table itself: well-formed data, covering the facts the design says decide results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envcap.explain.compare import COMPARISONS
from envcap.explain.ranking import matches
from envcap.explain.rules import RULES, SEVERITIES, AllOf, AnyOf, Cond, markdown_table

OPS = {"eq", "ne", "ge", "lt", "contains", "present", "absent", "unknown"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "explain.md"

# "Facts that decide results" in the design notes, as fact paths, and a few catalog factors besides.
DECIDING_FACTS = (
    "gpu.model", "gpu.compute_capability", "gpu.driver", "cuda.runtime", "cuda.cudnn", "cuda.nccl",
    "cuda.runtime_source", "precision.torch.backends.cuda.matmul.allow_tf32", "precision.torch.backends.cudnn.allow_tf32",
    "precision.torch.float32_matmul_precision", "precision.torch.backends.cudnn.benchmark",
    "precision.torch.backends.cudnn.deterministic", "precision.torch.deterministic_algorithms",
    "env.NVIDIA_TF32_OVERRIDE", "env.TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "env.CUBLAS_WORKSPACE_CONFIG",
    "env.PYTHONHASHSEED", "env.TF_DETERMINISTIC_OPS", "env.XLA_FLAGS", "blas.backend", "blas.openblas.version",
    "blas.mkl.version", "blas.threading_layer", "blas.openblas.threads", "env.OMP_NUM_THREADS", "env.MKL_NUM_THREADS",
    "env.OPENBLAS_NUM_THREADS", "env.MKL_CBWR", "cpu.vendor", "cpu.isa", "cpu.architecture", "pkg.numpy", "pkg.torch",
    "pkg.jax", "pkg.jaxlib", "pkg.tensorflow", "pkg.scikit-learn", "pkg.scipy", "os.libc_version",
    "python.version", "gpu.count", "env.WORLD_SIZE", "gpu.sm_count", "env.NCCL_ALGO", "env.ATEN_CPU_CAPABILITY",
    "env.ONEDNN_MAX_CPU_ISA", "env.TF_ENABLE_ONEDNN_OPTS", "env.NPY_PROMOTION_STATE", "pkg.nvidia-cudnn-cu12",
    "pkg.mkl",
)


def test_there_are_at_least_thirty_rules_with_unique_ids() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_each_rule_is_complete_data(rule) -> None:  # type: ignore[no-untyped-def]
    assert rule.compare in COMPARISONS
    assert rule.severity and set(rule.severity.values()) <= set(SEVERITIES)
    assert rule.otherwise is None or rule.otherwise in SEVERITIES
    assert rule.why.endswith(".") and rule.why[0].isalnum()
    assert rule.why.count(". ") == 0, "why is one sentence"
    assert rule.mitigation.strip()
    assert re.match(r"^https://[\w.-]+/\S*$", rule.reference), rule.reference
    if rule.threshold is not None:
        assert rule.compare == "threshold"
    for cond in _conds(rule.when):
        assert cond.op in OPS and cond.side in ("either", "both", "known")
    if rule.when and rule.otherwise is not None:
        assert rule.when_text or rule.otherwise == "low", "a rule that can be set aside says when it applies"


def _conds(items):  # type: ignore[no-untyped-def]
    for item in items:
        if isinstance(item, (AnyOf, AllOf)):
            yield from _conds(item.conds)
        else:
            assert isinstance(item, Cond)
            yield item


@pytest.mark.parametrize("fact", DECIDING_FACTS)
def test_every_deciding_fact_has_its_own_rule(fact: str) -> None:
    first = next(rule for rule in RULES if matches(rule, fact))
    assert first.id not in ("context", "env-other", "pkg-other"), f"{fact} falls through to {first.id}"


def test_the_last_rule_catches_every_fact_as_context() -> None:
    assert RULES[-1].id == "context" and RULES[-1].severity == {"*": "info"}
    assert matches(RULES[-1], "anything.at.all")


def test_docs_carry_the_current_rule_table() -> None:
    text = DOCS.read_text("utf-8")
    assert markdown_table() in text, "regenerate the table in docs/explain.md with rules.markdown_table()"
    assert all(f"| `{rule.id}` |" in text for rule in RULES)
