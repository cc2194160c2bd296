"""The jobs a user launches by hand, from the CLI, or that sensors and schedules target."""

from dagster import AssetSelection, define_asset_job

_DATA = AssetSelection.assets("raw_examples", "curated_dataset")
# feedback_log is kept by day: its days are launched by feedback_sensor (or a backfill), one
# partition per run, never by the whole-graph jobs; what reads it reads every day there is.
_GRAPH = AssetSelection.all() - AssetSelection.assets("feedback_log")
_DEPLOYMENT = AssetSelection.assets("merged_model", "gguf_model", "deployed_model")

full_pipeline = define_asset_job(
    "full_pipeline", selection=_GRAPH,
    description="Data -> training -> evaluation -> deployment, every gate blocking what follows.",
)
ingest_data = define_asset_job(
    "ingest_data", selection=_DATA,
    description="Read the sources and curate them (the new-data sensor launches this); downstream "
                "stages follow through automation once the data gates pass.",
)
retrain = define_asset_job(
    "retrain", selection=_GRAPH - AssetSelection.assets("base_model"),
    description="Everything from the data on, on the existing base model: ingest, train, evaluate, deploy.",
)
deploy_only = define_asset_job(
    "deploy_only", selection=_DEPLOYMENT,
    description="Merge, export and serve the latest evaluated adapter (its evaluation gates must have passed).",
)
rollback = define_asset_job(
    "rollback", selection=AssetSelection.assets("deployed_model"),
    config={"ops": {"deployed_model": {"config": {"rollback_to": "previous"}}}},
    description="Serve an earlier release again from the artifact store (default: the previous one); no retraining.",
)
checks_only = define_asset_job(
    "checks_only", selection=AssetSelection.all_asset_checks(),
    description="Every gate, re-run against the latest materializations; nothing is rebuilt.",
)
