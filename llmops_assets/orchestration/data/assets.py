"""Data group: raw examples as ingested, and the curated, split dataset."""


from dagster import AssetExecutionContext, MetadataValue

from llmops_assets.core.chat import ChatTokenCounter
from llmops_assets.core.contracts import DatasetReport
from llmops_assets.core.plots import data_profile_png
from llmops_assets.core.storage import jsonl_line, read_jsonl, write_json, write_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.chunks import worker_count
from llmops_assets.data.curate import curate_files
from llmops_assets.data.expand import Expansion, endpoint_asker, expand
from llmops_assets.data.ingest import RECORDS, ingest_to
from llmops_assets.orchestration.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.orchestration.data.feedback import LAST_FEEDBACK_ID, correction_rows
from llmops_assets.orchestration.resources import (
    SOURCE_FILES,
    ArtifactStoreResource,
    PipelineConfig,
    artifact_result,
    markdown_image,
    metered_asset,
    retried_asset,
)


@retried_asset(group_name="data", deps=["feedback_log"],
               description="Every row of the configured sources, parsed, with its origin; unreadable rows quarantined; "
                           "users' corrected tool calls added (stages.data.feedback.corrections_as_examples); synthetic "
                           "examples added (tagged) when stages.data.synthetic is enabled.")
def raw_examples(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    data = pipeline.settings.stages.data
    corrections, feedback_days, last_feedback = (correction_rows(context, pipeline, artifacts)
                                                 if data.feedback.corrections_as_examples else ([], {}, 0))
    expansion, generator, ask = Expansion(), {}, None
    if data.synthetic.enabled and data.synthetic.generator == "llm":
        champion = artifacts.registry.champion() if data.synthetic.endpoint == "served" else None
        served = champion.view() if champion else None
        ask = endpoint_asker(data.synthetic, served)
        if served:  # which release wrote the rows, in the manifest
            generator = {"served_version": served["version"]}
    with artifacts.store.write("raw_examples", config={"synthetic": data.synthetic.model_dump(mode="json"),
                                                       **generator}) as out:
        result = ingest_to(data.sources, out.dir, worker_count(data.workers), progress=context.log.info)
        out.inputs = {**result.files, **feedback_days}
        context.log.info(f"read {result.input_rows} rows from {len(result.files)} files, "
                         f"{result.quarantined} quarantined; {len(corrections)} corrected calls from feedback")
        with open(out.dir / RECORDS, "a", encoding="utf-8") as records:
            records.write("".join(map(jsonl_line, corrections)))
        if data.synthetic.enabled:
            expansion = expand(read_jsonl(out.dir / RECORDS), ToolSchema.from_file(pipeline.settings.domain.tools_file),
                               data.synthetic, data.quality_filters, ask, progress=context.log.info)
            context.log.info(f"synthetic ({data.synthetic.generator}): {len(expansion.records)} accepted, "
                             f"{len(expansion.rejected)} rejected in {expansion.attempts} attempts")
            with open(out.dir / RECORDS, "a", encoding="utf-8") as records:
                records.write("".join(map(jsonl_line, expansion.records)))
        write_jsonl(out.dir / "synthetic_rejected.jsonl", expansion.rejected)
        out.metrics = {"input_rows": result.input_rows, "records": result.records + len(corrections) +
                       len(expansion.records), "quarantined": result.quarantined, "feedback_rows": len(corrections),
                       **expansion.counts()}
    raw = artifacts.store.get("raw_examples", out.version)
    return artifact_result(raw, **out.metrics, **{SOURCE_FILES: MetadataValue.json(result.files),
                                                  LAST_FEEDBACK_ID: last_feedback},
                           first_synthetic_rejected=MetadataValue.json(expansion.rejected[:5]))


@metered_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="data", deps=["raw_examples", "base_model"],
       description="Format-valid, deduplicated examples split into train/validation/test, with a quality "
                   "report (token statistics use the base model's tokenizer).")
def curated_dataset(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    data = settings.stages.data
    raw = artifacts.upstream(context, "raw_examples")
    base = artifacts.upstream(context, "base_model")
    with artifacts.store.write("curated_dataset", inputs={"raw_examples": raw.version, "base_model": base.version},
                               config=data.model_dump(mode="json")) as out:
        result = curate_files(raw.path, out.dir, ToolSchema.from_file(settings.domain.tools_file),
                              data.split.model_dump(exclude={"seed"}), data.split.seed,
                              ChatTokenCounter(str(base.path / "model"), settings.domain.system_prompt),
                              data.near_duplicates, settings.stages.training.max_seq_length, data.quality_filters,
                              source_files=raw.manifest["inputs"], workers=worker_count(data.workers),
                              progress=context.log.info, leakage_similarity=data.quality_gate.leakage_similarity)
        report = DatasetReport.model_validate(result.report).model_dump()  # the contract the other stages read
        context.log.info(f"{report['input_rows']} rows in: {report['total_examples']} accepted, "
                         f"{report['quarantined']} quarantined, {report['duplicates_removed']} duplicates")
        write_json(out.dir / "data_quality_report.json", report)
        write_json(out.dir / "token_counts.json", result.token_counts)
        (out.dir / "data_profile.png").write_bytes(data_profile_png(list(result.token_counts.values()),
                                                                    report["per_tool"]))
        out.metrics = {k: v for k, v in report.items() if k != "source_files"}
    return artifact_result(
        artifacts.store.get("curated_dataset", out.version),
        **{k: report[k] for k in ("total_examples", "train_count", "validation_count", "test_count",
                                  "quarantined", "duplicates_removed", "near_duplicates", "similar_request_groups",
                                  "avg_tokens", "p95_tokens",
                                  "max_tokens", "truncated_examples")},
        per_tool=MetadataValue.json(report["per_tool"]),
        data_profile=markdown_image(out.dir / "data_profile.png"),
        first_quarantined=MetadataValue.json(result.first_quarantined),
    )
