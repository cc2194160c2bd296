"""The `llmops` CLI as CI and operators use it, on the tiny profile in a throwaway instance:
gates re-run against the latest materializations, a no-op rerun that rebuilds nothing, and
re-execution from failure that reruns only what failed and what follows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_assets.core import releases
from llmops_assets.settings import load_settings
from llmops_assets_tests.conftest import TINY_CONFIG, derived_config, gate_count, gate_table, stop_servers

pytestmark = pytest.mark.slow  # five tiny pipeline runs through the CLI, ~3 min


def step_names(stdout: str) -> set[str]:
    """The steps `llmops run` listed with their usage (the run's total line aside)."""
    lines = stdout.split("at constraints.rates):")[1].split("\n\n")[0].splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.strip().startswith("run total")}


@pytest.fixture(scope="module")
def llmops(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    env = os.environ | {"LLMOPS_HOME": str(root / "llmops"), "DAGSTER_HOME": str(root / "dagster"),
                        "LLMOPS_CONFIG": str(TINY_CONFIG)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmops_assets.cli", *args], env=env, cwd=root,
                              capture_output=True, text=True, timeout=900)

    first = run("run")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run.home, run.root = root / "llmops", root
    yield run
    stop_servers(root / "llmops")


def test_check_passes_on_the_latest_materializations(llmops):
    done = llmops("check")
    assert done.returncode == 0, done.stdout[-3000:]
    gates = gate_table(done.stdout)
    assert len(gates) == gate_count() and set(gates.values()) == {"PASS", "OFF"}, gates
    # The tiny profile switches continued pretraining and DPO off: their gates say so, not a value.
    assert {g for g, verdict in gates.items() if verdict == "OFF"} == {
        "cpt_model:domain_perplexity", "cpt_model:within_time_budget", "dpo_adapter:preference_accuracy",
        "dpo_adapter:within_time_budget"}
    off_row = next(line for line in done.stdout.splitlines() if line.startswith("dpo_adapter") and "preference" in line)
    assert off_row.split()[2:] == ["off", "0.6", "OFF"], off_row
    assert "sft_adapter" not in step_names(done.stdout)  # nothing rebuilt
    # The gates the tiny profile relaxed say they cannot fail; every stage keeps a gate that can.
    relaxed = load_settings(TINY_CONFIG).gates_that_cannot_fail()
    assert set(relaxed) == {"eval_report:task_accuracy", "eval_report:llm_judge", "eval_report:safety",
                            "gguf_model:gguf_fidelity"}
    for gate, why in relaxed.items():
        asset, check = gate.split(":")
        assert any(line.split()[:2] == [asset, check] and line.endswith(why) for line in done.stdout.splitlines()), gate
    assert f"{len(relaxed)} of {len(gates)} gates cannot fail with this configuration" in done.stdout
    stages = {"data": {"curated_dataset"}, "training": {"sft_adapter"}, "evaluation": {"eval_report"},
              "deployment": {"gguf_model", "deployed_model"}}
    for stage, assets in stages.items():
        failable = [g for g, verdict in gates.items() if g.split(":")[0] in assets and g not in relaxed
                    and verdict == "PASS" and not g.endswith("_warnings")]
        assert failable, f"no gate of the {stage} stage can fail in the tiny profile"


def test_check_fails_loudly_when_a_gate_fails(llmops, tmp_path):
    strict = derived_config(tmp_path, {"stages": {"evaluation": {"quality_gate": {"min_task_accuracy": 1.0}}}})
    done = llmops("--config", str(strict), "check", "--select", "eval_report")
    assert done.returncode == 1, done.stdout[-3000:]
    gates = gate_table(done.stdout)
    assert set(gates) == {f"eval_report:{gate}" for gate in ("task_accuracy", "llm_judge", "no_regression", "safety",
                                                             "evaluation_warnings")}, gates
    assert gates["eval_report:task_accuracy"] == "FAIL"


def test_a_rerun_with_nothing_changed_rebuilds_nothing(llmops):
    before = releases.read_status(llmops.home)
    done = llmops("run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for asset in ("base_model", "cpt_model", "sft_adapter", "dpo_adapter", "eval_report", "merged_model", "gguf_model"):
        assert f"{asset}: inputs and config unchanged" in done.stderr, asset
    assert "already served and answering" in done.stderr
    after = releases.read_status(llmops.home)
    assert (after["version"], after["pid"], after["deployed_at"]) == (before["version"], before["pid"], before["deployed_at"])


def test_rebuild_retrains_even_when_nothing_changed(llmops):
    done = llmops("run", "--job", "retrain", "--rebuild")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sft_adapter: inputs and config unchanged" not in done.stderr
    assert "step 12/12" in done.stderr  # the training log of a real run


def test_rerun_from_failure_runs_only_what_failed_and_what_follows(llmops, tmp_path):
    before = releases.read_status(llmops.home)
    strict = derived_config(tmp_path, {"stages": {"evaluation": {"quality_gate": {"min_task_accuracy": 1.0}}}})
    failed = llmops("--config", str(strict), "run")
    assert failed.returncode == 1 and gate_table(failed.stdout)["eval_report:task_accuracy"] == "FAIL"
    assert releases.read_status(llmops.home)["version"] == before["version"]
    fixed = llmops("rerun")  # back on the project's config: the gate passes now
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    steps = step_names(fixed.stdout)
    assert "eval_report_task_accuracy" in steps and {"merged_model", "gguf_model", "deployed_model"} <= steps
    assert not steps & {"base_model", "raw_examples", "curated_dataset", "sft_adapter", "eval_report"}, steps


def test_status_shows_what_is_served_its_lineage_and_the_gates(llmops):
    done = llmops("status")
    assert done.returncode == 0, done.stdout[-2000:]
    status = json.loads((llmops.home / "deployment_status.json").read_text())
    assert f"version {status['version']}" in done.stdout and "(answering)" in done.stdout
    assert "lineage: gguf_model " in done.stdout
    assert len(gate_table(done.stdout)) == gate_count()
    gateway_state = json.loads((llmops.home / "gateway" / "gateway.json").read_text())
    assert f"clients call the gateway: {gateway_state['endpoint']}" in done.stdout


def test_traffic_replays_the_test_split_and_the_safety_suite_through_the_gateway(llmops):
    from llmops_assets.core.request_log import RequestLog, default_url

    logged = RequestLog(default_url(llmops.home)).count()
    done = llmops("traffic", "--rate", "20", "--count", "6")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert summary["requests"] == 6 and summary["by_status"] == {"200": 6}
    assert "exact match on 6 prompts through the gateway" in done.stdout
    assert RequestLog(default_url(llmops.home)).count() == logged + 6


def fresh(tmp_path, config: Path = TINY_CONFIG):
    """`llmops` on a fresh instance and home under tmp_path."""
    env = os.environ | {"LLMOPS_HOME": str(tmp_path / "llmops"), "DAGSTER_HOME": str(tmp_path / "dagster"),
                        "LLMOPS_CONFIG": str(config)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmops_assets.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
    return run


def test_a_missing_source_file_is_one_line_with_the_fix_not_a_stack_trace(tmp_path):
    config = derived_config(tmp_path, {"stages": {"data": {"sources": [str(tmp_path / "missing.jsonl")]}}})
    done = fresh(tmp_path, config)("run", "--job", "ingest_data")
    assert done.returncode == 1
    assert f"FAILED raw_examples: FileNotFoundError: {tmp_path / 'missing.jsonl'}: data source does not exist; " \
           "fix stages.data.sources" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr and "Stack Trace" not in done.stdout + done.stderr


def test_an_invalid_config_value_is_one_line_naming_the_field(tmp_path):
    config = derived_config(tmp_path, {"stages": {"training": {"learning_rate": -1}}})
    done = fresh(tmp_path, config)("run")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: invalid pipeline config: stages.training.learning_rate: ")


def test_ingest_data_on_a_fresh_instance_builds_what_it_needs(tmp_path):
    done = fresh(tmp_path)("run", "--job", "ingest_data")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "ingest_data needs base_model, never materialized here" in done.stdout
    assert step_names(done.stdout) == {"base_model", "raw_examples", "curated_dataset"} | {
        f"curated_dataset_{check}" for check in ("enough_examples", "format_valid", "few_duplicates", "token_length",
                                                 "rows_accounted_for", "published_splits")}  # the last: two gates


def test_gc_removes_what_a_killed_publish_left_and_keeps_complete_versions(llmops):
    store = llmops.home / "artifacts" / "sft_adapter"
    complete = sorted(p.name for p in store.iterdir() if (p / "manifest.json").is_file())
    (store / "deadbeefdeadbeef").mkdir()
    (store / "deadbeefdeadbeef" / "adapter_model.safetensors").write_bytes(b"half")
    os.utime(store / "deadbeefdeadbeef", (0, 0))
    done = llmops("gc")
    assert done.returncode == 0 and "1 incomplete versions removed" in done.stdout, done.stdout
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == complete
