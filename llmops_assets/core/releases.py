"""What is served: the current release (`deployment_status.json`) and the append-only history of
every deployment attempt (`releases.jsonl`), both under LLMOPS_HOME. Evaluation reads its
champion here, the synthetic generator its `served` endpoint, deployment its rollback targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops_assets.core.storage import read_json, read_jsonl

STATUS_FILE = "deployment_status.json"
HISTORY_FILE = "releases.jsonl"


def status_path(home: Path) -> Path:
    return home / STATUS_FILE


def read_status(home: Path) -> dict[str, Any] | None:
    path = status_path(home)
    return read_json(path) if path.exists() else None


def history(home: Path) -> list[dict[str, Any]]:
    """Every deployment attempt, oldest first: served releases and rejected candidates."""
    path = home / HISTORY_FILE
    return read_jsonl(path) if path.exists() else []


def rollback_target(home: Path, version: str) -> dict[str, Any]:
    """The release to go back to: `previous` (the one served before the current one) or a
    version that was served before. Only releases that once passed their probes qualify."""
    served = [r for r in history(home) if r["status"] == "serving"]
    if version == "previous":
        current = read_status(home)
        version = (current or {}).get("previous_version") or ""
        if not version:
            raise ValueError("there is no previous release to roll back to")
    for record in reversed(served):
        if record["version"] == version:
            return record
    known = ", ".join(dict.fromkeys(r["version"] for r in served)) or "none"
    raise ValueError(f"version {version!r} was never served; releases that were: {known}")


def champion(home: Path) -> dict[str, Any] | None:
    """The release being served, or None when nothing is (never deployed, or stopped)."""
    status = read_status(home)
    return status if status and status.get("status") == "serving" else None


def record(home: Path, entry: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
