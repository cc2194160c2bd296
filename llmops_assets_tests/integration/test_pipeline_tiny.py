"""The whole graph on the tiny Llama: real Dagster runs, real training steps, a real GGUF served by
a real llama.cpp server on 127.0.0.1; then a failing gate that must leave that server untouched."""

import json
import urllib.request

import pytest
from dagster import AssetKey, DagsterInstance

from llmops_assets.artifacts import file_sha256
from llmops_assets.definitions import ASSETS, build_definitions
from llmops_assets.deployment import release, servers
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets_tests.conftest import TINY_CONFIG, derived_config

DOWNSTREAM_OF_TRAINING = {"eval_report", "merged_model", "gguf_model", "deployed_model"}


def run_pipeline(instance, config, home):
    defs = build_definitions(PipelineConfig(config_path=str(config)), ArtifactStoreResource(home=str(home)))
    return defs.resolve_job_def("full_pipeline").execute_in_process(instance=instance, raise_on_error=False)


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    home = tmp_path_factory.mktemp("llmops_home")
    instance = DagsterInstance.ephemeral()
    result = run_pipeline(instance, TINY_CONFIG, home)
    yield instance, home, result
    status = release.read_status(home)
    if status:
        servers.stop(status["pid"])


def test_every_asset_materializes_and_every_gate_passes(pipeline):
    _, _, result = pipeline
    assert result.success
    assert materialized(result) == {a.key.to_user_string() for a in ASSETS}
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 12
    assert all(e.passed for e in evaluations), [(e.check_name, e.metadata) for e in evaluations if not e.passed]
    for evaluation in evaluations:
        assert {"value", "threshold", "verdict"} <= set(evaluation.metadata)


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
    assert agent["endpoint"] == status["endpoint"]
    assert [t["function"]["name"] for t in agent["tools"]] == ["add_task", "list_tasks", "complete_task", "delete_task"]


def test_the_produced_gguf_loads_in_llama_cpp_and_completes(pipeline):
    from llama_cpp import Llama

    _, home, _ = pipeline
    status = release.read_status(home)
    llm = Llama(status["model_path"], n_ctx=256, n_threads=1, verbose=False)
    completion = llm.create_completion("<|im_start|>user\nAdd task: Buy milk<|im_end|>\n<|im_start|>assistant\n",
                                       max_tokens=8, temperature=0)
    assert completion["usage"]["completion_tokens"] >= 1
    assert llm.metadata["general.architecture"] == "llama"


def test_a_failed_training_gate_blocks_everything_downstream_and_keeps_what_is_served(pipeline, tmp_path):
    instance, home, _ = pipeline
    before = release.read_status(home)
    served_sha = file_sha256(before["model_path"])
    impossible = derived_config(tmp_path, {"stages": {"training": {"quality_gate": {"max_final_loss": 0.0}}}})

    result = run_pipeline(instance, impossible, home)

    assert not result.success
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == ["final_loss"]
    assert "sft_adapter" in materialized(result)
    assert not DOWNSTREAM_OF_TRAINING & materialized(result)
    after = release.read_status(home)
    assert after == before
    assert file_sha256(after["model_path"]) == served_sha
    assert servers.is_alive(after["pid"])
