"""The whole graph on the tiny Llama: real Dagster runs, real training steps, a real GGUF served by
a real llama.cpp server on 127.0.0.1; then a failing gate that must leave that server untouched."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SkipReason,
    build_sensor_context,
    materialize,
)
from dagster._core.utils import make_new_run_id

from llmops_assets.cli import failure_reasons
from llmops_assets.core import releases
from llmops_assets.core.inference import chat_completion
from llmops_assets.core.modeling import load_base, load_merged
from llmops_assets.core.rows import file_fingerprints
from llmops_assets.core.storage import Artifact, ArtifactStore, file_sha256, read_jsonl
from llmops_assets.data.synth import PREFERENCES_FILE, SEED_FILE
from llmops_assets.definitions import build_definitions, defs
from llmops_assets.deployment import servers
from llmops_assets.deployment.targets import ollama_answers, ollama_host
from llmops_assets.evaluation.generate import generate_answers
from llmops_assets.orchestration.data.feedback import feedback_log, feedback_sensor
from llmops_assets.orchestration.resources import SOURCE_FILES, ArtifactStoreResource, PipelineConfig, run_usage
from llmops_assets.orchestration.sensors import training_data_sensor
from llmops_assets.settings import load_settings
from llmops_assets_tests.conftest import TINY_CONFIG, derived_config, gate_count, registry_of, stop_servers
from llmops_assets_tests.graph import assets_of_every_run
from llmops_assets_tests.ollama_double import OllamaDouble

EVERY_RUN = assets_of_every_run(defs)
DOWNSTREAM_OF_TRAINING = {"dpo_adapter", "eval_report", "merged_model", "gguf_model", "deployed_model"}


def run_pipeline(instance, config, home, job="full_pipeline", run_config=None):
    defs = build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(home)))
    return defs.resolve_job_def(job).execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def rollback_to(version):
    return {"ops": {"deployed_model": {"config": {"rollback_to": version}}}}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    home = tmp_path_factory.mktemp("llmops_home")
    instance = DagsterInstance.ephemeral()
    result = run_pipeline(instance, TINY_CONFIG, home)
    yield instance, home, result
    stop_servers(home)


def test_every_asset_materializes_and_every_gate_passes(pipeline):
    _, _, result = pipeline
    assert result.success
    assert materialized(result) == EVERY_RUN
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == gate_count()
    assert all(e.passed for e in evaluations), [(e.check_name, e.metadata) for e in evaluations if not e.passed]
    for evaluation in evaluations:
        assert {"value", "threshold", "verdict"} <= set(evaluation.metadata)
    instance, _, _ = pipeline
    report = json.loads((latest(instance, "eval_report").path / "eval_report.json").read_text())
    safety = report["baseline_comparison"]["safety"]  # the champion answered the safety suite too, case by case
    assert safety["n"] == report["safety_check"]["n"] and safety["wins"] + safety["losses"] <= safety["n"]


def latest(instance, asset) -> Artifact:
    """The artifact of `asset`'s latest materialization, found through the URL it records."""
    metadata = instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata
    root = metadata["artifact"].value.rsplit("/", 2)[0]
    return ArtifactStore(root).get(asset, metadata["version"].value)


def test_switched_off_stages_pass_their_input_through(pipeline):
    instance, _, _ = pipeline
    base, cpt, sft, dpo = (latest(instance, a) for a in ("base_model", "cpt_model", "sft_adapter", "dpo_adapter"))
    assert cpt.version == base.version  # the same files: continued pretraining is off
    assert (cpt.path / "model" / "model.safetensors").stat().st_ino == (base.path / "model" / "model.safetensors").stat().st_ino
    assert dpo.manifest["files"] == {k: v for k, v in sft.manifest["files"].items() if k.startswith("adapter_weights/")}
    assert latest(instance, "eval_report").manifest["inputs"]["dpo_adapter"] == dpo.version


