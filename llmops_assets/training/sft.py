"""LoRA supervised fine-tuning: prompt/completion pairs, loss on the assistant answer only.

The backend seam (`select_backend`) picks Unsloth on CUDA when installed and TRL + PEFT
otherwise; both take the same settings and write the same `adapter_weights/` folder.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_assets.chat import model_messages, prompt_and_completion
from llmops_assets.settings import TrackingSettings, TrainingSettings

Progress = Callable[[str], None]


@dataclass
class TrainingOutcome:
    backend: str
    steps: int
    final_loss: float
    validation_losses: list[float]
    train_losses: list[tuple[int, float]]
    eval_points: list[tuple[int, float]]
    seconds: float
    stopped_by_time_budget: bool
    train_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "total_steps": self.steps,
            "final_loss": self.final_loss,
            "best_validation_loss": min(self.validation_losses, default=None),
            "final_validation_loss": self.validation_losses[-1] if self.validation_losses else None,
            "train_loss_history": self.train_losses,
            "validation_loss_history": self.eval_points,
            "training_time_seconds": self.seconds,
            "tokens_per_second": self.train_tokens / self.seconds if self.seconds else 0.0,
            "stopped_by_time_budget": self.stopped_by_time_budget,
            **self.extra,
        }


def select_backend(requested: str, cuda_available: bool) -> str:
    """`auto` means Unsloth when CUDA and the `gpu` extra are both present, else TRL."""
    unsloth_installed = importlib.util.find_spec("unsloth") is not None
    if requested == "unsloth":
        if not cuda_available or not unsloth_installed:
            raise RuntimeError(
                "backend 'unsloth' needs an NVIDIA GPU and the gpu extra (pip install -e '.[gpu]' "
                "-c constraints-gpu.txt); use backend 'auto' or 'trl' on this machine"
            )
        return "unsloth"
    if requested == "auto" and cuda_available and unsloth_installed:
        return "unsloth"
    return "trl"


def to_prompt_completion(rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str) -> list[dict[str, str]]:
    pairs = []
    for row in rows:
        prompt, completion = prompt_and_completion(tokenizer, model_messages(row["messages"], system_prompt))
        pairs.append({"prompt": prompt, "completion": completion})
    return pairs


def train_sft(
    base_dir: Path,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    settings: TrainingSettings,
    system_prompt: str,
    adapter_dir: Path,
    work_dir: Path,
    tracking_dir: Path,
    progress: Progress,
) -> TrainingOutcome:
    """Train a LoRA adapter on `base_dir` and save it to `adapter_dir`.

    Checkpoints go to `work_dir`, which must be the same for the same inputs and settings: a
    call after a crash or kill resumes from its last checkpoint. It is removed on success.
    """
    import torch

    backend = select_backend(settings.backend, torch.cuda.is_available())
    if backend == "unsloth":
        raise RuntimeError("the unsloth backend is selected but not yet wired in; set backend: trl")
    outcome = _train_with_trl(base_dir, train_rows, validation_rows, settings, system_prompt,
                              adapter_dir, work_dir, tracking_dir, progress)
    shutil.rmtree(work_dir, ignore_errors=True)
    return outcome


def build_sft_trainer(base_dir: Path, train_rows, validation_rows, settings: TrainingSettings, system_prompt: str,
                      work_dir: Path, report_to: list[str], callbacks: list) -> Any:
    """The pipeline's TRL SFTTrainer: LoRA, loss on the completion only, bf16 autocast on CPU,
    no gradient checkpointing, a checkpoint at every evaluation (benchmarked in bench/training.py)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback
    from trl import SFTConfig

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_set = Dataset.from_list(to_prompt_completion(train_rows, tokenizer, system_prompt))
    validation_set = Dataset.from_list(to_prompt_completion(validation_rows, tokenizer, system_prompt))
    on_cpu = not torch.cuda.is_available()
    early_stopping = settings.early_stopping_patience > 0
    args = SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_seq_length,
        completion_only_loss=True,
        gradient_checkpointing=False,  # small models: recomputation costs more than it saves
        use_cpu=on_cpu,
        bf16=settings.bf16_on_cpu if on_cpu else torch.cuda.is_bf16_supported(),
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        logging_steps=max(1, settings.eval_steps // 4),
        save_strategy="steps",
        save_steps=settings.checkpoint_steps or settings.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to=report_to,
        run_name=f"sft-{work_dir.name}",
        seed=settings.seed,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
        target_modules=settings.lora.target_modules, task_type="CAUSAL_LM",
    )
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if early_stopping:
        callbacks = [*callbacks, EarlyStoppingCallback(settings.early_stopping_patience, settings.early_stopping_min_delta)]
    return _sft_trainer_class()(model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
                                processing_class=tokenizer, peft_config=lora, callbacks=callbacks)


