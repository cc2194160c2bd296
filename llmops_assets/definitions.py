"""The code location: every asset, gate, job, sensor and schedule under `orchestration/`, found by
Dagster's definitions autoloading, bound to the resources and executor of the environment."""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_from_defs_folder

from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets.settings import PROJECT_ROOT


def build_definitions(pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None) -> Definitions:
    """The Definitions with the given resources (tests pass a test config and a temp store)."""
    return Definitions.merge(
        load_from_defs_folder(path_within_project=PROJECT_ROOT),
        Definitions(
            resources={"pipeline": pipeline or PipelineConfig(), "artifacts": artifacts or ArtifactStoreResource()},
            # Steps share one process: the multiprocess executor costs seconds per step and models
            # are passed through the artifact store anyway. On Kubernetes use k8s_job_executor.
            executor=in_process_executor,
        ),
    )


defs = build_definitions()
