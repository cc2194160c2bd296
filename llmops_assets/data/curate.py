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
from llmops_assets.data.validate import format_problems, quality_problems
from llmops_assets.settings import NearDuplicateSettings, QualityFilterSettings
from llmops_assets.tools import ToolSchema

SPLITS = ("train", "validation", "test")


@dataclass
class CurationResult:
    splits: dict[str, list[dict[str, Any]]]
    quarantined: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    report: dict[str, Any]
    token_counts: list[int]


def curate(
    ingested: IngestResult,
    schema: ToolSchema,
    ratios: dict[str, float],
    seed: int,
    count_tokens: Callable[[dict[str, Any]], int],
    near: NearDuplicateSettings | None = None,
    max_seq_length: int | None = None,
    quality: QualityFilterSettings | None = None,
) -> CurationResult:
    """Validate -> quality filters -> exact dedup -> near dedup -> stratified deterministic split -> report."""
    quarantined = list(ingested.quarantined)
    valid: list[dict[str, Any]] = []
    for record in ingested.records:
        problems = format_problems(record["messages"], schema)
        if not problems and quality is not None and quality.enabled:
            problems = quality_problems(record["messages"], quality)
        if problems:
            quarantined.append(quarantine_entry(record["origin"], "; ".join(problems), record["messages"]))
        else:
            valid.append(record)
    if not valid:
        reasons = "; ".join(f"{q['origin']}: {q['reason']}" for q in quarantined[:3])
        raise ValueError(f"no valid example in {', '.join(ingested.files) or 'the sources'} "
                         f"({len(quarantined)} rows quarantined; first: {reasons})")
    text_of = {id(record): normalized_text(record["messages"]) for record in valid}  # once per record
    unique, duplicates = deduplicate(valid, [text_of[id(r)] for r in valid])
    if near is not None and near.enabled:
        unique, near_duplicates = near_deduplicate(unique, near, [text_of[id(r)] for r in unique])
        duplicates += near_duplicates
    splits = split(unique, ratios, seed)
    tokens = [count_tokens(r) for part in splits.values() for r in part]
    report = _report(ingested, quarantined, duplicates, splits, tokens)
    report["p95_tokens"] = statistics.quantiles(tokens, n=20)[-1] if len(tokens) > 1 else float(max(tokens, default=0))
    if max_seq_length:  # examples training will cut short
        report["truncated_examples"] = sum(t > max_seq_length for t in tokens)
    return CurationResult(splits, quarantined, duplicates, report, tokens)


def normalized_text(messages: list[dict[str, Any]]) -> str:
    """What makes two examples 'the same': roles, contents and calls, case and spacing ignored."""
    parts = []
    for m in messages:
        calls = " ".join(c.to_json() for c in tool_calls_of(m)) if m.get("tool_calls") else ""
        parts.append(f"{m['role']}: {m.get('content') or ''} {calls}")
    return " ".join(" ".join(parts).casefold().split())


def deduplicate(records: list[dict[str, Any]], texts: list[str] | None = None,
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first occurrence of each normalized text (`texts`, when the caller has them); the
    others name what they repeat."""
    first_by_text: dict[str, dict[str, Any]] = {}
    unique, duplicates = [], []
    for record, key in zip(records, texts or [normalized_text(r["messages"]) for r in records], strict=True):
        if key in first_by_text:
            duplicates.append({"origin": record["origin"], "duplicate_of": first_by_text[key]["origin"], "kind": "exact"})
        else:
            first_by_text[key] = record
            unique.append(record)
    return unique, duplicates


def near_deduplicate(records: list[dict[str, Any]], settings: NearDuplicateSettings, texts: list[str] | None = None,
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first of each group of near-identical examples (MinHash LSH candidates, confirmed
    by their estimated Jaccard similarity); the others name the kept one and the similarity."""
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm, num_bands=_bands(settings.num_perm))
    kept: dict[int, tuple[dict[str, Any], Any]] = {}
    unique, duplicates = [], []
    texts = texts or [normalized_text(r["messages"]) for r in records]
    for index, (record, text) in enumerate(zip(records, texts, strict=True)):
        words = text.split()
        width = settings.shingle_words
        signature = RMinHash(num_perm=settings.num_perm, seed=42)
        signature.update([" ".join(words[i:i + width]) for i in range(max(1, len(words) - width + 1))])
        scored = ((kept[k][1].jaccard(signature), -k) for k in lsh.query(signature))
        similar = sorted(pair for pair in scored if pair[0] >= settings.threshold)
        if similar:  # the most similar kept example; the earliest of equals
            similarity, negative_key = similar[-1]
            duplicates.append({"origin": record["origin"], "duplicate_of": kept[-negative_key][0]["origin"],
                               "kind": "near", "similarity": round(similarity, 3)})
            continue
        kept[index] = (record, signature)
        lsh.insert(index, signature)
        unique.append(record)
    return unique, duplicates


def _bands(num_perm: int) -> int:
    """Bands of 8 rows: candidates from a similarity of ~0.7 up, confirmed against the threshold."""
    return max(1, num_perm // 8)


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
    quality_filtered = sum(q["reason"].startswith("quality: ") for q in quarantined)
    format_errors = len(quarantined) - quality_filtered
    input_rows = ingested.input_rows
    candidates = input_rows - len(quarantined)
    return {
        "input_rows": input_rows,
        "total_examples": accepted,
        "train_count": len(splits["train"]),
        "validation_count": len(splits["validation"]),
        "test_count": len(splits["test"]),
        "quarantined": len(quarantined),
        "quality_filtered": quality_filtered,
        "duplicates_removed": len(duplicates),
        "exact_duplicates": sum(d["kind"] == "exact" for d in duplicates),
        "near_duplicates": sum(d["kind"] == "near" for d in duplicates),
        "near_duplicate_clusters": len({d["duplicate_of"] for d in duplicates if d["kind"] == "near"}),
        "format_errors": format_errors,
        "format_valid_ratio": (input_rows - format_errors) / input_rows if input_rows else 0.0,
        "dedup_ratio": len(duplicates) / candidates if candidates else 0.0,
        "avg_tokens": statistics.fmean(tokens) if tokens else 0.0,
        "max_tokens": max(tokens, default=0),
        "per_tool": dict(sorted(Counter(primary_tool(r) for v in splits.values() for r in v).items())),
        "synthetic_examples": dict(sorted(Counter(r["synthetic"] for v in splits.values() for r in v
                                                  if r.get("synthetic")).items())),
        "quality_score": _quality_score(input_rows, len(quarantined), len(duplicates)),
        "source_files": ingested.files,
    }


def _quality_score(input_rows: int, quarantined: int, duplicates: int) -> float:
    """Share of input rows that were usable and new: 1.0 means a clean, non-repeating source."""
    return (input_rows - quarantined - duplicates) / input_rows if input_rows else 0.0
