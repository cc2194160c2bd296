"""The whole evaluation of a candidate adapter, without Dagster: task accuracy, safety suite,
regression against the champion, and the LLM judge with its measured trustworthiness."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_assets.core.chat import model_messages, parse_tool_call, render_prompt
from llmops_assets.core.modeling import load_base, load_merged
from llmops_assets.core.scoring import expected_call, score
from llmops_assets.core.tools import ToolCall, ToolSchema
from llmops_assets.evaluation import judge as judging
from llmops_assets.evaluation.config import EvaluationSettings
from llmops_assets.evaluation.generate import generate_answers
from llmops_assets.evaluation.regression import regression_analysis
from llmops_assets.evaluation.safety import safety_report
from llmops_assets.evaluation.text_metrics import text_overlap


@dataclass
class Evaluation:
    report: dict[str, Any]  # eval_report.json
    judge: dict[str, Any]  # llm_judge_scores.json
    regression: dict[str, Any]  # regression_analysis.json
    predictions: list[dict[str, Any]]


def evaluate(model_dir: Path, adapter_dir: Path, base_dir: Path, test_rows: list[dict[str, Any]],
             safety_cases: list[dict[str, Any]], system_prompt: str, schema: ToolSchema, settings: EvaluationSettings,
             champion: tuple[str, Path] | None, progress: Callable[[str], None]) -> Evaluation:
    """The candidate is `adapter_dir` on `model_dir` (the model it was trained on); `base_dir`, the
    untouched base model, is the local judge and the baseline while nothing was ever deployed.
    `champion` is (name, merged model folder) of the release to compare with: it answers the same
    prompts through the same runtime at the same precision as the candidate, like with like."""
    model, tokenizer = load_merged(model_dir, adapter_dir)
    prompts = [render_prompt(tokenizer, model_messages(r["messages"][:-1], system_prompt)) for r in test_rows]
    safety_prompts = [render_prompt(tokenizer, model_messages([{"role": "user", "content": c["request"]}], system_prompt))
                      for c in safety_cases]
    answers = generate_answers(model, tokenizer, prompts + safety_prompts, settings.batch_size,
                               settings.max_new_tokens, progress)
    del model
    answers, safety_answers = answers[:len(prompts)], answers[len(prompts):]
    expected = [expected_call(r["messages"]) for r in test_rows]
    task = score(expected, answers, schema, ids=[r["id"] for r in test_rows])
    for prediction, prompt in zip(task["predictions"], prompts, strict=True):
        prediction["prompt"] = prompt
    safety = safety_report(safety_cases, safety_answers, schema,
                           benign_answers=[a for a, e in zip(answers, expected, strict=True) if isinstance(e, ToolCall)])

    base, tokenizer = load_base(base_dir)
    conversations = [model_messages(r["messages"][:-1], system_prompt) for r in test_rows]
    champion_name, champion_answers = _champion_answers(champion, base, tokenizer, conversations, settings, progress)
    baseline = score(expected, champion_answers, schema)
    regression = regression_analysis(
        _per_example(task), _per_example(baseline), champion_name,
        settings.quality_gate.max_regression, settings.bootstrap_samples, settings.confidence)

    judge = (judging.LocalJudge(base, tokenizer, settings.batch_size) if settings.judge.kind == "local"
             else judging.EndpointJudge(settings.judge.endpoint, settings.judge.model, settings.judge.api_key_env))
    judged = _judge(judge, test_rows, answers, expected, task, system_prompt, progress)
    report = {
        "task_accuracy": task["task_accuracy"],
        "valid_json_rate": task["valid_json_rate"],
        "n": task["n"],
        "per_tool": task["per_tool"],
        "llm_judge_score": judged["score"],
        "judge_agreement": judged["agreement"],
        "judge_real_negatives": judged["real_negatives"],
        "baseline_comparison": {"champion": champion_name, "champion_task_accuracy": baseline["task_accuracy"],
                                **{k: v for k, v in regression["metrics"]["task_accuracy"].items()
                                   if k in ("delta", "ci_low", "ci_high", "p_worse", "wins", "losses", "n")},
                                "regressed": regression["regressed"]},
        "text_answers": text_answers(task),
        "safety_check": safety,
        "failures": [p for p in task["predictions"] if not p["correct"]],
        "confusion": confusion(expected, answers),
    }
    return Evaluation(report, judged, regression, task["predictions"])


def text_answers(task: dict[str, Any]) -> dict[str, Any]:
    """Exact match (refuses when the reference does) beside ROUGE-L and chrF, on the test rows
    whose reference is a text; each such prediction gets its own scores."""
    texts = [p for p in task["predictions"] if p["reference"] is not None]
    overlap = text_overlap([p["reference"] for p in texts], [p["answer"] for p in texts])
    for prediction, scores in zip(texts, overlap.pop("per_example"), strict=True):
        prediction.update(scores)
    return {**overlap, "exact_match": statistics.fmean(p["correct"] for p in texts) if texts else None}


def _champion_answers(champion, base, tokenizer, conversations, settings, progress) -> tuple[str, list[str]]:
    if champion is not None:
        name, merged_dir = champion
        progress(f"re-evaluating {name} on this test set, in transformers like the candidate")
        model, champion_tokenizer = load_base(merged_dir)
        prompts = [render_prompt(champion_tokenizer, c) for c in conversations]
        answers = generate_answers(model, champion_tokenizer, prompts, settings.batch_size, settings.max_new_tokens,
                                   progress)
        return name, answers
    progress("nothing was ever deployed: the base model is the baseline")
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    return "base model", generate_answers(base, tokenizer, prompts, settings.batch_size, settings.max_new_tokens, progress)


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
