"""The curated dataset's gates that read what was published, in one pass over the split files:
the Great Expectations suite and the split-leakage check. At a million rows the pass runs in
worker processes over line ranges (as curation does); each returns the suite's columns and its
rows' request MinHash, whose signatures stay in memory-mapped scratch files."""

from __future__ import annotations

import importlib
import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmops_assets.core.rows import LineRange
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data import expectations
from llmops_assets.data.chunks import line_ranges, run_tasks
from llmops_assets.data.config import NearDuplicateSettings
from llmops_assets.data.curate import (
    SPLITS,
    SignatureFiles,
    minhash_signatures,
    request_band_keys,
    request_text,
    split_leaks,
    text_keys,
)


@dataclass
class PublishedGates:
    outcomes: list[dict[str, Any]]  # the suite's expectations, each with its offending examples
    examples_checked: int
    leaked: list[str]  # rows whose request repeats or resembles one of another split


COLUMNS = ("id", "origin", "split", "role_order", "empty_turns", "tool", "schema_problems")


@dataclass
class _Part:
    columns: dict[str, list[Any]]  # the suite's columns (not a dict per row: a million of those cost ~0.4 GB)
    request_keys: np.ndarray
    band_keys: np.ndarray
    signatures: Path


def gate_published(folder: Path, schema: ToolSchema, token_counts: dict[str, int] | None, max_tokens: int,
                   requests: NearDuplicateSettings, workers: int,
                   progress: Callable[[str], None] = lambda message: None) -> PublishedGates:
    """Both gates on `folder`'s split files; without `token_counts` the token bounds are left out."""
    import pandas as pd

    # Great Expectations takes seconds to import: this process does it while the workers read.
    importer = threading.Thread(target=importlib.import_module, args=("great_expectations",), daemon=True)
    importer.start()
    pieces = [(name, piece) for name in SPLITS for piece in line_ranges(folder / f"{name}.jsonl")]
    with tempfile.TemporaryDirectory(prefix="published-") as scratch:
        tasks = [(piece, name, schema, requests, Path(scratch), k) for k, (name, piece) in enumerate(pieces)]
        size = sum((folder / f"{name}.jsonl").stat().st_size for name in SPLITS)
        parts = run_tasks(_read_part, tasks, workers, size, progress, "reading the published splits")
        table = pd.DataFrame({name: [value for part in parts for value in part.columns[name]] for name in COLUMNS})
        for part in parts:
            part.columns = {}
        if token_counts is not None:
            table = expectations.with_tokens(table, token_counts)
        progress(f"validating {len(table)} examples with the Great Expectations suite")
        importer.join()
        outcomes = expectations.validate(table, schema, max_tokens if token_counts is not None else None)
        progress(f"comparing the requests of {len(table)} examples across splits")
        leaked = split_leaks(table["split"].tolist(), table["origin"].tolist(),
                             np.concatenate([p.request_keys for p in parts]) if parts else np.zeros(0, np.uint64),
                             np.concatenate([p.band_keys for p in parts]) if parts else np.zeros((0, 1), np.uint64),
                             SignatureFiles([p.signatures for p in parts], [len(p.request_keys) for p in parts]),
                             requests.threshold)
    return PublishedGates(outcomes, len(table), leaked)


def _read_part(piece: LineRange, split: str, schema: ToolSchema, requests: NearDuplicateSettings, scratch: Path,
               number: int) -> _Part:
    """The suite's columns and the request MinHash of one line range of a split file (in a worker)."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    texts = []
    for _, _, line in piece.lines():
        record = json.loads(line)
        for name, value in expectations.example_row(record, split, schema).items():
            columns[name].append(value)
        texts.append(request_text(record["messages"]))
    signatures = minhash_signatures(texts, requests)
    path = scratch / f"requests-{number:06d}.npy"
    np.save(path, signatures)
    return _Part(columns, text_keys(texts), request_band_keys(signatures, requests), path)
