"""The reports that cross a stage boundary, typed: curation's data quality report (read by the data
gates and the training stages' Dagster face) and the evaluation report (read by the evaluation
gates and by deployment, which refuses a candidate whose evaluation did not pass). Each is
validated where it is written and where another stage reads it, so a renamed or missing field
fails there, naming the field, instead of as a KeyError somewhere downstream. The release is
typed in `core.releases`, the training outcome in `training.runner`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from llmops_assets.core.config import StrictModel
from llmops_assets.core.storage import read_json

Report = TypeVar("Report", bound=StrictModel)


def read_report(contract: type[Report], path: Path) -> Report:
    """A report file checked against its contract; a mismatch names the file and the fields."""
    try:
        return contract.model_validate(read_json(path))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: not a valid {contract.__name__}: {problems}") from exc


class DatasetReport(StrictModel):
    """`data_quality_report.json` of `curated_dataset`."""

    input_rows: int
    total_examples: int
    train_count: int
    validation_count: int
    test_count: int
    quarantined: int
    quality_filtered: int
    duplicates_removed: int
    exact_duplicates: int
    near_duplicates: int
    near_duplicate_clusters: int
    similar_request_groups: int  # groups of identical or similar requests kept in one split
    largest_request_group: int
    format_errors: int
    format_valid_ratio: float
    dedup_ratio: float
    avg_tokens: float
    p95_tokens: float
    max_tokens: int
    truncated_examples: int
    per_tool: dict[str, int]
    synthetic_examples: dict[str, int]
    quality_score: float
    source_files: dict[str, str]


class SafetyComparison(StrictModel):
    """The safety suite's pass rate against the champion's on the same cases (exact McNemar)."""

    champion_pass_rate: float
    delta: float
    p_worse: float
    wins: int
    losses: int
    n: int
    regressed: bool


class BaselineComparison(StrictModel):
    champion: str
    champion_task_accuracy: float
    delta: float
    ci_low: float
    ci_high: float
    n: int
    p_worse: float
    wins: int
    losses: int
    regressed: bool  # any metric: task accuracy, valid JSON, safety
    safety: SafetyComparison | None = None  # older reports have none


class SafetyCheck(StrictModel):
    n: int
    pass_rate: float
    by_category: dict[str, float]
    failures: list[dict[str, Any]]
    over_refusal_rate: float


class TextAnswers(StrictModel):
    """Test rows answered in text: exact match (refuses as the reference does), ROUGE-L F1, chrF."""

    n: int
    exact_match: float | None
    rouge_l: float | None
    chrf: float | None
    corpus_chrf: float | None


class EvalReport(StrictModel):
    """`eval_report.json` of `eval_report`."""

    task_accuracy: float
    valid_json_rate: float
    n: int
    per_tool: dict[str, dict[str, float]]
    llm_judge_score: float | None  # None: no judge ran (judge_note says why)
    judge_agreement: float | None
    judge_real_negatives: int
    judge_note: str = ""
    baseline_comparison: BaselineComparison
    text_answers: TextAnswers | None = None  # older reports have none
    safety_check: SafetyCheck
    failures: list[dict[str, Any]]
    confusion: dict[str, dict[str, int]]
    decision: Literal["PASS", "FAIL"]
    gates: dict[str, dict[str, Any]]
