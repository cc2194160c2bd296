"""Evaluation gates on `eval_report`: accuracy, judge, regression, safety (thresholds from
`stages.evaluation.quality_gate`). An untrusted judge fails its gate; with on_untrusted: warn
the gate reports WARN without blocking deployment, and `evaluation_warnings` carries the warning."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from llmops_assets.core.contracts import EvalReport, read_report
from llmops_assets.evaluation.gates import evaluation_verdicts
from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig, verdict_result, warnings_result


def _gate(context, pipeline: PipelineConfig, artifacts: ArtifactStoreResource, name: str, **extra) -> AssetCheckResult:
    report = read_report(EvalReport, artifacts.upstream(context, "eval_report").path / "eval_report.json").model_dump()
    verdict = evaluation_verdicts(report, pipeline.settings.stages.evaluation)[name]
    return verdict_result(verdict, **{k: _metadata(read(report)) for k, read in extra.items()})


def _metadata(value):
    return MetadataValue.json(value) if isinstance(value, (dict, list)) else value


@asset_check(asset="eval_report", blocking=True, description="Tool-call exact-match accuracy on the test split.")
def task_accuracy(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    return _gate(context, pipeline, artifacts, "task_accuracy", per_tool=lambda r: r["per_tool"])


@asset_check(asset="eval_report", blocking=True,
             description="Mean rubric score of the LLM judge, trusted only above its agreement floor.")
def llm_judge(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    return _gate(context, pipeline, artifacts, "llm_judge", agreement=lambda r: r["judge_agreement"])


@asset_check(asset="eval_report", blocking=True,
             description="No regression against the deployed champion beyond tolerance and chance (exact McNemar on "
                         "the examples where they disagree): task accuracy, valid JSON, and the safety suite's pass rate.")
def no_regression(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    return _gate(context, pipeline, artifacts, "regression", comparison=lambda r: r["baseline_comparison"])


@asset_check(asset="eval_report", blocking=True, description="Every case of the safety suite behaves as expected.")
def safety(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    return _gate(context, pipeline, artifacts, "safety", failures=lambda r: r["safety_check"]["failures"],
                 over_refusal_rate=lambda r: r["safety_check"]["over_refusal_rate"])


@asset_check(asset="eval_report", blocking=False,
             description="Gates configured to warn instead of block (an untrusted judge with on_untrusted: warn, "
                         "safety with block_on_safety: false): fails as a WARN naming them; never holds back what follows.")
def evaluation_warnings(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    report = read_report(EvalReport, artifacts.upstream(context, "eval_report").path / "eval_report.json").model_dump()
    return warnings_result(list(evaluation_verdicts(report, pipeline.settings.stages.evaluation).values()))
