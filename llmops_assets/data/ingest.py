"""Read raw sources into records with a stable id and their origin; quarantine what cannot be read.

Sources: JSONL, CSV, Parquet, and datasets saved with Hugging Face `save_to_disk`; rows in chat
`messages` form, prompt/completion or instruction/response, all normalized to chat messages.
Nothing is dropped silently: every input row ends up either as a record or as a quarantine entry
that names its file, its line or row, and the reason.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_assets.core.chat import tool_call_message
from llmops_assets.core.rows import (
    LineRange,
    Unreadable,
    example_id,
    file_fingerprints,
    fingerprint,
    jsonl_rows,
    quarantine_entry,
    range_rows,
)
from llmops_assets.core.storage import jsonl_line, read_jsonl
from llmops_assets.data.chunks import line_ranges, run_tasks


@dataclass
class IngestResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of its bytes

    @property
    def input_rows(self) -> int:
        return len(self.records) + len(self.quarantined)


@dataclass
class IngestSummary:
    """What `ingest_to` wrote: counts only, the rows are in the files."""
    records: int
    quarantined: int
    files: dict[str, str]  # path -> sha256 of its bytes

    @property
    def input_rows(self) -> int:
        return self.records + self.quarantined


SUFFIXES = (".jsonl", ".csv", ".parquet")
SHAPES = "'messages', 'prompt' + 'completion', or 'instruction' (+ 'input') + 'response'/'output'"
SHAPES_OBJECT = f"an object with {SHAPES}"
RECORDS, QUARANTINE = "records.jsonl", "quarantine.jsonl"


def ingest_to(sources: list[Path], out_dir: Path, workers: int = 1,
              progress: Callable[[str], None] = lambda message: None) -> IngestSummary:
    """Read every JSONL, CSV and Parquet file and every saved Hugging Face dataset under the given
    files/folders, in a stable order, normalizing each row to chat messages: records go to
    `out_dir/records.jsonl`, unreadable rows to `out_dir/quarantine.jsonl`. JSONL files are read
    as line ranges in `workers` processes; rows never pile up in memory."""
    paths = _expand(sources)
    files = {str(path): fingerprint(path) for path in paths}
    with tempfile.TemporaryDirectory(prefix="ingest-") as scratch:
        tasks = []
        for path in paths:
            pieces = line_ranges(path) if _is_jsonl(path) else [path]
            tasks += [(piece, Path(scratch) / f"part-{len(tasks) + k:06d}") for k, piece in enumerate(pieces)]
        input_bytes = sum(p.stat().st_size for p in paths if p.is_file())
        counts = run_tasks(_ingest_piece, tasks, workers, input_bytes, progress, "ingest")
        for name, suffix in ((RECORDS, ".records"), (QUARANTINE, ".quarantine")):
            with open(out_dir / name, "wb") as out:
                for _, part in tasks:
                    with open(part.with_suffix(suffix), "rb") as piece:
                        shutil.copyfileobj(piece, out, 2**22)
    return IngestSummary(sum(c[0] for c in counts), sum(c[1] for c in counts), files)


def ingest(sources: list[Path]) -> IngestResult:
    """`ingest_to` with the rows read back into memory: for small sources and tests."""
    with tempfile.TemporaryDirectory(prefix="ingest-") as scratch:
        summary = ingest_to(sources, Path(scratch))
        return IngestResult(read_jsonl(Path(scratch) / RECORDS), read_jsonl(Path(scratch) / QUARANTINE), summary.files)


def _ingest_piece(piece: LineRange | Path, part: Path) -> tuple[int, int]:
    """Normalize one line range or one table source; write its records and quarantine entries."""
    records = quarantined = 0
    rows = range_rows(piece, SHAPES_OBJECT) if isinstance(piece, LineRange) else _rows(piece)
    with open(part.with_suffix(".records"), "w", encoding="utf-8") as good, \
            open(part.with_suffix(".quarantine"), "w", encoding="utf-8") as bad:
        for origin, row in rows:
            messages = row.reason if isinstance(row, Unreadable) else to_messages(row)
            if isinstance(messages, str):
                bad.write(jsonl_line(quarantine_entry(origin, messages, row.raw if isinstance(row, Unreadable) else row)))
                quarantined += 1
            else:
                good.write(jsonl_line({"id": example_id(messages), "origin": origin, "messages": messages}))
                records += 1
    return records, quarantined


def _is_jsonl(path: Path) -> bool:
    return path.is_file() and path.suffix not in (".csv", ".parquet")


def _rows(path: Path) -> Iterator[tuple[str, dict | Unreadable]]:
    """(origin, row) for every row of one source; what cannot be read comes as Unreadable."""
    if path.is_dir():
        yield from _table_rows(path, lambda: _load_hf_dataset(path))
    elif path.suffix == ".csv":
        yield from _csv_rows(path)
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        yield from jsonl_rows(path, SHAPES_OBJECT)


def _table_rows(path: Path, load) -> Iterator[tuple[str, dict | Unreadable]]:
    """Rows of a table file; a file that cannot be read at all is one quarantine entry, not a crash."""
    try:
        rows = load()
    except Exception as exc:  # pandas, pyarrow and datasets raise many types for a bad file
        yield str(path), Unreadable(f"unreadable {path.suffix or 'dataset'} source: {type(exc).__name__}: {exc}", None)
        return
    for number, row in enumerate(rows, start=1):
        yield f"{path}:row {number}", row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict | Unreadable]]:
    """Rows of a CSV file, each with the line it starts on. A broken record (an unterminated quote,
    a wrong number of fields) is quarantined alone and reading resumes on the next line, so one
    bad row never costs the rows around it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        yield str(path), Unreadable(f"unreadable .csv source: {type(exc).__name__}: {exc}", None)
        return
    if not lines:
        return
    header = next(csv.reader(lines[:1]))
    start = 1
    while start < len(lines):
        if not lines[start].strip():
            start += 1
            continue
        feed = iter(enumerate(lines[start:], start=start))
        consumed = [start]

        def next_line(feed=feed, consumed=consumed):
            for number, line in feed:
                consumed[0] = number + 1
                yield line

        origin = f"{path}:line {start + 1}"
        try:
            fields = next(csv.reader(next_line(), strict=True))
        except (csv.Error, StopIteration) as exc:
            reason = "unterminated quote" if isinstance(exc, StopIteration) or "end of data" in str(exc) else str(exc)
            yield origin, Unreadable(f"malformed CSV record: {reason}", lines[start].rstrip("\r\n"))
            start += 1  # the broken line alone; the lines it swallowed are read again
            continue
        if len(fields) != len(header):
            yield origin, Unreadable(f"malformed CSV record: {len(fields)} fields, the header has {len(header)}",
                                     "".join(lines[start:consumed[0]]).rstrip("\r\n"))
        else:
            yield origin, dict(zip(header, fields, strict=True))
        start = consumed[0]


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict | Unreadable]]:
    """Rows of a Parquet file, read one row group at a time: a corrupt group is quarantined with the
    rows it held, the other groups are kept."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        yield str(path), Unreadable(f"unreadable .parquet source: {type(exc).__name__}: {exc}", None)
        return
    first = 1
    for group in range(parquet.num_row_groups):
        count = parquet.metadata.row_group(group).num_rows
        try:
            rows = parquet.read_row_group(group).to_pylist()
        except Exception as exc:
            yield (f"{path}:rows {first}-{first + count - 1}",
                   Unreadable(f"unreadable row group {group}: {type(exc).__name__}: {exc}", None))
        else:
            for number, row in enumerate(rows, start=first):
                yield f"{path}:row {number}", row
        first += count


def _load_hf_dataset(path: Path) -> list[dict]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    if hasattr(dataset, "keys"):  # a DatasetDict: every split, in the order it was saved
        return [row for name in dataset.keys() for row in dataset[name]]
    return list(dataset)


def to_messages(row: dict[str, Any]) -> list[Any] | str:
    """The row as chat messages, or the reason it has none. A completion that is exactly a JSON
    tool call (`{"name": ..., "arguments": ...}`) becomes an assistant tool call."""
    if "messages" in row:
        messages = row["messages"]
        if isinstance(messages, str):  # CSV cells hold the list as JSON text
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                return f"'messages' is not valid JSON: {exc.msg} at column {exc.colno}"
        return messages if isinstance(messages, list) else "expected 'messages' to be a list"
    if "prompt" in row and "completion" in row:
        return _exchange(row["prompt"], row["completion"])
    answer = row.get("response", row.get("output"))
    if "instruction" in row and answer is not None:
        request = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
        return _exchange(request, answer)
    return f"expected {SHAPES}; got columns {sorted(row)}"


def _exchange(request: Any, answer: Any) -> list[dict] | str:
    if not isinstance(request, str) or not isinstance(answer, str):
        return "the request and the answer must be text"
    try:
        call = json.loads(answer)
    except json.JSONDecodeError:
        call = None
    if isinstance(call, dict) and isinstance(call.get("name"), str):
        reply = tool_call_message(call["name"], call.get("arguments", {}))
    else:
        reply = {"role": "assistant", "content": answer}
    return [{"role": "user", "content": request}, reply]


def source_fingerprints(sources: list[Path]) -> dict[str, str]:
    """Each data source file and the sha256 of its content: what the new-data sensor compares with
    the sources the latest ingest read."""
    return file_fingerprints(_expand(sources))


def _expand(sources: list[Path]) -> list[Path]:
    """Files with a known suffix and saved Hugging Face datasets (folders with a state.json),
    each folder walked in name order."""
    found: list[Path] = []
    for source in sources:
        if _is_hf_dataset(source):
            found.append(source)
        elif source.is_dir():
            roots = {p.parent for name in ("state.json", "dataset_dict.json") for p in source.rglob(name)}
            datasets = sorted(r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots))
            files = [p for p in source.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                     and not any(p.is_relative_to(d) for d in datasets)]
            found.extend(sorted(files + datasets))
        elif source.is_file():
            found.append(source)
        else:
            raise FileNotFoundError(f"{source}: data source does not exist; fix stages.data.sources in the pipeline "
                                    "config (relative paths start at its folder)")
    if not found:
        raise FileNotFoundError(f"no {', '.join(SUFFIXES)} files or saved datasets in {', '.join(map(str, sources))}")
    return found


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())
