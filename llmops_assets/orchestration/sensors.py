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

from llmops_assets.core.rows import changed_sources, file_fingerprints
from llmops_assets.data.ingest import source_fingerprints
from llmops_assets.orchestration.jobs import retrain
from llmops_assets.orchestration.resources import SOURCE_FILES, PipelineConfig

TRIGGER_TAG = "llmops/trigger"


# Built once when never built: curation counts tokens with the base model's tokenizer, training
# (reached through automation) starts from cpt_model and waits for preference_pairs (built from
# no feedback at first): automation alone would never create these.
_BUILT_ONCE = ("base_model", "cpt_model", "preference_pairs")


@sensor(asset_selection=AssetSelection.assets(*_BUILT_ONCE, "raw_examples", "curated_dataset"),
        minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING,
        description="A new, changed or removed file under the configured data sources launches one ingest run.")
def new_data_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig):
    current = source_fingerprints(pipeline.settings.stages.data.sources)
    latest = context.instance.get_latest_materialization_event(AssetKey("raw_examples"))
    ingested = latest.asset_materialization.metadata[SOURCE_FILES].value if latest else {}
    changed = changed_sources(current, ingested)
    if not changed:
        return SkipReason(f"no new or changed file among {len(current)} source files")
    # The run key is the files' identity and content after the latest ingest: a repeated tick (or
    # a failed run on the same files) never launches a duplicate.
    run_key = f"{latest.timestamp if latest else 0}:{_state(current)}"
    selection = [AssetKey("raw_examples"), AssetKey("curated_dataset")]
    selection += [AssetKey(name) for name in _BUILT_ONCE
                  if context.instance.get_latest_materialization_event(AssetKey(name)) is None]
    context.log.info(f"{len(changed)} source files changed: {', '.join(sorted(changed))}")
    return RunRequest(run_key=run_key, asset_selection=selection,
                      tags={TRIGGER_TAG: "new data", "llmops/changed_files": str(len(changed))})


@sensor(asset_selection=AssetSelection.assets("cpt_model", "dpo_adapter"), minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        description="Changed feedback (DPO preference pairs) or domain corpus (continued pretraining) files "
                    "retrain that stage; everything after it follows through automation and its gates.")
def training_data_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig):
    training = pipeline.settings.stages.training
    watched = {"cpt_model": training.continued_pretraining.corpus if training.continued_pretraining.enabled else [],
               "dpo_adapter": training.dpo.preferences if training.dpo.enabled else []}
    stale, changed_files, keys = [], [], []
    for asset, paths in watched.items():
        latest = context.instance.get_latest_materialization_event(AssetKey(asset))
        trained_on = latest.asset_materialization.metadata.get(SOURCE_FILES) if latest else None
        if not paths or trained_on is None:  # off, or never built with them: the graph's own run builds it
            continue
        current = file_fingerprints(paths)
        changed = changed_sources(current, trained_on.value)
        if changed:
            stale.append(AssetKey(asset))
            changed_files += sorted(changed)
            keys.append(f"{asset}@{latest.timestamp}:{_state(current)}")
    if not stale:
        return SkipReason("no changed preference or corpus file for an enabled stage")
    context.log.info(f"changed training files: {', '.join(changed_files)}")
    return RunRequest(run_key="|".join(keys), asset_selection=stale,
                      tags={TRIGGER_TAG: "new feedback", "llmops/changed_files": str(len(changed_files))})


def _state(fingerprints: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(fingerprints.items())).encode()).hexdigest()[:16]


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
