"""Data group: raw examples as ingested, and the curated, split dataset."""


from dagster import AssetExecutionContext, MetadataValue, asset

from llmops_assets.artifacts import read_jsonl, write_json, write_jsonl
from llmops_assets.chat import model_messages, prompt_and_completion
from llmops_assets.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.data.curate import SPLITS, curate
from llmops_assets.data.expand import Expansion, endpoint_asker, expand
from llmops_assets.data.ingest import IngestResult, ingest
from llmops_assets.deployment import release
from llmops_assets.plots import data_profile_png, markdown_image
from llmops_assets.resources import SOURCE_FILES, ArtifactStoreResource, PipelineConfig, artifact_result
from llmops_assets.tools import ToolSchema


@asset(group_name="data",
       description="Every row of the configured sources, parsed, with its origin; unreadable rows quarantined; "
                   "synthetic examples added (tagged) when stages.data.synthetic is enabled.")
def raw_examples(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    data = pipeline.settings.stages.data
    result = ingest(data.sources)
    context.log.info(f"read {result.input_rows} rows from {len(result.files)} files, "
                     f"{len(result.quarantined)} quarantined")
    expansion, generator, ask = Expansion(), {}, None
    if data.synthetic.enabled:
        if data.synthetic.generator == "llm":
            served = release.read_status(artifacts.home_path) if data.synthetic.endpoint == "served" else None
            ask = endpoint_asker(data.synthetic, served)
            if served:  # which release wrote the rows, in the manifest
                generator = {"served_version": served["version"]}
        expansion = expand(result.records, ToolSchema.from_file(pipeline.settings.domain.tools_file), data.synthetic,
                           data.quality_filters, ask, progress=context.log.info)
        context.log.info(f"synthetic ({data.synthetic.generator}): {len(expansion.records)} accepted, "
                         f"{len(expansion.rejected)} rejected in {expansion.attempts} attempts")
        result.records += expansion.records
    with artifacts.store.write("raw_examples", inputs=result.files,
                               config={"synthetic": data.synthetic.model_dump(mode="json"), **generator}) as out:
        write_jsonl(out.dir / "records.jsonl", result.records)
        write_jsonl(out.dir / "quarantine.jsonl", result.quarantined)
        write_jsonl(out.dir / "synthetic_rejected.jsonl", expansion.rejected)
        out.metrics = {"input_rows": result.input_rows, "records": len(result.records),
                       "quarantined": len(result.quarantined), **expansion.counts()}
    return artifact_result(out, **out.metrics, **{SOURCE_FILES: MetadataValue.json(result.files)},
                           first_synthetic_rejected=MetadataValue.json(expansion.rejected[:5]))


@asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="data", deps=["raw_examples", "base_model"],
       description="Format-valid, deduplicated examples split into train/validation/test, with a quality "
                   "report (token statistics use the base model's tokenizer).")
def curated_dataset(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    from transformers import AutoTokenizer

    settings = pipeline.settings
    raw = artifacts.upstream(context, "raw_examples")
    base = artifacts.upstream(context, "base_model")
    ingested = IngestResult(read_jsonl(raw.path / "records.jsonl"), read_jsonl(raw.path / "quarantine.jsonl"),
                            raw.manifest["inputs"])
    tokenizer = AutoTokenizer.from_pretrained(base.path / "model")

    def count_tokens(record: dict) -> int:
        prompt, completion = prompt_and_completion(
            tokenizer, model_messages(record["messages"], settings.domain.system_prompt))
        return len(tokenizer(prompt + completion, add_special_tokens=False)["input_ids"])

    split_settings = settings.stages.data.split
    result = curate(ingested, ToolSchema.from_file(settings.domain.tools_file),
                    split_settings.model_dump(exclude={"seed"}), split_settings.seed, count_tokens,
                    settings.stages.data.near_duplicates, settings.stages.training.max_seq_length,
                    settings.stages.data.quality_filters)
    report = result.report
    context.log.info(f"{report['input_rows']} rows in: {report['total_examples']} accepted, "
                     f"{report['quarantined']} quarantined, {report['duplicates_removed']} duplicates")
    with artifacts.store.write("curated_dataset", inputs={"raw_examples": raw.version, "base_model": base.version},
                               config=settings.stages.data.model_dump(mode="json")) as out:
        for name in SPLITS:
            write_jsonl(out.dir / f"{name}.jsonl", result.splits[name])
        write_jsonl(out.dir / "quarantine.jsonl", result.quarantined)
        write_jsonl(out.dir / "duplicates.jsonl", result.duplicates)
        write_json(out.dir / "data_quality_report.json", report)
        ids = [r["id"] for name in SPLITS for r in result.splits[name]]
        write_json(out.dir / "token_counts.json", dict(zip(ids, result.token_counts, strict=True)))
        (out.dir / "data_profile.png").write_bytes(data_profile_png(result.token_counts, report["per_tool"]))
        out.metrics = {k: v for k, v in report.items() if k != "source_files"}
    return artifact_result(
        out,
        **{k: report[k] for k in ("total_examples", "train_count", "validation_count", "test_count",
                                  "quarantined", "duplicates_removed", "near_duplicates", "avg_tokens", "p95_tokens",
                                  "max_tokens", "truncated_examples")},
        per_tool=MetadataValue.json(report["per_tool"]),
        data_profile=markdown_image(out.dir / "data_profile.png"),
        first_quarantined=MetadataValue.json(result.quarantined[:5]),
    )