def test_synthetic_data_continued_pretraining_and_dpo_run_in_the_graph_with_their_gates(tmp_path):
    instance = DagsterInstance.ephemeral()
    stages = {"continued_pretraining": {"enabled": True, "max_steps": 6, "learning_rate": 0.003},
              "dpo": {"enabled": True, "max_steps": 6, "learning_rate": 0.001, "quality_gate": {"min_reward_accuracy": 0.0}}}
    synthetic = {"enabled": True, "generator": "template", "target_count": 1040}
    config = derived_config(tmp_path, {"stages": {"training": stages, "data": {"synthetic": synthetic}}})
    result = run_pipeline(instance, config, tmp_path / "home")
    try:
        assert result.success, [(e.check_name, e.metadata) for e in result.get_asset_check_evaluations() if not e.passed]
        assert latest(instance, "raw_examples").metrics["synthetic_accepted"] == 1040 - 1000  # 1000 valid seed rows
        curated = latest(instance, "curated_dataset").path
        report = json.loads((curated / "data_quality_report.json").read_text())
        removed = [d for d in read_jsonl(curated / "duplicates.jsonl") if d["origin"].startswith("synthetic:")]
        assert report["synthetic_examples"]["template"] + len(removed) == 40
        assert all(d["kind"] == "near" for d in removed)  # exact repeats were already rejected at generation
        context = build_sensor_context(instance=instance, resources={"pipeline": PipelineConfig(config_path=str(config))})
        assert isinstance(training_data_sensor(context), SkipReason)  # trained on exactly the files there now
        training = load_settings(config).stages.training
        for asset, files in (("cpt_model", training.continued_pretraining.corpus), ("dpo_adapter", training.dpo.preferences)):
            recorded = instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata
            assert recorded[SOURCE_FILES].value == file_fingerprints(files) != {}
        checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
        assert checks[("cpt_model", "domain_perplexity")].metadata["value"].value < 1.0
        preference = checks[("dpo_adapter", "preference_accuracy")].metadata
        assert preference["value"].value >= 0.5 and preference["held_out_pairs"].value == 35  # 20% of 176
        assert preference["bound"].value < preference["value"].value  # gated on the 95% lower bound
        assert "note" not in checks[("dpo_adapter", "within_time_budget")].metadata  # measured, not "stage off"
        base, cpt, sft, dpo = (latest(instance, a) for a in ("base_model", "cpt_model", "sft_adapter", "dpo_adapter"))
        assert cpt.version != base.version and cpt.manifest["inputs"]["base_model"] == base.version
        adapter_config = json.loads((sft.path / "adapter_weights" / "adapter_config.json").read_text())
        assert adapter_config["base_model_name_or_path"] == f"cpt_model@{cpt.version}"
        assert {"cpt_model": cpt.version, "sft_adapter": sft.version}.items() <= dpo.manifest["inputs"].items()
        assert (dpo.path / "loss_curves.png").exists() and (dpo.path / "quarantine.jsonl").read_text() == ""
        merged = latest(instance, "merged_model")
        assert merged.manifest["inputs"]["cpt_model"] == cpt.version and merged.manifest["inputs"]["dpo_adapter"] == dpo.version

        # Both new gates can fail: stricter thresholds, the same artifacts, only the gates re-run.
        stages["continued_pretraining"]["quality_gate"] = {"max_perplexity_ratio": 1e-6}
        stages["dpo"]["quality_gate"] = {"min_reward_accuracy": 1.0}
        (tmp_path / "strict").mkdir()
        strict = derived_config(tmp_path / "strict", {"stages": {"training": stages}})
        checked = run_pipeline(instance, strict, tmp_path / "home", job="checks_only")
        failed = {(e.asset_key.to_user_string(), e.check_name) for e in checked.get_asset_check_evaluations() if not e.passed}
        assert failed == {("cpt_model", "domain_perplexity"), ("dpo_adapter", "preference_accuracy")}

        # Each training stage's time budget fails through its own check when the run took longer.
        (tmp_path / "slow").mkdir()
        budget = derived_config(tmp_path / "slow", {"stages": {"training": stages | {"quality_gate": {"max_minutes": 1e-6}}}})
        checked = run_pipeline(instance, budget, tmp_path / "home", job="checks_only")
        failed = {(e.asset_key.to_user_string(), e.check_name) for e in checked.get_asset_check_evaluations() if not e.passed}
        assert {(a, "within_time_budget") for a in ("cpt_model", "sft_adapter", "dpo_adapter")} <= failed
    finally:
        stop_servers(tmp_path / "home")


