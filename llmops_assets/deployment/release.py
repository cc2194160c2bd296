"""Releases: start a candidate, probe it, and only then make it what is served.

`deployment_status.json` under LLMOPS_HOME always describes what is served now: it is rewritten
(atomically) only after the candidate passed its probes, and the previous server is stopped only
after that. A rejected candidate is stopped and the previous release keeps serving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmops_assets.artifacts import read_json, read_jsonl, write_json
from llmops_assets.deployment.targets import Candidate, Probe, select_target, target_of
from llmops_assets.settings import DeploymentGate, DeploymentSettings
from llmops_assets.verdicts import Verdict

STATUS_FILE = "deployment_status.json"
HISTORY_FILE = "releases.jsonl"


class DeploymentRejected(RuntimeError):
    """The candidate failed a post-start probe; nothing was switched."""


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


def verdicts(result: Probe, gate: DeploymentGate) -> list[Verdict]:
    memory_gb = result.memory_bytes / 1e9
    return [
        Verdict("health", result.healthy_after_s, gate.health_timeout_s, result.healthy_after_s <= gate.health_timeout_s),
        Verdict("first_token_ms", result.first_token_ms, gate.max_first_token_ms,
                result.first_token_ms <= gate.max_first_token_ms),
        Verdict("memory_gb", memory_gb, gate.max_memory_gb, memory_gb <= gate.max_memory_gb),
    ]


def deploy(gguf_path: Path, ollama_spec: dict[str, Any], release: dict[str, Any], settings: DeploymentSettings,
           home: Path, probe_messages: list[dict[str, str]], log: Callable[[str], None]) -> dict[str, Any]:
    """Serve `gguf_path` as the new release, or raise DeploymentRejected leaving the old one."""
    previous = read_status(home)
    target = select_target(settings, home)
    release_number = 1 + sum(r["status"] == "serving" for r in history(home))
    candidate = target.start(gguf_path, ollama_spec, release_number)
    log(f"candidate {candidate.model} on {target.name} at {candidate.endpoint}, probing")
    try:
        result = target.probe(candidate, probe_messages)
        failed = [v for v in verdicts(result, settings.quality_gate) if not v.passed]
        if failed:
            raise DeploymentRejected("; ".join(f"{v.gate} {v.value:.3g} > {v.threshold:g}" for v in failed))
    except Exception as exc:
        target.discard(candidate)
        _record(home, {**release, "status": "rejected", "reason": str(exc), "at": time.time()})
        raise
    status = {
        **release,
        **candidate.fields(),
        "model_name": settings.model_name,
        "model_path": str(gguf_path),
        "release_number": release_number,
        "status": "serving",
        "deployed_at": time.time(),
        "previous_version": previous.get("version") if previous else None,
        "probe": asdict(result),
        "probe_request": probe_messages,
    }
    write_json(status_path(home), status)
    _record(home, status)
    target.promote(candidate)
    if previous and previous.get("status") == "serving" and Candidate.of(previous) != candidate:
        target_of(previous, settings, home).retire(previous)
        log(f"{status['version']} on {target.name} replaces {previous['version']} on {previous['server']}")
    return status


def _record(home: Path, entry: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
