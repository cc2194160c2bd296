"""The feedback loop's Dagster face on a throwaway instance: feedback kept by the day it arrived,
the sensor launching each day with new items once, corrected calls joining raw_examples as SFT
rows, and the drift and retraining sensors waiting for their thresholds."""

import time

import dagster
from dagster import AssetKey, AssetMaterialization, DagsterInstance, RunRequest, SkipReason, build_sensor_context

from llmops_assets.core.request_log import RequestLog, default_url
from llmops_assets.core.storage import read_jsonl, write_jsonl
from llmops_assets.data.ingest import RECORDS
from llmops_assets.orchestration.data.assets import raw_examples
from llmops_assets.orchestration.data.feedback import drift_sensor, feedback_log, feedback_sensor, retraining_sensor
from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets_tests.conftest import derived_config

DAY = 86400.0
TODAY = time.time()


def answered(log: RequestLog, request_id: str, request: str, at: float) -> None:
    log.record({"request_id": request_id, "received_at": at, "client": "c", "release_number": 1,
                "release_version": "v1", "role": "champion", "model": "m", "status": 200,
                "messages": [{"role": "user", "content": request}], "answer": '{"name": "list_tasks", "arguments": {}}'})


def corrected(log: RequestLog, request_id: str, task: int, at: float, client: str = "c") -> None:
    log.add_feedback({"request_id": request_id, "received_at": at, "client": client, "rating": -1,
                      "correction": {"name": "delete_task", "arguments": {"task_id": task}}})


def setting_up(tmp_path, changes: dict | None = None):
    source = tmp_path / "source.jsonl"
    write_jsonl(source, [{"messages": [{"role": "user", "content": "Add task: water the plants"}, {
        "role": "assistant", "content": None, "tool_calls": [
            {"function": {"name": "add_task", "arguments": '{"title": "water the plants"}'}}]}]}])
    config = derived_config(tmp_path, {"stages": {"data": {"sources": [str(source)], **(changes or {})}}})
    resources = {"pipeline": PipelineConfig(config_path=str(config)), "artifacts": ArtifactStoreResource(home=str(tmp_path))}
    return DagsterInstance.ephemeral(), resources, RequestLog(default_url(tmp_path))


def tick(sensor, instance, resources):
    return sensor(build_sensor_context(instance=instance, resources=resources))


def materialize(instance, resources, asset, partition_key: str | None = None):
    return dagster.materialize([asset], instance=instance, resources=resources, partition_key=partition_key)


def test_feedback_is_kept_by_day_launched_once_per_new_state_and_corrections_become_sft_rows(tmp_path):
    instance, resources, log = setting_up(tmp_path, {"feedback": {"max_pairs_per_client": 2}})
    for n in range(3):  # yesterday: one client; today: the same client twice more (over its cap) and another
        answered(log, f"y{n}", f"please bin to-do {n + 10}", TODAY - DAY)
    corrected(log, "y0", 10, TODAY - DAY)
    for n, client in ((1, "c"), (2, "c"), (0, "d")):
        corrected(log, f"y{n}" if client == "c" else "y0", n + 10, TODAY, client)

    requests = tick(feedback_sensor, instance, resources)
    assert [r.partition_key for r in requests] == [time.strftime("%Y-%m-%d", time.gmtime(TODAY - DAY)),
                                                    time.strftime("%Y-%m-%d", time.gmtime(TODAY))]
    for request in requests:
        materialize(instance, resources, feedback_log, request.partition_key)
    assert isinstance(tick(feedback_sensor, instance, resources), SkipReason)  # nothing new: nothing launched
    today = instance.get_latest_materialization_event(AssetKey("feedback_log"))
    assert today.asset_materialization.metadata["items"].value == 3  # yesterday's held 1

    raw = materialize(instance, resources, raw_examples)
    [event] = raw.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["feedback_rows"].value == 2 and metadata["last_feedback_id"].value == 4  # the cap of 2 held
    built = ArtifactStoreResource(home=str(tmp_path)).store.get("raw_examples", metadata["version"].value)
    rows = read_jsonl(built.path / RECORDS)
    from_feedback = [r for r in rows if r["origin"].startswith("feedback")]
    assert [r["messages"][1]["tool_calls"][0]["function"] for r in from_feedback] == [
        {"name": "delete_task", "arguments": {"task_id": 10}}, {"name": "delete_task", "arguments": {"task_id": 11}}]
    assert from_feedback[0]["messages"][0] == {"role": "user", "content": "please bin to-do 10"}
    assert {name.split(":")[0] for name in built.manifest["inputs"]} >= {"feedback_log"}
    assert sum(name.startswith("feedback_log:") for name in built.manifest["inputs"]) == 2  # both days

    answered(log, "t9", "please bin to-do 99", TODAY)
    corrected(log, "t9", 99, TODAY, client="e")
    [again] = tick(feedback_sensor, instance, resources)
    assert again.partition_key == requests[1].partition_key and again.run_key != requests[1].run_key


def test_drift_reports_wait_for_new_requests_and_retraining_for_drift_and_corrections(tmp_path):
    instance, resources, log = setting_up(tmp_path, {"drift": {"every_new_requests": 3,
                                                               "retrain_min_new_examples": 2}})
    assert "no curated_dataset" in tick(drift_sensor, instance, resources).skip_message
    instance.report_runless_asset_event(AssetMaterialization("curated_dataset"))
    for n in range(2):
        answered(log, f"r{n}", f"remove to-do {n}", TODAY + n)
    assert "2 client requests" in tick(drift_sensor, instance, resources).skip_message
    answered(log, "r2", "remove to-do 2", TODAY + 2)
    launch = tick(drift_sensor, instance, resources)
    assert isinstance(launch, RunRequest) and launch.run_key == "drift:0.0"
    instance.report_runless_asset_event(AssetMaterialization("drift_report", metadata={
        "live_until": TODAY + 2, "drifted": False}))
    assert isinstance(tick(drift_sensor, instance, resources), SkipReason)

    assert "found no drift" in tick(retraining_sensor, instance, resources).skip_message
    instance.report_runless_asset_event(AssetMaterialization("drift_report", metadata={
        "live_until": TODAY + 2, "drifted": True}))
    instance.report_runless_asset_event(AssetMaterialization("raw_examples", metadata={"last_feedback_id": 0}))
    corrected(log, "r0", 0, TODAY)
    assert "1 corrected calls wait" in tick(retraining_sensor, instance, resources).skip_message
    corrected(log, "r1", 1, TODAY)
    retrain = tick(retraining_sensor, instance, resources)
    assert isinstance(retrain, RunRequest) and set(retrain.asset_selection) == {AssetKey("raw_examples"),
                                                                               AssetKey("curated_dataset")}
    instance.report_runless_asset_event(AssetMaterialization("raw_examples", metadata={"last_feedback_id": 2}))
    assert "0 corrected calls wait" in tick(retraining_sensor, instance, resources).skip_message