def test_deployment_status_describes_the_running_server(pipeline):
    instance, home, _ = pipeline
    status = json.loads((home / "deployment_status.json").read_text())
    gguf_event = instance.get_latest_materialization_event(AssetKey("gguf_model")).asset_materialization
    assert status["version"] == gguf_event.metadata["version"].value
    assert status["model_sha256"] == file_sha256(status["model_path"])
    assert status["endpoint"].startswith("http://127.0.0.1:")
    assert servers.is_alive(status["pid"])
    body = json.dumps({"model": status["model_name"], "max_tokens": 8,
                       "messages": [{"role": "user", "content": "Add task: Buy milk"}]}).encode()
    request = urllib.request.Request(f"{status['endpoint']}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] >= 1
    agent = json.loads((home / "agent_config.json").read_text())
    assert agent["endpoint"] == json.loads((home / "gateway" / "gateway.json").read_text())["endpoint"]
    assert agent["endpoint"] != status["endpoint"]  # clients call the gateway, which outlives releases
    assert [t["function"]["name"] for t in agent["tools"]] == ["add_task", "list_tasks", "complete_task", "delete_task"]


def post(url: str, body: dict, headers: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response), dict(response.headers)


def logged(home, request_id: str, timeout_s: float = 10) -> dict:
    """The request log entry of `request_id`, waiting for it a little."""
    from llmops_assets.core.request_log import RequestLog, default_url

    deadline = time.monotonic() + timeout_s
    while (entry := RequestLog(default_url(home)).get(request_id)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert entry is not None, f"request {request_id} was never logged"
    return entry


def test_the_gateway_answers_as_the_champion_with_its_system_prompt_a_request_id_and_a_log_entry(pipeline):
    from llmops_assets.core.request_log import RequestLog, default_url
    from llmops_assets.deployment import gateway

    _, home, _ = pipeline
    status = releases.read_status(home)
    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
    answer, headers = post(f"{endpoint}/chat/completions",  # a bare OpenAI-style call: no system prompt
                           {"model": "anything", "max_tokens": 8, "messages": [{"role": "user", "content": "Delete task 3"}]})
    request_id = headers["x-request-id"]
    assert answer["request_id"] == request_id and headers["x-release-version"] == status["version"]
    assert answer["release"] == {"version": status["version"], "release_number": status["release_number"],
                                 "role": "champion"}
    assert answer["usage"]["completion_tokens"] >= 1
    entry = RequestLog(default_url(home)).get(request_id)
    system_prompt = load_settings(TINY_CONFIG).domain.system_prompt
    assert entry["messages"][0] == {"role": "system", "content": system_prompt}  # added by the gateway
    assert entry["answer"] == answer["choices"][0]["message"]["content"] and entry["status"] == 200
    assert entry["release_version"] == status["version"] and entry["first_token_ms"] <= entry["latency_ms"]
    with urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert f'llmops_gateway_requests_total{{release="{status["version"]}",role="champion",status="200"}}' in metrics
    assert "llmops_gateway_first_token_seconds_bucket" in metrics

    # From the request id to what produced the answer.
    trace = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "--config", str(TINY_CONFIG), "trace", request_id],
                           env=os.environ | {"LLMOPS_HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert trace.returncode == 0, trace.stdout + trace.stderr
    for asset in ("gguf_model", "eval_report", "merged_model", "sft_adapter", "curated_dataset", "raw_examples"):
        assert f"{asset} " in trace.stdout, asset

    # A streaming client gets server-sent events, each chunk stamped, then [DONE]; logged too.
    request = urllib.request.Request(f"{endpoint}/chat/completions", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"stream": True, "max_tokens": 6, "messages": [
                                         {"role": "user", "content": "Show my open tasks"}]}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.decode().strip() for line in response if line.startswith(b"data: ")]
        streamed_id = response.headers["x-request-id"]
    assert events[-1] == "data: [DONE]" and len(events) >= 2
    chunks = [json.loads(event[6:]) for event in events[:-1]]
    assert all(c["request_id"] == streamed_id and c["release"]["version"] == status["version"] for c in chunks)
    streamed = "".join((c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks if c.get("choices"))
    assert logged(home, streamed_id)["answer"] == streamed  # written as the stream ends

    # A gateway that dies comes back on the same port with its log.
    state = json.loads((home / "gateway" / "gateway.json").read_text())
    assert gateway.stop(home) and not servers.is_alive(state["pid"])
    again = gateway.ensure(home, TINY_CONFIG, str(home / "artifacts"), "127.0.0.1", 0)
    assert again["port"] == state["port"] and again["pid"] != state["pid"]
    assert RequestLog(default_url(home)).get(request_id)["answer"] == entry["answer"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(f"{endpoint}/chat/completions", {"messages": "not a list"})
    assert refused.value.code == 400


def test_a_killed_model_server_is_restarted_by_the_gateway_and_no_request_fails(pipeline):
    import signal

    _, home, _ = pipeline
    before = releases.read_status(home)
    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
    os.killpg(before["pid"], signal.SIGKILL)  # the model server dies, with nothing told
    answers = [post(f"{endpoint}/chat/completions", {"max_tokens": 4, "messages": [
        {"role": "user", "content": f"Complete task {n}"}]}) for n in range(3)]
    assert all(body["release"]["version"] == before["version"] for body, _ in answers)  # every one answered
    after = releases.read_status(home)
    assert after["pid"] != before["pid"] and servers.is_our_server(after["pid"], after["pid_started_at"])
    assert (after["endpoint"], after["version"], after["deployed_at"]) == (before["endpoint"], before["version"],
                                                                          before["deployed_at"])
    events = registry_of(home).events()
    assert events[-1].kind == "restarted" and f"pid {before['pid']}" in events[-1].reason


def test_a_real_prometheus_scrapes_the_gateway_per_release(pipeline, tmp_path):
    """Debian's prometheus, started here on 127.0.0.1, scrapes the gateway's /metrics; its query
    API returns the request counter of the served release."""

    _, home, _ = pipeline
    status = releases.read_status(home)
    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
    post(f"{endpoint}/chat/completions", {"max_tokens": 4, "messages": [{"role": "user", "content": "List my tasks"}]})
    target = endpoint.removeprefix("http://").removesuffix("/v1")
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: gateway\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n")
    port = servers.free_port("127.0.0.1")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        query = f"http://127.0.0.1:{port}/api/v1/query?query=llmops_gateway_requests_total"
        series = []
        deadline = time.monotonic() + 60
        while not series and time.monotonic() < deadline:
            time.sleep(1)
            try:
                with urllib.request.urlopen(query, timeout=5) as response:
                    series = json.load(response)["data"]["result"]
            except (urllib.error.URLError, ConnectionError):
                continue
        assert series, "prometheus never returned the gateway's request counter"
        labels = series[0]["metric"]
        assert (labels["release"], labels["role"], labels["status"]) == (status["version"], "champion", "200")
        assert float(series[0]["value"][1]) >= 1
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_the_produced_gguf_loads_in_llama_cpp_and_completes(pipeline):
    from llama_cpp import Llama

    _, home, _ = pipeline
    status = releases.read_status(home)
    llm = Llama(status["model_path"], n_ctx=256, n_threads=1, verbose=False)
    completion = llm.create_completion("<|im_start|>user\nAdd task: Buy milk<|im_end|>\n<|im_start|>assistant\n",
                                       max_tokens=8, temperature=0)
    assert completion["usage"]["completion_tokens"] >= 1
    assert llm.metadata["general.architecture"] == "llama"


@pytest.mark.parametrize("gate, change, blocked", [
    ("final_loss", {"training": {"quality_gate": {"max_final_loss": 0.0}}}, DOWNSTREAM_OF_TRAINING),
    ("task_accuracy", {"evaluation": {"quality_gate": {"min_task_accuracy": 1.0}}},
     {"merged_model", "gguf_model", "deployed_model"}),
])
def test_a_failed_gate_blocks_everything_downstream_and_keeps_what_is_served(pipeline, tmp_path, gate, change, blocked):
    instance, home, _ = pipeline
    before = releases.read_status(home)
    served_sha = file_sha256(before["model_path"])

    result = run_pipeline(instance, derived_config(tmp_path, {"stages": change}), home)

    assert not result.success
    assert [e.check_name for e in result.get_asset_check_evaluations() if not e.passed] == [gate]
    assert not blocked & materialized(result)
    assert {"raw_examples", "curated_dataset", "sft_adapter"} <= materialized(result)
    after = releases.read_status(home)
    assert after == before
    assert file_sha256(after["model_path"]) == served_sha
    assert servers.is_alive(after["pid"])


@pytest.mark.parametrize("check, change", [
    (("curated_dataset", "enough_examples"), {"data": {"quality_gate": {"min_examples": 100_000}}}),
    (("curated_dataset", "few_duplicates"), {"data": {"quality_gate": {"max_duplicate_ratio": 0.0}}}),
    (("curated_dataset", "token_length"), {"data": {"quality_gate": {"max_mean_tokens": 1}}}),
    # Curation kept requests at least 0.85 similar in one split; at 0.5 rephrasings cross splits.
    (("curated_dataset", "no_split_leakage"), {"data": {"quality_gate": {"leakage_similarity": 0.5}}}),
    (("sft_adapter", "within_time_budget"), {"training": {"quality_gate": {"max_minutes": 1e-6}}}),
    (("deployed_model", "serving_health"), {"deployment": {"quality_gate": {"max_first_token_ms": 0.001}}}),
])
def test_each_gate_fails_through_its_check_when_its_threshold_is_not_met(pipeline, tmp_path, check, change):
    """The gates re-run (checks_only) on the same artifacts with one stricter threshold: only that
    gate fails, and what is served does not change."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    checked = run_pipeline(instance, derived_config(tmp_path, {"stages": change}), home, job="checks_only")
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in checked.get_asset_check_evaluations() if not e.passed]
    assert failed == [check]
    assert releases.read_status(home) == before


def test_every_metered_step_records_its_usage_and_cost_and_the_run_sums_them(pipeline):
    instance, _, result = pipeline
    rate = load_settings(TINY_CONFIG).constraints.rates.cpu_core_hour / 3600
    steps = {"raw_examples", "curated_dataset", "base_model", "sft_adapter", "eval_report", "gguf_model", "deployed_model"}
    for asset in steps:
        usage = {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}
        assert usage["wall_seconds"] > 0 and usage["cpu_seconds"] > 0 and usage["gpu_seconds"] == 0  # no GPU here
        assert usage["cost"] == pytest.approx(usage["cpu_seconds"] * rate)
    total = run_usage(instance, result.run_id)
    recorded = [e.step_materialization_data.materialization.metadata for e in result.get_asset_materialization_events()]
    assert total["cost"] > 0 and total["cost"] == pytest.approx(sum(m["cost"].value for m in recorded if "cost" in m))


def test_the_run_budget_gates_fail_when_the_run_is_over_its_budget(pipeline, tmp_path):
    """The gates alone re-run with a budget of a few microseconds: each training stage's
    within_run_budget fails, and what is served does not change."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    tight = derived_config(tmp_path, {"constraints": {"max_time_hours": 1e-9}})
    checked = run_pipeline(instance, tight, home, job="checks_only")
    failed = {(e.asset_key.to_user_string(), e.check_name) for e in checked.get_asset_check_evaluations() if not e.passed}
    assert failed == {(asset, "within_run_budget") for asset in ("cpt_model", "sft_adapter", "dpo_adapter")}
    assert releases.read_status(home) == before


def test_a_training_step_projected_past_the_run_budget_stops_before_spending_it(pipeline, tmp_path):
    """Priced at 1 per CPU core-second with max_cost 1, the new adapter's first 2 of 12 steps
    project the run past its budget: the step stops there (a refusal, not retried), publishes
    nothing, and the rerun with the usual budget resumes from the checkpoint it kept."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    new_adapter = {"stages": {"training": {"learning_rate": 0.0031}}}

    def train_sft_in(folder, changes):
        folder.mkdir()
        config = derived_config(folder, new_adapter | changes)
        return build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(home))) \
            .resolve_job_def("full_pipeline").execute_in_process(asset_selection=[AssetKey("sft_adapter")],
                                                                 instance=instance, raise_on_error=False)

    stopped = train_sft_in(tmp_path / "costly", {"constraints": {"max_cost": 1.0, "rates": {"cpu_core_hour": 3600}}})
    assert "BudgetExceeded: stopped at step 2/12: the run would cost" in failure_reasons(stopped)["sft_adapter"]
    assert not materialized(stopped) and not [e for e in stopped.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    resumed = train_sft_in(tmp_path / "usual", {})
    assert resumed.success
    assert latest(instance, "sft_adapter").metrics["resumed_from"] == "checkpoint-2"
    assert releases.read_status(home) == before


def test_the_search_feeds_its_best_values_to_sft_and_shows_its_study(pipeline, tmp_path):
    """hpo_study on (2 trials): its plots and trials in the metadata, the study in SQLite under the
    home; sft_adapter trains with the best trial's values, its lineage naming the study."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    search = {"enabled": True, "trials": 2, "max_steps": [6, 12], "startup_trials": 2}
    config = derived_config(tmp_path, {"stages": {"training": {"hpo": search}}})
    result = build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(home))) \
        .resolve_job_def("full_pipeline").execute_in_process(
            asset_selection=[AssetKey("hpo_study"), AssetKey("sft_adapter")], instance=instance, raise_on_error=False)
    assert result.success, failure_reasons(result)
    study = {k: v.value for k, v in result.asset_materializations_for_node("hpo_study")[0].metadata.items()}
    assert study["trials"] == 2 and study["storage"] == f"sqlite:///{home / 'optuna.db'}"
    assert "![" in study["optimization_history"] and "![" in study["param_importances"]
    assert study["cpu_seconds"] > 0  # metered like every computing step
    sft = latest(instance, "sft_adapter")
    assert sft.manifest["inputs"]["hpo_study"] == study["version"]
    assert sft.manifest["config"]["learning_rate"] == study["best_params"]["learning_rate"]
    assert sft.manifest["config"]["lora"]["r"] == study["best_params"]["lora_r"]
    assert releases.read_status(home) == before


def test_format_valid_fails_on_a_source_with_a_broken_row(tmp_path):
    """Through the check itself: a source with one row that is not an example."""
    good = (SEED_FILE.read_text().splitlines(keepends=True))
    (tmp_path / "data.jsonl").write_text("".join(good) + '{"messages": [{"role": "user", "content": "hi"}]}\n')
    config = derived_config(tmp_path, {"stages": {"data": {"sources": [str(tmp_path / "data.jsonl")]}}})
    curation = [AssetKey(name) for name in ("base_model", "raw_examples", "curated_dataset")]
    result = build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(tmp_path / "home"))) \
        .resolve_job_def("full_pipeline").execute_in_process(asset_selection=curation, raise_on_error=False,
                                                             instance=DagsterInstance.ephemeral())
    [format_valid] = [e for e in result.get_asset_check_evaluations() if e.check_name == "format_valid"]
    assert not format_valid.passed
    assert format_valid.metadata["value"].value == pytest.approx(len(good) / (len(good) + 1))
    assert "the last message must be the assistant's answer" in str(format_valid.metadata["first_errors"].value)


