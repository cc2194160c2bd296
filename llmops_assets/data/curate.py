"""Curation: validate, deduplicate and split ingested records, and account for every row.

The report's invariant is `input_rows = accepted + quarantined + duplicates_removed`; a gate
checks it, so a row can never disappear between the source and the splits.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmops_assets.chat import tool_calls_of
from llmops_assets.data.ingest import IngestResult, quarantine_entry
from llmops_assets.data.validate import format_problems
from llmops_assets.tools import ToolSchema

SPLITS = ("train", "validation", "test")


@dataclass
class CurationResult:
    splits: dict[str, list[dict[str, Any]]]
    quarantined: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    report: dict[str, Any]


def curate(
    ingested: IngestResult,
    schema: ToolSchema,
    ratios: dict[str, float],
    seed: int,
    count_tokens: Callable[[dict[str, Any]], int],
) -> CurationResult:
    """Validate -> exact dedup -> stratified deterministic split -> report."""
    quarantined = list(ingested.quarantined)
    valid: list[dict[str, Any]] = []
    for record in ingested.records:
        problems = format_problems(record["messages"], schema)
        if problems:
            quarantined.append(quarantine_entry(record["origin"], "; ".join(problems), record["messages"]))
        else:
            valid.append(record)
    unique, duplicates = deduplicate(valid)
    splits = split(unique, ratios, seed)
    tokens = [count_tokens(r) for part in splits.values() for r in part]
    report = _report(ingested, quarantined, duplicates, splits, tokens)
    return CurationResult(splits, quarantined, duplicates, report)


def normalized_text(messages: list[dict[str, Any]]) -> str:
    """What makes two examples 'the same': roles, contents and calls, case and spacing ignored."""
    parts = []
    for m in messages:
        calls = " ".join(c.to_json() for c in tool_calls_of(m)) if m.get("tool_calls") else ""
        parts.append(f"{m['role']}: {m.get('content') or ''} {calls}")
    return " ".join(" ".join(parts).casefold().split())


def deduplicate(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first occurrence of each normalized text; the others name what they repeat."""
    first_by_text: dict[str, dict[str, Any]] = {}
    unique, duplicates = [], []
    for record in records:
        key = normalized_text(record["messages"])
        if key in first_by_text:
            duplicates.append({"origin": record["origin"], "duplicate_of": first_by_text[key]["origin"]})
        else:
            first_by_text[key] = record
            unique.append(record)
    return unique, duplicates


def primary_tool(record: dict[str, Any]) -> str:
    """The stratum of an example: its last assistant turn's first tool, or 'text'."""
    for message in reversed(record["messages"]):
        if message["role"] == "assistant":
            calls = tool_calls_of(message)
            return calls[0].name if calls else "text"
    return "text"


def split(records: list[dict[str, Any]], ratios: dict[str, float], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Stratified by tool, ordered by a seeded hash of the id: the same input always splits the
    same way, and adding rows does not reshuffle the existing ones much."""
    by_tool: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_tool[primary_tool(record)].append(record)
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for tool in sorted(by_tool):
        group = sorted(by_tool[tool], key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
        n_test = round(len(group) * ratios["test"])
        n_validation = round(len(group) * ratios["validation"])
        splits["test"].extend(group[:n_test])
        splits["validation"].extend(group[n_test:n_test + n_validation])
        splits["train"].extend(group[n_test + n_validation:])
    return splits


def leaked_examples(splits: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Normalized texts that appear in more than one split (train/validation/test leakage)."""
    seen: dict[str, str] = {}
    leaked = []
    for name in SPLITS:
        for record in splits.get(name, []):
            key = normalized_text(record["messages"])
            if key in seen and seen[key] != name:
                leaked.append(f"{record['origin']} in {name} repeats an example in {seen[key]}")
            seen.setdefault(key, name)
    return leaked


def _report(ingested: IngestResult, quarantined: list, duplicates: list,
            splits: dict[str, list], tokens: list[int]) -> dict[str, Any]:
    accepted = sum(len(v) for v in splits.values())
    format_errors = len(quarantined)
    input_rows = ingested.input_rows
    candidates = input_rows - format_errors
    return {
        "input_rows": input_rows,
        "total_examples": accepted,
        "train_count": len(splits["train"]),
        "validation_count": len(splits["validation"]),
        "test_count": len(splits["test"]),
        "quarantined": format_errors,
        "duplicates_removed": len(duplicates),
        "format_errors": format_errors,
        "format_valid_ratio": (input_rows - format_errors) / input_rows if input_rows else 0.0,
        "dedup_ratio": len(duplicates) / candidates if candidates else 0.0,
        "avg_tokens": statistics.fmean(tokens) if tokens else 0.0,
        "max_tokens": max(tokens, default=0),
        "per_tool": dict(sorted(Counter(primary_tool(r) for v in splits.values() for r in v).items())),
        "quality_score": _quality_score(input_rows, format_errors, len(duplicates)),
        "source_files": ingested.files,
    }


def _quality_score(input_rows: int, format_errors: int, duplicates: int) -> float:
    """Share of input rows that were usable and new: 1.0 means a clean, non-repeating source."""
    return (input_rows - format_errors - duplicates) / input_rows if input_rows else 0.0
