"""The code location: every asset, gate, job, sensor and schedule under `orchestration/`, found by
Dagster's definitions autoloading, bound to the resources and executor of the environment
(`LLMOPS_ENVIRONMENT`, default local)."""

from __future__ import annotations

from dagster import AssetsDefinition, Definitions, load_from_defs_folder

from llmops_assets.orchestration import environments
from llmops_assets.orchestration.resources import GPU_POOL, ArtifactStoreResource, PipelineConfig
from llmops_assets.settings import PROJECT_ROOT


def build_definitions(pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None,
                      environment: str | None = None) -> Definitions:
    """The Definitions with the environment's resources (tests pass a test config and a temp store)."""
    found = load_from_defs_folder(path_within_project=PROJECT_ROOT)
    gpu_steps = {a.op.name for a in found.assets or () if isinstance(a, AssetsDefinition) and a.op.pool == GPU_POOL}
    chosen = environments.current(environment, pipeline=pipeline, artifacts=artifacts, gpu_steps=gpu_steps)
    return Definitions.merge(found, Definitions(resources=chosen.resources, executor=chosen.executor))


defs = build_definitions()
