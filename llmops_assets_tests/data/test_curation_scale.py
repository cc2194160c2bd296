"""The scalable curation path: line ranges in worker processes give the same files as one process,
and near-duplicate resolution on arrays keeps the sequential first-kept semantics."""

import json

import numpy as np
import pytest
from rensa import RMinHash

from llmops_assets.core.tools import ToolSchema
from llmops_assets.data import chunks
from llmops_assets.data.config import NearDuplicateSettings, QualityFilterSettings
from llmops_assets.data.curate import (
    curate_files,
    lsh_band_keys,
    minhash_signatures,
    near_duplicates,
    unaccounted_rows,
)
from llmops_assets.data.ingest import ingest_to
from llmops_assets.settings import load_settings

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def ten_tokens(record):  # module level: worker processes unpickle it by name
    return 10


def _rows(count):
    rows = []
    for i in range(count):
        if i % 50 == 7:
            rows.append('{"messages": [')  # malformed
        elif i % 50 == 9:
            rows.append(rows[0])  # exact repeat of line 1
        else:
            note = " ".join(f"w{(i * 7 + k) % 997}" for k in range(20))
            rows.append(json.dumps({"messages": [
                {"role": "user", "content": f"Add task: item {i}. Note: {note}"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"function": {"name": "add_task", "arguments": json.dumps({"title": f"item {i}"})}}]}]}))
    return rows


def _run(tmp_path, name, source, workers):
    raw, out = tmp_path / name / "raw", tmp_path / name / "out"
    raw.mkdir(parents=True), out.mkdir()
    settings = load_settings()
    summary = ingest_to([source], raw, workers)
    result = curate_files(raw, out, ToolSchema.from_file(settings.domain.tools_file), RATIOS, 3, ten_tokens,
                          NearDuplicateSettings(), quality=QualityFilterSettings(), workers=workers)
    return summary, result, raw, out


def test_worker_processes_write_the_same_files_as_one_process(tmp_path, monkeypatch):
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(_rows(600)) + "\n")
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 16 * 1024)  # many line ranges
    monkeypatch.setattr(chunks, "PARALLEL_MIN_BYTES", 0)  # worker processes even for a small file
    assert len(chunks.line_ranges(source)) > 5
    one = _run(tmp_path, "one", source, workers=1)
    two = _run(tmp_path, "two", source, workers=2)
    for name in ("records.jsonl", "quarantine.jsonl"):
        assert (one[2] / name).read_bytes() == (two[2] / name).read_bytes()
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "quarantine.jsonl", "duplicates.jsonl"):
        assert (one[3] / name).read_bytes() == (two[3] / name).read_bytes()
    assert one[1].report == two[1].report and one[1].token_counts == two[1].token_counts
    report = two[1].report
    # origins keep the source line numbers across ranges; every row is accounted for
    quarantined = [json.loads(line)["origin"] for line in (two[3] / "quarantine.jsonl").read_text().splitlines()]
    assert quarantined == [f"{source}:{i + 1}" for i in range(600) if i % 50 == 7]
    assert report["exact_duplicates"] == 12 and report["input_rows"] == 600
    assert report["input_rows"] == report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    assert set(two[1].token_counts.values()) == {10}


def _signature(rng, base=None, changed=0):
    signature = rng.integers(0, 2**32, 128, dtype=np.uint32) if base is None else base.copy()
    if changed:
        signature[rng.choice(128, changed, replace=False)] = rng.integers(0, 2**32, changed, dtype=np.uint32)
    return signature


def test_a_row_similar_only_to_a_removed_row_is_kept():
    rng = np.random.default_rng(0)
    a = _signature(rng)
    b = a.copy()
    b[:10] += 1  # 0.92 like a
    c = b.copy()
    c[10:20] += 1  # 0.92 like b, 0.84 like a
    d = _signature(rng)
    signatures = np.stack([a, b, c, d, a])
    near_of, similarity = near_duplicates(lsh_band_keys(signatures), signatures, 0.85,
                                          candidates=np.array([True, True, True, True, False]))
    assert near_of.tolist() == [-1, 0, -1, -1, -1]  # c is kept: b, the row it resembles, was removed
    assert similarity[1] == pytest.approx(118 / 128)


def test_a_large_cluster_keeps_its_first_row_and_names_it():
    rng = np.random.default_rng(1)
    first = _signature(rng)
    signatures = np.stack([first] + [_signature(rng, first, changed=4) for _ in range(200)])
    near_of, _ = near_duplicates(lsh_band_keys(signatures), signatures, 0.85, candidates=np.ones(201, bool))
    assert near_of[0] == -1 and (near_of[1:] == 0).all()


def test_signatures_are_rensas_and_their_agreement_is_rensas_jaccard():
    settings = NearDuplicateSettings()
    texts = ["user: add task: call the plumber about the leaking tap before the weekend",
             "user: add task: call the plumber about the leaking tap before the long weekend"]
    signatures = minhash_signatures(texts, settings)
    reference = []
    for text in texts:
        words = text.split()
        minhash = RMinHash(num_perm=settings.num_perm, seed=42)
        minhash.update([" ".join(words[i:i + 3]) for i in range(len(words) - 2)])
        reference.append(minhash)
    assert signatures.tolist() == [m.digest() for m in reference]
    assert (signatures[0] == signatures[1]).mean() == pytest.approx(reference[0].jaccard(reference[1]))


def test_the_accounting_gate_counts_against_what_raw_examples_wrote(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(_rows(120)) + "\n")
    summary, result, _, _ = _run(tmp_path, "run", source, workers=1)
    assert unaccounted_rows(result.report, summary.records + summary.quarantined) == 0
    assert unaccounted_rows(result.report, summary.records + summary.quarantined + 3) == 3  # rows lost between assets


def test_the_token_counter_crosses_to_worker_processes_without_its_tokenizer(tmp_path):
    import pickle

    from llmops_assets.core.chat import ChatTokenCounter
    from llmops_assets.core.storage import read_jsonl
    from llmops_assets.data.synth import SEED_FILE
    from llmops_assets.training.base_models import build_base_model

    rows = read_jsonl(SEED_FILE)[:40]
    build_base_model("tiny-llama", tmp_path / "model", [m.get("content") or "" for r in rows for m in r["messages"]])
    counter = ChatTokenCounter(str(tmp_path / "model"), "Answer with one JSON tool call.")
    counts = [counter(r) for r in rows]
    copy = pickle.loads(pickle.dumps(counter))
    assert copy._tokenizer is None and [copy(r) for r in rows] == counts and min(counts) > 5
