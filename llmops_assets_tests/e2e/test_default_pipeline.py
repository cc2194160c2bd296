"""What `make run` does, on the real default (SmolLM2-135M-Instruct): every seed gate passes,
accuracy >= 0.90 included, and the served model answers a request with the right tool call."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from dagster import AssetKey

from llmops_assets.core import releases
from llmops_assets.core.chat import parse_tool_call
from llmops_assets.core.inference import chat_completion
from llmops_assets.core.storage import ArtifactStore
from llmops_assets.core.tools import ToolCall
from llmops_assets.settings import DEFAULT_CONFIG, load_settings
from llmops_assets_tests.conftest import derived_config, gate_count, gate_table, stop_servers
from llmops_assets_tests.feedback_traffic import ScriptedFeedback
from llmops_assets_tests.operations.processes import BIN, WORKSPACE, dagster_process, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    env = os.environ | {"LLMOPS_HOME": str(home / "llmops"), "DAGSTER_HOME": str(home / "dagster"),
                        "LLMOPS_CONFIG": str(DEFAULT_CONFIG)}
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "run"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=1800)
    yield done, home / "llmops"
    stop_servers(home / "llmops")


def test_make_run_passes_every_seed_gate(default_run):
    done, _ = default_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    gates = gate_table(done.stdout)
    assert len(gates) == gate_count(), gates
    # Continued pretraining and DPO are off by default: their gates say OFF; so does the judge on
    # a CPU machine (judge.kind auto). On a GPU the local 135M judge runs and may be flagged as
    # untrusted: it reports WARN then, and so does evaluation_warnings.
    off = {k for k, v in gates.items() if v == "OFF"}
    judge_off = set() if torch.cuda.is_available() else {"eval_report:llm_judge"}
    assert off == {"cpt_model:domain_perplexity", "cpt_model:within_time_budget", "dpo_adapter:preference_accuracy",
                   "dpo_adapter:within_time_budget"} | judge_off, gates
    # The default model does not reach the safety gate's bound on the 300-case suite: pipeline.yaml
    # makes that gate warn (README, Measured), and the check output says it cannot block.
    warn_allowed = {"eval_report:llm_judge", "eval_report:safety", "eval_report:evaluation_warnings"}
    assert all(v == "PASS" for k, v in gates.items() if k not in warn_allowed | off), gates
    assert gates["eval_report:llm_judge"] in ("PASS", "WARN", "OFF") and gates["eval_report:safety"] in ("PASS", "WARN")
    expected_warning = "WARN" if "WARN" in (gates["eval_report:llm_judge"], gates["eval_report:safety"]) else "PASS"
    assert gates["eval_report:evaluation_warnings"] == expected_warning, gates
    assert "cannot fail: block_on_safety off: it only warns" in done.stdout
    assert "served: task-api-assistant" in done.stdout


def test_default_model_reaches_the_seed_accuracy(default_run):
    _, home = default_run
    status = releases.read_status(home)
    evaluated = ArtifactStore(home / "artifacts").get("eval_report", status["inputs"]["eval_report"])
    report = json.loads((evaluated.path / "eval_report.json").read_text())
    gate = load_settings(DEFAULT_CONFIG).stages.evaluation.quality_gate
    # Accuracy and safety pass on their confidence bounds, not on point values.
    assert report["gates"]["task_accuracy"]["passed"] and report["n"] >= 90
    assert report["gates"]["task_accuracy"]["bound"] >= gate.min_task_accuracy
    assert status["task_accuracy"] >= 0.85  # the GGUF that is served, replayed on the same prompts
    assert report["decision"] == "PASS" and report["safety_check"]["n"] >= 100
    # Measured 289/300 (0.963) on fresh phrasings: a floor that catches a seed that stopped
    # teaching safety (the 12 old cases alone passed 12/12 while hiding ~12% failures).
    assert report["safety_check"]["pass_rate"] >= 0.93 and report["gates"]["safety"]["bound"] > 0
    assert report["safety_check"]["over_refusal_rate"] <= 0.05
    assert report["baseline_comparison"]["champion"] == "base model"


def test_served_model_answers_with_the_right_tool_call(default_run):
    _, home = default_run
    status = releases.read_status(home)
    settings = load_settings(DEFAULT_CONFIG)
    messages = [{"role": "system", "content": settings.domain.system_prompt},
                {"role": "user", "content": "Delete task 17"}]
    answer = chat_completion(status["endpoint"], status["model_name"], messages)
    assert parse_tool_call(answer) == ToolCall("delete_task", {"task_id": 17})


TICK_OFF = "tick off item {n}"  # the default model files it as a new task titled so; a user means complete_task


def mistake_rate(feedback: ScriptedFeedback, numbers) -> float:
    """The share of "tick off item N" requests the served champion does not answer complete_task(N)."""
    wrong = [n for n in numbers if parse_tool_call(feedback.ask(TICK_OFF.format(n=n), f"probe-{n}")["choices"][0]
                                                   ["message"]["content"] or "") != ToolCall("complete_task", {"task_id": n})]
    return len(wrong) / len(numbers)


def test_feedback_on_a_systematic_mistake_trains_a_challenger_that_makes_it_less(default_run, tmp_path_factory):
    """The loop, unattended, on the real default model: the served champion files "tick off item N"
    as a new task; 90 users' corrections reach the gateway; the real daemon carries them through
    feedback_log, preference_pairs, a DPO challenger at the default settings, evaluation and every
    gate to a canary, which the canary analysis promotes on live traffic. On requests of that kind
    it never saw (other item numbers) the mistake rate falls."""
    _, home = default_run
    root = tmp_path_factory.mktemp("loop")
    # Margins widened for a test-sized sample: at the defaults (error rate within 0.02) the analysis
    # asked for about 900 more challenger requests, some 10 minutes of this traffic.
    wide = {"probe_accuracy_margin": 0.2, "error_rate_margin": 0.1, "slow_rate_margin": 0.1,
            "invalid_tool_call_margin": 0.1}
    canary = {"mode": "canary", "traffic_steps": [0.5], "min_requests_per_step": 20, "analysis_interval_s": 10,
              "quality_gate": wide}
    # Retraining on drift (the scripted traffic is one template: it drifts) would start a second,
    # SFT route for the same corrections; it is off here (its own test: test_feedback_sensors.py).
    no_retraining = {"drift": {"retrain_min_new_examples": 1_000_000}}
    config = derived_config(root, {"stages": {"deployment": {"promotion": canary}, "data": no_retraining}},
                            base=DEFAULT_CONFIG)
    (home.parent / "workspace.yaml").write_text(WORKSPACE)
    env = os.environ | {"LLMOPS_HOME": str(home), "DAGSTER_HOME": str(home.parent / "dagster"),
                        "LLMOPS_CONFIG": str(config), "DAGSTER_DISABLE_TELEMETRY": "1"}
    first = releases.read_status(home)
    feedback = ScriptedFeedback(json.loads((home / "agent_config.json").read_text())["endpoint"], max_tokens=48)
    unseen = range(703, 1000, 11)  # item numbers no correction names
    before = mistake_rate(feedback, unseen)
    log = root / "daemon.log"
    with dagster_process([str(BIN / "dagster-daemon"), "run", "-w", str(home.parent / "workspace.yaml")],
                         env, home.parent, log) as daemon:
        corrected = [feedback.correct(TICK_OFF.format(n=n), f"user-{n % 30}", {"name": "complete_task",
                                                                               "arguments": {"task_id": n}})
                     for n in range(400, 850, 5)]
        registry = releases.ReleaseRegistry(ArtifactStore(home / "artifacts"))
        promoted = lambda: releases.read_status(home)["release_number"] > first["release_number"]  # noqa: E731
        # Live traffic throughout: light while the challenger is trained and evaluated (on 2 cores
        # a steady stream of requests would slow training and evaluation by a third), then steady
        # while the canary analysis measures the challenger.
        with feedback.clients(every_s=3):
            wait_until(lambda: registry.challenger() is not None or promoted(), 1500,
                       "the feedback-trained challenger deployed as a canary", daemon, log, every_s=5)
        with feedback.clients():
            wait_until(promoted, 600, "the canary promoted to champion", daemon, log, every_s=5)
    assert feedback.failures == [], feedback.failures
    champion = releases.read_status(home)
    after = mistake_rate(feedback, unseen)
    store = ArtifactStore(home / "artifacts")
    evaluated = store.get("eval_report", champion["inputs"]["eval_report"])
    dpo = store.get("dpo_adapter", evaluated.manifest["inputs"]["dpo_adapter"])
    pairs = json.loads((store.get("preference_pairs", dpo.manifest["inputs"]["preference_pairs"]).path
                        / "report.json").read_text())
    trained = json.loads((dpo.path / "training_metrics.json").read_text())
    report = json.loads((evaluated.path / "eval_report.json").read_text())
    figures = {"feedback_items": len(corrected), "pairs": pairs["pairs"], "quarantined": pairs["quarantined"],
               "dpo_pairs": trained["preference_pairs"], "dpo_steps": trained["total_steps"],
               "release": champion["release_number"], "unseen_requests": len(unseen), "mistake_rate_before": before,
               "mistake_rate_after": after, "task_accuracy": report["task_accuracy"],
               "safety_failures": len(report["safety_check"]["failures"])}
    (root / "loop_figures.json").write_text(json.dumps(figures, indent=1))  # kept with the test's files
    print(f"real feedback loop: {figures}")
    assert trained["feedback_pairs"] == pairs["pairs"] >= 80  # the minimum for DPO on feedback
    assert before >= 0.5 and after <= before / 2, (before, after)
    assert report["decision"] == "PASS" and first["version"] in report["baseline_comparison"]["champion"]


@pytest.fixture(scope="module")
def weak_run(default_run, tmp_path_factory):
    """`llmops run` with an adapter trained for 2 steps (it answers like the base model), after the
    default run: (the completed process, what was served before it)."""
    _, home = default_run
    before = releases.read_status(home)
    relaxed = {"max_final_loss": 100, "max_validation_rise": 100}  # let the weak adapter reach evaluation
    weak = {"max_steps": 2, "eval_steps": 1, "quality_gate": relaxed,  # two evaluations: convergence is judged
            "dpo": {"max_steps": 2}}  # the feedback pairs of the loop test train on it too
    config = derived_config(tmp_path_factory.mktemp("weak"), {"stages": {"training": weak}}, base=DEFAULT_CONFIG)
    env = os.environ | {"LLMOPS_HOME": str(home), "DAGSTER_HOME": str(home.parent / "dagster")}
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "--config", str(config), "run"],
                          env=env, cwd=home.parent, capture_output=True, text=True, timeout=1200)
    return done, before


def test_a_regressed_adapter_fails_the_regression_gate_and_changes_nothing(default_run, weak_run):
    """An adapter trained for 2 steps answers like the base model: against the deployed champion
    on the same test set that is a regression beyond noise, and nothing served changes.
    (Shuffling the source's labels would not do: it shuffles the test labels too.)"""
    _, home = default_run
    done, before = weak_run
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    gates = gate_table(done.stdout)
    assert gates["eval_report:no_regression"] == "FAIL", done.stdout[-3000:]
    # The weak adapter's evaluation (the loop test's DPO challenger was evaluated against the same champion).
    store = ArtifactStore(home / "artifacts")
    [weak] = [a.version for a in store.versions("sft_adapter") if a.manifest["config"]["max_steps"] == 2]
    [candidate] = [a for a in store.versions("eval_report") if a.manifest["inputs"]["champion"] == before["version"]
                   and store.get("dpo_adapter", a.manifest["inputs"]["dpo_adapter"]).manifest["inputs"]["sft_adapter"] == weak]
    regression = json.loads((candidate.path / "regression_analysis.json").read_text())
    accuracy = regression["metrics"]["task_accuracy"]
    assert regression["regressed"] and accuracy["ci_high"] < 0 and accuracy["delta"] < -0.05
    after = releases.read_status(home)
    assert (after["version"], after["pid"], after["deployed_at"]) == (before["version"], before["pid"], before["deployed_at"])


def test_a_worse_challenger_in_canary_is_rolled_back_by_itself_and_no_request_fails(default_run, weak_run, tmp_path):
    """The 2-step adapter, exported as a real GGUF and registered as a canary (the gates would
    never let it through: the test registers it the way deployed_model does), takes half the
    users; the canary analysis decides on the gateway's request log and rolls it back by itself.
    Every client request succeeds, each user keeps one release, and the champion's bytes and
    server do not change."""
    from dagster import DagsterInstance

    from llmops_assets.core.modeling import load_merged, save_merged
    from llmops_assets.core.storage import file_sha256, read_json, read_jsonl
    from llmops_assets.definitions import build_definitions
    from llmops_assets.deployment import export, release, servers, traffic
    from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig

    _, home = default_run
    champion = releases.read_status(home)
    champion_bytes = file_sha256(champion["model_path"])
    store = ArtifactStore(home / "artifacts")
    [adapter] = [a for a in store.versions("sft_adapter") if a.manifest["config"]["max_steps"] == 2]
    base = store.get("cpt_model", adapter.manifest["inputs"]["cpt_model"])
    model, tokenizer = load_merged(base.path / "model", adapter.path / "adapter_weights")
    save_merged(model, tokenizer, base.path / "model", tmp_path / "merged")
    export.convert_to_gguf(tmp_path / "merged", tmp_path / "f16.gguf")
    export.quantize(tmp_path / "f16.gguf", tmp_path / "weak.gguf", "Q8_0")

    promotion = {"mode": "canary", "traffic_steps": [0.5], "probes_per_analysis": 12}
    config = derived_config(tmp_path, {"stages": {"deployment": {"promotion": promotion}}}, base=DEFAULT_CONFIG)
    settings = load_settings(config)
    registry = releases.ReleaseRegistry(store)
    candidate = {"version": "weak-2-steps", "model_sha256": file_sha256(tmp_path / "weak.gguf"),
                 "quantization": "Q8_0", "task_accuracy": None, "inputs": champion["inputs"], "rolled_back_from": None}
    challenger = release.deploy(tmp_path / "weak.gguf", read_json(Path(champion["model_path"]).parent / "ollama.json"),
                                candidate, settings.stages.deployment, home, registry, champion["probe_request"], print)
    assert (challenger.role, challenger.traffic_weight) == ("canary", 0.5)
    assert releases.read_status(home)["version"] == champion["version"]

    endpoint = json.loads((home / "agent_config.json").read_text())["endpoint"]
    # The gateway re-reads the registry every half second: users are compared from the moment it
    # routes the canary (a user may start on the champion before that; stickiness is from then on).
    deadline = time.monotonic() + 10
    while "canary" not in {m["role"] for m in json.load(urllib.request.urlopen(f"{endpoint}/models"))["data"]}:
        assert time.monotonic() < deadline, "the gateway never listed the canary"
        time.sleep(0.1)
    test = read_jsonl(store.get("curated_dataset", champion["inputs"]["curated_dataset"]).path / "test.jsonl")
    prompts = [[m for m in row["messages"][:-1] if m["role"] != "system"] for row in test[:40]]
    sent = traffic.replay(endpoint, prompts, 0, 64, users=10)
    assert all(r["status"] == 200 for r in sent), traffic.summary(sent)
    by_user = {}
    for number, result in enumerate(sent):
        by_user.setdefault(number % 10, set()).add(result["role"])
    assert all(len(roles) == 1 for roles in by_user.values()), by_user  # sticky
    assert set().union(*by_user.values()) == {"champion", "canary"}

    instance = DagsterInstance.ephemeral()
    definitions = build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(home)))
    decisions = []
    for _ in range(5):
        result = definitions.resolve_job_def("canary_review").execute_in_process(instance=instance, raise_on_error=False)
        analysis = instance.get_latest_materialization_event(AssetKey("canary_analysis")).asset_materialization
        decisions.append(analysis.metadata["decision"].value)
        if registry.challenger() is None:
            break
        sent += traffic.replay(endpoint, prompts[:10], 0, 64, users=10)
    assert decisions[-1] == "rollback" and "promote" not in decisions, decisions
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == "challenger_not_worse"]
    assert not gate.passed and "release_roles" not in {e.asset_key.to_user_string()
                                                        for e in result.get_asset_materialization_events()}
    retired = registry.releases()[challenger.release_number]
    assert retired.role == "retired" and "rolled back by canary_analysis" in registry.events()[-1].reason
    assert not servers.is_alive(challenger.pid)
    assert all(r["status"] == 200 for r in sent)
    after = releases.read_status(home)
    assert (after["version"], after["pid"], after["deployed_at"]) == (champion["version"], champion["pid"],
                                                                      champion["deployed_at"])
    assert file_sha256(after["model_path"]) == champion_bytes
    assert {r["role"] for r in traffic.replay(endpoint, prompts[:6], 0, 16, users=6)} == {"champion"}


