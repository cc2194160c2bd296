"""The deployment stage's settings (`stages.deployment`): export, server, probes, gates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmops_assets.core.config import StrictModel


class DeploymentGate(StrictModel):
    max_first_token_ms: float = Field(500, gt=0)
    max_memory_gb: float = Field(8, gt=0)
    max_fidelity_drop: float = Field(
        0.05, ge=0, le=1,
        description="The GGUF's tool-call accuracy may be at most this much below the evaluated model's.",
    )
    health_timeout_s: float = Field(60, gt=0)


class DeploymentSettings(StrictModel):
    model_name: str = "task-api-assistant"
    quantization: Literal["Q4_K_M", "Q5_K_M", "Q8_0", "F16"] = "Q4_K_M"
    server: Literal["auto", "llamacpp", "ollama"] = Field(
        "auto", description="llamacpp: the embedded llama.cpp server; ollama: the Ollama server at OLLAMA_HOST; "
                            "auto: Ollama when it answers, else llama.cpp.")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0: pick a free port.")
    n_threads: int = Field(1, ge=1)
    n_ctx: int = Field(2048, ge=128)
    quality_gate: DeploymentGate = DeploymentGate()
