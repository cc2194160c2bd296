"""What live traffic teaches: feedback on served answers, turned into preference pairs that
`dpo_adapter` trains on (then evaluation, a canary and the canary analysis, through every gate),
and the drift of live prompts away from the training data.

`feedback_sensor` materializes `feedback_log` and `preference_pairs` when feedback arrives;
automation carries it on. Pairs wait, unused, until there are `stages.data.feedback.min_pairs`.
"""

from collections import Counter

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    sensor,
)

from llmops_assets.core.chat import parse_tool_call
from llmops_assets.core.examples import pair_problem
from llmops_assets.core.storage import read_json, read_jsonl, write_json, write_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.curate import normalized_text, request_text
from llmops_assets.data.drift import drift_report as measure_drift
from llmops_assets.data.feedback import bias_report, build_pairs, correction_examples
from llmops_assets.evaluation.safety import load_suite
from llmops_assets.orchestration.conditions import AFTER_FEEDBACK_DAYS
from llmops_assets.orchestration.resources import (
    ArtifactStoreResource,
    PipelineConfig,
    artifact_result,
    gate_result,
    metered_asset,
    request_log,
)

PAIRS, REPORT = "pairs.jsonl", "report.json"
TRIGGER_TAG = "llmops/trigger"  # why a sensor launched a run
LAST_FEEDBACK_ID = "last_feedback_id"  # metadata: the newest feedback item an asset has read


# Feedback is kept by the UTC day it arrived: a day's partition holds every item of that day;
# today is a partition already (end_offset=1), re-materialized as feedback comes in.
FEEDBACK_DAYS = DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)


@asset(group_name="data", partitions_def=FEEDBACK_DAYS,
       description="The feedback the gateway took on one day (ratings, corrections, signals, review decisions), "
                   "each with the request and answer it is about; `new`: since this day's last snapshot.")
def feedback_log(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    day = context.partition_key
    window = FEEDBACK_DAYS.time_window_for_partition_key(day)
    items = request_log(pipeline, artifacts).feedback(received=(window.start.timestamp(), window.end.timestamp()))
    previous = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("feedback_log"), asset_partitions=[day]), limit=1).records
    before = previous[0].asset_materialization.metadata["last_feedback_id"].value if previous else 0
    last = max((i["feedback_id"] for i in items), default=0)
    with artifacts.store.write("feedback_log", config={"day": day, "last_feedback_id": last}) as out:
        write_jsonl(out.dir / "feedback.jsonl", items)
        out.metrics = {"items": len(items), "last_feedback_id": last}
    kinds = {"corrections": sum(i["correction"] is not None for i in items),
             "ratings": sum(i["rating"] is not None for i in items), "signals": sum(i["signal"] is not None for i in items),
             "reviews": sum(i["source"] == "review" for i in items)}
    new = sum(i["feedback_id"] > before for i in items)
    context.log.info(f"{day}: {len(items)} feedback items, {new} new")
    return artifact_result(artifacts.store.get("feedback_log", out.version), items=len(items), last_feedback_id=last,
                           new=new, **kinds)


def all_feedback(context, artifacts: ArtifactStoreResource) -> tuple[list[dict], dict[str, str]]:
    """Every feedback item of every day this run depends on, oldest first, and the day versions
    (as manifest inputs, `feedback_log:<day>`)."""
    days = artifacts.upstream_partitions(context, "feedback_log")
    items = sorted((i for built in days.values() for i in read_jsonl(built.path / "feedback.jsonl")),
                   key=lambda i: i["feedback_id"])
    return items, {f"feedback_log:{day}": built.version for day, built in days.items()}


@metered_asset(automation_condition=AFTER_FEEDBACK_DAYS, group_name="data", deps=["feedback_log", "curated_dataset"],
       description="Preference pairs from feedback (chosen: the correction or an approved answer; rejected: the "
                   "answer disliked), checked like training rows; quarantined items keep their reason.")
