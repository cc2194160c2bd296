"""The real `dagster-daemon` on a throwaway instance: a data file dropped into the source folder
launches one ingest run, the downstream stages follow through declarative automation and every
gate (one of them warning, as the untrusted local judge does by default), and later ticks launch
nothing more."""

import shutil
import time

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from llmops_assets.core import releases
from llmops_assets.core.storage import write_jsonl
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.orchestration.sensors import TRIGGER_TAG
from llmops_assets_tests.conftest import derived_config, stop_servers
from llmops_assets_tests.operations.processes import BIN, dagster_process, instance_env, wait_until

pytestmark = pytest.mark.slow


def new_example(n: int) -> dict:
    call = {"function": {"name": "add_task", "arguments": f'{{"title": "Follow up on ticket {n}"}}'}}
    return {"messages": [{"role": "user", "content": f"Add task: Follow up on ticket {n}"},
                         {"role": "assistant", "content": None, "tool_calls": [call]}]}


def finished_runs(instance: DagsterInstance):
    return instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]))


def test_new_data_flows_through_every_gate_to_a_new_deployment(tmp_path):
    sources = tmp_path / "incoming"
    sources.mkdir()
    shutil.copy(SEED_FILE, sources / "seed.jsonl")
    # The judge is made untrusted with on_untrusted: warn, as the local judge is on CPU by default:
    # a gate that warns must not hold back what follows.
    config = derived_config(tmp_path, {"stages": {"data": {"sources": [str(sources)]},
                                                  "evaluation": {"judge": {"min_agreement": 1.0, "on_untrusted": "warn"}}}})
    env = instance_env(tmp_path, config)
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = tmp_path / "daemon.log"
    args = [str(BIN / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")]
    try:
        with dagster_process(args, env, tmp_path, log) as daemon:
            # The folder's first file is new data to a fresh instance: ingest, then automation.
            wait_until(lambda: instance.get_latest_materialization_event(AssetKey("deployed_model")), 600,
                       "first deployment", daemon, log, every_s=2)
            first = releases.read_status(tmp_path / "llmops")
            ingests = [r for r in instance.get_runs() if r.tags.get(TRIGGER_TAG) == "new data"]
            assert len(ingests) == 1

            dropped = time.monotonic()
            write_jsonl(sources / "more.jsonl", [new_example(n) for n in range(40)])
            second_ingest = wait_until(
                lambda: [r for r in instance.get_runs() if r.tags.get(TRIGGER_TAG) == "new data"][:-1], 60,
                "ingest run for the dropped file", daemon, log)
            assert len(second_ingest) == 1, "one run for one new file"
            print(f"file drop -> ingest run created in {time.monotonic() - dropped:.1f}s")
            wait_until(lambda: releases.read_status(tmp_path / "llmops")["version"] != first["version"], 600,
                       "a new deployment from the new data", daemon, log, every_s=2)
            second = releases.read_status(tmp_path / "llmops")
            assert second["inputs"]["curated_dataset"] != first["inputs"]["curated_dataset"]

            wait_until(lambda: all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
                                   for r in instance.get_runs()), 120, "runs settle", daemon, log)
            settled = len(instance.get_runs())
            time.sleep(25)  # several sensor (5 s) and automation (10 s) ticks
            assert len(instance.get_runs()) == settled, "ticks after the flow launched new runs"
            assert all(r.status == DagsterRunStatus.SUCCESS for r in finished_runs(instance))
            warnings = instance.get_latest_asset_check_evaluation_record(
                AssetCheckKey(AssetKey("eval_report"), "evaluation_warnings"))
            assert warnings.event.dagster_event.event_specific_data.passed is False  # the warning was raised
    finally:
        stop_servers(tmp_path / "llmops")
