"""Releases: start a candidate, probe it, and only then make it what is served.

`deployment_status.json` under LLMOPS_HOME (see core.releases) always describes what is served now: it is rewritten
(atomically) only after the candidate passed its probes, and the previous server is stopped only
after that. A rejected candidate is stopped and the previous release keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmops_assets.core import releases
from llmops_assets.core.storage import write_json
from llmops_assets.core.verdicts import Verdict
from llmops_assets.deployment.config import DeploymentGate, DeploymentSettings
from llmops_assets.deployment.targets import Candidate, Probe, select_target, target_of


class DeploymentRejected(RuntimeError):
    """The candidate failed a post-start probe; nothing was switched."""


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
    previous = releases.read_status(home)
    target = select_target(settings, home)
    release_number = 1 + sum(r["status"] == "serving" for r in releases.history(home))
    candidate = target.start(gguf_path, ollama_spec, release_number)
    log(f"candidate {candidate.model} on {target.name} at {candidate.endpoint}, probing")
    try:
        result = target.probe(candidate, probe_messages)
        failed = [v for v in verdicts(result, settings.quality_gate) if not v.passed]
        if failed:
            raise DeploymentRejected("; ".join(f"{v.gate} {v.value:.3g} > {v.threshold:g}" for v in failed))
    except Exception as exc:
        target.discard(candidate)
        releases.record(home, {**release, "status": "rejected", "reason": str(exc), "at": time.time()})
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
    write_json(releases.status_path(home), status)
    releases.record(home, status)
    target.promote(candidate)
    if previous and previous.get("status") == "serving" and Candidate.of(previous) != candidate:
        target_of(previous, settings, home).retire(previous)
        log(f"{status['version']} on {target.name} replaces {previous['version']} on {previous['server']}")
    return status
