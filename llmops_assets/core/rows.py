"""Rows as every stage reads them: JSONL lines with their origin (`file:line`), quarantine entries
that keep what could not be used and why, and file fingerprints that say what changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmops_assets.core.storage import file_sha256


@dataclass(frozen=True)
class LineRange:
    path: Path
    start: int
    end: int
    first_line: int  # 1-based number of the range's first line

    def lines(self) -> Iterator[tuple[int, int, bytes]]:
        """(byte offset, line number, line without its end) for every non-blank line of the range."""
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            data = handle.read(self.end - self.start)
        offset = self.start
        for number, line in enumerate(data.split(b"\n"), start=self.first_line):
            if line.strip():
                yield offset, number, line.removesuffix(b"\r")
            offset += len(line) + 1


@dataclass
class Unreadable:
    """A row that could not be parsed: why, and its raw content for the quarantine."""

    reason: str
    raw: Any


def jsonl_rows(path: Path, expected: str = "a JSON object") -> Iterator[tuple[str, dict | Unreadable]]:
    """(origin, row) for every non-blank line of a JSONL file."""
    yield from range_rows(LineRange(path, 0, path.stat().st_size, 1), expected)


def range_rows(lines: LineRange, expected: str = "a JSON object") -> Iterator[tuple[str, dict | Unreadable]]:
    for _, number, raw in lines.lines():
        origin = f"{lines.path}:{number}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield origin, Unreadable(f"not UTF-8: {exc.reason}", raw)
            continue
        except json.JSONDecodeError as exc:
            yield origin, Unreadable(f"malformed JSON: {exc.msg} at column {exc.colno}", raw)
            continue
        yield origin, row if isinstance(row, dict) else Unreadable(f"expected {expected}", row)


def quarantine_entry(origin: str, reason: str, raw: Any) -> dict[str, Any]:
    """What the quarantine keeps of a rejected row: where it came from, why, and its content."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        json.dumps(raw)
    except (TypeError, ValueError):  # a table cell of a type JSON cannot hold: keep its text
        raw = repr(raw)
    return {"origin": origin, "reason": reason, "raw": raw}


def example_id(messages: list[Any]) -> str:
    """Content hash of the conversation: the same example gets the same id wherever it comes from."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def file_fingerprints(paths: list[Path]) -> dict[str, str]:
    """Each file or folder (as configured) and its fingerprint; a missing one maps to ''."""
    return {str(path): fingerprint(path) if path.exists() else "" for path in paths}


def fingerprint(path: Path) -> str:
    """sha256 of a file's bytes; for a folder (a saved dataset), of its files' names and hashes."""
    if path.is_file():
        return _file_digest(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = [(p.relative_to(path).as_posix(), _file_digest(p)) for p in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def changed_sources(current: dict[str, str], ingested: dict[str, str]) -> dict[str, str | None]:
    """Files added, changed (new sha256) or removed (None) since they were last read."""
    changed: dict[str, str | None] = {p: h for p, h in current.items() if ingested.get(p) != h}
    changed.update({p: None for p in ingested if p not in current})
    return changed


def _file_digest(path: Path) -> str:
    """Sensors fingerprint files on each tick: a file whose size and mtime did not change is not
    read again."""
    stat = path.stat()
    return _digest_of(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=65536)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)
