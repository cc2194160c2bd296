"""What `make run` does, on the real default (SmolLM2-135M-Instruct): every seed gate passes,
accuracy >= 0.90 included, and the served model answers a request with the right tool call."""

import json
import os
import subprocess
import sys

import pytest

from llmops_assets.artifacts import Artifact
from llmops_assets.chat import parse_tool_call
from llmops_assets.deployment import release, servers
from llmops_assets.settings import DEFAULT_CONFIG, load_settings
from llmops_assets.tools import ToolCall

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    env = os.environ | {"LLMOPS_HOME": str(home / "llmops"), "DAGSTER_HOME": str(home / "dagster"),
                        "LLMOPS_CONFIG": str(DEFAULT_CONFIG)}
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "run"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=1800)
    yield done, home / "llmops"
    status = release.read_status(home / "llmops")
    if status:
        servers.stop(status["pid"])


def test_make_run_passes_every_seed_gate(default_run):
    done, _ = default_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    gates = {line.split()[1]: line.split()[-1] for line in done.stdout.splitlines()
             if line.rstrip().endswith(("PASS", "FAIL", "WARN"))}
    assert len(gates) == 15, gates
    # The local 135M judge may be flagged as untrusted, and the embedded default does not block on
    # safety yet (pipeline.yaml says why): both report WARN when they fail. Every other gate passes.
    warn_allowed = {"llm_judge", "safety"}
    assert all(v == "PASS" for k, v in gates.items() if k not in warn_allowed), gates
    assert all(gates[k] in ("PASS", "WARN") for k in warn_allowed), gates
    assert "served: task-api-assistant" in done.stdout


def test_default_model_reaches_the_seed_accuracy(default_run):
    _, home = default_run
    status = release.read_status(home)
    evaluated = Artifact.load(home / "artifacts" / "eval_report" / status["inputs"]["eval_report"])
    report = json.loads((evaluated.path / "eval_report.json").read_text())
    assert report["task_accuracy"] >= load_settings(DEFAULT_CONFIG).stages.evaluation.quality_gate.min_task_accuracy
    assert report["n"] >= 40
    assert status["task_accuracy"] >= 0.85  # the GGUF that is served, replayed on the same prompts
    assert report["decision"] == "PASS" and report["safety_check"]["n"] == 12
    assert report["baseline_comparison"]["champion"] == "base model"


def test_served_model_answers_with_the_right_tool_call(default_run):
    _, home = default_run
    status = release.read_status(home)
    settings = load_settings(DEFAULT_CONFIG)
    messages = [{"role": "system", "content": settings.domain.system_prompt},
                {"role": "user", "content": "Delete task 17"}]
    answer = servers.chat(status["endpoint"], status["model_name"], messages)
    assert parse_tool_call(answer) == ToolCall("delete_task", {"task_id": 17})
