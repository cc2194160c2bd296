"""LoRA supervised fine-tuning: prompt/completion pairs, loss on the assistant answer only.

The backend seam (`select_backend`) picks Unsloth on CUDA when installed and TRL + PEFT
otherwise; both take the same settings and write the same `adapter_weights/` folder.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_assets.chat import model_messages, prompt_and_completion
from llmops_assets.settings import TrainingSettings

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
    progress: Progress,
) -> TrainingOutcome:
    """Train a LoRA adapter on `base_dir` and save it to `adapter_dir`."""
    import torch

    backend = select_backend(settings.backend, torch.cuda.is_available())
    if backend == "unsloth":
        raise RuntimeError("the unsloth backend is selected but not yet wired in; set backend: trl")
    return _train_with_trl(base_dir, train_rows, validation_rows, settings, system_prompt,
                           adapter_dir, work_dir, progress)


def _train_with_trl(base_dir, train_rows, validation_rows, settings, system_prompt,
                    adapter_dir, work_dir, progress) -> TrainingOutcome:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_set = Dataset.from_list(to_prompt_completion(train_rows, tokenizer, system_prompt))
    validation_set = Dataset.from_list(to_prompt_completion(validation_rows, tokenizer, system_prompt))
    on_cpu = not torch.cuda.is_available()
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
        save_strategy="no",
        report_to=[],
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
    budget = _Budget(settings.quality_gate.max_minutes * 60, progress)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
                         processing_class=tokenizer, peft_config=lora, callbacks=[budget.callback()])
    started = time.monotonic()
    trainer.train()
    trainer.evaluate()
    seconds = time.monotonic() - started
    trainer.model.save_pretrained(adapter_dir)
    history = trainer.state.log_history
    train_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_points = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    return TrainingOutcome(
        backend="trl",
        steps=trainer.state.global_step,
        final_loss=train_losses[-1][1] if train_losses else math.inf,
        validation_losses=[loss for _, loss in eval_points],
        train_losses=train_losses,
        eval_points=eval_points,
        seconds=seconds,
        stopped_by_time_budget=budget.exceeded,
        train_tokens=int(max((h.get("num_tokens", 0) for h in history), default=0)),
    )


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