def failures(result) -> dict[str, str]:
    return failure_reasons(result)


def test_no_job_or_selection_ships_a_candidate_that_failed_or_skipped_evaluation(pipeline, tmp_path):
    instance, home, _ = pipeline
    before = releases.read_status(home)
    (tmp_path / "strict").mkdir()
    strict = derived_config(tmp_path / "strict", {"stages": {"evaluation": {"quality_gate": {"min_task_accuracy": 1.0}}}})
    assert not run_pipeline(instance, strict, home).success  # the candidate fails evaluation

    deploy_only = run_pipeline(instance, strict, home, job="deploy_only")
    assert "did not pass evaluation (task_accuracy" in failures(deploy_only)["merged_model"]

    deployment = [AssetKey(name) for name in ("merged_model", "gguf_model", "deployed_model")]
    selected = build_definitions(PipelineConfig(config_path=str(strict)), ArtifactStoreResource(home=str(home))) \
        .resolve_job_def("full_pipeline").execute_in_process(asset_selection=deployment, instance=instance,
                                                             raise_on_error=False)
    assert "did not pass evaluation" in failures(selected)["merged_model"]

    (tmp_path / "retrained").mkdir()
    retrained = derived_config(tmp_path / "retrained", {"stages": {"training": {"learning_rate": 0.002}}})
    training = [AssetKey(name) for name in ("sft_adapter", "dpo_adapter")]
    assert build_definitions(PipelineConfig(config_path=str(retrained)), ArtifactStoreResource(home=str(home))) \
        .resolve_job_def("full_pipeline").execute_in_process(asset_selection=training, instance=instance).success
    unevaluated = run_pipeline(instance, retrained, home, job="deploy_only")
    assert "was never evaluated" in failures(unevaluated)["merged_model"]
    assert releases.read_status(home) == before and servers.is_alive(before["pid"])


