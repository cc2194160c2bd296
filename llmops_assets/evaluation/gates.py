"""The evaluation gate's verdicts, computed once for the report's decision and the asset checks."""

from __future__ import annotations

from typing import Any

from llmops_assets.core.statistics import binomial_bounds
from llmops_assets.core.verdicts import Verdict
from llmops_assets.evaluation.config import EvaluationSettings


def evaluation_verdicts(report: dict[str, Any], settings: EvaluationSettings) -> dict[str, Verdict]:
    gate, judge = settings.quality_gate, settings.judge
    comparison = report["baseline_comparison"]
    enough = report["n"] >= gate.min_test_examples
    too_few = "" if enough else f"only {report['n']} test examples, fewer than min_test_examples {gate.min_test_examples}"
    return {
        "task_accuracy": _accuracy(report, gate, settings.confidence, too_few),
        "llm_judge": _judge(report, gate, judge),
        "regression": Verdict(
            "accuracy_delta_vs_champion", comparison["delta"], -gate.max_regression,
            enough and not comparison["regressed"],
            note="; ".join(filter(None, [
                f"vs {comparison['champion']}: accuracy delta {comparison['delta']:+.3f}, "
                f"{settings.confidence:.0%} interval [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}], "
                f"{comparison.get('wins', 0)} wins / {comparison.get('losses', 0)} losses, "
                f"McNemar p(worse) {comparison.get('p_worse', 1.0):.3g}",
                _safety_comparison(comparison.get("safety"), gate), too_few]))),
        "safety": _safety(report["safety_check"], gate, settings.confidence),
    }


def _safety_comparison(safety: dict[str, Any] | None, gate) -> str:
    if safety is None:
        return ""
    return (f"safety pass rate delta {safety['delta']:+.3f} (champion {safety['champion_pass_rate']:.3f}), "
            f"{safety['wins']} cases newly passed / {safety['losses']} newly failed, McNemar p(worse) "
            f"{safety['p_worse']:.3g}" + (f": less safe than the champion beyond max_safety_regression "
                                          f"{gate.max_safety_regression} and chance" if safety["regressed"] else ""))


def _accuracy(report: dict[str, Any], gate, confidence: float, too_few: str) -> Verdict:
    correct = round(report["task_accuracy"] * report["n"])
    lower, _ = binomial_bounds(correct, report["n"], confidence)
    return Verdict("task_accuracy", report["task_accuracy"], gate.min_task_accuracy,
                   not too_few and lower >= gate.min_task_accuracy, bound=lower,
                   note="; ".join(filter(None, [f"{correct}/{report['n']} right; {confidence:.0%} lower bound "
                                                f"{lower:.3f} against {gate.min_task_accuracy}", too_few])))


def _judge(report: dict[str, Any], gate, judge) -> Verdict:
    """The judge's score, trusted only at `min_agreement` after grading `min_negatives` real
    errors; OFF (passing, blocking nothing) when no judge ran."""
    if report["llm_judge_score"] is None:
        return Verdict("llm_judge_score", None, gate.min_judge_score, True, blocking=False,
                       note=report.get("judge_note") or "no judge ran")
    negatives = report.get("judge_real_negatives", 0)
    distrust = ([f"agreement below the floor {judge.min_agreement}"] if report["judge_agreement"] < judge.min_agreement
                else []) + ([f"only {negatives} real errors graded, fewer than min_negatives {judge.min_negatives}"]
                            if negatives < judge.min_negatives else [])
    trusted = not distrust
    return Verdict("llm_judge_score", report["llm_judge_score"], gate.min_judge_score,
                   trusted and report["llm_judge_score"] >= gate.min_judge_score,
                   blocking=trusted or judge.on_untrusted == "fail",
                   note=f"judge agreement {report['judge_agreement']:.2f} with exact match on the candidate's answers"
                        + ("" if trusted else f" ({'; '.join(distrust)}): the judge is not trusted"))


def decision(verdicts: dict[str, Verdict]) -> str:
    return "PASS" if all(v.passed or not v.blocking for v in verdicts.values()) else "FAIL"


def _safety(safety: dict[str, Any], gate, confidence: float) -> Verdict:
    enough = safety["n"] >= gate.min_safety_cases
    failures = round((1 - safety["pass_rate"]) * safety["n"])
    _, upper = binomial_bounds(failures, safety["n"], confidence)
    notes = [f"{failures} of {safety['n']} cases failed; {confidence:.0%} upper bound on the failure rate "
             f"{upper:.3f} against {gate.max_safety_failure_rate}"]
    if not enough:
        notes.append(f"only {safety['n']} safety cases, fewer than min_safety_cases {gate.min_safety_cases}")
    if not gate.block_on_safety:
        notes.append("block_on_safety is off: a failure does not stop deployment")
    return Verdict("safety_failure_rate", failures / safety["n"] if safety["n"] else 1.0, gate.max_safety_failure_rate,
                   enough and upper <= gate.max_safety_failure_rate, blocking=gate.block_on_safety,
                   note="; ".join(notes), bound=upper)
