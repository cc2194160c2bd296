"""Evaluation gate: blocking checks on `eval_report`, thresholds from `stages.evaluation.quality_gate`."""


from dagster import AssetCheckExecutionContext, MetadataValue, asset_check

from llmops_assets.artifacts import read_json
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig, gate_result


@asset_check(asset="eval_report", blocking=True, description="Tool-call exact-match accuracy on the test split.")
def task_accuracy(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    report = read_json(artifacts.upstream(context, "eval_report").path / "eval_report.json")
    threshold = pipeline.settings.stages.evaluation.quality_gate.min_task_accuracy
    return gate_result("task_accuracy", report["task_accuracy"], threshold, report["task_accuracy"] >= threshold,
                       n=report["n"], per_tool=MetadataValue.json(report["per_tool"]))


evaluation_checks = [task_accuracy]