def preference_pairs(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    feedback, days = all_feedback(context, artifacts)
    curated = artifacts.upstream(context, "curated_dataset")
    schema, rules = ToolSchema.from_file(settings.domain.tools_file), settings.stages.data.feedback
    inputs = {**days, "curated_dataset": curated.version}

    def build(out):
        pairs, quarantined = build_pairs(feedback, schema, rules, evaluation_requests(pipeline, curated.path))
        held_out = sum(p["split"] == "held_out" for p in pairs)
        write_jsonl(out.dir / PAIRS, pairs)
        write_jsonl(out.dir / "quarantine.jsonl", quarantined)
        report = {"pairs": len(pairs), "held_out": held_out, "quarantined": len(quarantined),
                  "ready": len(pairs) >= rules.min_pairs, "min_pairs": rules.min_pairs,
                  "quarantine_reasons": dict(Counter(q["reason"] for q in quarantined).most_common(10)),
                  "bias": bias_report(pairs, settings.stages.evaluation.confidence)}
        write_json(out.dir / REPORT, report)
        out.metrics = {k: report[k] for k in ("pairs", "held_out", "quarantined", "ready")}

    built = artifacts.build_or_reuse(context, "preference_pairs", inputs, rules.model_dump(mode="json"), build)
    report = read_json(built.path / REPORT)
    context.log.info(f"{len(feedback)} feedback items over {len(days)} days: {report['pairs']} preference pairs "
                     f"({report['held_out']} held out), {report['quarantined']} quarantined; " +
                     ("DPO trains on them" if report["ready"] else f"DPO waits for {report['min_pairs']}"))
    return artifact_result(built, **built.metrics, quarantine_reasons=MetadataValue.json(report["quarantine_reasons"]))


def correction_rows(context, pipeline: PipelineConfig, artifacts: ArtifactStoreResource) -> tuple[list[dict],
                                                                                                 dict[str, str], int]:
    """(SFT rows from corrected tool calls, the feedback days they came from, the last feedback id
    read) for raw_examples: screened like the pairs (schema, per-client cap, review decisions) and
    never on a safety-suite request; curation then splits them like any other row."""
    feedback, days = all_feedback(context, artifacts)
    settings = pipeline.settings
    pairs, _ = build_pairs(feedback, ToolSchema.from_file(settings.domain.tools_file), settings.stages.data.feedback,
                           safety_requests(pipeline))
    return correction_examples(pairs), days, max((i["feedback_id"] for i in feedback), default=0)


def evaluation_requests(pipeline: PipelineConfig, curated_dir) -> set[str]:
    """The normalized requests a pair must not be about: the test split's and the safety suite's."""
    return {request_text(row["messages"]) for row in read_jsonl(curated_dir / "test.jsonl")} | safety_requests(pipeline)


def safety_requests(pipeline: PipelineConfig) -> set[str]:
    return {normalized_text([{"role": "user", "content": case["request"]}])
            for case in load_suite(pipeline.settings.stages.evaluation.safety_suite)}


def _pairs(context, artifacts: ArtifactStoreResource) -> tuple[list[dict], dict]:
    built = artifacts.upstream(context, "preference_pairs")
    return read_jsonl(built.path / PAIRS), read_json(built.path / REPORT)


@asset_check(asset="preference_pairs", blocking=True,
             description="Every published pair is a valid training pair (the tool schema, distinct answers).")
def pairs_valid(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    pairs, _ = _pairs(context, artifacts)
    schema = ToolSchema.from_file(pipeline.settings.domain.tools_file)
    invalid = [{"origin": p.get("origin"), "reason": r} for p in pairs if (r := pair_problem(p, schema))]
    return gate_result("invalid_pairs", len(invalid), 0, not invalid, first=MetadataValue.json(invalid[:10]))


@asset_check(asset="preference_pairs", blocking=True,
             description="No pair is about a request of the test split or the safety suite.")
def no_evaluation_overlap(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                          artifacts: ArtifactStoreResource):
    pairs, _ = _pairs(context, artifacts)
    built = artifacts.upstream(context, "preference_pairs")
    excluded = evaluation_requests(pipeline, artifacts.store.get("curated_dataset",
                                                                 built.manifest["inputs"]["curated_dataset"]).path)
    overlap = [p["origin"] for p in pairs if normalized_text(p["prompt"]) in excluded]
    return gate_result("overlapping_pairs", len(overlap), 0, not overlap, first=MetadataValue.json(overlap[:10]))


@asset_check(asset="preference_pairs", blocking=True,
             description="Once DPO trains on feedback (min_pairs reached), enough pairs are held out to judge it.")
def enough_pairs(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    _, report = _pairs(context, artifacts)
    needed = pipeline.settings.stages.training.dpo.quality_gate.min_held_out_pairs  # what the DPO gate judges on
    note = ("" if report["ready"] else
            f"pending: {report['pairs']} of {report['min_pairs']} pairs; DPO does not use them yet")
    return gate_result("held_out_pairs", report["held_out"], needed, not report["ready"] or report["held_out"] >= needed,
                       pairs=report["pairs"], ready=report["ready"], **({"note": note} if note else {}))


@asset_check(asset="preference_pairs", blocking=False,
             description="Warns when chosen answers win by length or format rather than correctness.")
def preference_warnings(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                        artifacts: ArtifactStoreResource):
    _, report = _pairs(context, artifacts)
    bias, limit = report["bias"], pipeline.settings.stages.data.feedback.max_longer_chosen_share
    bound = bias["chosen_longer_lower_bound"]
    warned = bound is not None and bound > limit
    return AssetCheckResult(passed=not warned, severity=AssetCheckSeverity.WARN, metadata={
        "gate": "chosen_longer_share", "value": bias["chosen_longer_share"] or 0.0, "threshold": limit,
        "bound": bound or 0.0, "verdict": "WARN" if warned else "PASS", "bias": MetadataValue.json(bias)})


@sensor(asset_selection=["feedback_log"], minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="New feedback in the gateway's log launches the feedback_log day it arrived on; preference_pairs, "
                    "DPO, evaluation and a canary follow through automation and their gates.")
def feedback_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    latest = context.instance.get_latest_materialization_event(AssetKey("feedback_log"))
    seen = latest.asset_materialization.metadata["last_feedback_id"].value if latest else 0
    new = request_log(pipeline, artifacts).feedback(after_id=seen)
    if not new:
        return SkipReason(f"no feedback since item {seen}")
    days: dict[str, int] = {}
    for item in new:
        day = FEEDBACK_DAYS.get_partition_key_for_timestamp(item["received_at"])
        days[day] = max(days.get(day, 0), item["feedback_id"])
    context.log.info(f"{len(new)} new feedback items on {', '.join(sorted(days))}")
    return [RunRequest(run_key=f"feedback:{day}:{last}", partition_key=day, tags={TRIGGER_TAG: "new feedback"})
            for day, last in sorted(days.items())]


@asset(group_name="data", deps=["curated_dataset"],
       description="Live client prompts (the gateway's log) against the training prompts: a domain classifier on "
                   "sentence embeddings, per tool and per cluster; over-represented clusters listed for review.")
def drift_report(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings.stages.data.drift
    curated = artifacts.upstream(context, "curated_dataset")
    reference = [_user_text(row["messages"][:-1]) for row in read_jsonl(curated.path / "train.jsonl")]
    log = request_log(pipeline, artifacts)
    recent = log.recent_client_requests(settings.max_live_requests)
    live = [{"text": _user_text(r["messages"]), "request_id": r["request_id"],
             "tool": call.name if (call := parse_tool_call(r["answer"] or "")) else "text"} for r in recent]
    context.log.info(f"comparing {len(live)} live prompts with {len(reference)} training prompts")
    report = measure_drift(reference, live, settings)
    inputs = {"curated_dataset": curated.version}
    with artifacts.store.write("drift_report", inputs=inputs, config={"live_until": recent[0]["received_at"]
                                                                      if recent else 0.0}) as out:
        write_json(out.dir / "drift_report.json", report)
        out.metrics = {k: report[k] for k in ("drifted", "live") if k in report}
    flagged = [c for c in report.get("clusters", []) if c["flagged"]]
    queued = log.flag_for_review({
        request_id: f"drifted cluster {c['cluster']} (live share {c['live_share']:.2f} vs training "
                    f"{c['training_share']:.2f})" for c in flagged for request_id in c["request_ids"]})
    context.log.info(f"{len(flagged)} clusters over-represented in live traffic; {queued} prompts put on the review queue")
    return artifact_result(artifacts.store.get("drift_report", out.version), drifted=report["drifted"],
                           live_prompts=report["live"], auc=report.get("auc", 0.0),
                           threshold=report.get("threshold", 0.0), note=report.get("note", ""),
                           flagged_clusters=MetadataValue.json(flagged), queued_for_review=queued,
                           live_until=recent[0]["received_at"] if recent else 0.0)


@asset_check(asset="drift_report", blocking=False,
             description="Warns when live prompts have drifted from the training prompts (retrain on new data).")
def drift_warnings(context: AssetCheckExecutionContext, artifacts: ArtifactStoreResource):
    report = read_json(artifacts.upstream(context, "drift_report").path / "drift_report.json")
    return AssetCheckResult(passed=not report["drifted"], severity=AssetCheckSeverity.WARN, metadata={
        "gate": "domain_classifier_auc", "value": report.get("auc", 0.0), "threshold": report.get("threshold", 0.0),
        "verdict": "WARN" if report["drifted"] else "PASS", "live_prompts": report["live"],
        **({"note": report["note"]} if "note" in report else {})})


@sensor(asset_selection=["drift_report"], minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="A new drift report once stages.data.drift.every_new_requests client requests came in since the "
                    "last one.")
def drift_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    if context.instance.get_latest_materialization_event(AssetKey("curated_dataset")) is None:
        return SkipReason("no curated_dataset yet: no training prompts to compare live prompts with")
    latest = context.instance.get_latest_materialization_event(AssetKey("drift_report"))
    since = latest.asset_materialization.metadata["live_until"].value if latest else 0.0
    new, wanted = request_log(pipeline, artifacts).client_requests_since(since), \
        pipeline.settings.stages.data.drift.every_new_requests
    if new < wanted:
        return SkipReason(f"{new} client requests since the last drift report; the next one after {wanted}")
    return RunRequest(run_key=f"drift:{since}", tags={TRIGGER_TAG: f"{new} new client requests"})


@sensor(asset_selection=["raw_examples", "curated_dataset"], minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Retrains when live prompts drifted (the latest drift report) and enough corrected tool calls "
                    "wait outside the training data: re-ingests with them; SFT, evaluation and a canary follow "
                    "through automation and their gates.")
def retraining_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    drift = context.instance.get_latest_materialization_event(AssetKey("drift_report"))
    if drift is None or not drift.asset_materialization.metadata["drifted"].value:
        return SkipReason("the latest drift report found no drift" if drift else "no drift report yet")
    raw = context.instance.get_latest_materialization_event(AssetKey("raw_examples"))
    if raw is None:
        return SkipReason("no raw_examples yet: the first data run comes from new_data_sensor")
    included = raw.asset_materialization.metadata.get(LAST_FEEDBACK_ID)
    after = included.value if included else 0
    waiting = [i for i in request_log(pipeline, artifacts).feedback(after_id=after) if isinstance(i["correction"], dict)]
    wanted = pipeline.settings.stages.data.drift.retrain_min_new_examples
    if not pipeline.settings.stages.data.feedback.corrections_as_examples or len(waiting) < wanted:
        return SkipReason(f"drift, but {len(waiting)} corrected calls wait outside the training data "
                          f"(retraining at {wanted}, with corrections_as_examples on)")
    context.log.info(f"drift and {len(waiting)} corrected calls since feedback item {after}: retraining")
    return RunRequest(run_key=f"retrain:{drift.timestamp}:{after}",
                      asset_selection=[AssetKey("raw_examples"), AssetKey("curated_dataset")],
                      tags={TRIGGER_TAG: "drift and new data", "llmops/waiting_corrections": str(len(waiting))})


def _user_text(messages: list[dict]) -> str:
    return "\n".join(m.get("content") or "" for m in messages if m.get("role") == "user")
