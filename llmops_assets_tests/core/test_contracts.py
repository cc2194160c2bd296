"""The reports that cross stages are checked against their contract where they are read: a
renamed or missing field fails naming the file and the field, not as a KeyError downstream.
(The integration tests write and read both through the real pipeline.)"""

import json

import pytest

from llmops_assets.core.contracts import DatasetReport, EvalReport, read_report

DATASET = {"input_rows": 10, "total_examples": 8, "train_count": 6, "validation_count": 1, "test_count": 1,
           "quarantined": 1, "quality_filtered": 0, "duplicates_removed": 1, "exact_duplicates": 1,
           "near_duplicates": 0, "near_duplicate_clusters": 0, "similar_request_groups": 0,
           "largest_request_group": 1, "format_errors": 1, "format_valid_ratio": 0.9,
           "dedup_ratio": 0.11, "avg_tokens": 40.0, "p95_tokens": 60.0, "max_tokens": 70, "truncated_examples": 0,
           "per_tool": {"add_task": 8}, "synthetic_examples": {}, "quality_score": 0.9, "source_files": {"a": "b"}}


def test_a_valid_report_reads_back_typed(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(DATASET))
    report = read_report(DatasetReport, tmp_path / "report.json")
    assert report.total_examples == 8 and report.per_tool == {"add_task": 8}


def test_a_missing_or_unknown_field_is_named(tmp_path):
    broken = {k: v for k, v in DATASET.items() if k != "dedup_ratio"} | {"dedupe_ratio": 0.1}
    (tmp_path / "report.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"report.json: not a valid DatasetReport: dedup_ratio: Field required; "
                                         r"dedupe_ratio: Extra inputs are not permitted"):
        read_report(DatasetReport, tmp_path / "report.json")


def test_an_eval_report_without_its_decision_is_refused(tmp_path):
    (tmp_path / "eval_report.json").write_text(json.dumps({"task_accuracy": 0.9}))
    with pytest.raises(ValueError, match="not a valid EvalReport: .*decision: Field required"):
        read_report(EvalReport, tmp_path / "eval_report.json")