def test_an_unfaithful_gguf_is_never_served(pipeline, tmp_path):
    """The fidelity gate fails through its check, and deployed_model refuses the GGUF itself."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    store = ArtifactStore(home / "artifacts")
    gguf = latest(instance, "gguf_model")
    fidelity = json.loads((gguf.path / "fidelity.json").read_text())
    with store.write("gguf_model", inputs=gguf.manifest["inputs"], config={"unfaithful": True}) as out:
        for name in ("model.gguf", "ollama.json", "Modelfile"):
            (out.dir / name).write_bytes((gguf.path / name).read_bytes())
        (out.dir / "fidelity.json").write_text(json.dumps(fidelity | {"evaluated_task_accuracy": 0.9,
                                                                      "gguf_task_accuracy": 0.5}))
        out.metrics = gguf.metrics
    instance.report_runless_asset_event(AssetMaterialization("gguf_model", metadata={
        "version": out.version, "artifact": store.url_of("gguf_model", out.version)}))
    faithful = derived_config(tmp_path, {"stages": {"deployment": {"quality_gate": {"max_fidelity_drop": 0.05}}}})
    checked = run_pipeline(instance, faithful, home, job="checks_only")
    [fidelity_check] = [e for e in checked.get_asset_check_evaluations() if e.check_name == "gguf_fidelity"]
    assert not fidelity_check.passed and fidelity_check.metadata["value"].value == pytest.approx(0.4)
    deployment = [AssetKey("deployed_model")]
    attempt = build_definitions(PipelineConfig(config_path=str(faithful)), ArtifactStoreResource(home=str(home))) \
        .resolve_job_def("full_pipeline").execute_in_process(asset_selection=deployment, instance=instance,
                                                             raise_on_error=False)
    assert "is not faithful to the evaluated model" in failures(attempt)["deployed_model"]
    assert releases.read_status(home) == before
    instance.report_runless_asset_event(AssetMaterialization("gguf_model", metadata={
        "version": gguf.version, "artifact": gguf.url}))  # the real one is the latest again


def test_rollback_serves_the_previous_release_again_without_retraining(pipeline, tmp_path):
    instance, home, _ = pipeline
    first = releases.read_status(home)
    retrained = derived_config(tmp_path, {"stages": {"training": {"learning_rate": 0.002}}})
    assert run_pipeline(instance, retrained, home).success
    second = releases.read_status(home)
    assert second["version"] != first["version"] and second["previous_version"] == first["version"]
    assert not servers.is_alive(first["pid"])

    result = run_pipeline(instance, TINY_CONFIG, home, job="rollback", run_config=rollback_to("previous"))

    assert result.success
    assert materialized(result) == {"deployed_model"}
    event = instance.get_latest_materialization_event(AssetKey("deployed_model")).asset_materialization
    assert event.metadata["rolled_back_from"].value == second["version"]
    restored = releases.read_status(home)
    assert restored["version"] == first["version"] and restored["model_path"] == first["model_path"]
    assert file_sha256(restored["model_path"]) == first["model_sha256"]
    assert servers.is_alive(restored["pid"]) and not servers.is_alive(second["pid"])
    hello = [{"role": "user", "content": "hi"}]
    assert chat_completion(restored["endpoint"], restored["model_name"], hello, max_tokens=4) is not None


def test_rollback_to_a_version_never_served_is_refused(pipeline):
    instance, home, _ = pipeline
    before = releases.read_status(home)
    result = run_pipeline(instance, TINY_CONFIG, home, job="rollback", run_config=rollback_to("0123456789abcdef"))
    assert not result.success
    assert releases.read_status(home) == before


def test_a_candidate_failing_its_probes_is_stopped_and_the_served_release_stays(pipeline, tmp_path):
    instance, home, _ = pipeline
    before = releases.read_status(home)
    target = registry_of(home).events()[0].version
    strict = derived_config(tmp_path, {"stages": {"deployment": {"quality_gate": {"max_first_token_ms": 0.001}}}})

    result = run_pipeline(instance, strict, home, job="rollback", run_config=rollback_to(target))

    assert not result.success
    assert releases.read_status(home) == before and servers.is_alive(before["pid"])
    rejected = registry_of(home).events()[-1]
    assert rejected.kind == "rejected" and rejected.version == target and "first_token_ms" in rejected.reason


def test_a_shadow_never_answers_a_client_and_an_equal_challenger_is_promoted_by_the_analysis(pipeline, tmp_path):
    """Promotion `shadow`: a second real release answers a copy of every request, logged and never
    returned; the canary sensor asks for an analysis; equal on every KPI (margins widened for a
    test-sized sample), the challenger becomes the champion through canary_analysis and
    release_roles, and the old champion's server stops."""

    from llmops_assets.core.request_log import RequestLog, default_url
    from llmops_assets.orchestration.deployment.promotion import canary_sensor

    instance, home, _ = pipeline
    before = releases.read_status(home)
    wide = {k: 0.5 for k in ("probe_accuracy_margin", "error_rate_margin", "slow_rate_margin",
                             "invalid_tool_call_margin")}
    promotion = {"mode": "shadow", "probes_per_analysis": 25, "quality_gate": wide}
    config = derived_config(tmp_path, {"stages": {"deployment": {"quantization": "Q8_0", "promotion": promotion}}})
    assert run_pipeline(instance, config, home, job="deploy_only").success
    registry = registry_of(home)
    shadow = registry.challenger()
    assert shadow.role == "shadow" and shadow.traffic_weight == 0 and shadow.version != before["version"]
    assert releases.read_status(home) == before  # the champion is untouched

    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
    deadline = time.monotonic() + 5  # the gateway re-reads the registry every half second
    while "shadow" not in {m["role"] for m in json.load(urllib.request.urlopen(f"{endpoint}/models"))["data"]}:
        assert time.monotonic() < deadline, "the gateway never listed the shadow"
        time.sleep(0.1)
    answered = [post(f"{endpoint}/chat/completions", {"max_tokens": 8, "user": f"user-{n}", "messages": [
        {"role": "user", "content": f"Add task: call {n}"}]})[0] for n in range(40)]
    assert {(a["release"]["version"], a["release"]["role"]) for a in answered} == {(before["version"], "champion")}
    ids = {a["request_id"] for a in answered}
    log = RequestLog(default_url(home))
    deadline = time.monotonic() + 60
    while len(copies := [r for r in log.since(shadow.deployed_at) if r["shadow_of"] in ids]) < 40 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(copies) == 40 and {r["release_version"] for r in copies} == {shadow.version}
    assert not ids & {r["request_id"] for r in copies}  # a shadow's answer is its own entry, never the client's

    with build_sensor_context(instance=instance, resources={
            "pipeline": PipelineConfig(config_path=str(config)), "artifacts": ArtifactStoreResource(home=str(home))}) as context:
        request = canary_sensor(context)
        assert request.run_key.startswith(f"canary:{shadow.release_number}:") and request.tags["dagster/priority"] == "10"
        # One analysis waits in the queue at a time (behind a long training run, one per tick piled up).
        waiting = DagsterRun(job_name="canary_review", run_id=make_new_run_id(), status=DagsterRunStatus.STARTED)
        instance.add_run(waiting)
        assert canary_sensor(context).skip_message == "a canary_review run is STARTED already"
        instance.delete_run(waiting.run_id)
    decisions = []
    for _ in range(4):
        result = run_pipeline(instance, config, home, job="canary_review")
        assert result.success
        analysis = instance.get_latest_materialization_event(AssetKey("canary_analysis")).asset_materialization
        decisions.append(analysis.metadata["decision"].value)
        if registry.champion().release_number == shadow.release_number:
            break
    assert decisions[-1] == "promote" and "rollback" not in decisions, decisions
    assert "release_roles" in materialized(result)
    after = releases.read_status(home)
    assert after["version"] == shadow.version and after["role"] == "champion"
    assert json.loads((home / "agent_config.json").read_text())["version"] == shadow.version
    assert not servers.is_alive(before["pid"]) and registry.challenger() is None
    assert post(f"{endpoint}/chat/completions", {"max_tokens": 4, "messages": [
        {"role": "user", "content": "List my tasks"}]})[0]["release"]["version"] == shadow.version


