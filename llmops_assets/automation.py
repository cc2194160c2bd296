"""What re-materializes on its own: new data through a sensor, everything downstream through
declarative automation that waits for every upstream gate, and an optional retrain schedule."""

import hashlib
import json

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from llmops_assets.data.ingest import changed_sources, source_fingerprints
from llmops_assets.jobs import retrain
from llmops_assets.resources import PipelineConfig

TRIGGER_TAG = "llmops/trigger"


# Built once when never built: curation counts tokens with the base model's tokenizer, and training
# (reached through automation) starts from cpt_model, which automation alone would never create.
_MODEL_STAGES = ("base_model", "cpt_model")


@sensor(asset_selection=AssetSelection.assets(*_MODEL_STAGES, "raw_examples", "curated_dataset"),
        minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING,
        description="A new, changed or removed file under the configured data sources launches one ingest run.")
def new_data_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig):
    current = source_fingerprints(pipeline.settings.stages.data.sources)
    latest = context.instance.get_latest_materialization_event(AssetKey("raw_examples"))
    ingested = latest.asset_materialization.metadata["source_files"].value if latest else {}
    changed = changed_sources(current, ingested)
    if not changed:
        return SkipReason(f"no new or changed file among {len(current)} source files")
    # The run key is the files' identity and content after the latest ingest: a repeated tick (or
    # a failed run on the same files) never launches a duplicate.
    state = hashlib.sha256(json.dumps(sorted(current.items())).encode()).hexdigest()[:16]
    run_key = f"{latest.timestamp if latest else 0}:{state}"
    selection = [AssetKey("raw_examples"), AssetKey("curated_dataset")]
    selection += [AssetKey(name) for name in _MODEL_STAGES
                  if context.instance.get_latest_materialization_event(AssetKey(name)) is None]
    context.log.info(f"{len(changed)} source files changed: {', '.join(sorted(changed))}")
    return RunRequest(run_key=run_key, asset_selection=selection,
                      tags={TRIGGER_TAG: "new data", "llmops/changed_files": str(len(changed))})


automation_sensor = AutomationConditionSensorDefinition(
    "llmops_automation", target="*", minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Evaluates each asset's automation condition: new gated data flows on to a new deployment.",
)

weekly_retrain = ScheduleDefinition(
    name="weekly_retrain", job=retrain, cron_schedule="0 3 * * 1", default_status=DefaultScheduleStatus.STOPPED,
    tags={TRIGGER_TAG: "schedule"},
    description="Retrain from the current data every Monday 03:00 (off by default; turn on in the UI).",
)

SENSORS = [new_data_sensor, automation_sensor]
SCHEDULES = [weekly_retrain]