def _sft_trainer_class():
    """SFTTrainer's data preparation (prompt/completion, loss on the completion only) with
    transformers' own causal-LM loss. TRL's fused LM head, which also computes entropy and token
    accuracy for its logs, made each CPU step ~1.4x slower (bench/training.py)."""
    from transformers import Trainer
    from trl import SFTTrainer

    class PipelineSFTTrainer(SFTTrainer):
        tokens_seen = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.tokens_seen += int(inputs["attention_mask"].sum())
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PipelineSFTTrainer


def _train_with_trl(base_dir, train_rows, validation_rows, settings, system_prompt,
                    adapter_dir, work_dir, tracking_dir, progress) -> TrainingOutcome:
    early_stopping = settings.early_stopping_patience > 0
    with experiment_tracking(settings.tracking, tracking_dir) as report_to:
        budget = _Budget(settings.quality_gate.max_minutes * 60, progress)
        trainer = build_sft_trainer(base_dir, train_rows, validation_rows, settings, system_prompt, work_dir,
                                    report_to, [budget.callback()])
        resume = last_complete_checkpoint(work_dir)
        if resume:
            progress(f"resuming from {resume.name} (an earlier attempt stopped there)")
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        history = trainer.state.log_history
        if not any(h.get("step") == trainer.state.global_step and "eval_loss" in h for h in history):
            trainer.evaluate()
        seconds = time.monotonic() - started
        trainer.model.save_pretrained(adapter_dir)
        tracked = _tracking_run(report_to)
    history = trainer.state.log_history
    train_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_points = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    stopped_early = early_stopping and not budget.exceeded and trainer.state.global_step < trainer.state.max_steps
    return TrainingOutcome(
        backend="trl",
        steps=trainer.state.global_step,
        final_loss=train_losses[-1][1] if train_losses else math.inf,
        validation_losses=[loss for _, loss in eval_points],
        train_losses=train_losses,
        eval_points=eval_points,
        seconds=seconds,
        stopped_by_time_budget=budget.exceeded,
        train_tokens=trainer.tokens_seen,
        extra={"resumed_from": resume.name if resume else None, "stopped_early": stopped_early,
               "best_checkpoint_step": _step_of(trainer.state.best_model_checkpoint), "tracking": tracked},
    )


def last_complete_checkpoint(work_dir: Path) -> Path | None:
    """The newest checkpoint the trainer finished writing (its trainer_state.json comes last);
    newer ones that a kill cut short are removed so that nothing resumes from them."""
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda p: _step_of(p.name))
    complete = [p for p in checkpoints if _is_json(p / "trainer_state.json")]
    if not complete:
        return None
    for partial in checkpoints[checkpoints.index(complete[-1]) + 1:]:
        shutil.rmtree(partial)
    return complete[-1]


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def experiment_tracking(tracking: TrackingSettings, directory: Path) -> Iterator[list[str]]:
    """The trainer's `report_to`, with W&B pointed at `directory` (offline by default) for the
    duration of the run. An online run takes its key from the environment only."""
    if tracking.wandb == "disabled":
        yield []
        return
    if tracking.wandb == "online" and not os.environ.get("WANDB_API_KEY"):
        raise RuntimeError("training.tracking.wandb is 'online' but WANDB_API_KEY is not set in the environment; "
                           "export it, or use 'offline' and `wandb sync` the runs later")
    directory.mkdir(parents=True, exist_ok=True)
    values = {"WANDB_MODE": tracking.wandb, "WANDB_DIR": str(directory), "WANDB_PROJECT": tracking.project,
              "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield ["wandb"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tracking_run(report_to: list[str]) -> dict[str, Any] | None:
    """Close the W&B run the trainer opened and say where it is."""
    if "wandb" not in report_to:
        return None
    import wandb

    run = wandb.run
    if run is None:
        return None
    found = {"wandb_mode": os.environ.get("WANDB_MODE"), "wandb_run_id": run.id, "wandb_dir": str(Path(run.dir).parent)}
    wandb.finish()
    return found


def _step_of(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def validation_rise(losses: list[float]) -> float:
    """How far the last validation loss sits above the best one, as a fraction of the best:
    0 while still improving, growing as the run diverges."""
    if not losses:
        return math.inf
    best = min(losses)
    return (losses[-1] - best) / best if best > 0 else 0.0


class _Budget:
    """Stops training at the time budget and reports step, loss and ETA as it goes."""

    def __init__(self, seconds: float, progress: Progress):
        self.seconds, self.progress, self.exceeded = seconds, progress, False
        self.started = time.monotonic()

    def callback(self):
        from transformers import TrainerCallback

        budget = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                elapsed = time.monotonic() - budget.started
                eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
                shown = {k: round(v, 4) for k, v in (logs or {}).items() if k in ("loss", "eval_loss")}
                budget.progress(f"step {state.global_step}/{state.max_steps} {json.dumps(shown)} "
                                f"elapsed {elapsed:.0f}s ETA {eta:.0f}s")

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= state.max_steps:
                    control.should_log = True  # the final loss is always logged, however short the run
                if time.monotonic() - budget.started > budget.seconds:
                    budget.exceeded = True
                    control.should_training_stop = True

        return _Callback()
