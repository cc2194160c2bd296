"""The deployment stage's settings (`stages.deployment`): export, server, probes, gates."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from llmops_assets.core.config import StrictModel, UnmetRequirement
from llmops_assets.core.inference import is_loopback


class DeploymentGate(StrictModel):
    max_first_token_ms: float = Field(500, gt=0)
    max_memory_gb: float = Field(8, gt=0)
    max_fidelity_drop: float = Field(
        0.05, ge=0, le=1,
        description="The GGUF's tool-call accuracy may be at most this much below the evaluated model's.",
    )
    health_timeout_s: float = Field(60, gt=0)


class GatewaySettings(StrictModel):
    """The OpenAI-compatible gateway every client calls: one endpoint across releases."""

    port: int = Field(0, ge=0, le=65535, description="0: a free port picked at the first deployment, then kept "
                                                      "(recorded in $LLMOPS_HOME/gateway/gateway.json).")
    add_system_prompt: bool = Field(
        True, description="Give a request without a system prompt the domain's, as an Ollama Modelfile SYSTEM does.")
    request_log: str = Field("", description="SQLAlchemy URL of the request log (postgresql+psycopg2://... to share "
                                             "one); empty: SQLite in $LLMOPS_HOME/gateway/requests.sqlite.")
    requests_per_minute: int = Field(600, ge=1, description="Per API key (or per anonymous client): 429 beyond it.")
    cost_per_1k_tokens: float = Field(0.0, ge=0, description="Priced into the per-key cost counter of /metrics.")
    upstream_timeout_s: float = Field(120, gt=0)
    drain_s: float = Field(5.0, ge=0, description="A release that stops taking requests (retired, rolled back) keeps "
                                                   "its server this long for the requests in flight; the gateway "
                                                   "re-reads the registry every half second.")


class CanaryGate(StrictModel):
    """Non-inferiority margins of the live comparison: a challenger is promoted once every KPI is
    shown no worse than the champion's by more than its margin, rolled back once any KPI is shown
    worse at all. `alpha` bounds each error (a false promotion, a false rollback) across all KPIs,
    however often the analysis looks."""

    alpha: float = Field(0.05, gt=0, lt=0.5)
    probe_accuracy_margin: float = Field(0.05, gt=0, le=1, description="Exact-match accuracy on labelled probes.")
    error_rate_margin: float = Field(0.02, gt=0, le=1, description="Share of requests that failed.")
    slow_rate_margin: float = Field(
        0.05, gt=0, le=1, description="Share of requests whose first token took over max_first_token_ms.")
    invalid_tool_call_margin: float = Field(0.05, gt=0, le=1,
                                            description="Share of answers holding a call the schema rejects.")


class PromotionSettings(StrictModel):
    """How a candidate that passed every gate becomes the champion."""

    mode: Literal["immediate", "canary", "shadow"] = Field(
        "immediate", description="immediate: it replaces the champion at once. canary: it takes traffic_steps[0] of "
                                 "the traffic (sticky per user/session) until canary_analysis decides. shadow: it "
                                 "answers a copy of every request, never returned, until canary_analysis decides.")
    traffic_steps: list[float] = Field(
        [0.1, 0.5], min_length=1, description="The canary's traffic share at each step; a promote decision at the "
                                              "last step makes it the champion.")
    min_requests_per_step: int = Field(20, ge=0, description="Requests the canary answers at a step before the next.")
    probes_per_analysis: int = Field(
        10, ge=0, description="Labelled prompts (the test split) sent to champion and challenger at each analysis.")
    analysis_interval_s: int = Field(60, ge=10, description="How often the canary sensor analyses a live challenger.")
    quality_gate: CanaryGate = CanaryGate()

    @model_validator(mode="after")
    def _steps_rise(self) -> PromotionSettings:
        steps = self.traffic_steps
        if any(not 0 < w < 1 for w in steps) or steps != sorted(set(steps)):
            raise ValueError(f"traffic_steps {steps}: shares strictly between 0 and 1, rising")
        return self


class ServingPodSettings(StrictModel):
    """With `server: kubernetes`, each release's model server and the gateway run as Deployments
    with a Service. Namespace, image and environment left empty are the code location's
    (`kubernetes` at the top of the config, filled in when the config loads)."""

    namespace: str = ""
    image: str = ""
    env_config_maps: list[str] = []
    env_secrets: list[str] = []
    cpu: str = "1"
    memory: str = Field("2Gi", description="The container's memory limit: the deployment gate's memory_gb reads it "
                                           "(Kubernetes kills a container above it).")
    port: int = Field(8080, ge=1, le=65535, description="The port the containers listen on and the Services expose.")


class DeploymentSettings(StrictModel):
    model_name: str = "task-api-assistant"
    quantization: Literal["Q4_K_M", "Q5_K_M", "Q8_0", "F16"] = "Q4_K_M"
    server: Literal["auto", "llamacpp", "ollama", "kubernetes"] = Field(
        "auto", description="llamacpp: the embedded llama.cpp server; ollama: the Ollama server at OLLAMA_HOST; "
                            "auto: Ollama when it answers, else llama.cpp; kubernetes: a Deployment and Service per "
                            "release, and the gateway as another (LLMOPS_ENVIRONMENT=kubernetes needs it).")
    host: str = Field("127.0.0.1", description="Where the embedded server listens: this machine only, unless "
                                                "allow_remote_clients is on.")
    allow_remote_clients: bool = Field(
        False, description="Listen on a non-loopback host: needs api_key_env, and every client must send the key.")
    api_key_env: str = Field("", description="Environment variable holding the key clients must send (Bearer); "
                                             "required with allow_remote_clients.")
    allow_remote_ollama: bool = Field(
        False, description="Deploy to an OLLAMA_HOST on another machine (the GGUF is uploaded there); off: only a "
                           "loopback Ollama is used.")
    port: int = Field(0, ge=0, le=65535, description="0: pick a free port.")
    n_threads: int = Field(1, ge=1)
    n_ctx: int = Field(2048, ge=128)
    kubernetes: ServingPodSettings = ServingPodSettings()
    gateway: GatewaySettings = GatewaySettings()
    promotion: PromotionSettings = PromotionSettings()
    quality_gate: DeploymentGate = DeploymentGate()

    @model_validator(mode="after")
    def _exposed_only_on_purpose(self) -> DeploymentSettings:
        if not is_loopback(self.host) and not self.allow_remote_clients:
            raise ValueError(f"host {self.host} would expose an unauthenticated model server beyond this machine: "
                             "keep 127.0.0.1, or set allow_remote_clients: true with api_key_env")
        if self.allow_remote_clients and not self.api_key_env:
            raise ValueError("allow_remote_clients needs api_key_env: the variable holding the key clients must send")
        return self

    def api_key(self) -> str:
        """The key clients must send, from the environment; '' when none is configured."""
        if not self.api_key_env:
            return ""
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise UnmetRequirement(f"stages.deployment.api_key_env names {self.api_key_env}, which is not set")
        return key
