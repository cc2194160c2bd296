"""Data gate: blocking checks on `curated_dataset`, thresholds from `stages.data.quality_gate`."""


from dagster import AssetCheckExecutionContext, MetadataValue, asset_check

from llmops_assets.core.contracts import DatasetReport, read_report
from llmops_assets.core.storage import read_json, read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.curate import SPLITS, leaked_requests, request_similarity, unaccounted_rows
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


@asset_check(asset="curated_dataset", blocking=True,
             description="No request of one split repeats or closely resembles a request of another.")
def no_split_leakage(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    data = pipeline.settings.stages.data
    path = artifacts.upstream(context, "curated_dataset").path
    threshold = data.quality_gate.leakage_similarity
    leaked = leaked_requests({name: read_jsonl(path / f"{name}.jsonl") for name in SPLITS},
                             request_similarity(data.near_duplicates, threshold))
    return gate_result("leaked_requests", len(leaked), 0, not leaked, similarity_threshold=threshold,
                       examples=MetadataValue.json(leaked[:10]))


@asset_check(asset="curated_dataset", blocking=True,
             description="Great Expectations suite on the published splits: ids, role order, non-empty turns, "
                         "token bounds, known tools, tool calls that match the schema.")
def great_expectations_suite(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                             artifacts: ArtifactStoreResource):
    from llmops_assets.data import expectations

    settings = pipeline.settings
    path = artifacts.upstream(context, "curated_dataset").path
    schema = ToolSchema.from_file(settings.domain.tools_file)
    table = expectations.example_table({name: read_jsonl(path / f"{name}.jsonl") for name in SPLITS},
                                       read_json(path / "token_counts.json"), schema)
    outcomes = expectations.validate(table, schema, settings.stages.data.quality_gate.max_example_tokens)
    failed = [o for o in outcomes if not o["success"]]
    return gate_result("failed_expectations", len(failed), 0, not failed, examples_checked=len(table),
                       expectations=MetadataValue.json(outcomes))


@asset_check(asset="curated_dataset", blocking=True,
             description="Every row raw_examples wrote is accounted for: accepted + quarantined + duplicates.")
def rows_accounted_for(context: AssetCheckExecutionContext, artifacts: ArtifactStoreResource):
    curated = artifacts.upstream(context, "curated_dataset")
    raw = artifacts.store.get("raw_examples", curated.manifest["inputs"]["raw_examples"]).metrics
    report = read_report(DatasetReport, curated.path / "data_quality_report.json")
    missing = unaccounted_rows(report.model_dump(), raw["records"] + raw["quarantined"])
    return gate_result("unaccounted_rows", missing, 0, missing == 0, input_rows=report.input_rows)
