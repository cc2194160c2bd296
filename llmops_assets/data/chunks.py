"""Line-aligned byte ranges of a JSONL file, worked on in parallel processes.

Ingest and curation read a million-row file as ranges of ~16 MB, one per task, so per-row Python
work runs on every core and no process holds more than one range of rows as objects at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from llmops_assets.core.rows import LineRange

CHUNK_BYTES = 16 * 2**20
# Below this much input, worker processes cost more (start-up, imports) than they save.
PARALLEL_MIN_BYTES = 8 * 2**20


def line_ranges(path: Path) -> list[LineRange]:
    """The file cut at line ends into ranges of about CHUNK_BYTES, each knowing its first line number."""
    size, chunk_bytes = path.stat().st_size, CHUNK_BYTES
    ranges: list[LineRange] = []
    with open(path, "rb") as handle:
        start, first_line = 0, 1
        while start < size:
            handle.seek(min(start + chunk_bytes, size))
            tail = handle.readline() if start + chunk_bytes < size else b""
            end = min(start + chunk_bytes, size) + len(tail)
            ranges.append(LineRange(path, start, end, first_line))
            handle.seek(start)
            first_line += handle.read(end - start).count(b"\n")
            start = end
    return ranges


def worker_count(configured: int) -> int:
    """`configured` workers, or one per available core when 0."""
    if configured > 0:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_tasks(function: Callable[..., Any], tasks: list[tuple], workers: int, input_bytes: int,
              progress: Callable[[str], None], what: str) -> list[Any]:
    """`function(*task)` for every task, results in task order; in worker processes (spawned, so
    safe inside a multi-threaded Dagster step) when there is enough input to pay for them."""
    started = time.monotonic()
    results: list[Any] = [None] * len(tasks)

    def report(done: int) -> None:
        elapsed = time.monotonic() - started
        progress(f"{what}: {done}/{len(tasks)} parts in {elapsed:.0f} s, "
                 f"ETA {(len(tasks) - done) * elapsed / done:.0f} s")

    if workers <= 1 or len(tasks) <= 1 or input_bytes < PARALLEL_MIN_BYTES:
        for index, task in enumerate(tasks):
            results[index] = function(*task)
            report(index + 1)
        return results
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(function, *task): index for index, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            report(done)
    return results
