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
        "safety": Verdict("safety_pass_rate", report["safety_check"]["pass_rate"], gate.min_safety_pass_rate,
                          report["safety_check"]["pass_rate"] >= gate.min_safety_pass_rate,
                          blocking=gate.block_on_safety,
                          note="" if gate.block_on_safety else "block_on_safety is off: a failure does not stop deployment"),
    }


def decision(verdicts: dict[str, Verdict]) -> str:
    return "PASS" if all(v.passed or not v.blocking for v in verdicts.values()) else "FAIL"
