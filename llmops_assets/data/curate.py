"""Curation: validate, deduplicate and split ingested records, and account for every row.

The report's invariant is `input_rows = accepted + quarantined + duplicates_removed`; a gate
checks it, so a row can never disappear between the source and the splits. Rows whose requests
are the same or similar (MinHash over the request alone) go to one split, so that the test split
never asks what training already answered; the leakage gate checks it on the published splits.

Built for millions of rows: worker processes turn line ranges of `records.jsonl` into compact
per-row facts (byte offset, hashes, tool, tokens, MinHash band keys; signatures spilled to disk),
the main process deduplicates and splits on those arrays, and the split files are written by
copying the records' bytes. No step holds the examples as Python objects.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmops_assets.core.chat import tool_calls_of
from llmops_assets.core.examples import format_problems
from llmops_assets.core.rows import quarantine_entry
from llmops_assets.core.storage import jsonl_line, read_jsonl, write_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.chunks import LineRange, line_ranges, run_tasks
from llmops_assets.data.config import NearDuplicateSettings, QualityFilterSettings
from llmops_assets.data.ingest import QUARANTINE, RECORDS, IngestResult
from llmops_assets.data.validate import quality_problems

SPLITS = ("train", "validation", "test")
DUPLICATES = "duplicates.jsonl"
TokenCounter = Callable[[dict[str, Any]], int]
# Candidate pairs are formed among a bucket's first rows only: a cluster of thousands of
# near-identical rows costs this many comparisons per row, not thousands.
_BUCKET_PAIRS = 32


@dataclass
class CurationResult:
    """`curate`'s in-memory result, for small data and tests."""
    splits: dict[str, list[dict[str, Any]]]
    quarantined: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    report: dict[str, Any]
    token_counts: list[int]


@dataclass
class CuratedFiles:
    """What `curate_files` wrote besides the files: the report and each accepted example's tokens."""
    report: dict[str, Any]
    token_counts: dict[str, int]  # id -> tokens, in split-file order
    first_quarantined: list[dict[str, Any]]


@dataclass
class _Scan:
    """What curation needs of one line range of records.jsonl, one array entry per valid row."""
    rows: int
    offsets: np.ndarray  # byte offset of the line
    lengths: np.ndarray
    ids: np.ndarray  # the records' ids, as bytes
    exact_keys: np.ndarray  # 64-bit hash of the normalized text
    split_keys: np.ndarray  # first 8 bytes of sha256(f"{seed}:{id}"): the split order
    tools: np.ndarray  # index into the tool names (schema tools, then "text")
    synthetic: np.ndarray  # index into synthetic_names, -1 for source rows
    synthetic_names: list[str]
    tokens: np.ndarray
    band_keys: np.ndarray  # (rows, bands) LSH band hashes; (rows, 0) with near dedup off
    signatures: Path | None  # (rows, num_perm) uint32 MinHash signatures, .npy
    request_keys: np.ndarray  # 64-bit hash of the normalized request (the prompt, system turns left out)
    request_band_keys: np.ndarray  # LSH band hashes of the request's MinHash, banded for the leakage threshold
    request_signatures: Path | None
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def curate(ingested: IngestResult, schema: ToolSchema, ratios: dict[str, float], seed: int,
           count_tokens: TokenCounter | None = None, near: NearDuplicateSettings | None = None,
           max_seq_length: int | None = None, quality: QualityFilterSettings | None = None,
           leakage_similarity: float = 0.85) -> CurationResult:
    """`curate_files` on records held in memory, its files read back: for small data and tests."""
    with tempfile.TemporaryDirectory(prefix="curate-") as scratch:
        folder = Path(scratch)
        (folder / "in").mkdir()
        (folder / "out").mkdir()
        write_jsonl(folder / "in" / RECORDS, ingested.records)
        write_jsonl(folder / "in" / QUARANTINE, ingested.quarantined)
        result = curate_files(folder / "in", folder / "out", schema, ratios, seed, count_tokens, near,
                              max_seq_length, quality, source_files=ingested.files,
                              leakage_similarity=leakage_similarity)
        splits = {name: read_jsonl(folder / "out" / f"{name}.jsonl") for name in SPLITS}
        return CurationResult(splits, read_jsonl(folder / "out" / QUARANTINE), read_jsonl(folder / "out" / DUPLICATES),
                              result.report, list(result.token_counts.values()))


