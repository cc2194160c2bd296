"""Real training on the tiny Llama: SFT resumed after a killed run, early stopping, W&B offline
tracking, continued pretraining and DPO; the Unsloth path where a GPU is present."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops_assets.core.costs import BudgetExceeded, Constraints, RunBudget
from llmops_assets.core.storage import read_json, read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.synth import PREFERENCES_FILE, SEED_FILE
from llmops_assets.settings import DEFAULT_CONFIG, load_settings
from llmops_assets.training.base_models import build_base_model
from llmops_assets.training.config import TrainingSettings
from llmops_assets.training.cpt import perplexity_ratio, read_corpus, train_cpt
from llmops_assets.training.distributed import run_stage
from llmops_assets.training.dpo import read_preferences, train_dpo
from llmops_assets.training.runner import validation_rise
from llmops_assets.training.search import search
from llmops_assets.training.sft import answer_only_head_applies, answer_only_loss, build_sft_trainer, train_sft

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
    assert uninterrupted.extra["kept_checkpoint_step"] is None  # no early stopping: the last state is kept

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
    assert outcome.extra["best_checkpoint_step"] == best_step == outcome.extra["kept_checkpoint_step"]
    assert validation_rise(outcome.eval_points, best_step) == 0.0  # the gate judges the adapter that was kept
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


def test_continued_pretraining_makes_held_out_domain_text_more_predictable(tiny_base, tmp_path):
    settings = TrainingSettings.model_validate(QUICK | {"continued_pretraining": {"enabled": True, "max_steps": 6,
                                                                                  "learning_rate": 0.003}})
    corpus = [text for _, text in read_corpus(settings.continued_pretraining.corpus)]
    outcome = train_cpt(tiny_base, corpus, settings, tmp_path / "model", tmp_path / "work", tmp_path / "wandb",
                        lambda _: None)
    assert outcome.eval_points[0][0] == 0 and outcome.steps == 6  # step 0: the base model's held-out loss
    assert perplexity_ratio(outcome.validation_losses) < 1.0
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")  # a plain model again: LoRA merged in
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (tmp_path / "model" / "tokenizer.model").exists()
    # SFT starts from it like from any base model.
    assert train(tmp_path / "model", tmp_path / "sft", max_steps=3).steps == 3


def test_dpo_continues_the_sft_adapter_towards_the_chosen_answers(tiny_base, tmp_path):
    settings = TrainingSettings.model_validate(QUICK | {"dpo": {"enabled": True, "max_steps": 6, "learning_rate": 0.001}})
    train(tiny_base, tmp_path / "sft")
    schema = ToolSchema.from_file(load_settings(DEFAULT_CONFIG).domain.tools_file)
    pairs, quarantined = read_preferences([PREFERENCES_FILE], schema)
    outcome = train_dpo(tiny_base, tmp_path / "sft" / "adapter", pairs, settings, SYSTEM, tmp_path / "dpo",
                        tmp_path / "work", tmp_path / "wandb", lambda _: None)
    assert outcome.steps == 6 and not quarantined
    assert outcome.final_evaluation["rewards/accuracies"] > 0.5  # held-out pairs now favour the chosen answer
    assert outcome.final_evaluation["rewards/margins"] > 0
    assert outcome.train_losses[0][1] == pytest.approx(0.6931, abs=1e-3)  # log(2): policy == reference at the start
    from safetensors.torch import load_file

    sft, dpo = (load_file(tmp_path / path / "adapter_model.safetensors") for path in ("sft/adapter", "dpo"))
    assert sft.keys() == dpo.keys()  # the same LoRA, not TRL's frozen reference copy as well
    assert any(not sft[k].equal(dpo[k]) for k in sft)
    assert read_json(tmp_path / "dpo" / "adapter_config.json")["r"] == settings.lora.r


def test_unsloth_trains_the_same_adapter_as_trl_on_a_gpu(tiny_base, tmp_path):
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("unsloth") is None:
        pytest.skip("needs an NVIDIA GPU and the gpu extra: pip install -e '.[gpu]' -c constraints-gpu.txt")
    outcomes = {backend: train(tiny_base, tmp_path / backend, backend=backend, max_steps=6, eval_steps=6)
                for backend in ("trl", "unsloth")}  # TRL first: Unsloth, once loaded, patches it process-wide
    with pytest.raises(RuntimeError, match="patches TRL process-wide"):
        train(tiny_base, tmp_path / "mixed", backend="trl")
    assert outcomes["unsloth"].backend == "unsloth" and outcomes["trl"].backend == "trl"
    for outcome in outcomes.values():
        assert outcome.steps == 6 and outcome.train_losses[-1][1] < outcome.train_losses[0][1]
    from safetensors.torch import load_file

    unsloth, trl = (load_file(tmp_path / backend / "adapter" / "adapter_model.safetensors") for backend in ("unsloth", "trl"))
    assert {k: v.shape for k, v in unsloth.items()} == {k: v.shape for k, v in trl.items()}  # same LoRA, same files
    lora = [read_json(tmp_path / backend / "adapter" / "adapter_config.json") for backend in ("unsloth", "trl")]
    # Unsloth names each module by its path, PEFT by its suffix; PEFT matches either way.
    assert len({(c["r"], c["lora_alpha"], frozenset(m.rsplit(".", 1)[-1] for m in c["target_modules"])) for c in lora}) == 1


def test_the_answer_only_lm_head_gives_transformers_loss_and_gradients(tiny_base, tmp_path):
    """The vocabulary projection only where there are labels: the same loss and LoRA gradients as
    the model's own forward over every position (fp32, so equal to rounding)."""
    import torch

    trainer = build_sft_trainer(tiny_base, TRAIN[:8], VALIDATION[:8], TrainingSettings.model_validate(QUICK), SYSTEM,
                                tmp_path / "work", [], [])
    model = trainer.model.train()
    assert answer_only_head_applies(model)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).float().mean() > 0.5  # most positions are prompt: their logits are skipped

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute()
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    reference, reference_grads = loss_and_grads(lambda: model(**batch).loss)
    ours, grads = loss_and_grads(lambda: answer_only_loss(model, batch))
    assert ours == pytest.approx(reference, rel=1e-5)
    assert all(torch.allclose(grads[n], reference_grads[n], rtol=1e-4, atol=1e-6) for n in grads)
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert answer_only_loss(model, batch, num_items_in_batch=2 * tokens).item() == pytest.approx(reference / 2, rel=1e-5)


