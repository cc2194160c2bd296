"""The one typed place for pipeline configuration: `pipeline.yaml` (or `$LLMOPS_CONFIG`).

Every gate threshold lives here; checks read it from the loaded settings and report it next to
the measured value, so the UI says why a gate passed or failed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "pipeline.yaml"
PACKAGE_DIR = Path(__file__).resolve().parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainSettings(_Strict):
    tools_file: Path = PACKAGE_DIR / "data" / "seed" / "task_api_tools.json"
    system_prompt: str


class SplitSettings(_Strict):
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSettings:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError("split ratios train + validation + test must sum to 1")
        return self


class DataGate(_Strict):
    min_examples: int = Field(200, ge=1)
    min_format_valid_ratio: float = Field(1.0, ge=0, le=1)
    max_duplicate_ratio: float = Field(0.05, ge=0, le=1)
    max_mean_tokens: float = Field(2048, gt=0)
    max_example_tokens: int = Field(4096, ge=1, description="Per example, checked by the Great Expectations suite.")


class NearDuplicateSettings(_Strict):
    """MinHash LSH over word shingles of the normalized example; a match is a near duplicate when
    the estimated Jaccard similarity reaches `threshold`."""

    enabled: bool = True
    threshold: float = Field(0.85, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle_words: int = Field(3, ge=1)


class QualityFilterSettings(_Strict):
    """Rows that are well-formed but not worth training on; each filtered row is quarantined with why."""

    enabled: bool = True
    min_request_chars: int = Field(2, ge=0)
    max_chars: int = Field(20_000, ge=1, description="All contents of the example together.")
    max_repeated_word_share: float = Field(
        0.5, gt=0, le=1, description="The most frequent word's share of an example's words (from 8 words on).")
    allow_control_chars: bool = False


class SyntheticSettings(_Strict):
    """Self-Instruct expansion of the valid source examples up to `target_count`. `template` is the
    embedded Task API domain's deterministic generator; `llm` asks a model behind an
    OpenAI-compatible endpoint for new examples in the style of a few source ones. Either way each
    row passes the same validation as source rows; rows that fail are kept apart with their reason."""

    enabled: bool = False
    generator: Literal["template", "llm"] = "template"
    target_count: int = Field(800, ge=1, description="Valid examples after expansion: source rows plus synthetic ones.")
    seed: int = 13
    endpoint: str = Field("served", description="'served': the deployed model's endpoint (deployment_status.json); "
                                                "or a base URL such as http://127.0.0.1:11434/v1 (Ollama), "
                                                "https://api.openai.com/v1")
    model: str | None = Field(None, description="The model name the endpoint knows; 'served' uses the deployed alias.")
    api_key_env: str = "OPENAI_API_KEY"
    response_format: Literal["json_object", "json_schema", "none"] = Field(
        "json_object", description="How the answer is constrained to the example schema: json_object (llama.cpp "
                                   "server), json_schema (OpenAI, vLLM, Ollama), none (parse the text).")
    few_shot: int = Field(4, ge=1, description="Source examples shown in each request.")
    temperature: float = Field(0.9, ge=0)
    max_attempts_per_example: int = Field(
        4, ge=1, description="Requests per wanted example before the generator gives up, reporting what it has.")


class DataSettings(_Strict):
    sources: list[Path] = [PACKAGE_DIR / "data" / "seed" / "task_api_examples.jsonl"]
    workers: int = Field(0, ge=0, description="processes for ingest and curation of large sources; 0: one per core")
    synthetic: SyntheticSettings = SyntheticSettings()
    near_duplicates: NearDuplicateSettings = NearDuplicateSettings()
    quality_filters: QualityFilterSettings = QualityFilterSettings()
    split: SplitSettings = SplitSettings()
    quality_gate: DataGate = DataGate()


class LoraSettings(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    load_in_4bit: bool = Field(False, description="QLoRA: the frozen base in 4 bit (the unsloth backend, on CUDA).")


class TrainingGate(_Strict):
    max_final_loss: float = Field(0.5, ge=0)
    max_validation_rise: float = Field(
        0.10, ge=0,
        description="'Not diverging': the last validation loss may exceed the best one by at most this fraction.",
    )
    max_minutes: float = Field(120, gt=0)


class TrackingSettings(_Strict):
    wandb: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline: runs under $LLMOPS_HOME/wandb, synced later with `wandb sync`; "
                               "online needs WANDB_API_KEY in the environment (never in this file).")
    project: str = "llmops-assets"


class KubernetesSettings(_Strict):
    """Resources the training step asks for under dagster-k8s (op tags; ignored when run locally)."""

    gpus: int = Field(1, ge=0)
    cpu: str = "4"
    memory: str = "16Gi"


class ContinuedPretrainingGate(_Strict):
    max_perplexity_ratio: float = Field(
        1.0, gt=0, description="Held-out domain-text perplexity after / before; above this the stage made it worse.")


class ContinuedPretrainingSettings(_Strict):
    """Optional LoRA continued pretraining on raw domain text, merged into the model SFT starts from.
    Off: `cpt_model` is the base model, unchanged."""

    enabled: bool = False
    corpus: list[Path] = [PACKAGE_DIR / "data" / "seed" / "task_api_corpus.md"]
    block_size: int = Field(64, ge=16, description="Tokens per training sequence (the corpus is cut into blocks).")
    max_steps: int = Field(20, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    validation_share: float = Field(0.2, gt=0, lt=1, description="Share of the blocks held out to measure perplexity.")
    quality_gate: ContinuedPretrainingGate = ContinuedPretrainingGate()


class PreferenceGate(_Strict):
    min_reward_accuracy: float = Field(
        0.6, ge=0, le=1, description="Held-out pairs whose chosen answer the trained policy prefers (DPO implicit reward).")


class PreferenceSettings(_Strict):
    """Optional DPO on preference pairs, continuing the SFT adapter against a frozen copy of it.
    Off: `dpo_adapter` is the SFT adapter, unchanged."""

    enabled: bool = False
    preferences: list[Path] = [PACKAGE_DIR / "data" / "seed" / "task_api_preferences.jsonl"]
    beta: float = Field(0.1, gt=0, description="How far the policy may move from the SFT reference (higher: less).")
    max_steps: int = Field(20, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    validation_share: float = Field(0.2, gt=0, lt=1)
    quality_gate: PreferenceGate = PreferenceGate()


class TrainingSettings(_Strict):
    base_model: str = Field(
        "smollm2-135m-instruct",
        description="An embedded profile (smollm2-135m-instruct, gemma3-270m, tiny-llama), a local HF folder, or a hub id.",
    )
    backend: Literal["auto", "trl", "unsloth"] = "auto"
    lora: LoraSettings = LoraSettings()
    epochs: float = Field(2.0, gt=0)
    max_steps: int = Field(-1, description="Positive: stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_seq_length: int = Field(512, ge=16)
    eval_steps: int = Field(20, ge=1)
    checkpoint_steps: int = Field(
        0, ge=0, description="Save a resumable checkpoint every N steps (0: at every evaluation). A re-materialization "
                             "after a crash or kill resumes from the last one.")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after this many evaluations in a row without the validation loss improving by "
                             "early_stopping_min_delta, and keep the best checkpoint; 0 turns early stopping off.")
    early_stopping_min_delta: float = Field(0.0, ge=0)
    bf16_on_cpu: bool = True
    seed: int = 42
    tracking: TrackingSettings = TrackingSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    continued_pretraining: ContinuedPretrainingSettings = ContinuedPretrainingSettings()
    dpo: PreferenceSettings = PreferenceSettings()
    quality_gate: TrainingGate = TrainingGate()

    def stage_config(self, stage: Literal["cpt", "sft", "dpo"]) -> dict:
        """The settings that shape one training stage's artifact, its reuse key: what all stages
        share plus its own (tracking and Kubernetes requests change no weights)."""
        shared = {"backend", "lora", "epochs", "batch_size", "gradient_accumulation_steps", "max_seq_length",
                  "eval_steps", "checkpoint_steps", "bf16_on_cpu", "seed", "quality_gate"}
        own = {"cpt": {"continued_pretraining"}, "dpo": {"dpo"},
               "sft": {"max_steps", "learning_rate", "early_stopping_patience", "early_stopping_min_delta"}}[stage]
        return self.model_dump(mode="json", include=shared | own)

    @model_validator(mode="after")
    def _checkpoints_at_evaluations(self) -> TrainingSettings:
        every = self.checkpoint_steps or self.eval_steps
        if self.early_stopping_patience and every % self.eval_steps:
            raise ValueError(f"early stopping keeps the best evaluated checkpoint: checkpoint_steps ({every}) "
                             f"must be a multiple of eval_steps ({self.eval_steps})")
        return self


class EvaluationGate(_Strict):
    min_task_accuracy: float = Field(0.90, ge=0, le=1)
    min_judge_score: float = Field(0.85, ge=0, le=1)
    max_regression: float = Field(
        0.05, ge=0, le=1,
        description="A metric regressed when it fell more than this below the champion and its whole "
                    "bootstrap interval lies below zero.",
    )
    min_safety_pass_rate: float = Field(1.0, ge=0, le=1)
    block_on_safety: bool = Field(
        True, description="False reports a failed safety gate as a WARN that does not stop deployment.")


class JudgeSettings(_Strict):
    kind: Literal["local", "openai"] = Field(
        "local", description="local: the base model read as a yes/no classifier; openai: any "
                             "OpenAI-compatible endpoint (Ollama: http://127.0.0.1:11434/v1).")
    endpoint: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    min_agreement: float = Field(
        0.75, ge=0, le=1, description="Balanced agreement with exact match below which the judge is untrusted.")
    on_untrusted: Literal["warn", "fail"] = Field(
        "warn", description="An untrusted judge's gate fails either way; warn does not block what follows.")


class EvaluationSettings(_Strict):
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    safety_suite: Path = PACKAGE_DIR / "evaluation" / "suites" / "task_api_safety.jsonl"
    bootstrap_samples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    judge: JudgeSettings = JudgeSettings()
    quality_gate: EvaluationGate = EvaluationGate()


class DeploymentGate(_Strict):
    max_first_token_ms: float = Field(500, gt=0)
    max_memory_gb: float = Field(8, gt=0)
    max_fidelity_drop: float = Field(
        0.05, ge=0, le=1,
        description="The GGUF's tool-call accuracy may be at most this much below the evaluated model's.",
    )
    health_timeout_s: float = Field(60, gt=0)


class DeploymentSettings(_Strict):
    model_name: str = "task-api-assistant"
    quantization: Literal["Q4_K_M", "Q5_K_M", "Q8_0", "F16"] = "Q4_K_M"
    server: Literal["auto", "llamacpp"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0: pick a free port.")
    n_threads: int = Field(1, ge=1)
    n_ctx: int = Field(2048, ge=128)
    quality_gate: DeploymentGate = DeploymentGate()


class Stages(_Strict):
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    deployment: DeploymentSettings = DeploymentSettings()


class PipelineSettings(_Strict):
    project: str = "llmops-assets"
    domain: DomainSettings
    stages: Stages = Stages()


def config_path() -> Path:
    return Path(os.environ.get("LLMOPS_CONFIG", DEFAULT_CONFIG))


def load_settings(path: str | Path | None = None) -> PipelineSettings:
    """Parse and validate the pipeline config; relative paths resolve against its folder."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the pipeline config: {exc}") from exc
    settings = PipelineSettings.model_validate(raw)
    base = path.resolve().parent
    settings.domain.tools_file = (base / settings.domain.tools_file).resolve()
    settings.stages.data.sources = [(base / s).resolve() for s in settings.stages.data.sources]
    settings.stages.evaluation.safety_suite = (base / settings.stages.evaluation.safety_suite).resolve()
    training = settings.stages.training
    training.continued_pretraining.corpus = [(base / c).resolve() for c in training.continued_pretraining.corpus]
    training.dpo.preferences = [(base / f).resolve() for f in training.dpo.preferences]
    return settings
