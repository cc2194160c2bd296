"""Releases: start a candidate, probe it, and only then make it what is served.

The registry (core.releases) records a candidate only after it passed its probes: as the champion
(promotion `immediate`, the first release, a rollback), or as a challenger (`canary`, `shadow`)
that the gateway serves beside the champion until `canary_analysis` promotes it
(`promote_challenger`) or rolls it back (`retire_challenger`). The previous server is stopped only
after the switch. A rejected candidate is stopped and what is served stays.
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
    """Serve `gguf_path` as the new champion or, with promotion canary/shadow and a champion in
    place, as its challenger; or raise DeploymentRejected leaving what is served.
    `candidate_fields`: version, model_sha256, quantization, task_accuracy, inputs, rolled_back_from."""
    previous = registry.champion()
    promotion = settings.promotion
    role = "champion"
    if previous is not None and promotion.mode != "immediate" and not candidate_fields.get("rolled_back_from"):
        role = promotion.mode
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
        role=role,
        traffic_weight={"champion": 1.0, "canary": promotion.traffic_steps[0], "shadow": 0.0}[role],
        deployed_at=time.time(),
        previous_version=previous.version if previous else None,
        probe=asdict(result),
        probe_request=probe_messages,
    )
    replaced = registry.challenger()  # compared with a champion that a newer candidate now faces, or replaces
    registry.register(release)
    if replaced is not None:
        retire_challenger(registry, settings, home, replaced, f"replaced by release {release_number}")
    if role != "champion":
        log(f"{release.version} on {target.name} is the {role} beside champion {previous.version}")
        return release
    target.promote(candidate)
    registry.write_views(home)  # before the old champion drains: a kill then leaves no stale view
    if previous:
        _retire(registry, settings, home, previous, candidate, f"replaced by release {release_number}")
        log(f"{release.version} on {target.name} replaces {previous.version} on {previous.server}")
    return release


def promote_challenger(registry: ReleaseRegistry, settings: DeploymentSettings, home: Path, challenger: Release,
                       reason: str) -> Release:
    """The challenger becomes the champion; the old champion is retired and its server stopped."""
    previous = registry.champion()
    candidate = Candidate.of(challenger.view())
    target_of(challenger.view(), settings, home).promote(candidate)
    registry.set_role(challenger.release_number, "champion", 1.0, reason=reason)
    registry.write_views(home)  # before the old champion drains: a kill then leaves no stale view
    if previous is not None:
        _retire(registry, settings, home, previous, candidate, f"replaced by release {challenger.release_number}")
    return registry.releases()[challenger.release_number]


def retire_challenger(registry: ReleaseRegistry, settings: DeploymentSettings, home: Path, challenger: Release,
                      reason: str) -> None:
    """Roll the challenger back: it takes no traffic any more and its server stops; the champion,
    untouched, takes everything."""
    registry.set_role(challenger.release_number, "retired", 0.0, reason=reason)
    _drain(settings)
    target_of(challenger.view(), settings, home).retire(challenger.view())


def _retire(registry: ReleaseRegistry, settings: DeploymentSettings, home: Path, old: Release, successor: Candidate,
            reason: str) -> None:
    """Out of the routes first, then, once the gateway has seen it and what it was answering is
    answered, its server stops: no client request meets a stopped server."""
    registry.set_role(old.release_number, "retired", 0.0, reason=reason)
    if Candidate.of(old.view()) != successor:  # else the same server goes on answering
        _drain(settings)
        target_of(old.view(), settings, home).retire(old.view())


def _drain(settings: DeploymentSettings) -> None:
    time.sleep(settings.gateway.drain_s)
