"""The real `dagster-daemon` on a throwaway instance: a data file dropped into the source folder
launches one ingest run, the downstream stages follow through declarative automation and every
gate (one of them warning, as the untrusted local judge does by default), and later ticks launch
nothing more."""

import json
import shutil
import subprocess
import time
from contextlib import contextmanager

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from llmops_assets.core import releases
from llmops_assets.core.storage import ArtifactStore, read_jsonl, write_jsonl
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.orchestration.sensors import TRIGGER_TAG
from llmops_assets_tests.conftest import derived_config, stop_servers
from llmops_assets_tests.feedback_traffic import ScriptedFeedback, delete
from llmops_assets_tests.operations.processes import BIN, dagster_process, instance_env, wait_until

pytestmark = pytest.mark.slow


def new_example(n: int) -> dict:
    call = {"function": {"name": "add_task", "arguments": f'{{"title": "Follow up on ticket {n}"}}'}}
    return {"messages": [{"role": "user", "content": f"Add task: Follow up on ticket {n}"},
                         {"role": "assistant", "content": None, "tool_calls": [call]}]}


def finished_runs(instance: DagsterInstance):
    return instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]))


@contextmanager
def first_deployment_under_the_daemon(tmp_path, stages: dict):
    """The real daemon on a fresh instance whose source folder holds the seed: the folder's file
    is new data, so ingest, then automation, up to a first deployment. Yields (instance, daemon,
    its log, the pipeline env) then; stops the daemon and the servers after."""
    sources = tmp_path / "incoming"
    sources.mkdir()
    shutil.copy(SEED_FILE, sources / "seed.jsonl")
    config = derived_config(tmp_path, {"stages": {**stages, "data": {**stages.get("data", {}),
                                                                      "sources": [str(sources)]}}})
    env = instance_env(tmp_path, config)
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = tmp_path / "daemon.log"
    args = [str(BIN / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")]
    try:
        with dagster_process(args, env, tmp_path, log) as daemon:
            wait_until(lambda: instance.get_latest_materialization_event(AssetKey("deployed_model")), 600,
                       "first deployment", daemon, log, every_s=2)
            yield instance, daemon, log, env
    finally:
        stop_servers(tmp_path / "llmops")


def test_new_data_flows_through_every_gate_to_a_new_deployment(tmp_path):
    sources = tmp_path / "incoming"
    # The judge is made untrusted with on_untrusted: warn, as the local judge is on CPU by default:
    # a gate that warns must not hold back what follows.
    untrusted_judge = {"evaluation": {"judge": {"min_agreement": 1.0, "on_untrusted": "warn"}}}
    with first_deployment_under_the_daemon(tmp_path, untrusted_judge) as (instance, daemon, log, _):
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


SCRAP = ["please get rid of to-do number {n}", "scrap to-do {n} please", "I no longer need to-do {n}, bin it"]


def scrap_request(n: int) -> str:
    return SCRAP[n % len(SCRAP)].format(n=n)


def test_feedback_trains_a_challenger_that_the_canary_promotes_with_no_person_involved(tmp_path):
    """The loop, unattended, on the real daemon: scripted traffic gets corrections (poisoned ones
    among them); feedback_sensor, automation and every gate carry them to preference pairs, a DPO
    adapter (its held-out reward gate real), evaluation and a canary, and the canary analysis
    promotes it on live traffic; `llmops trace` follows a correction to the release serving it.
    The tiny model writes random text before and after, so a mistake rate cannot move on it: this
    test holds the mechanics (the mistake rate falling on the real model: e2e/test_default_pipeline.py).
    Canary margins are widened for a test-sized sample."""
    wide = {k: 0.5 for k in ("probe_accuracy_margin", "error_rate_margin", "slow_rate_margin",
                             "invalid_tool_call_margin")}
    stages = {"data": {"feedback": {"min_pairs": 30, "max_pairs_per_client": 5}},
              "training": {"dpo": {"max_steps": 6, "learning_rate": 0.003, "sft_weight": 1.0,
                                   "quality_gate": {"min_reward_accuracy": 0.5, "min_held_out_pairs": 5}}},
              "deployment": {"promotion": {"mode": "canary", "traffic_steps": [0.5], "min_requests_per_step": 10,
                                           "probes_per_analysis": 10, "analysis_interval_s": 10, "quality_gate": wide}}}
    home = tmp_path / "llmops"
    with first_deployment_under_the_daemon(tmp_path, stages) as (instance, daemon, log, env):
        first = releases.read_status(home)
        endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
        feedback = ScriptedFeedback(endpoint)
        # The flood and the broken item come first: the pairs are built as soon as min_pairs are
        # ready, so whatever snapshot the sensor takes then holds all of them.
        for n in range(500, 512):  # a flood from one key: capped at max_pairs_per_client
            feedback.correct(scrap_request(n), "flooder", delete(n))
        feedback.correct("wipe my list", "user-x", {"name": "delete_all", "arguments": {}})  # breaks the schema
        corrected = [feedback.correct(scrap_request(n), f"user-{n % 30}", delete(n)) for n in range(300, 360)]
        with feedback.clients():  # live traffic from 50 users while the challenger comes and is analysed
            wait_until(lambda: releases.read_status(home)["release_number"] > first["release_number"], 600,
                       "the feedback-trained challenger promoted to champion", daemon, log, every_s=3)
        assert feedback.failures == [], feedback.failures  # no client request failed through the promotion
        champion = releases.read_status(home)
        store = ArtifactStore(str(home / "artifacts"))
        evaluated = store.get("eval_report", champion["inputs"]["eval_report"])
        dpo = store.get("dpo_adapter", evaluated.manifest["inputs"]["dpo_adapter"])
        pairs = store.get("preference_pairs", dpo.manifest["inputs"]["preference_pairs"])
        report = json.loads((pairs.path / "report.json").read_text())
        reasons = [q["reason"] for q in read_jsonl(pairs.path / "quarantine.jsonl")]
        assert sum("max_pairs_per_client" in r for r in reasons) == 12 - 5
        assert sum("delete_all" in r for r in reasons) == 1
        assert report["ready"] and report["pairs"] >= 30
        trained = json.loads((dpo.path / "training_metrics.json").read_text())
        assert trained["feedback_pairs"] == report["pairs"]
        triggers = {r.tags.get(TRIGGER_TAG) for r in instance.get_runs()}
        assert "new feedback" in triggers  # the sensor, not a person, started it
        traced = subprocess.run([str(BIN / "llmops"), "trace", corrected[0]], env=env, capture_output=True,
                                text=True, timeout=120)
        assert f"a preference pair in preference_pairs {pairs.version}" in traced.stdout, traced.stdout
        assert f"served as release {champion['release_number']} (champion)" in traced.stdout, traced.stdout
        print(f"tiny feedback loop: {60 + 12 + 1} feedback items -> {report['pairs']} pairs "
              f"({report['quarantined']} quarantined) -> dpo_adapter {dpo.version} -> release "
              f"{champion['release_number']} promoted by the canary analysis")