def take_feedback(instance, config, home) -> list:
    """What feedback_sensor launches, run here: each feedback_log day with new items."""
    resources = {"pipeline": PipelineConfig(config_path=str(config)), "artifacts": ArtifactStoreResource(home=str(home))}
    requests = feedback_sensor(build_sensor_context(instance=instance, resources=resources))
    requests = [] if isinstance(requests, SkipReason) else requests
    for request in requests:
        assert materialize([feedback_log], instance=instance, resources=resources,
                           partition_key=request.partition_key).success
    return requests


def test_feedback_becomes_preference_pairs_that_dpo_trains_a_canary_on(pipeline, tmp_path):
    """Corrections sent to the gateway on served answers become preference pairs (poisoned ones
    quarantined or capped), DPO trains on them, and the trained adapter goes through evaluation to
    a canary beside the champion; the pairs lead back to the feedback items."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]

    asked = []

    def ask_and_correct(text: str, correction, key: str) -> bool:
        """Whether the answer had any text (an empty answer makes no pair: quarantined as such)."""
        answer, _ = post(f"{endpoint}/chat/completions", {"max_tokens": 8, "messages": [
            {"role": "user", "content": text}]}, {"Authorization": f"Bearer {key}"})
        asked.append(answer["request_id"])
        post(f"{endpoint}/feedback", {"request_id": answer["request_id"], "rating": -1, "correction": correction},
             {"Authorization": f"Bearer {key}"})
        return bool(answer["choices"][0]["message"]["content"].strip())

    # A systematic mistake corrected by 24 users; one key floods 10 corrections; one breaks the schema.
    users = sum(ask_and_correct(f"please get rid of to-do number {n + 300}", {"name": "delete_task", "arguments": {
        "task_id": n + 300}}, f"user-{n}") for n in range(24))
    flood = sum(ask_and_correct(f"throw away item {n + 500}", {"name": "delete_task", "arguments": {
        "task_id": n + 500}}, "flooder") for n in range(10))
    ask_and_correct("drop everything", {"name": "delete_all", "arguments": {}}, "user-x")
    expected_pairs = users + min(flood, 3)
    assert expected_pairs >= 20, "the tiny model answered nothing to most requests"

    # corrections_as_examples off: here the pairs alone are followed (the SFT rows they also give
    # are orchestration/test_feedback_sensors.py's), so no correction moves into the test split.
    feedback_rules = {"min_pairs": 20, "held_out_share": 0.2, "max_pairs_per_client": 3,
                      "corrections_as_examples": False}
    dpo = {"max_steps": 2, "quality_gate": {"min_reward_accuracy": 0.0, "min_held_out_pairs": 5}}
    config = derived_config(tmp_path, {"stages": {"data": {"feedback": feedback_rules}, "training": {"dpo": dpo},
                                                  "deployment": {"promotion": {"mode": "canary"}}}})
    assert [r.partition_key for r in take_feedback(instance, config, home)] == [time.strftime("%Y-%m-%d", time.gmtime())]
    result = run_pipeline(instance, config, home)
    assert result.success, [(e.check_name, e.metadata) for e in result.get_asset_check_evaluations() if not e.passed]
    assert {"preference_pairs", "dpo_adapter", "eval_report", "deployed_model"} <= materialized(result)
    pairs = latest(instance, "preference_pairs")
    report = json.loads((pairs.path / "report.json").read_text())
    assert (report["pairs"], report["quarantined"], report["ready"]) == (expected_pairs, 35 - expected_pairs, True)
    reasons = [q["reason"] for q in read_jsonl(pairs.path / "quarantine.jsonl")]
    assert sum("max_pairs_per_client" in r for r in reasons) == flood - 3 and sum("delete_all" in r for r in reasons) == 1
    adapter = latest(instance, "dpo_adapter")
    assert adapter.manifest["inputs"]["preference_pairs"] == pairs.version
    trained = json.loads((adapter.path / "training_metrics.json").read_text())
    assert trained["feedback_pairs"] == expected_pairs and trained["held_out_pairs"] == round(expected_pairs * 0.2)
    # The seed's preference pairs train beside the feedback as anchors (dpo.replay), though DPO is off.
    assert trained["preference_pairs"] == expected_pairs + len(read_jsonl(PREFERENCES_FILE))
    challenger = registry_of(home).challenger()
    assert challenger.role == "canary" and challenger.inputs["eval_report"] == latest(instance, "eval_report").version
    assert releases.read_status(home)["version"] == before["version"]  # the champion serves on, untouched
    feedback_ids = {p["feedback_id"] for p in read_jsonl(pairs.path / "pairs.jsonl")}
    assert len(feedback_ids) == expected_pairs  # each pair names the feedback item it came from

    def trace(request_id: str) -> str:
        done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "--config", str(config), "trace", request_id],
                              env=os.environ | {"LLMOPS_HOME": str(home)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    [paired] = [r for r in asked[:24] if r in {p["request_id"] for p in read_jsonl(pairs.path / "pairs.jsonl")}][:1]
    followed = trace(paired)
    assert f"a preference pair in preference_pairs {pairs.version}" in followed
    assert f"trained dpo_adapter {adapter.version}" in followed
    assert f"served as release {challenger.release_number} (canary)" in followed
    assert "quarantined" in trace(asked[-1]) and "delete_all" in trace(asked[-1])


def test_auto_deploys_to_ollama_when_it_answers_through_the_official_client(pipeline, tmp_path, monkeypatch):
    """Runs against the Ollama HTTP test double (Ollama cannot be installed here); the live test
    below does the same against a real server when OLLAMA_HOST answers."""
    instance, home, _ = pipeline
    before = releases.read_status(home)
    with OllamaDouble() as double:
        monkeypatch.setenv("OLLAMA_HOST", double.host)
        result = run_pipeline(instance, TINY_CONFIG, home, job="rollback", run_config=rollback_to(before["version"]))
        assert result.success, [(e.check_name, e.metadata) for e in result.get_asset_check_evaluations()]
        status = releases.read_status(home)
        assert status["server"] == "ollama" and status["endpoint"] == double.host
        assert status["model"] == f"tiny-task-api:v{status['release_number']}"
        assert set(double.models) == {status["model"], "tiny-task-api:latest"}
        served = double.models["tiny-task-api:latest"]
        assert served["blob"] == "sha256:" + file_sha256(before["model_path"])
        spec = json.loads((Path(before["model_path"]).parent / "ollama.json").read_text())
        assert served["template"] == spec["template"] and served["parameters"]["stop"] == ["<|im_end|>"]
        assert ("POST", "/api/chat") in double.requests and ("GET", "/api/ps") in double.requests
        assert not servers.is_alive(before["pid"])  # the llama.cpp release it replaced was retired


@pytest.mark.skipif(not ollama_answers(ollama_host()), reason=f"no Ollama server answers at {ollama_host()}")
def test_live_ollama_serves_the_release(pipeline, monkeypatch):
    instance, home, _ = pipeline
    version = registry_of(home).events()[0].version
    result = run_pipeline(instance, TINY_CONFIG, home, job="rollback", run_config=rollback_to(version))
    assert result.success
    status = releases.read_status(home)
    assert status["server"] == "ollama" and status["version"] == version


def test_a_served_model_generates_synthetic_rows_that_pass_validation_or_are_kept_with_why(pipeline, tmp_path):
    from llmops_assets.core.examples import format_problems
    from llmops_assets.core.tools import ToolSchema
    from llmops_assets.data.config import QualityFilterSettings, SyntheticSettings
    from llmops_assets.data.expand import endpoint_asker, expand
    from llmops_assets.data.ingest import ingest
    from llmops_assets.settings import load_settings

    instance, _, _ = pipeline
    settings = load_settings(TINY_CONFIG)
    schema = ToolSchema.from_file(settings.domain.tools_file)
    seeds = ingest(settings.stages.data.sources).records
    synthetic = SyntheticSettings(enabled=True, generator="llm", target_count=len(seeds) + 4, max_attempts_per_example=2)
    # The pipeline's GGUF on a llama.cpp server of its own: other tests here change what is served.
    server = servers.start_llamacpp(latest(instance, "gguf_model").path / "model.gguf", "generator", "127.0.0.1", 0,
                                    1, 1024, tmp_path)
    try:
        servers.wait_healthy(server.endpoint, server.pid, 60)
        ask = endpoint_asker(synthetic, {"endpoint": server.endpoint, "model_name": "generator"})  # as if served
        asked = []

        def recorded(messages, response_format, seed):
            asked.append(ask(messages, response_format, seed))
            return asked[-1]

        expansion = expand(seeds, schema, synthetic, QualityFilterSettings(), recorded)
    finally:
        servers.stop(server.pid)
    assert expansion.attempts == len(asked) == len(expansion.records) + len(expansion.rejected) <= 8
    complete = [json.loads(text[text.find("{"):], strict=False) for text in asked if _is_json(text[text.find("{"):])]
    assert all(answer.keys() >= {"request", "tool"} for answer in complete)  # the schema-constrained decoder's shape
    assert not any(format_problems(r["messages"], schema) for r in expansion.records)
    assert all(q["reason"] and q["raw"] in asked for q in expansion.rejected)
    with pytest.raises(ValueError, match="no model is deployed yet"):
        endpoint_asker(synthetic, None)


def _is_json(text: str) -> bool:
    """A whole JSON document (an answer cut short by the token limit is not)."""
    try:
        json.loads(text, strict=False)
    except json.JSONDecodeError:
        return False
    return True


def test_the_pipeline_runs_with_its_artifact_root_on_s3(tmp_path, s3_bucket):
    """The whole graph with artifacts on S3 (moto's server mode on 127.0.0.1, a test double of
    S3): every gate passes, every version is in the bucket with its manifest, nothing is kept in
    a local artifact folder, and a rerun with nothing changed reuses what is there."""
    url = f"{s3_bucket}/artifacts"
    home = tmp_path / "home"
    resources = (PipelineConfig(config_path=str(TINY_CONFIG)), ArtifactStoreResource(home=str(home), url=url))
    instance = DagsterInstance.ephemeral()
    try:
        result = build_definitions(*resources).resolve_job_def("full_pipeline").execute_in_process(
            instance=instance, raise_on_error=False)
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
        store = ArtifactStore(url, cache_dir=tmp_path / "elsewhere")
        for asset in EVERY_RUN:
            [artifact] = store.versions(asset)
            metadata = instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata
            assert metadata["version"].value == artifact.version and metadata["artifact"].value == artifact.url
        assert not (home / "artifacts").exists()
        served = releases.read_status(home)
        assert chat_completion(served["endpoint"], served["model"], [{"role": "user", "content": "list my tasks"}])
        again = build_definitions(*resources).resolve_job_def("full_pipeline").execute_in_process(
            instance=instance, raise_on_error=False)
        assert again.success
        assert all(len(store.versions(asset)) == 1 for asset in EVERY_RUN - {"raw_examples"})
    finally:
        stop_servers(home, ArtifactStore(url, cache_dir=home / "cache"))


def test_regression_compares_with_the_champion_even_when_it_is_stopped_and_never_silently_with_the_base(tmp_path):
    """After `llmops serve stop`, the next candidate is still compared with the champion (its
    merged model, in transformers like the candidate); when that model is gone, evaluation fails
    saying why instead of comparing with the untrained base model."""
    home, instance = tmp_path / "home", DagsterInstance.ephemeral()
    try:
        assert run_pipeline(instance, TINY_CONFIG, home).success
        registry = registry_of(home)
        champion = registry.champion()
        servers.stop(champion.pid, champion.pid_started_at)
        registry.mark_stopped(champion.release_number, "llmops serve stop")
        (tmp_path / "a").mkdir()
        changed = derived_config(tmp_path / "a", {"stages": {"evaluation": {"bootstrap_samples": 201}}})
        run_pipeline(instance, changed, home)
        report = json.loads((latest(instance, "eval_report").path / "eval_report.json").read_text())
        assert report["baseline_comparison"]["champion"] == f"champion {champion.version} (stopped)"

        # The champion's answers are the ones it gave in its own evaluation, not generated again:
        # its merged model is the same weights in the same runtime, so it answers alike.
        store = ArtifactStore(home / "artifacts")
        merged = store.get("gguf_model", champion.version).manifest["inputs"]["merged_model"]
        own = store.get("eval_report", champion.inputs["eval_report"])
        assert report["baseline_comparison"]["champion_task_accuracy"] == own.metrics["task_accuracy"]
        assert not [a for a in store.versions("baseline_answers") if a.manifest["inputs"]["model"].endswith(merged)]
        evaluated_as = {k: store.get(k, own.manifest["inputs"][k]).path for k in ("cpt_model", "dpo_adapter")}
        candidate, tokenizer = load_merged(evaluated_as["cpt_model"] / "model", evaluated_as["dpo_adapter"] / "adapter_weights")
        served, _ = load_base(home / "artifacts" / "merged_model" / merged / "model")
        prompts = [p["prompt"] for p in read_jsonl(own.path / "predictions.jsonl")[:4]]
        assert (generate_answers(candidate, tokenizer, prompts, 4, 24, print)
                == generate_answers(served, tokenizer, prompts, 4, 24, print))

        shutil.rmtree(home / "artifacts" / "merged_model" / merged)
        (tmp_path / "b").mkdir()
        again = run_pipeline(instance, derived_config(tmp_path / "b", {"stages": {"evaluation": {"bootstrap_samples": 202}}}),
                             home)
        assert f"the champion {champion.version} (release " in failures(again)["eval_report"]
        assert "has no merged model" in failures(again)["eval_report"]
    finally:
        stop_servers(home)
