"""The tiny pipeline laid out as on a cluster, on one machine: the Dagster instance in a real
PostgreSQL on 127.0.0.1, the artifacts in S3 (moto's server mode on 127.0.0.1, the session's test
double of S3), and the multiprocess executor (`LLMOPS_ENVIRONMENT=multiprocess`) running each
step in its own process with its own read cache. Steps share only Postgres and the object store: a step
that read another step's local files would fail here as it would in a pod."""

import os
import subprocess
import sys
import time

import pytest
import s3fs
import sqlalchemy
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from llmops_assets.core.storage import ArtifactStore
from llmops_assets.definitions import defs
from llmops_assets_tests.conftest import derived_config, gate_count, stop_servers
from llmops_assets_tests.graph import assets_of_every_run
from llmops_assets_tests.postgres_server import postgres_server, write_instance
from llmops_assets_tests.s3_double import new_bucket

EVERY_RUN = assets_of_every_run(defs)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, s3_environment):
    tmp = tmp_path_factory.mktemp("beyond_one_machine")
    s3 = s3_environment
    with postgres_server(("dagster", "llmops")) as postgres:
        bucket = new_bucket(s3)
        home, dagster_home = tmp / "home", tmp / "dagster_home"
        dagster_home.mkdir()
        write_instance(dagster_home, postgres)
        # A two-trial search: its study goes to the instance's Postgres, the storage steps share.
        search = {"enabled": True, "trials": 2, "max_steps": [6, 12], "startup_trials": 2}
        config = derived_config(tmp, {"stages": {"deployment": {"gateway": {"request_log": f"{postgres}/llmops"}},
                                                 "training": {"hpo": search}}})
        environment = {**os.environ, **s3, "DAGSTER_HOME": str(dagster_home), "LLMOPS_ENVIRONMENT": "multiprocess",
                       "LLMOPS_CONFIG": str(config), "LLMOPS_ARTIFACTS": f"{bucket}/artifacts", "LLMOPS_HOME": str(home)}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "llmops_assets.definitions",
                               "-a", "defs", "-j", "full_pipeline"], env=environment, capture_output=True, text=True,
                              timeout=1500)
        wall = time.monotonic() - started
        print(f"tiny pipeline, multiprocess executor on Postgres + S3 double: {wall:.0f} s")
        try:
            yield {"done": done, "home": home, "bucket": bucket, "postgres": postgres,
                   "instance": DagsterInstance.from_config(str(dagster_home))}
        finally:
            stop_servers(home, ArtifactStore(f"{bucket}/artifacts", cache_dir=tmp / "reader"))


def test_the_run_succeeds_with_its_runs_events_and_gates_in_postgres(cluster_run):
    done, instance = cluster_run["done"], cluster_run["instance"]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    [run] = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS
    materialized = {r.asset_key.to_user_string()
                    for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records}
    assert materialized == EVERY_RUN
    evaluations = [r.event_log_entry.dagster_event.event_specific_data
                   for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records]
    assert len(evaluations) == gate_count() and all(e.passed for e in evaluations)
    assert instance.run_storage._engine.url.get_backend_name() == "postgresql"  # not a local SQLite fallback


def test_each_step_ran_in_its_own_process_with_its_own_cache(cluster_run):
    instance, home = cluster_run["instance"], cluster_run["home"]
    [run] = instance.get_runs()
    starts = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_START).records
    pids = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in starts}
    run_start = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START).records
    parent = {r.event_log_entry.dagster_event.pid for r in run_start}
    assert len(pids) == len(starts) > len(EVERY_RUN)  # asset steps and check steps
    assert len(set(pids.values())) == len(pids) and not parent & set(pids.values())
    caches = {p.name for p in (home / "cache").iterdir()}
    assert caches and caches <= {str(pid) for pid in pids.values()}, caches  # no shared cache at <home>/cache/versions
    assert not (home / "artifacts").exists()


def test_artifacts_releases_and_requests_live_in_the_shared_services(cluster_run):
    bucket = cluster_run["bucket"].removeprefix("s3://")
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    published = {path.rsplit("/", 1)[-1] for path in fs.ls(f"{bucket}/artifacts")}
    assert {"raw_examples", "curated_dataset", "sft_adapter", "eval_report", "gguf_model"} <= published
    engine = sqlalchemy.create_engine(f"{cluster_run['postgres']}/llmops")
    with engine.connect() as connection:
        tables = set(sqlalchemy.inspect(connection).get_table_names())
    assert {"requests", "feedback"} <= tables


def test_the_search_keeps_its_study_in_the_instance_postgres_beside_dagster(cluster_run, tmp_path):
    """hpo_study found the instance's Postgres and kept the study in a schema of its own (Optuna and
    Dagster both keep an alembic_version table); sft_adapter trained with its best values."""
    engine = sqlalchemy.create_engine(f"{cluster_run['postgres']}/dagster")
    with engine.connect() as connection:
        trials = connection.execute(sqlalchemy.text("SELECT state FROM optuna.trials")).scalars().all()
        dagster_tables = set(sqlalchemy.inspect(connection).get_table_names())
    assert len(trials) == 2 and {"runs", "event_logs"} <= dagster_tables
    instance = cluster_run["instance"]
    study = instance.get_latest_materialization_event(AssetKey("hpo_study")).asset_materialization.metadata
    assert study["storage"].value.endswith("/dagster (schema optuna)") and study["completed"].value >= 1
    sft = instance.get_latest_materialization_event(AssetKey("sft_adapter")).asset_materialization.metadata
    store = ArtifactStore(f"{cluster_run['bucket']}/artifacts", cache_dir=tmp_path)
    assert store.get("sft_adapter", sft["version"].value).manifest["inputs"]["hpo_study"] == study["version"].value
