"""Data gate: blocking checks on `curated_dataset`, thresholds from `stages.data.quality_gate`."""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from llmops_assets.core.contracts import DatasetReport, read_report
from llmops_assets.core.storage import read_json, read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.chunks import worker_count
from llmops_assets.data.curate import request_similarity, unaccounted_rows
from llmops_assets.data.published import gate_published
from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig, gate_result


def _report(context, artifacts: ArtifactStoreResource) -> DatasetReport:
    return read_report(DatasetReport, artifacts.upstream(context, "curated_dataset").path / "data_quality_report.json")


@asset_check(asset="curated_dataset", blocking=True, description="Enough examples to train on.")
def enough_examples(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    value, threshold = _report(context, artifacts).total_examples, pipeline.settings.stages.data.quality_gate.min_examples
    return gate_result("min_examples", value, threshold, value >= threshold)


@asset_check(asset="curated_dataset", blocking=True, description="Share of input rows that are format-valid.")
def format_valid(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    report = _report(context, artifacts)
    threshold = pipeline.settings.stages.data.quality_gate.min_format_valid_ratio
    quarantine = read_jsonl(artifacts.upstream(context, "curated_dataset").path / "quarantine.jsonl")
    return gate_result("format_valid_ratio", report.format_valid_ratio, threshold,
                       report.format_valid_ratio >= threshold, format_errors=report.format_errors,
                       first_errors=MetadataValue.json([{k: q[k] for k in ("origin", "reason")} for q in quarantine[:10]]))


@asset_check(asset="curated_dataset", blocking=True, description="Share of valid rows that repeat another row.")
def few_duplicates(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    value = _report(context, artifacts).dedup_ratio
    threshold = pipeline.settings.stages.data.quality_gate.max_duplicate_ratio
    return gate_result("duplicate_ratio", value, threshold, value < threshold)


@asset_check(asset="curated_dataset", blocking=True, description="Mean tokens per example (base model tokenizer).")
def token_length(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    report = _report(context, artifacts)
    threshold = pipeline.settings.stages.data.quality_gate.max_mean_tokens
    return gate_result("mean_tokens", report.avg_tokens, threshold, report.avg_tokens < threshold,
                       max_tokens=report.max_tokens)


LEAKAGE = AssetCheckKey(AssetKey("curated_dataset"), "no_split_leakage")
SUITE = AssetCheckKey(AssetKey("curated_dataset"), "great_expectations_suite")


@multi_asset_check(specs=[
    AssetCheckSpec(LEAKAGE.name, asset=LEAKAGE.asset_key, blocking=True,
                   description="No request of one split repeats or closely resembles a request of another."),
    AssetCheckSpec(SUITE.name, asset=SUITE.asset_key, blocking=True,
                   description="Great Expectations suite on the published splits: ids, role order, non-empty turns, "
                               "token bounds, known tools, tool calls that match the schema."),
])
def curated_dataset_published_splits(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                                     artifacts: ArtifactStoreResource):
    """Both gates that read the published split files, from one parallel pass over them."""
    data = pipeline.settings.stages.data
    path = artifacts.upstream(context, "curated_dataset").path
    threshold = data.quality_gate.leakage_similarity
    gates = gate_published(path, ToolSchema.from_file(pipeline.settings.domain.tools_file),
                           read_json(path / "token_counts.json"), data.quality_gate.max_example_tokens,
                           request_similarity(data.near_duplicates, threshold), worker_count(data.workers),
                           context.log.info)
    yield gate_result("leaked_requests", len(gates.leaked), 0, not gates.leaked, check=LEAKAGE,
                      similarity_threshold=threshold, examples=MetadataValue.json(gates.leaked[:10]))
    failed = [o for o in gates.outcomes if not o["success"]]
    yield gate_result("failed_expectations", len(failed), 0, not failed, check=SUITE,
                      examples_checked=gates.examples_checked, expectations=MetadataValue.json(gates.outcomes))


@asset_check(asset="curated_dataset", blocking=True,
             description="Every row raw_examples wrote is accounted for: accepted + quarantined + duplicates.")
def rows_accounted_for(context: AssetCheckExecutionContext, artifacts: ArtifactStoreResource):
    curated = artifacts.upstream(context, "curated_dataset")
    raw = artifacts.store.get("raw_examples", curated.manifest["inputs"]["raw_examples"]).metrics
    report = read_report(DatasetReport, curated.path / "data_quality_report.json")
    missing = unaccounted_rows(report.model_dump(), raw["records"] + raw["quarantined"])
    return gate_result("unaccounted_rows", missing, 0, missing == 0, input_rows=report.input_rows)
