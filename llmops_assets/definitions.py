"""The code location: every asset, gate, job and resource of the pipeline."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from llmops_assets.automation import SCHEDULES, SENSORS
from llmops_assets.data.assets import curated_dataset, raw_examples
from llmops_assets.data.checks import data_checks
from llmops_assets.deployment.assets import deployed_model, gguf_model, merged_model
from llmops_assets.deployment.checks import deployment_checks
from llmops_assets.evaluation.assets import eval_report
from llmops_assets.evaluation.checks import evaluation_checks
from llmops_assets.jobs import JOBS
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets.training.assets import base_model, cpt_model, dpo_adapter, sft_adapter
from llmops_assets.training.checks import training_checks

ASSETS = [raw_examples, curated_dataset, base_model, cpt_model, sft_adapter, dpo_adapter, eval_report, merged_model,
          gguf_model, deployed_model]
CHECKS = [*data_checks, *training_checks, *evaluation_checks, *deployment_checks]

def build_definitions(pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None) -> Definitions:
    """The Definitions with the given resources (tests pass a test config and a temp store)."""
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        sensors=SENSORS,
        schedules=SCHEDULES,
        resources={"pipeline": pipeline or PipelineConfig(), "artifacts": artifacts or ArtifactStoreResource()},
        # Steps share one process: the multiprocess executor costs seconds per step and models
        # are passed through the artifact store anyway. On Kubernetes use k8s_job_executor.
        executor=in_process_executor,
    )


defs = build_definitions()
