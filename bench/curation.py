"""Curation at scale: synthetic chat examples with planted exact duplicates, near duplicates and bad
rows, through the pipeline's curation path (ingest -> validation and quality filters -> exact and
near dedup -> stratified split -> report) and the gates that read the published splits (the Great
Expectations suite and the split-leakage check), and in the same run a naive baseline
(per-document datasketch MinHash + LSH) on a sample.

    .venv/bin/python bench/curation.py [--rows 1000000] [--baseline-sample 20000] [--workers 0]

Prints examples/s, peak RSS (the curation process and its workers, summed), near-duplicate
precision/recall against the planted truth, the count invariant, and the near-dedup throughput
ratio to the baseline on the same sample.
Targets (2 cores): 1M rows curated and gated in <= 90 s, <= 2 GB RSS, precision and recall >= 0.95,
no row lost. Token counting is left out (the suite's token bounds with it).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from llmops_assets.core.storage import read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.chunks import worker_count
from llmops_assets.data.config import NearDuplicateSettings
from llmops_assets.data.curate import (
    curate_files,
    exact_duplicates,
    lsh_band_keys,
    minhash_signatures,
    near_duplicates,
    normalized_text,
    request_similarity,
)
from llmops_assets.data.ingest import ingest_to
from llmops_assets.data.published import gate_published
from llmops_assets.settings import load_settings

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ri", "so", "ta", "vu", "ze", "bo", "da")
         for b in ("rn", "lt", "sk", "mp", "nd", "rt", "st", "ng", "ck", "ft", "ll", "xx")]
SHARES = {"exact": 0.02, "near": 0.02, "bad": 0.01}


def make_rows(count: int, seed: int) -> tuple[list[str], set[int]]:
    """JSONL lines: distinct examples (a title and a ~48-word note drawn at random), with planted
    exact repeats, near repeats (the note's last word dropped or one word added) and bad rows.
    Returns the lines and the 1-based line numbers of the planted near duplicates."""
    rng = random.Random(seed)
    lines: list[str] = []
    originals: list[tuple[str, list[str]]] = []
    near: set[int] = set()
    while len(lines) < count:
        roll = rng.random()
        if originals and roll < SHARES["exact"]:
            lines.append(lines[rng.randrange(len(lines))])
        elif originals and roll < SHARES["exact"] + SHARES["near"]:
            title, note = rng.choice(originals)
            changed = note[:-1] if rng.random() < 0.5 else [*note, rng.choice(WORDS)]
            lines.append(_line(title, changed))
            near.add(len(lines))
        elif roll < SHARES["exact"] + SHARES["near"] + SHARES["bad"]:
            lines.append(rng.choice(['{"messages": [', '{"prompt": 3}', json.dumps(
                {"messages": [{"role": "user", "content": "Delete everything"},
                              {"role": "assistant", "content": None,
                               "tool_calls": [{"function": {"name": "drop_db", "arguments": "{}"}}]}]})]))
        else:
            title = " ".join(rng.choices(WORDS, k=3)) + f" {rng.randrange(10**6)}"
            note = rng.choices(WORDS, k=48)
            originals.append((title, note))
            lines.append(_line(title, note))
    return lines, near


def _line(title: str, note: list[str]) -> str:
    call = {"function": {"name": "add_task", "arguments": json.dumps({"title": title})}}
    return json.dumps({"messages": [{"role": "user", "content": f"Add task: {title}. Note: {' '.join(note)}"},
                                    {"role": "assistant", "content": None, "tool_calls": [call]}]})


def baseline_near_dedup(records: list[dict], settings: NearDuplicateSettings) -> set[str]:
    """The textbook per-document loop: a datasketch MinHash per example, an LSH index, first kept."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm)
    duplicates = set()
    for index, record in enumerate(records):
        words = normalized_text(record["messages"]).split()
        signature = MinHash(num_perm=settings.num_perm, seed=42)
        signature.update_batch([" ".join(words[i:i + settings.shingle_words]).encode()
                                for i in range(max(1, len(words) - settings.shingle_words + 1))])
        if lsh.query(signature):
            duplicates.add(record["origin"])
        else:
            lsh.insert(str(index), signature)
    return duplicates


def pipeline_near_dedup(records: list[dict], settings: NearDuplicateSettings) -> set[str]:
    """The pipeline's near dedup on the same rows: bulk rensa signatures, LSH band keys, resolution."""
    signatures = minhash_signatures([normalized_text(r["messages"]) for r in records], settings)
    near_of, _ = near_duplicates(lsh_band_keys(signatures), signatures, settings.threshold,
                                 candidates=np.ones(len(records), bool))
    return {records[row]["origin"] for row in np.flatnonzero(near_of >= 0)}


def precision_recall(found: set[int], planted: set[int]) -> tuple[float, float]:
    true = len(found & planted)
    return (true / len(found) if found else 1.0), (true / len(planted) if planted else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-sample", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the measured child process
    args = parser.parse_args()
    settings = load_settings()
    if args.measure:
        return measure(args.measure, worker_count(args.workers))

    lines, planted = make_rows(args.rows, args.seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    del lines
    print(f"{args.rows} rows written ({(folder / 'rows.jsonl').stat().st_size / 1e6:.0f} MB), {len(planted)} planted "
          f"near duplicates; {worker_count(args.workers)} workers", flush=True)
    # The curation path runs in a fresh process so that its memory is its own (this one holds the
    # generated rows); RSS of it and its workers, summed, is sampled every 50 ms.
    with open(folder / "measured.json", "w") as measured:
        child = subprocess.Popen([sys.executable, __file__, "--measure", str(folder), "--workers", str(args.workers)],
                                 stdout=measured)
        peak = 0
        while child.poll() is None:
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.05)
    if child.returncode:
        raise SystemExit(f"the measured curation run failed (exit {child.returncode})")
    result = json.loads((folder / "measured.json").read_text())
    report, seconds, ingest_seconds = result["report"], result["seconds"], result["ingest_seconds"]
    gate_seconds = result["gate_seconds"]
    precision, recall = precision_recall(set(result["near_lines"]), planted)
    accounted = report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    print(f"curated and gated: {seconds:.1f} s ({args.rows / seconds:,.0f} examples/s; ingest {ingest_seconds:.1f} s, "
          f"curation {seconds - ingest_seconds - gate_seconds:.1f} s, gates {gate_seconds:.1f} s)")
    print(f"  gates: {result['failed_expectations']} of {result['expectations']} expectations failed on "
          f"{result['examples_checked']} examples, {result['leaked']} leaked requests")
    print(f"  peak RSS, main process and workers summed: {peak / 1e9:.2f} GB")
    print(f"  accepted {report['total_examples']}, quarantined {report['quarantined']}, exact duplicates "
          f"{report['exact_duplicates']}, near duplicates {report['near_duplicates']}: "
          f"{'no row lost' if accounted == report['input_rows'] == args.rows else 'ROWS LOST'}")
    print(f"  near-duplicate precision {precision:.3f}, recall {recall:.3f} against the planted truth")

    data = settings.stages.data
    with open(folder / "raw" / "records.jsonl", encoding="utf-8") as records:
        sample = [json.loads(line) for line, _ in zip(records, range(args.baseline_sample), strict=False)]
    keys = exact_duplicates(np.array([hash(normalized_text(r["messages"])) for r in sample], np.int64))
    sample = [r for r, first in zip(sample, keys, strict=True) if first < 0]  # both start from exact-deduplicated rows
    began = time.perf_counter()
    ours = pipeline_near_dedup(sample, data.near_duplicates)
    ours_seconds = time.perf_counter() - began
    began = time.perf_counter()
    theirs = baseline_near_dedup(sample, data.near_duplicates)
    baseline_seconds = time.perf_counter() - began
    last_line = int(sample[-1]["origin"].rsplit(":", 1)[1])
    sample_planted = {n for n in planted if n <= last_line}
    to_lines = lambda origins: {int(o.rsplit(":", 1)[1]) for o in origins}  # noqa: E731
    print(f"near dedup on a {len(sample)}-row sample: pipeline {len(sample) / ours_seconds:,.0f} rows/s, "
          f"datasketch baseline {len(sample) / baseline_seconds:,.0f} rows/s: {baseline_seconds / ours_seconds:.1f}x; "
          f"recall pipeline {precision_recall(to_lines(ours), sample_planted)[1]:.3f}, "
          f"baseline {precision_recall(to_lines(theirs), sample_planted)[1]:.3f}")
    shutil.rmtree(folder)


def measure(folder: Path, workers: int) -> None:
    """The measured run: ingest and curate folder/rows.jsonl as raw_examples and curated_dataset do
    (tokens not counted); print the report and the lines found as near duplicates, as JSON."""
    settings = load_settings()
    data = settings.stages.data
    raw, curated = folder / "raw", folder / "curated"
    raw.mkdir(), curated.mkdir()
    started = time.perf_counter()
    ingest_to([folder / "rows.jsonl"], raw, workers)
    read = time.perf_counter()
    schema = ToolSchema.from_file(settings.domain.tools_file)
    report = curate_files(raw, curated, schema, data.split.model_dump(exclude={"seed"}), data.split.seed, None,
                          data.near_duplicates, quality=data.quality_filters, workers=workers,
                          leakage_similarity=data.quality_gate.leakage_similarity).report
    curated_at = time.perf_counter()
    gates = gate_published(curated, schema, None, data.quality_gate.max_example_tokens,
                           request_similarity(data.near_duplicates, data.quality_gate.leakage_similarity), workers)
    seconds = time.perf_counter() - started
    near_lines = [int(d["origin"].rsplit(":", 1)[1]) for d in read_jsonl(curated / "duplicates.jsonl")
                  if d["kind"] == "near"]
    print(json.dumps({"seconds": seconds, "ingest_seconds": read - started, "gate_seconds": seconds - (curated_at - started),
                      "report": report, "near_lines": near_lines, "examples_checked": gates.examples_checked,
                      "expectations": len(gates.outcomes), "failed_expectations": sum(not o["success"] for o in gates.outcomes),
                      "leaked": len(gates.leaked)}))


def _tree_rss(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:  # a worker ended between listing and reading
        return 0


if __name__ == "__main__":
    main()
