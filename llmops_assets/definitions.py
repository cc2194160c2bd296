"""The code location: every asset, gate, job and resource of the pipeline."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from llmops_assets.data.assets import curated_dataset, raw_examples
from llmops_assets.data.checks import data_checks
from llmops_assets.deployment.assets import deployed_model, gguf_model, merged_model
from llmops_assets.deployment.checks import deployment_checks
from llmops_assets.evaluation.assets import eval_report
from llmops_assets.evaluation.checks import evaluation_checks
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets.training.assets import base_model, sft_adapter
from llmops_assets.training.checks import training_checks

ASSETS = [raw_examples, curated_dataset, base_model, sft_adapter, eval_report, merged_model, gguf_model, deployed_model]
CHECKS = [*data_checks, *training_checks, *evaluation_checks, *deployment_checks]

full_pipeline = define_asset_job(
    "full_pipeline", selection=AssetSelection.all(),
    description="Data -> training -> evaluation -> deployment, every gate blocking what follows.",
)

rollback = define_asset_job(
    "rollback", selection=AssetSelection.assets("deployed_model"),
    config={"ops": {"deployed_model": {"config": {"rollback_to": "previous"}}}},
    description="Serve an earlier release again from the artifact store (default: the previous one); no retraining.",
)


def build_definitions(pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None) -> Definitions:
    """The Definitions with the given resources (tests pass a test config and a temp store)."""
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[full_pipeline, rollback],
        resources={"pipeline": pipeline or PipelineConfig(), "artifacts": artifacts or ArtifactStoreResource()},
        # Steps share one process: the multiprocess executor costs seconds per step and models
        # are passed through the artifact store anyway. On Kubernetes use k8s_job_executor.
        executor=in_process_executor,
    )


defs = build_definitions()
