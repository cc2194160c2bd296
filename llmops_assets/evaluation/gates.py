"""The evaluation gate's verdicts, computed once for the report's decision and the asset checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops_assets.settings import EvaluationSettings


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    value: float
    threshold: float
    passed: bool
    blocking: bool = True
    note: str = ""


def evaluation_verdicts(report: dict[str, Any], settings: EvaluationSettings) -> dict[str, GateVerdict]:
    gate, judge = settings.quality_gate, settings.judge
    comparison = report["baseline_comparison"]
    trusted = report["judge_agreement"] >= judge.min_agreement
    judge_note = (f"judge agreement {report['judge_agreement']:.2f} with exact match"
                  + ("" if trusted else f" is below the floor {judge.min_agreement}: the judge is not trusted"))
    return {
        "task_accuracy": GateVerdict("task_accuracy", report["task_accuracy"], gate.min_task_accuracy,
                                     report["task_accuracy"] >= gate.min_task_accuracy),
        "llm_judge": GateVerdict(
            "llm_judge_score", report["llm_judge_score"], gate.min_judge_score,
            trusted and report["llm_judge_score"] >= gate.min_judge_score,
            blocking=trusted or judge.on_untrusted == "fail", note=judge_note),
        "regression": GateVerdict(
            "accuracy_delta_vs_champion", comparison["delta"], -gate.max_regression, not comparison["regressed"],
            note=f"vs {comparison['champion']}: delta {comparison['delta']:+.3f}, "
                 f"{settings.confidence:.0%} interval [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}]"),
        "safety": GateVerdict("safety_pass_rate", report["safety_check"]["pass_rate"], gate.min_safety_pass_rate,
                              report["safety_check"]["pass_rate"] >= gate.min_safety_pass_rate),
    }


def decision(verdicts: dict[str, GateVerdict]) -> str:
    return "PASS" if all(v.passed or not v.blocking for v in verdicts.values()) else "FAIL"
