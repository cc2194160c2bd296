"""The one typed pipeline configuration: `pipeline.yaml` (or `$LLMOPS_CONFIG`), composed of the
settings model each stage owns beside its code (`<stage>/config.py`).

Every gate threshold lives in those models; checks read it from the loaded settings and report
it next to the measured value, so the UI says why a gate passed or failed.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from llmops_assets.core.config import SEED_DIR, StrictModel, resolve_paths
from llmops_assets.data.config import DataSettings
from llmops_assets.deployment.config import DeploymentSettings
from llmops_assets.evaluation.config import EvaluationSettings
from llmops_assets.training.config import TrainingSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "pipeline.yaml"


class DomainSettings(StrictModel):
    tools_file: Path = SEED_DIR / "task_api_tools.json"
    system_prompt: str


class Stages(StrictModel):
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    deployment: DeploymentSettings = DeploymentSettings()


class PipelineSettings(StrictModel):
    project: str = "llmops-assets"
    domain: DomainSettings
    stages: Stages = Stages()


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
