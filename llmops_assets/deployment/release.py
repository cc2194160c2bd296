"""Releases: start a candidate, probe it, and only then make it what is served.

The registry (core.releases) records a candidate as the champion only after it passed its
probes, and the previous server is stopped only after that. A rejected candidate is stopped and
the previous release keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmops_assets.core.releases import Release, ReleaseRegistry
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


def deploy(gguf_path: Path, ollama_spec: dict[str, Any], candidate_fields: dict[str, Any], settings: DeploymentSettings,
           home: Path, registry: ReleaseRegistry, probe_messages: list[dict[str, str]],
           log: Callable[[str], None]) -> Release:
    """Serve `gguf_path` as the new champion, or raise DeploymentRejected leaving the old one.
    `candidate_fields`: version, model_sha256, quantization, task_accuracy, inputs, rolled_back_from."""
    previous = registry.champion()
    target = select_target(settings, home)
    release_number = registry.next_release_number()
    candidate = target.start(gguf_path, ollama_spec, release_number)
    log(f"candidate {candidate.model} on {target.name} at {candidate.endpoint}, probing")
    try:
        result = target.probe(candidate, probe_messages)
        failed = [v for v in verdicts(result, settings.quality_gate) if not v.passed]
        if failed:
            raise DeploymentRejected("; ".join(f"{v.gate} {v.value:.3g} > {v.threshold:g}" for v in failed))
    except Exception as exc:
        target.discard(candidate)
        registry.reject(candidate_fields["version"], str(exc), {**candidate_fields, **candidate.fields()})
        raise
    release = Release(
        **candidate_fields,
        **candidate.fields(),
        model_name=settings.model_name,
        model_path=str(gguf_path),
        release_number=release_number,
        role="champion",
        traffic_weight=1.0,
        deployed_at=time.time(),
        previous_version=previous.version if previous else None,
        probe=asdict(result),
        probe_request=probe_messages,
    )
    registry.register(release)
    target.promote(candidate)
    if previous:
        if Candidate.of(previous.view()) != candidate:  # else the same server goes on answering
            target_of(previous.view(), settings, home).retire(previous.view())
        registry.set_role(previous.release_number, "retired", 0.0, reason=f"replaced by release {release_number}")
        log(f"{release.version} on {target.name} replaces {previous.version} on {previous.server}")
    registry.write_views(home)
    return release
