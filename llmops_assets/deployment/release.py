"""Releases: start a candidate, probe it, and only then make it what is served.

`deployment_status.json` under LLMOPS_HOME always describes what is served now: it is rewritten
(atomically) only after the candidate passed its probes, and the previous server is stopped only
after that. A rejected candidate is stopped and the previous release keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmops_assets.artifacts import read_json, write_json
from llmops_assets.deployment import servers
from llmops_assets.settings import DeploymentGate, DeploymentSettings

STATUS_FILE = "deployment_status.json"


class DeploymentRejected(RuntimeError):
    """The candidate failed a post-start probe; nothing was switched."""


@dataclass(frozen=True)
class Probe:
    healthy_after_s: float
    first_token_ms: float
    memory_bytes: int


@dataclass(frozen=True)
class Verdict:
    gate: str
    value: float
    threshold: float
    passed: bool


def status_path(home: Path) -> Path:
    return home / STATUS_FILE


def read_status(home: Path) -> dict[str, Any] | None:
    path = status_path(home)
    return read_json(path) if path.exists() else None


def probe(endpoint: str, pid: int, model: str, messages: list[dict[str, str]], timeout_s: float) -> Probe:
    healthy = servers.wait_healthy(endpoint, pid, timeout_s)
    servers.first_token_ms(endpoint, model, messages)  # the first request pays one-off warm-up
    ttft = min(servers.first_token_ms(endpoint, model, messages) for _ in range(3))
    return Probe(healthy, ttft, servers.resident_memory_bytes(pid))


def verdicts(result: Probe, gate: DeploymentGate) -> list[Verdict]:
    memory_gb = result.memory_bytes / 1e9
    return [
        Verdict("health", result.healthy_after_s, gate.health_timeout_s, result.healthy_after_s <= gate.health_timeout_s),
        Verdict("first_token_ms", result.first_token_ms, gate.max_first_token_ms,
                result.first_token_ms <= gate.max_first_token_ms),
        Verdict("memory_gb", memory_gb, gate.max_memory_gb, memory_gb <= gate.max_memory_gb),
    ]


def deploy(gguf_path: Path, release: dict[str, Any], settings: DeploymentSettings, home: Path,
           probe_messages: list[dict[str, str]], log: Callable[[str], None]) -> dict[str, Any]:
    """Serve `gguf_path` as the new release, or raise DeploymentRejected leaving the old one."""
    previous = read_status(home)
    handle = servers.start_llamacpp(gguf_path, settings.model_name, settings.host, settings.port,
                                    settings.n_threads, settings.n_ctx, home / "server")
    log(f"candidate server pid {handle.pid} on {handle.endpoint}, probing")
    try:
        result = probe(handle.endpoint, handle.pid, settings.model_name, probe_messages,
                       settings.quality_gate.health_timeout_s)
        failed = [v for v in verdicts(result, settings.quality_gate) if not v.passed]
        if failed:
            raise DeploymentRejected("; ".join(f"{v.gate} {v.value:.3g} > {v.threshold:g}" for v in failed))
    except Exception:
        servers.stop(handle.pid)
        raise
    status = {
        **release,
        "model_name": settings.model_name,
        "model_path": str(gguf_path),
        "endpoint": handle.endpoint,
        "server": "llamacpp",
        "pid": handle.pid,
        "log_file": str(handle.log_file),
        "status": "serving",
        "deployed_at": time.time(),
        "previous_version": previous.get("version") if previous else None,
        "probe": asdict(result),
        "probe_request": probe_messages,
    }
    write_json(status_path(home), status)
    if previous and previous.get("pid") not in (None, handle.pid):
        servers.stop(previous["pid"])
        log(f"stopped the previous release {previous.get('version')} (pid {previous['pid']})")
    return status
