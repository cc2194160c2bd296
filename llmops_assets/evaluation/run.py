"""The whole evaluation of a candidate adapter, without Dagster: task accuracy, safety suite,
regression against the champion, and the LLM judge with its measured trustworthiness."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_assets.core.chat import model_messages, parse_tool_call, render_prompt
from llmops_assets.core.modeling import load_base, load_merged
from llmops_assets.core.scoring import expected_call, score
from llmops_assets.core.storage import text_sha256
from llmops_assets.core.tools import ToolCall, ToolSchema
from llmops_assets.evaluation import judge as judging
from llmops_assets.evaluation.config import EvaluationSettings
from llmops_assets.evaluation.generate import generate_answers
from llmops_assets.evaluation.regression import regression_analysis
from llmops_assets.evaluation.safety import cases_passed, safety_report
from llmops_assets.evaluation.text_metrics import text_overlap

# answers(key, generate): the baseline's answers for `key` ({model, prompts, max_new_tokens}),
# generated only when no earlier evaluation stored them.
AnswerCache = Callable[[dict[str, str], Callable[[], list[str]]], list[str]]


def uncached(key: dict[str, str], generate: Callable[[], list[str]]) -> list[str]:
    return generate()


@dataclass(frozen=True)
class Baseline:
    """What the candidate is compared with: a name, its model folder, the artifact version
    (`asset@version`) that keys its cached answers, and the answers it gave as a candidate in its
    own evaluation (`answers.json` of its eval_report): the same weights in the same runtime, so
    on the same prompts they are its answers, without generating them again."""

    name: str
    model_dir: Path
    version: str
    recorded: Path | None = None


@dataclass
class Evaluation:
    report: dict[str, Any]  # eval_report.json
    judge: dict[str, Any]  # llm_judge_scores.json
    regression: dict[str, Any]  # regression_analysis.json
    predictions: list[dict[str, Any]]
    answers: dict[str, Any]  # answers.json: every prompt's answer, keyed like the answer cache


def evaluate(model_dir: Path, adapter_dir: Path, base_dir: Path, test_rows: list[dict[str, Any]],
             safety_cases: list[dict[str, Any]], system_prompt: str, schema: ToolSchema, settings: EvaluationSettings,
             baseline: Baseline, progress: Callable[[str], None], answers_cache: AnswerCache = uncached) -> Evaluation:
    """The candidate is `adapter_dir` on `model_dir` (the model it was trained on); `base_dir`, the
    untouched base model, is the local judge. `baseline` is the release to compare with (the base
    model while nothing was ever deployed): it answers the same prompts through the same runtime
    at the same precision as the candidate, like with like, or its answers come from
    `answers_cache` when the same model answered the same prompts before."""
    conversations = [model_messages(r["messages"][:-1], system_prompt) for r in test_rows]
    safety_conversations = [model_messages([{"role": "user", "content": c["request"]}], system_prompt)
                            for c in safety_cases]
    model, tokenizer = load_merged(model_dir, adapter_dir)
    prompts = [render_prompt(tokenizer, c) for c in conversations + safety_conversations]
    answers = generate_answers(model, tokenizer, prompts, settings.batch_size, settings.max_new_tokens, progress)
    del model
    recorded = {**_answers_key(prompts, settings), "answers": answers}
    prompts, answers, safety_answers = prompts[:len(test_rows)], answers[:len(test_rows)], answers[len(test_rows):]
    expected = [expected_call(r["messages"]) for r in test_rows]
    task = score(expected, answers, schema, ids=[r["id"] for r in test_rows])
    for prediction, prompt in zip(task["predictions"], prompts, strict=True):
        prediction["prompt"] = prompt
    safety = safety_report(safety_cases, safety_answers, schema,
                           benign_answers=[a for a, e in zip(answers, expected, strict=True) if isinstance(e, ToolCall)])

    baseline_answers = _baseline_answers(baseline, conversations + safety_conversations, settings, progress,
                                         answers_cache)
    compared = score(expected, baseline_answers[:len(conversations)], schema)
    regression = regression_analysis(
        {**_per_example(task), "safety_pass_rate": _floats(cases_passed(safety_cases, safety_answers, schema))},
        {**_per_example(compared),
         "safety_pass_rate": _floats(cases_passed(safety_cases, baseline_answers[len(conversations):], schema))},
        baseline.name, settings.quality_gate.max_regression, settings.bootstrap_samples, settings.confidence,
        tolerances={"safety_pass_rate": settings.quality_gate.max_safety_regression})
    safety_regression = regression["metrics"]["safety_pass_rate"]

    kind = settings.judge.resolved_kind()
    if kind == "off":
        progress(settings.judge.off_reason())
        judged = {"kind": "off", "score": None, "agreement": None, "real_negatives": 0, "note": settings.judge.off_reason()}
    else:
        judge = (judging.LocalJudge(*load_base(base_dir), settings.batch_size) if kind == "local"
                 else judging.EndpointJudge(settings.judge.endpoint, settings.judge.model, settings.judge.api_key_env))
        judged = {"kind": kind, **_judge(judge, test_rows, answers, expected, task, system_prompt, progress)}
    report = {
        "task_accuracy": task["task_accuracy"],
        "valid_json_rate": task["valid_json_rate"],
        "n": task["n"],
        "per_tool": task["per_tool"],
        "llm_judge_score": judged["score"],
        "judge_agreement": judged["agreement"],
        "judge_real_negatives": judged["real_negatives"],
        "judge_note": judged.get("note", ""),
        "baseline_comparison": {"champion": baseline.name, "champion_task_accuracy": compared["task_accuracy"],
                                **{k: v for k, v in regression["metrics"]["task_accuracy"].items()
                                   if k in ("delta", "ci_low", "ci_high", "p_worse", "wins", "losses", "n")},
                                "regressed": regression["regressed"],
                                "safety": {"champion_pass_rate": safety_regression["champion"],
                                           **{k: safety_regression[k] for k in
                                              ("delta", "p_worse", "wins", "losses", "n", "regressed")}}},
        "text_answers": text_answers(task),
        "safety_check": safety,
        "failures": [p for p in task["predictions"] if not p["correct"]],
        "confusion": confusion(expected, answers),
    }
    return Evaluation(report, judged, regression, task["predictions"], recorded)


def text_answers(task: dict[str, Any]) -> dict[str, Any]:
    """Exact match (refuses when the reference does) beside ROUGE-L and chrF, on the test rows
    whose reference is a text; each such prediction gets its own scores."""
    texts = [p for p in task["predictions"] if p["reference"] is not None]
    overlap = text_overlap([p["reference"] for p in texts], [p["answer"] for p in texts])
    for prediction, scores in zip(texts, overlap.pop("per_example"), strict=True):
        prediction.update(scores)
    return {**overlap, "exact_match": statistics.fmean(p["correct"] for p in texts) if texts else None}


def _baseline_answers(baseline: Baseline, conversations, settings: EvaluationSettings, progress,
                      answers_cache: AnswerCache) -> list[str]:
    """The baseline's greedy answers to the test and safety prompts, generated in transformers like
    the candidate's, or the ones it gave the same prompts before."""
    from transformers import AutoTokenizer

    prompts = [render_prompt(AutoTokenizer.from_pretrained(baseline.model_dir), c) for c in conversations]
    asked = _answers_key(prompts, settings)
    key = {"model": baseline.version, **asked}
    if baseline.recorded is not None and baseline.recorded.is_file():
        recorded = json.loads(baseline.recorded.read_text())
        if all(recorded.get(k) == v for k, v in asked.items()):
            progress(f"{baseline.name}: reusing the answers it gave these {len(prompts)} prompts in its own "
                     "evaluation (same weights, same runtime)")
            return recorded["answers"]

    def generate() -> list[str]:
        progress(f"{baseline.name} answers this test set and safety suite, in transformers like the candidate")
        model, tokenizer = load_base(baseline.model_dir)
        return generate_answers(model, tokenizer, prompts, settings.batch_size, settings.max_new_tokens, progress)

    return answers_cache(key, generate)


