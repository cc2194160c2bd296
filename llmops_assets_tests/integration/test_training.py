"""Real LoRA training on the tiny Llama: resume after a killed run, early stopping, and W&B offline
tracking."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops_assets.artifacts import read_jsonl
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.settings import TrainingSettings
from llmops_assets.training.base_models import build_base_model
from llmops_assets.training.sft import train_sft

SYSTEM = "Answer with one JSON tool call."
ROWS = read_jsonl(SEED_FILE)
TRAIN, VALIDATION = ROWS[:160], ROWS[160:192]
QUICK = {"base_model": "tiny-llama", "max_steps": 12, "learning_rate": 0.003, "batch_size": 8, "max_seq_length": 256,
         "eval_steps": 3, "tracking": {"wandb": "disabled"}}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base") / "model"
    corpus = [m.get("content") or "" for row in ROWS for m in row["messages"]] + [SYSTEM]
    build_base_model("tiny-llama", folder, corpus)
    return folder


def train(base: Path, root: Path, **changes):
    settings = TrainingSettings.model_validate(QUICK | changes)
    return train_sft(base, TRAIN, VALIDATION, settings, SYSTEM, root / "adapter", root / "work", root / "wandb", lambda _: None)


# Run in a child process so that it can be killed like a crashed or evicted training step.
CHILD = """
import sys
from pathlib import Path
from llmops_assets_tests.integration.test_training import train
train(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_a_killed_run_resumes_from_its_last_checkpoint_on_the_same_loss_curve(tiny_base, tmp_path):
    uninterrupted = train(tiny_base, tmp_path / "whole")
    assert not (tmp_path / "whole" / "work").exists()  # checkpoints are scratch: gone on success

    root = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_base), str(root)], start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((root / "work").glob("checkpoint-6")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert list((root / "work").glob("checkpoint-*")), "the killed run left no checkpoint"

    resumed = train(tiny_base, root)
    resumed_step = int(resumed.extra["resumed_from"].split("-")[1])
    assert 3 <= resumed_step < 12 and resumed.steps == 12  # checkpoint-6 may have been cut short by the kill
    after = {step: loss for step, loss in resumed.train_losses if step > resumed_step}
    expected = {step: loss for step, loss in uninterrupted.train_losses if step > resumed_step}
    assert after and after.keys() == expected.keys()
    assert after == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_early_stopping_keeps_the_best_checkpoint(tiny_base, tmp_path):
    # No evaluation can improve the loss by 100: the run stops after `patience` evaluations.
    outcome = train(tiny_base, tmp_path, early_stopping_patience=1, early_stopping_min_delta=100.0)
    assert outcome.extra["stopped_early"] and outcome.steps == 6
    best_step, _ = min(outcome.eval_points[:2], key=lambda point: point[1])
    assert outcome.extra["best_checkpoint_step"] == best_step
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_early_stopping_needs_checkpoints_at_evaluations():
    with pytest.raises(ValueError, match="multiple of eval_steps"):
        TrainingSettings.model_validate(QUICK | {"early_stopping_patience": 2, "checkpoint_steps": 4})


def test_wandb_runs_offline_under_the_pipeline_home(tiny_base, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    outcome = train(tiny_base, tmp_path, tracking={"wandb": "offline", "project": "test"}, max_steps=3)
    tracked = outcome.extra["tracking"]
    assert tracked["wandb_mode"] == "offline"
    run_dir = Path(tracked["wandb_dir"])
    assert run_dir.is_relative_to(tmp_path / "wandb") and run_dir.name.startswith("offline-run-")
    assert list(run_dir.glob("*.wandb")), "no W&B run file was written"
    assert "WANDB_MODE" not in os.environ  # the environment is restored after the run


def test_online_tracking_without_a_key_fails_saying_what_to_do(tiny_base, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="WANDB_API_KEY"):
        train(tiny_base, tmp_path, tracking={"wandb": "online", "project": "test"})


@pytest.mark.slow
def test_the_gemma_profile_builds_offline_with_a_chat_template_and_trains(tmp_path):
    facts = build_base_model("gemma3-270m", tmp_path / "gemma", [])
    assert facts["architecture"] == "Gemma3ForCausalLM" and facts["source"] == "gemma3-270m"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "gemma")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Add task: Buy milk"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nAdd task: Buy milk<end_of_turn>\n<start_of_turn>model\n"
    outcome = train(tmp_path / "gemma", tmp_path, base_model="gemma3-270m", max_steps=2, batch_size=2, eval_steps=2)
    assert outcome.steps == 2 and outcome.final_loss < 20
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
