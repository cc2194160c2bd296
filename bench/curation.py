"""Curation at scale: synthetic chat examples with planted exact duplicates, near duplicates and bad
rows, through the pipeline's curation path (ingest -> validation and quality filters -> exact and
near dedup -> stratified split -> report), and in the same run a naive baseline (per-document
datasketch MinHash + LSH) on a sample.

    .venv/bin/python bench/curation.py [--rows 1000000] [--baseline-sample 20000]

Prints examples/s, peak RSS, near-duplicate precision/recall against the planted truth, the count
invariant, and the near-dedup throughput ratio to the baseline on the same sample.
Targets (2 cores): 1M rows in <= 60 s, <= 2 GB RSS, precision and recall >= 0.95, no row lost.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from llmops_assets.data.curate import curate, deduplicate, near_deduplicate, normalized_text
from llmops_assets.data.ingest import ingest
from llmops_assets.settings import NearDuplicateSettings, load_settings
from llmops_assets.tools import ToolSchema

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


def precision_recall(found: set[int], planted: set[int]) -> tuple[float, float]:
    true = len(found & planted)
    return (true / len(found) if found else 1.0), (true / len(planted) if planted else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-sample", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = load_settings()
    data = settings.stages.data
    schema = ToolSchema.from_file(settings.domain.tools_file)
    ratios = data.split.model_dump(exclude={"seed"})

    lines, planted = make_rows(args.rows, args.seed)
    source = Path(tempfile.mkdtemp(prefix="bench-curation-")) / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n")
    del lines
    print(f"{args.rows} rows written ({source.stat().st_size / 1e6:.0f} MB), {len(planted)} planted near duplicates",
          flush=True)

    started = time.perf_counter()
    ingested = ingest([source])
    read = time.perf_counter()
    result = curate(ingested, schema, ratios, data.split.seed, lambda r: 0, data.near_duplicates,
                    quality=data.quality_filters)
    seconds = time.perf_counter() - started
    report = result.report
    near_found = {int(d["origin"].rsplit(":", 1)[1]) for d in result.duplicates if d["kind"] == "near"}
    precision, recall = precision_recall(near_found, planted)
    accounted = report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"curation path: {seconds:.1f} s ({args.rows / seconds:,.0f} examples/s; ingest {read - started:.1f} s), "
          f"peak RSS {peak_gb:.2f} GB")
    print(f"  accepted {report['total_examples']}, quarantined {report['quarantined']}, exact duplicates "
          f"{report['exact_duplicates']}, near duplicates {report['near_duplicates']}: "
          f"{'no row lost' if accounted == report['input_rows'] == args.rows else 'ROWS LOST'}")
    print(f"  near-duplicate precision {precision:.3f}, recall {recall:.3f} against the planted truth")

    sample = deduplicate(ingested.records[: args.baseline_sample])[0]  # both start from exact-deduplicated rows
    began = time.perf_counter()
    ours = {d["origin"] for d in near_deduplicate(sample, data.near_duplicates)[1]}
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


if __name__ == "__main__":
    main()