def test_the_search_prunes_trails_and_resumes_a_killed_study_from_its_storage(tiny_base, tmp_path):
    """Real SFT trials on the tiny model: three finish (some pruned at an evaluation where they
    trail the median), kept in SQLite; a second attempt, after one that died with a trial running,
    marks that trial failed and runs only what is missing."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    hpo = {"enabled": True, "trials": 3, "max_steps": [6, 12], "learning_rate": [1e-4, 1e-2], "lora_r": [4, 8],
           "lora_alpha": [8, 16], "startup_trials": 1}
    settings = TrainingSettings.model_validate(QUICK | {"hpo": hpo})
    said = []
    first = search(tiny_base, TRAIN, VALIDATION, settings, SYSTEM, tmp_path / "trials", tmp_path / "wandb", storage,
                   "study", said.append)
    assert len(first.trials) == 3 and not first.resumed and not list((tmp_path / "trials").glob("trial-*"))
    assert {t["state"] for t in first.trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in first.trials if t["state"] == "COMPLETE"]
    assert first.best_value == min(t["value"] for t in complete)
    assert first.best_params == next(t["params"] for t in complete if t["value"] == first.best_value)
    assert set(first.best_params) == {"learning_rate", "lora_r", "lora_alpha", "max_steps"}
    assert all(t["intermediate"] for t in first.trials)  # validation loss reported at each evaluation

    optuna.load_study(study_name="study", storage=storage).ask()  # a trial left running by a killed attempt
    more = TrainingSettings.model_validate(QUICK | {"hpo": hpo | {"trials": 4}})
    second = search(tiny_base, TRAIN, VALIDATION, more, SYSTEM, tmp_path / "trials", tmp_path / "wandb", storage,
                    "study", said.append)
    assert second.resumed and [t["state"] for t in second.trials][3] == "FAIL" and len(second.trials) == 5
    assert any("3 of 4 trials finished" in line and "1 interrupted trial marked failed" in line for line in said)


def test_a_pruned_trial_stops_at_the_evaluation_where_it_trails(tiny_base, tmp_path):
    """A learning rate too small to learn trails the first trial at its first evaluation: pruned there."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    good = {"enabled": True, "trials": 1, "max_steps": [12, 12], "learning_rate": [3e-3, 3e-3], "lora_r": [8],
            "lora_alpha": [16], "startup_trials": 1}
    search(tiny_base, TRAIN, VALIDATION, TrainingSettings.model_validate(QUICK | {"hpo": good}), SYSTEM,
           tmp_path / "trials", tmp_path / "wandb", storage, "study", lambda _: None)
    stalled = good | {"trials": 2, "learning_rate": [1e-7, 1e-7]}
    result = search(tiny_base, TRAIN, VALIDATION, TrainingSettings.model_validate(QUICK | {"hpo": stalled}), SYSTEM,
                    tmp_path / "trials", tmp_path / "wandb", storage, "study", lambda _: None)
    pruned = result.trials[1]
    assert pruned["state"] == "PRUNED" and pruned["pruned_at"] == 3  # QUICK evaluates every 3 steps
    assert result.best_params["learning_rate"] == 3e-3


