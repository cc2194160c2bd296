"""Read raw sources into records with a stable id and their origin; quarantine what cannot be read.

Nothing is dropped silently: every input line ends up either as a record or as a quarantine
entry that names its file, its line and the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class IngestResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of its bytes

    @property
    def input_rows(self) -> int:
        return len(self.records) + len(self.quarantined)


def ingest(sources: list[Path]) -> IngestResult:
    """Read every `*.jsonl` under the given files/folders, in a stable order."""
    result = IngestResult()
    files = _expand(sources)
    if not files:
        raise FileNotFoundError(f"no .jsonl files found in {', '.join(map(str, sources))}")
    for path in files:
        data = path.read_bytes()
        result.files[str(path)] = hashlib.sha256(data).hexdigest()
        for number, raw in enumerate(data.splitlines(), start=1):
            origin = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                result.quarantined.append(quarantine_entry(origin, f"not UTF-8: {exc.reason}", raw))
                continue
            except json.JSONDecodeError as exc:
                result.quarantined.append(quarantine_entry(origin, f"malformed JSON: {exc.msg} at column {exc.colno}", raw))
                continue
            if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
                result.quarantined.append(quarantine_entry(origin, "expected an object with a 'messages' list", raw))
                continue
            result.records.append({"id": example_id(row["messages"]), "origin": origin, "messages": row["messages"]})
    return result


def source_fingerprints(sources: list[Path]) -> dict[str, str]:
    """Each source file and the sha256 of its bytes: what the new-data sensor compares with
    the files the latest ingest read."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in _expand(sources)}


def changed_sources(current: dict[str, str], ingested: dict[str, str]) -> dict[str, str | None]:
    """Files added, changed (new sha256) or removed (None) since the last ingest."""
    changed: dict[str, str | None] = {p: h for p, h in current.items() if ingested.get(p) != h}
    changed.update({p: None for p in ingested if p not in current})
    return changed


def example_id(messages: list[Any]) -> str:
    """Content hash of the conversation: the same example gets the same id wherever it comes from."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def quarantine_entry(origin: str, reason: str, raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return {"origin": origin, "reason": reason, "raw": raw}


def _expand(sources: list[Path]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files.extend(sorted(source.rglob("*.jsonl")))
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"{source}: data source does not exist")
    return files
