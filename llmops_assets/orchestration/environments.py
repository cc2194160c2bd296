"""Where the code location runs, chosen by `LLMOPS_ENVIRONMENT`: the resources and executor of
each environment, around the same assets, checks, jobs and sensors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dagster import in_process_executor

from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig


@dataclass(frozen=True)
class Environment:
    resources: dict[str, Any]
    executor: Any


def local(pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None) -> Environment:
    """One machine: steps share one process (the multiprocess executor costs seconds per step,
    and models pass through the artifact store anyway); artifacts in `$LLMOPS_ARTIFACTS` or
    `$LLMOPS_HOME/artifacts`."""
    return Environment({"pipeline": pipeline or PipelineConfig(), "artifacts": artifacts or ArtifactStoreResource()},
                       in_process_executor)


ENVIRONMENTS = {"local": local}


def current(name: str | None = None, **resources) -> Environment:
    name = name or os.environ.get("LLMOPS_ENVIRONMENT", "local")
    if name not in ENVIRONMENTS:
        raise ValueError(f"LLMOPS_ENVIRONMENT={name!r} is not an environment; choose one of {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[name](**resources)
