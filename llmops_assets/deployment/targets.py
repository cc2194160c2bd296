"""Where a release is served: the embedded llama.cpp server, an Ollama server, or a Deployment
and Service on Kubernetes (`kubernetes.py`).

Both follow the same life cycle, so the release logic is written once: `start` a candidate next
to what is served, `probe` it, then `promote` it (the previous one stops being served) or
`discard` it (nothing changed).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmops_assets.core.config import UnmetRequirement
from llmops_assets.core.inference import is_loopback
from llmops_assets.deployment import servers
from llmops_assets.deployment.config import DeploymentSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    healthy_after_s: float
    first_token_ms: float
    memory_bytes: int


@dataclass
class Candidate:
    server: str
    endpoint: str
    model: str  # the name requests use
    pid: int | None = None
    tag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, status: dict[str, Any]) -> Candidate:
        """The candidate that became the served release `status`."""
        return cls(status["server"], status["endpoint"], status["model"], status.get("pid"), status.get("tag"),
                   extra={k: status[k] for k in ("deployment", "namespace") if status.get(k)})

    def fields(self) -> dict[str, Any]:
        return {"server": self.server, "endpoint": self.endpoint, "model": self.model, "pid": self.pid,
                "tag": self.tag, **self.extra}


class Target(Protocol):
    name: str

    def start(self, gguf_path: Path, ollama_spec: dict[str, Any], release_number: int) -> Candidate: ...
    def probe(self, candidate: Candidate, messages: list[dict[str, str]]) -> Probe: ...
    def promote(self, candidate: Candidate) -> None: ...
    def retire(self, status: dict[str, Any]) -> None: ...
    def discard(self, candidate: Candidate) -> None: ...
    def serving(self, status: dict[str, Any]) -> bool: ...


def select_target(settings: DeploymentSettings, home: Path) -> Target:
    """`auto`: Ollama when `OLLAMA_HOST` (default 127.0.0.1:11434) is on this machine and answers,
    else llama.cpp. A remote OLLAMA_HOST is used only with `allow_remote_ollama`."""
    if settings.server == "llamacpp":
        return LlamaCppTarget(settings, home)
    if settings.server == "kubernetes":
        from llmops_assets.deployment.kubernetes import KubernetesTarget

        return KubernetesTarget(settings)
    host = ollama_host()
    if not is_loopback(host) and not settings.allow_remote_ollama:
        if settings.server == "ollama":
            raise UnmetRequirement(f"OLLAMA_HOST is {host}, another machine: the GGUF would be uploaded there. Set "
                               "stages.deployment.allow_remote_ollama: true if that is intended")
        return LlamaCppTarget(settings, home)  # auto never ships a model off this machine on its own
    if ollama_answers(host):
        return OllamaTarget(settings, host)
    if settings.server == "ollama":
        raise RuntimeError(f"stages.deployment.server is ollama, but no Ollama server answers at {host}: start one "
                           "(`ollama serve`), set OLLAMA_HOST to where it runs, or choose server: llamacpp")
    return LlamaCppTarget(settings, home)


def target_of(status: dict[str, Any], settings: DeploymentSettings, home: Path) -> Target:
    """The target that serves an existing release."""
    if status["server"] == "ollama":
        return OllamaTarget(settings, status["endpoint"])
    if status["server"] == "kubernetes":
        from llmops_assets.deployment.kubernetes import KubernetesTarget

        return KubernetesTarget(settings)
    return LlamaCppTarget(settings, home)


class LlamaCppTarget:
    name = "llamacpp"

    def __init__(self, settings: DeploymentSettings, home: Path):
        self.settings, self.home = settings, home

    def start(self, gguf_path: Path, ollama_spec: dict[str, Any], release_number: int) -> Candidate:
        s = self.settings
        if s.allow_remote_clients:
            log.warning(f"the model server listens on {s.host}, beyond this machine: clients must send the key in "
                        f"{s.api_key_env}")
        handle = servers.start_llamacpp(gguf_path, s.model_name, s.host, s.port, s.n_threads, s.n_ctx,
                                        self.home / "server", api_key=s.api_key())
        return Candidate(self.name, handle.endpoint, s.model_name, pid=handle.pid,
                         extra={"log_file": str(handle.log_file), "pid_started_at": handle.started_at})

    def probe(self, candidate: Candidate, messages: list[dict[str, str]]) -> Probe:
        key = self.settings.api_key()
        healthy = servers.wait_healthy(candidate.endpoint, candidate.pid, self.settings.quality_gate.health_timeout_s,
                                       key)
        servers.first_token_ms(candidate.endpoint, candidate.model, messages, key)  # pays one-off warm-up
        ttft = min(servers.first_token_ms(candidate.endpoint, candidate.model, messages, key) for _ in range(3))
        return Probe(healthy, ttft, servers.resident_memory_bytes(candidate.pid))

    def promote(self, candidate: Candidate) -> None:
        """Nothing to switch: clients find the new endpoint in deployment_status.json."""

    def retire(self, status: dict[str, Any]) -> None:
        servers.stop(status["pid"], status.get("pid_started_at"))

    def discard(self, candidate: Candidate) -> None:
        servers.stop(candidate.pid, candidate.extra.get("pid_started_at"))

    def serving(self, status: dict[str, Any]) -> bool:
        return status.get("pid") is not None and servers.is_our_server(status["pid"], status.get("pid_started_at"))


class OllamaTarget:
    """An Ollama server through the official client: the GGUF goes up as a blob, each release is
    tagged `<name>:v<N>`, and promotion copies that tag to `<name>:latest`."""

    name = "ollama"

    def __init__(self, settings: DeploymentSettings, host: str):
        import ollama

        self.settings, self.host = settings, host
        self.client = ollama.Client(host=host)

    def start(self, gguf_path: Path, ollama_spec: dict[str, Any], release_number: int) -> Candidate:
        tag = f"{self.settings.model_name}:v{release_number}"
        digest = self.client.create_blob(gguf_path)
        self.client.create(model=tag, files={gguf_path.name: digest}, template=ollama_spec["template"],
                           system=ollama_spec["system"], parameters=ollama_spec["parameters"], stream=False)
        return Candidate(self.name, self.host, tag, tag=tag, extra={"latest": f"{self.settings.model_name}:latest"})

    def probe(self, candidate: Candidate, messages: list[dict[str, str]]) -> Probe:
        started = time.monotonic()
        self.client.show(candidate.model)
        healthy = time.monotonic() - started
        self._first_token_ms(candidate.model, messages)  # loads the model
        ttft = min(self._first_token_ms(candidate.model, messages) for _ in range(3))
        loaded = [m for m in self.client.ps().models if m.model == candidate.model or m.name == candidate.model]
        if not loaded:
            raise RuntimeError(f"{candidate.model} answered but is not listed as loaded by {self.host}/api/ps")
        return Probe(healthy, ttft, int(loaded[0].size or 0))

    def _first_token_ms(self, model: str, messages: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        for chunk in self.client.chat(model=model, messages=messages, stream=True,
                                      options={"temperature": 0, "num_predict": 8}):
            if chunk.message.content:
                return (time.perf_counter() - started) * 1000
        raise RuntimeError(f"{model} on {self.host} streamed no content")

    def promote(self, candidate: Candidate) -> None:
        self.client.copy(candidate.tag, candidate.extra["latest"])

    def retire(self, status: dict[str, Any]) -> None:
        """Keep the old `<name>:v<N>` tag for rollback; `latest` already points elsewhere."""

    def discard(self, candidate: Candidate) -> None:
        self.client.delete(candidate.tag)

    def serving(self, status: dict[str, Any]) -> bool:
        try:
            self.client.show(status["tag"])
        except Exception:  # the client raises ResponseError or a connection error
            return False
        return True


def ollama_host() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    return host if host.startswith("http") else f"http://{host}"


def ollama_answers(host: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{host}/api/version", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False
