"""Training gate: blocking checks on `sft_adapter`, thresholds from `stages.training.quality_gate`."""


from dagster import AssetCheckExecutionContext, asset_check

from llmops_assets.artifacts import read_json
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig, gate_result
from llmops_assets.training.sft import validation_rise


def _metrics(context, artifacts: ArtifactStoreResource) -> dict:
    return read_json(artifacts.upstream(context, "sft_adapter").path / "training_metrics.json")


@asset_check(asset="sft_adapter", blocking=True, description="Training loss at the end of the run.")
def final_loss(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    value = _metrics(context, artifacts)["final_loss"]
    threshold = pipeline.settings.stages.training.quality_gate.max_final_loss
    return gate_result("final_loss", value, threshold, value < threshold)


@asset_check(asset="sft_adapter", blocking=True,
             description="Validation loss not diverging: last within max_validation_rise of the best.")
def validation_converging(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    history = [loss for _, loss in _metrics(context, artifacts)["validation_loss_history"]]
    rise = validation_rise(history)
    threshold = pipeline.settings.stages.training.quality_gate.max_validation_rise
    return gate_result("validation_rise", rise, threshold, rise <= threshold,
                       best=min(history, default=float("nan")), last=history[-1] if history else float("nan"))


@asset_check(asset="sft_adapter", blocking=True, description="Training finished within the time budget.")
def within_time_budget(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    metrics = _metrics(context, artifacts)
    minutes = metrics["training_time_seconds"] / 60
    threshold = pipeline.settings.stages.training.quality_gate.max_minutes
    passed = minutes <= threshold and not metrics["stopped_by_time_budget"]
    return gate_result("training_minutes", minutes, threshold, passed)


training_checks = [final_loss, validation_converging, within_time_budget]
