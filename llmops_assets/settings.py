"""The one typed pipeline configuration: `pipeline.yaml` (or `$LLMOPS_CONFIG`), composed of the
settings model each stage owns beside its code (`<stage>/config.py`).

Every gate threshold lives in those models; checks read it from the loaded settings and report
it next to the measured value, so the UI says why a gate passed or failed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from llmops_assets.core.config import SEED_DIR, StrictModel, resolve_paths
from llmops_assets.core.costs import Constraints
from llmops_assets.data.config import DataSettings
from llmops_assets.deployment.config import DeploymentSettings
from llmops_assets.evaluation.config import EvaluationSettings
from llmops_assets.training.config import TrainingSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "pipeline.yaml"


class DomainSettings(StrictModel):
    tools_file: Path = SEED_DIR / "task_api_tools.json"
    system_prompt: str


class ClusterSettings(StrictModel):
    """The code location on Kubernetes (`LLMOPS_ENVIRONMENT=kubernetes`): the image each step pod
    runs, where, with which configuration, and what a step asks for unless its stage asks for
    more (training: `stages.training.kubernetes`). Ignored on one machine."""

    namespace: str = "llmops"
    image: str = Field("llmops-assets:0.1.0", description="The CPU image (deploy/Dockerfile).")
    gpu_image: str = Field("llmops-assets-cuda:0.1.0",
                           description="The image of steps that request GPUs (deploy/Dockerfile.cuda).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    env_config_maps: list[str] = Field(["llmops-env"], description="ConfigMaps every step pod reads its environment from "
                                                                  "(LLMOPS_ARTIFACTS, LLMOPS_CONFIG, ...).")
    env_secrets: list[str] = Field(["llmops-secrets"], description="Secrets likewise (object-store credentials, WANDB_API_KEY).")
    cpu: str = "1"
    memory: str = "4Gi"


class Stages(StrictModel):
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    deployment: DeploymentSettings = DeploymentSettings()


class PipelineSettings(StrictModel):
    project: str = "llmops-assets"
    domain: DomainSettings
    stages: Stages = Stages()
    kubernetes: ClusterSettings = ClusterSettings()
    constraints: Constraints = Constraints()

    @model_validator(mode="after")
    def _serving_pods_in_the_cluster(self) -> PipelineSettings:
        """The serving pods run where the steps run, from the same image and environment, unless
        stages.deployment.kubernetes says otherwise."""
        pod, cluster = self.stages.deployment.kubernetes, self.kubernetes
        pod.namespace = pod.namespace or cluster.namespace
        pod.image = pod.image or cluster.image
        pod.env_config_maps = pod.env_config_maps or list(cluster.env_config_maps)
        pod.env_secrets = pod.env_secrets or list(cluster.env_secrets)
        return self

    def gates_that_cannot_fail(self) -> dict[str, str]:
        """`asset:check` -> why, for each blocking gate whose threshold this configuration set so
        loose that no measurement can fail it (test profiles relax gates to check plumbing):
        `llmops check` prints it beside the verdict, so a PASS is never mistaken for evidence."""
        data, training = self.stages.data.quality_gate, self.stages.training
        evaluation, deployment = self.stages.evaluation, self.stages.deployment.quality_gate
        rules = {
            "curated_dataset:enough_examples": (data.min_examples <= 1, f"min_examples {data.min_examples}"),
            "curated_dataset:format_valid": (data.min_format_valid_ratio == 0, "min_format_valid_ratio 0"),
            "curated_dataset:few_duplicates": (data.max_duplicate_ratio >= 1, "max_duplicate_ratio 1"),
            "dpo_adapter:preference_accuracy": (training.dpo.enabled and training.dpo.quality_gate.min_reward_accuracy == 0,
                                                "min_reward_accuracy 0"),
            "eval_report:task_accuracy": (evaluation.quality_gate.min_task_accuracy == 0,
                                          "min_task_accuracy 0: only min_test_examples can fail it"),
            "eval_report:llm_judge": (evaluation.quality_gate.min_judge_score == 0
                                      or evaluation.judge.resolved_kind() == "off",
                                      "min_judge_score 0" if evaluation.judge.resolved_kind() != "off"
                                      else "the judge is off"),
            "eval_report:no_regression": (evaluation.quality_gate.max_regression >= 1
                                          and evaluation.quality_gate.max_safety_regression >= 1,
                                          "max_regression 1 and max_safety_regression 1"),
            "eval_report:safety": (evaluation.quality_gate.max_safety_failure_rate >= 1
                                   or not evaluation.quality_gate.block_on_safety,
                                   "max_safety_failure_rate 1" if evaluation.quality_gate.block_on_safety
                                   else "block_on_safety off: it only warns"),
            "gguf_model:gguf_fidelity": (deployment.max_fidelity_drop >= 1, "max_fidelity_drop 1"),
            **{f"{asset}:within_run_budget": (self.constraints.max_time_hours is None and self.constraints.max_cost is None,
                                              "no budget set (constraints)")
               for asset in ("cpt_model", "sft_adapter", "dpo_adapter")},
        }
        return {gate: f"cannot fail: {why}" for gate, (relaxed, why) in rules.items() if relaxed}


class ConfigError(ValueError):
    """The pipeline config cannot be used: the message names the file, the field and the fix."""


def config_path() -> Path:
    return Path(os.environ.get("LLMOPS_CONFIG", DEFAULT_CONFIG))


def load_settings(path: str | Path | None = None) -> PipelineSettings:
    """Parse and validate the pipeline config; every relative path resolves against its folder."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline config: {exc}") from exc
    try:
        settings = PipelineSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid pipeline config: {problems}") from exc
    resolve_paths(settings, path.resolve().parent)
    return settings