def costly_budget() -> RunBudget:
    """A run that may spend one CPU core-second in all, priced at 1 per core-second: training the
    tiny model 12 steps takes several."""
    now = time.time()
    constraints = Constraints(max_cost=1.0, rates={"cpu_core_hour": 3600, "gpu_hour": 0})
    return RunBudget(constraints, run_started=now, spent_cost=0.0, step_started=now)


def test_training_projected_past_the_run_budget_stops_at_its_first_probe_and_resumes_later(tiny_base, tmp_path):
    """The rate of the first 2 of 12 steps projects the run past max_cost: training stops there,
    saves no adapter and keeps a checkpoint; with a larger budget the rerun resumes from it."""
    said = []
    settings = TrainingSettings.model_validate(QUICK)
    with pytest.raises(BudgetExceeded, match=r"stopped at step 2/12: the run would cost [\d.]+ USD > max_cost 1.0"):
        train_sft(tiny_base, TRAIN, VALIDATION, settings, SYSTEM, tmp_path / "adapter", tmp_path / "work",
                  tmp_path / "wandb", said.append, run_budget=costly_budget())
    assert any(line.startswith("stopping at step 2:") for line in said)
    assert not (tmp_path / "adapter").exists() and (tmp_path / "work" / "checkpoint-2").is_dir()

    resumed = train_sft(tiny_base, TRAIN, VALIDATION, settings, SYSTEM, tmp_path / "adapter", tmp_path / "work",
                        tmp_path / "wandb", said.append)
    assert resumed.extra["resumed_from"] == "checkpoint-2" and resumed.steps == 12


def test_every_rank_stops_at_the_step_rank_zero_projected_past_the_budget(tiny_base, tmp_path):
    settings = TrainingSettings.model_validate(QUICK | {"nproc_per_node": 2, "kubernetes": {"gpus": 0}})
    with pytest.raises(BudgetExceeded, match=r"stopped at step 2/12"):
        run_stage(train_sft, 2, lambda _: None, base_dir=tiny_base, train_rows=TRAIN, validation_rows=VALIDATION,
                  settings=settings, system_prompt=SYSTEM, adapter_dir=tmp_path / "adapter", work_dir=tmp_path / "work",
                  tracking_dir=tmp_path / "wandb", run_budget=costly_budget())
    assert (tmp_path / "work" / "checkpoint-2").is_dir() and not (tmp_path / "adapter").exists()


def test_two_processes_under_torchrun_train_one_adapter_with_ddp(tiny_base, tmp_path):
    """nproc_per_node 2: torchrun starts two ranks (gloo on this CPU; NCCL across GPUs), the
    Trainer's DDP splits each step's batches between them, rank 0 alone reports and saves."""
    settings = TrainingSettings.model_validate(QUICK | {"nproc_per_node": 2, "max_steps": 6, "eval_steps": 3,
                                                        "kubernetes": {"gpus": 0}})  # a CPU pod: gloo
    said = []
    outcome = run_stage(train_sft, settings.nproc_per_node, said.append, base_dir=tiny_base, train_rows=TRAIN,
                        validation_rows=VALIDATION, settings=settings, system_prompt=SYSTEM,
                        adapter_dir=tmp_path / "adapter", work_dir=tmp_path / "work", tracking_dir=tmp_path / "wandb")
    assert outcome.extra["world_size"] == 2 and outcome.steps == 6
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists() and not (tmp_path / "work").exists()
    assert said[0].startswith("training on 2 processes")
    single = train(tiny_base, tmp_path / "single", max_steps=6, eval_steps=3)
    assert single.extra["world_size"] == 1
    # Each step took twice the examples: one batch on each rank.
    assert outcome.extra["epochs"] == pytest.approx(2 * single.extra["epochs"])
    assert outcome.train_tokens > 1.5 * single.train_tokens


def test_a_rank_that_fails_fails_the_stage_with_its_error(tiny_base, tmp_path):
    settings = TrainingSettings.model_validate(QUICK | {"nproc_per_node": 2, "kubernetes": {"gpus": 0}})
    with pytest.raises(RuntimeError, match=r"torchrun \(2 processes\) exited with 1: rank0: \w+Error: .*missing"):
        run_stage(train_sft, 2, lambda _: None, base_dir=tmp_path / "missing", train_rows=TRAIN,
                  validation_rows=VALIDATION, settings=settings, system_prompt=SYSTEM, adapter_dir=tmp_path / "adapter",
                  work_dir=tmp_path / "work", tracking_dir=tmp_path / "wandb")


def test_more_processes_than_the_pod_has_gpus_is_refused():
    with pytest.raises(ValueError, match=r"nproc_per_node \(4\) is one process per GPU: the training pod requests only 2"):
        TrainingSettings.model_validate(QUICK | {"nproc_per_node": 4, "kubernetes": {"gpus": 2}})