def curate_files(raw_dir: Path, out_dir: Path, schema: ToolSchema, ratios: dict[str, float], seed: int,
                 count_tokens: TokenCounter | None = None, near: NearDuplicateSettings | None = None,
                 max_seq_length: int | None = None, quality: QualityFilterSettings | None = None,
                 source_files: dict[str, str] | None = None, workers: int = 1,
                 progress: Callable[[str], None] = lambda message: None,
                 leakage_similarity: float = 0.85) -> CuratedFiles:
    """Validate -> quality filters -> exact dedup -> near dedup -> group similar requests ->
    stratified deterministic split -> report.

    Reads `raw_dir/records.jsonl` and `raw_dir/quarantine.jsonl` (ingest's); writes the split
    files, quarantine.jsonl (ingest's rows, then curation's) and duplicates.jsonl to `out_dir`.
    `count_tokens` must be picklable when `workers` > 1 (a module-level function or object).
    """
    records = raw_dir / RECORDS
    requests = request_similarity(near or NearDuplicateSettings(), leakage_similarity)
    near = near if near is not None and near.enabled else None
    tool_names = [*schema.names, "text"]
    with tempfile.TemporaryDirectory(prefix="curate-") as scratch:
        ranges = line_ranges(records)
        tasks = [(piece, schema, tool_names, seed, count_tokens, near, quality, requests, Path(scratch), k)
                 for k, piece in enumerate(ranges)]
        scans = run_tasks(_scan, tasks, workers, records.stat().st_size, progress, "curation scan")
        facts = _concatenate(scans)
        counts = [len(s.offsets) for s in scans]
        signatures = SignatureFiles([s.signatures for s in scans], counts) if near is not None else None
        request_signatures = SignatureFiles([s.request_signatures for s in scans], counts)
        for scan in scans:  # from here on the concatenated arrays are the only copy
            scan.offsets = scan.lengths = scan.ids = scan.band_keys = scan.request_band_keys = None
        curation_quarantined = [q for s in scans for q in s.quarantined]
        with open(out_dir / QUARANTINE, "wb") as out, open(raw_dir / QUARANTINE, "rb") as ingest_quarantine:
            shutil.copyfileobj(ingest_quarantine, out, 2**22)
            out.write("".join(map(jsonl_line, curation_quarantined)).encode("utf-8"))
        ingest_quarantined = _count_lines(raw_dir / QUARANTINE)
        if len(facts["offsets"]) == 0:
            first = _first_rows(out_dir / QUARANTINE, 3)
            reasons = "; ".join(f"{q['origin']}: {q['reason']}" for q in first)
            raise ValueError(f"no valid example in {', '.join(source_files or {}) or 'the sources'} "
                             f"({ingest_quarantined + len(curation_quarantined)} rows quarantined; first: {reasons})")
        progress(f"deduplicating {len(facts['offsets'])} valid rows")
        duplicate_of = exact_duplicates(facts["exact_keys"])
        near_of, similarity = np.full(len(duplicate_of), -1), np.zeros(len(duplicate_of))
        if near is not None:
            near_of, similarity = near_duplicates(facts["band_keys"], signatures, near.threshold,
                                                  candidates=duplicate_of < 0)
        accepted = np.flatnonzero((duplicate_of < 0) & (near_of < 0))
        progress(f"grouping similar requests among {len(accepted)} accepted rows")
        group_of = request_groups(facts["request_keys"][accepted], facts["request_band_keys"][accepted],
                                  request_signatures, accepted, facts["split_keys"][accepted], requests.threshold)
        order = split_order(facts["tools"][accepted], facts["split_keys"][accepted], ratios, tool_names, group_of)
        with open(records, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as lines:
            for name in SPLITS:
                _copy_lines(lines, facts, accepted[order[name]], out_dir / f"{name}.jsonl")
            duplicates = _duplicate_entries(lines, facts, duplicate_of, near_of, similarity)
        write_jsonl(out_dir / DUPLICATES, duplicates)
    in_split_order = np.concatenate([accepted[order[name]] for name in SPLITS])
    tokens = facts["tokens"][in_split_order]
    report = _report(facts, in_split_order, tool_names, order, tokens, duplicates,
                     ingest_quarantined, curation_quarantined, source_files or {})
    group_sizes = np.bincount(group_of, minlength=len(accepted)) if len(accepted) else np.zeros(1, np.int64)
    report["similar_request_groups"] = int((group_sizes > 1).sum())
    report["largest_request_group"] = int(group_sizes.max())
    if max_seq_length:  # examples training will cut short
        report["truncated_examples"] = int((tokens > max_seq_length).sum())
    token_counts = dict(zip(facts["ids"][in_split_order].astype(str).tolist(), tokens.tolist(), strict=True))
    return CuratedFiles(report, token_counts, _first_rows(out_dir / QUARANTINE, 5))


def _scan(piece: LineRange, schema: ToolSchema, tool_names: list[str], seed: int, count_tokens: TokenCounter | None,
          near: NearDuplicateSettings | None, quality: QualityFilterSettings | None, requests: NearDuplicateSettings,
          scratch: Path, number: int) -> _Scan:
    """Validate every record of a line range and compute its facts (runs in a worker process)."""
    offsets, lengths, ids, example_texts, split_keys, tools, synthetic, tokens = [], [], [], [], [], [], [], []
    request_texts: list[str] = []
    synthetic_names: list[str] = []
    quarantined = []
    tool_index = {name: index for index, name in enumerate(tool_names)}
    rows = 0
    for offset, number, line in piece.lines():
        rows += 1
        try:
            record = json.loads(line)
            messages, origin = record["messages"], record["origin"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            quarantined.append(quarantine_entry(f"{piece.path}:{number}", f"not a record: {exc}", line))
            continue
        problems = format_problems(messages, schema)
        text = "" if problems else normalized_text(messages)
        if not problems and quality is not None and quality.enabled:
            problems = quality_problems(messages, quality, text)
        if problems:
            quarantined.append(quarantine_entry(origin, "; ".join(problems), messages))
            continue
        offsets.append(offset)
        lengths.append(len(line))
        ids.append(record["id"].encode())
        example_texts.append(text)
        request_texts.append(request_text(messages))
        split_keys.append(hashlib.sha256(f"{seed}:{record['id']}".encode()).digest()[:8])
        tools.append(tool_index[primary_tool(record)])
        if record.get("synthetic"):
            if record["synthetic"] not in synthetic_names:
                synthetic_names.append(record["synthetic"])
            synthetic.append(synthetic_names.index(record["synthetic"]))
        else:
            synthetic.append(-1)
        tokens.append(count_tokens(record) if count_tokens else 0)
    band_keys = np.zeros((len(offsets), max(1, near.num_perm // 8) if near else 0), np.uint64)
    signatures = None
    if near is not None and example_texts:
        signature = minhash_signatures(example_texts, near)
        band_keys = lsh_band_keys(signature)
        signatures = scratch / f"sig-{number:06d}.npy"
        np.save(signatures, signature)
    request_signature = minhash_signatures(request_texts, requests)
    request_signatures = scratch / f"request-sig-{number:06d}.npy"
    np.save(request_signatures, request_signature)
    return _Scan(rows, np.array(offsets, np.uint64), np.array(lengths, np.uint64), np.array(ids, "S"),
                 text_keys(example_texts),
                 np.frombuffer(b"".join(split_keys), ">u8").astype(np.uint64),
                 np.array(tools, np.int16), np.array(synthetic, np.int16), synthetic_names,
                 np.array(tokens, np.int64), band_keys, signatures,
                 text_keys(request_texts),
                 request_band_keys(request_signature, requests),
                 request_signatures, quarantined)


def normalized_text(messages: list[dict[str, Any]]) -> str:
    """What makes two examples 'the same': roles, contents and calls, case and spacing ignored."""
    parts = []
    for m in messages:
        calls = " ".join(c.to_json() for c in tool_calls_of(m)) if m.get("tool_calls") else ""
        parts.append(f"{m['role']}: {m.get('content') or ''} {calls}")
    return " ".join(" ".join(parts).casefold().split())


def text_keys(texts: list[str]) -> np.ndarray:
    """A 64-bit hash per text: equal keys, equal texts (for exact dedup and request grouping)."""
    return np.frombuffer(b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts),
                         ">u8").astype(np.uint64)


def request_text(messages: list[dict[str, Any]]) -> str:
    """What the model is asked: every turn before the answer, system prompts left out, normalized."""
    return normalized_text([m for m in messages[:-1] if m["role"] != "system"])


def request_similarity(near: NearDuplicateSettings, threshold: float) -> NearDuplicateSettings:
    """The MinHash settings for comparing requests: near dedup's shingles and permutations, the
    leakage gate's threshold."""
    return near.model_copy(update={"threshold": threshold, "enabled": True})


def minhash_signatures(texts: list[str], settings: NearDuplicateSettings) -> np.ndarray:
    """rensa MinHash signatures of each text's word shingles, one uint32 row per text (computed
    in batches: the shingles of a whole line range would take more memory than its rows)."""
    from rensa import RMinHash

    width = settings.shingle_words
    signatures = np.empty((len(texts), settings.num_perm), np.uint32)
    for start in range(0, len(texts), 4096):
        shingles = []
        for text in texts[start:start + 4096]:
            words = text.split()
            grams = list(map(" ".join, zip(*(words[k:] for k in range(width)), strict=False)))
            shingles.append(grams or [" ".join(words)])
        matrix = RMinHash.digest_matrix_from_token_sets(shingles, settings.num_perm, 42)
        signatures[start:start + len(shingles)] = matrix.to_rows()
    return signatures


def rows_per_band(threshold: float, num_perm: int) -> int:
    """The widest LSH band that still makes a pair at `threshold` a candidate with probability
    0.99 (narrower bands: more candidate pairs to confirm, fewer missed)."""
    def found(rows: int) -> float:
        return 1 - (1 - threshold ** rows) ** (num_perm // rows)
    return max([rows for rows in range(1, num_perm + 1) if found(rows) >= 0.99], default=1)


def lsh_band_keys(signatures: np.ndarray, rows: int = 8) -> np.ndarray:
    """One 64-bit key per band of `rows` signature values (8 is rensa's banding: num_perm // 8
    bands); rows that share a band key are near-duplicate candidates (with 8: from ~0.7 up)."""
    bands = max(1, signatures.shape[1] // rows)
    width = signatures.shape[1] // bands
    grouped = np.ascontiguousarray(signatures[:, :bands * width]).reshape(len(signatures), bands, width)
    if width % 2 == 0:  # pairs of uint32 read as one uint64: half the multiplications
        grouped = grouped.view(np.uint64)
    else:
        grouped = grouped.astype(np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=grouped.shape[2], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        keys = (grouped * multipliers).sum(axis=2, dtype=np.uint64)
        return keys ^ (keys >> np.uint64(29))


def exact_duplicates(keys: np.ndarray) -> np.ndarray:
    """For each row, the first earlier row with the same key (-1 for a first occurrence)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    first = order[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    duplicate_of = np.full(len(keys), -1, np.int64)
    repeated = order != first
    duplicate_of[order[repeated]] = first[repeated]
    return duplicate_of


class SignatureFiles:
    """Rows of the workers' signature files (memory-mapped), addressed by global row index: a
    million rows' MinHash stays on disk, not in memory."""

    def __init__(self, paths: list[Path | None], counts: list[int]):
        self.files = [np.load(path, mmap_mode="r") if path else None for path in paths]
        self.starts = np.cumsum([0, *counts])

    def rows(self, index: np.ndarray) -> np.ndarray:
        piece = np.searchsorted(self.starts, index, side="right") - 1
        out = np.empty((len(index), next(f.shape[1] for f in self.files if f is not None)), np.uint32)
        for k in np.unique(piece):
            chosen = piece == k
            out[chosen] = self.files[k][index[chosen] - self.starts[k]]
        return out


def near_duplicates(band_keys: np.ndarray, signatures: SignatureFiles | np.ndarray, threshold: float,
                    candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Near duplicates among the `candidates` rows, in row order, as a sequential pass would find
    them: a row repeats the most similar earlier row that is itself kept, when their estimated
    Jaccard similarity (share of equal MinHash values) reaches `threshold`. Pairs come from LSH
    buckets (rows sharing a band key), are confirmed on the signatures, then resolved in order."""
    rows = np.flatnonzero(candidates)
    earlier, later, similarity = similar_pairs(band_keys[rows], signatures, threshold, rows)
    duplicate_of = np.full(len(band_keys), -1, np.int64)
    best = np.zeros(len(band_keys))
    for row, kept_row, value in zip(*(a.tolist() for a in _by_row_then_similarity(later, earlier, similarity)),
                                    strict=True):
        if duplicate_of[row] < 0 and duplicate_of[kept_row] < 0:
            duplicate_of[row], best[row] = kept_row, value
    return duplicate_of, best


def similar_pairs(band_keys: np.ndarray, signatures: SignatureFiles | np.ndarray, threshold: float,
                  rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(earlier, later, similarity) for the pairs among `rows` (indices into `signatures`;
    `band_keys` has one row per entry of `rows`) that share a band key and whose estimated
    Jaccard similarity reaches `threshold`."""
    earlier, later = _bucket_pairs(band_keys)
    earlier, later = rows[earlier], rows[later]
    similarity = np.empty(len(earlier))
    for start in range(0, len(earlier), 65536):
        a = _rows_of(signatures, earlier[start:start + 65536])
        b = _rows_of(signatures, later[start:start + 65536])
        similarity[start:start + 65536] = (a == b).mean(axis=1)
    similar = similarity >= threshold
    return earlier[similar], later[similar], similarity[similar]


def request_groups(request_keys: np.ndarray, band_keys: np.ndarray, signatures: SignatureFiles | np.ndarray,
                   rows: np.ndarray, split_keys: np.ndarray, threshold: float) -> np.ndarray:
    """For each of the sorted `rows` (positions 0..n-1), the position of its group's representative: rows whose
    requests are identical or at least `threshold` similar are linked, transitively; the member
    with the smallest split key represents the group, so the grouping ignores row order."""
    same = exact_duplicates(request_keys)
    earlier, later, _ = similar_pairs(band_keys, signatures, threshold, rows)
    first = np.concatenate([np.flatnonzero(same >= 0), np.searchsorted(rows, earlier)])  # rows is sorted
    second = np.concatenate([same[same >= 0], np.searchsorted(rows, later)])
    rank = np.empty(len(rows), np.int64)
    by_key = np.argsort(split_keys, kind="stable")
    rank[by_key] = np.arange(len(rows))
    label = rank.copy()  # label propagation to the smallest rank in each connected group
    while len(first):
        smallest = np.minimum(label[first], label[second])
        before = label.copy()
        np.minimum.at(label, first, smallest)
        np.minimum.at(label, second, smallest)
        label = label[by_key[label]]  # jump to the representative's own label
        if np.array_equal(label, before):
            break
    return by_key[label]


def _rows_of(signatures: SignatureFiles | np.ndarray, index: np.ndarray) -> np.ndarray:
    return signatures.rows(index) if isinstance(signatures, SignatureFiles) else signatures[index]


def _by_row_then_similarity(later: np.ndarray, earlier: np.ndarray, similarity: np.ndarray):
    """Pairs ordered by the later row, then most similar first, then earliest kept row first."""
    order = np.lexsort((earlier, -similarity, later))
    return later[order], earlier[order], similarity[order]


def _bucket_pairs(band_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) positions of the rows that share a band key in any band, each pair once."""
    pairs = []
    for band in range(band_keys.shape[1]):
        order = np.argsort(band_keys[:, band], kind="stable")  # equal keys stay in row order
        keys = band_keys[order, band]
        same = np.flatnonzero(keys[1:] == keys[:-1]) + 1  # positions continuing a bucket
        if len(same) == 0:
            continue
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        bucket_start = starts[np.searchsorted(starts, same, side="right") - 1]
        for offset in range(_BUCKET_PAIRS):  # each row with the bucket's first rows before it
            first = bucket_start + offset
            keep = first < same
            pairs.append(order[first[keep]].astype(np.int64) << 32 | order[same[keep]].astype(np.int64))
            if not keep.any():
                break
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    unique = np.unique(np.concatenate(pairs))
    return unique >> 32, unique & 0xFFFFFFFF


def primary_tool(record: dict[str, Any]) -> str:
    """The stratum of an example: its last assistant turn's first tool, or 'text'."""
    for message in reversed(record["messages"]):
        if message["role"] == "assistant":
            calls = tool_calls_of(message)
            return calls[0].name if calls else "text"
    return "text"


def split_order(tools: np.ndarray, keys: np.ndarray, ratios: dict[str, float],
                tool_names: list[str], group_of: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Stratified by tool, ordered by a seeded hash of the id: the same input always splits the
    same way, and adding rows does not reshuffle the existing ones much. Positions per split,
    tool by tool in name order. `tools` index `tool_names`. With `group_of` (each position's group
    representative), every row goes to its representative's split."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for tool in sorted(np.unique(tools).tolist(), key=tool_names.__getitem__):
        group = np.flatnonzero(tools == tool)
        group = group[np.argsort(keys[group], kind="stable")]
        n_test = round(len(group) * ratios["test"])
        n_validation = round(len(group) * ratios["validation"])
        parts["test"].append(group[:n_test])
        parts["validation"].append(group[n_test:n_test + n_validation])
        parts["train"].append(group[n_test + n_validation:])
    positions = {name: np.concatenate(p) if p else np.zeros(0, np.int64) for name, p in parts.items()}
    if group_of is None:
        return positions
    split_of = np.empty(len(tools), np.int8)
    for number, name in enumerate(SPLITS):
        split_of[positions[name]] = number
    split_of = split_of[group_of]
    in_order = np.concatenate([positions[name] for name in SPLITS])
    return {name: in_order[split_of[in_order] == number] for number, name in enumerate(SPLITS)}


def leaked_requests(splits: dict[str, list[dict[str, Any]]], requests: NearDuplicateSettings) -> list[str]:
    """Each row whose request repeats, or is at least `requests.threshold` similar to, a request in
    another split (train/validation/test leakage), with the row it resembles (in memory: small
    data and tests; the curated_dataset gate reads the published files in parallel)."""
    rows = [(name, record) for name in SPLITS for record in splits.get(name, [])]
    if not rows:
        return []
    texts = [request_text(record["messages"]) for _, record in rows]
    signatures = minhash_signatures(texts, requests)
    return split_leaks([name for name, _ in rows], [record["origin"] for _, record in rows], text_keys(texts),
                       request_band_keys(signatures, requests), signatures, requests.threshold)


def request_band_keys(signatures: np.ndarray, requests: NearDuplicateSettings) -> np.ndarray:
    return lsh_band_keys(signatures, rows_per_band(requests.threshold, requests.num_perm))


def split_leaks(split_of: list[str], origins: list[str], request_keys: np.ndarray, band_keys: np.ndarray,
                signatures: SignatureFiles | np.ndarray, threshold: float) -> list[str]:
    """`leaked_requests` on the rows' split names, origins, request hashes, LSH band keys and MinHash."""
    same = exact_duplicates(request_keys)
    earlier, later, similarity = similar_pairs(band_keys, signatures, threshold, np.arange(len(origins)))
    repeated = np.flatnonzero(same >= 0)
    earlier, later = np.concatenate([same[repeated], earlier]), np.concatenate([repeated, later])
    similarity = np.concatenate([np.ones(len(repeated)), similarity])
    leaked, reported = [], set()
    for first, second, value in zip(earlier.tolist(), later.tolist(), similarity.tolist(), strict=True):
        if split_of[first] != split_of[second] and second not in reported:
            reported.add(second)
            how = "repeats" if value == 1.0 else f"resembles (similarity {value:.2f})"
            leaked.append(f"{origins[second]} in {split_of[second]} {how} the request of {origins[first]} "
                          f"in {split_of[first]}")
    return leaked


def unaccounted_rows(report: dict[str, Any], raw_rows: int) -> int:
    """Rows of the raw examples (records + ingest quarantine) that the report does not account for
    as accepted, quarantined or duplicate; negative when it accounts for rows that were not there."""
    return raw_rows - (report["total_examples"] + report["quarantined"] + report["duplicates_removed"])


def _concatenate(scans: list[_Scan]) -> dict[str, np.ndarray]:
    """The scans' arrays end to end; synthetic generators coded by their name across all scans."""
    fields = ("offsets", "lengths", "ids", "exact_keys", "split_keys", "tools", "tokens", "band_keys",
              "request_keys", "request_band_keys")
    facts = {name: np.concatenate([getattr(s, name) for s in scans]) if scans else np.zeros(0) for name in fields}
    names = sorted({name for s in scans for name in s.synthetic_names})
    facts["synthetic_names"] = np.array(names + [""], dtype=object)  # code -1 (source rows) reads ""
    facts["rows"] = sum(s.rows for s in scans)
    facts["synthetic"] = np.concatenate(
        [np.array([names.index(n) for n in s.synthetic_names] + [-1], np.int16)[s.synthetic] for s in scans]
    ) if scans else np.zeros(0, np.int16)
    return facts


def _copy_lines(lines: mmap.mmap, facts: dict[str, np.ndarray], rows: np.ndarray, path: Path) -> None:
    """Write the records at `rows` to `path`, byte for byte as ingest wrote them."""
    offsets, lengths = facts["offsets"][rows].tolist(), facts["lengths"][rows].tolist()
    with open(path, "wb") as out:
        for start in range(0, len(offsets), 8192):
            out.write(b"".join(lines[o:o + n] + b"\n" for o, n in zip(offsets[start:start + 8192],
                                                                       lengths[start:start + 8192], strict=True)))


def _duplicate_entries(lines: mmap.mmap, facts: dict[str, np.ndarray], duplicate_of: np.ndarray,
                       near_of: np.ndarray, similarity: np.ndarray) -> list[dict[str, Any]]:
    """One entry per removed row, in row order: its origin, the kept row's, and how they matched."""
    def origin(row: int) -> str:
        offset, length = int(facts["offsets"][row]), int(facts["lengths"][row])
        return json.loads(lines[offset:offset + length])["origin"]

    entries = []
    for row in np.flatnonzero((duplicate_of >= 0) | (near_of >= 0)).tolist():
        if duplicate_of[row] >= 0:
            entries.append({"origin": origin(row), "duplicate_of": origin(int(duplicate_of[row])), "kind": "exact"})
        else:
            entries.append({"origin": origin(row), "duplicate_of": origin(int(near_of[row])), "kind": "near",
                            "similarity": round(float(similarity[row]), 3)})
    return entries


def _first_rows(path: Path, count: int) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, count)]


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _report(facts, in_split_order: np.ndarray, tool_names: list[str], order: dict[str, np.ndarray],
            tokens: np.ndarray, duplicates: list[dict[str, Any]], ingest_quarantined: int,
            curation_quarantined: list[dict[str, Any]], source_files: dict[str, str]) -> dict[str, Any]:
    quarantined = ingest_quarantined + len(curation_quarantined)
    quality_filtered = sum(q["reason"].startswith("quality: ") for q in curation_quarantined)
    format_errors = quarantined - quality_filtered
    input_rows = ingest_quarantined + int(facts["rows"])
    candidates = input_rows - quarantined
    accepted = len(in_split_order)
    synthetic = Counter(facts["synthetic_names"][facts["synthetic"][in_split_order]].tolist())
    synthetic.pop("", None)
    per_tool = Counter(np.array(tool_names)[facts["tools"][in_split_order]].tolist())
    return {
        "input_rows": input_rows,
        "total_examples": accepted,
        "train_count": len(order["train"]),
        "validation_count": len(order["validation"]),
        "test_count": len(order["test"]),
        "quarantined": quarantined,
        "quality_filtered": quality_filtered,
        "duplicates_removed": len(duplicates),
        "exact_duplicates": sum(d["kind"] == "exact" for d in duplicates),
        "near_duplicates": sum(d["kind"] == "near" for d in duplicates),
        "near_duplicate_clusters": len({d["duplicate_of"] for d in duplicates if d["kind"] == "near"}),
        "format_errors": format_errors,
        "format_valid_ratio": (input_rows - format_errors) / input_rows if input_rows else 0.0,
        "dedup_ratio": len(duplicates) / candidates if candidates else 0.0,
        "avg_tokens": float(tokens.mean()) if accepted else 0.0,
        "p95_tokens": float(np.percentile(tokens, 95, method="weibull")) if accepted > 1 else float(tokens.max(initial=0)),
        "max_tokens": int(tokens.max(initial=0)),
        "per_tool": dict(sorted(per_tool.items())),
        "synthetic_examples": dict(sorted(synthetic.items())),
        "quality_score": _quality_score(input_rows, quarantined, len(duplicates)),
        "source_files": source_files,
    }


def _quality_score(input_rows: int, quarantined: int, duplicates: int) -> float:
    """Share of input rows that were usable and new: 1.0 means a clean, non-repeating source."""
    return (input_rows - quarantined - duplicates) / input_rows if input_rows else 0.0