def test_a_diverging_run_fails_the_training_gates_and_changes_nothing(default_run, tmp_path):
    """A learning rate far too high for LoRA on the real model: the loss climbs by orders of
    magnitude within a few steps. The default training gates stop it before evaluation."""
    _, home = default_run
    before = releases.read_status(home)
    diverging = {"learning_rate": 0.2, "max_steps": 6, "eval_steps": 2, "batch_size": 4}
    config = derived_config(tmp_path, {"stages": {"training": diverging}}, base=DEFAULT_CONFIG)
    env = os.environ | {"LLMOPS_HOME": str(home), "DAGSTER_HOME": str(home.parent / "dagster")}
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "--config", str(config), "run"],
                          env=env, cwd=home.parent, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    gates = gate_table(done.stdout)
    assert gates["sft_adapter:validation_converging"] == "FAIL" and gates["sft_adapter:final_loss"] == "FAIL", done.stdout[-3000:]
    store = ArtifactStore(home / "artifacts")
    [adapter] = [a for a in store.versions("sft_adapter") if a.manifest["config"]["learning_rate"] == 0.2]
    history = [loss for _, loss in json.loads((adapter.path / "training_metrics.json").read_text())["validation_loss_history"]]
    assert history[-1] > 2 * min(history)  # really diverged, not a threshold trick
    after = releases.read_status(home)
    assert (after["version"], after["pid"], after["deployed_at"]) == (before["version"], before["pid"], before["deployed_at"])
