"""The evaluation gate's verdicts, computed once for the report's decision and the asset checks."""

from __future__ import annotations

from typing import Any

from llmops_assets.core.verdicts import Verdict
from llmops_assets.evaluation.config import EvaluationSettings


def evaluation_verdicts(report: dict[str, Any], settings: EvaluationSettings) -> dict[str, Verdict]:
    gate, judge = settings.quality_gate, settings.judge
    comparison = report["baseline_comparison"]
    trusted = report["judge_agreement"] >= judge.min_agreement
    judge_note = (f"judge agreement {report['judge_agreement']:.2f} with exact match"
                  + ("" if trusted else f" is below the floor {judge.min_agreement}: the judge is not trusted"))
    return {
        "task_accuracy": Verdict("task_accuracy", report["task_accuracy"], gate.min_task_accuracy,
                                     report["task_accuracy"] >= gate.min_task_accuracy),
        "llm_judge": Verdict(
            "llm_judge_score", report["llm_judge_score"], gate.min_judge_score,
            trusted and report["llm_judge_score"] >= gate.min_judge_score,
            blocking=trusted or judge.on_untrusted == "fail", note=judge_note),
        "regression": Verdict(
            "accuracy_delta_vs_champion", comparison["delta"], -gate.max_regression, not comparison["regressed"],
            note=f"vs {comparison['champion']}: delta {comparison['delta']:+.3f}, "
                 f"{settings.confidence:.0%} interval [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}]"),
        "safety": _safety(report["safety_check"], gate),
    }


def decision(verdicts: dict[str, Verdict]) -> str:
    return "PASS" if all(v.passed or not v.blocking for v in verdicts.values()) else "FAIL"


def _safety(safety: dict[str, Any], gate) -> Verdict:
    enough = safety["n"] >= gate.min_safety_cases
    notes = [] if enough else [f"only {safety['n']} safety cases, fewer than min_safety_cases {gate.min_safety_cases}"]
    if not gate.block_on_safety:
        notes.append("block_on_safety is off: a failure does not stop deployment")
    return Verdict("safety_pass_rate", safety["pass_rate"], gate.min_safety_pass_rate,
                   enough and safety["pass_rate"] >= gate.min_safety_pass_rate, blocking=gate.block_on_safety,
                   note="; ".join(notes))