def _answers_key(prompts: list[str], settings: EvaluationSettings) -> dict[str, str]:
    return {"prompts": text_sha256(json.dumps(prompts)), "max_new_tokens": str(settings.max_new_tokens)}


def _floats(flags: list[bool]) -> list[float]:
    return [float(flag) for flag in flags]


def _per_example(result: dict[str, Any]) -> dict[str, list[float]]:
    return {
        "task_accuracy": [float(p["correct"]) for p in result["predictions"]],
        "valid_json_rate": [float(p["got"] is not None or p["expected"] is None) for p in result["predictions"]],
    }


def _judge(judge, test_rows, answers, expected, task, system_prompt, progress) -> dict[str, Any]:
    """Judge the candidate's answers, plus reference answers and corrupted references as controls.
    Trust comes from the candidate's own answers only: the judge's balanced agreement with exact
    match on them, and how many of them are real errors it had to catch (controls are easy cases
    and would make a judge that approves every real error look trustworthy)."""
    rng = random.Random(0)
    requests = [r["messages"][-2]["content"] for r in test_rows]
    references = [model_messages(r["messages"], system_prompt)[-1]["content"] for r in test_rows]
    negatives = [judging.corrupt(e if isinstance(e, ToolCall) else None, q, rng)
                 for e, q in zip(expected, requests, strict=True)]
    progress(f"judging {len(answers)} answers plus {2 * len(answers)} control answers")
    scores = judging.rubric_scores(judge, requests * 3, answers + references + negatives)
    n = len(answers)
    correct = [p["correct"] for p in task["predictions"]]
    return {
        "score": statistics.fmean(scores[:n]) if n else 0.0,
        "agreement": judging.balanced_agreement(scores[:n], correct),
        "real_negatives": correct.count(False),
        "real_positives": correct.count(True),
        "rubric": judging.RUBRIC,
        "per_example": [{"id": p["id"], "score": s, "exact_match": p["correct"]}
                        for p, s in zip(task["predictions"], scores[:n], strict=True)],
        "controls": {"agreement": judging.balanced_agreement(scores[n:], [True] * n + [False] * n),
                     "reference_mean": statistics.fmean(scores[n:2 * n]) if n else 0.0,
                     "corrupted_mean": statistics.fmean(scores[2 * n:]) if n else 0.0},
    }


def confusion(expected, answers) -> dict[str, dict[str, int]]:
    """Counts of expected tool (or 'text') against the answered tool (or 'no call')."""
    table: dict[str, dict[str, int]] = {}
    for want, answer in zip(expected, answers, strict=True):
        got = parse_tool_call(answer)
        row = table.setdefault(want.name if isinstance(want, ToolCall) else "text", {})
        column = got.name if got else "no call"
        row[column] = row.get(column, 0) + 1
    return table
