"""What every training stage (CPT, SFT, DPO) shares: trainer arguments, resumable checkpoints, the
time budget with progress and ETA, experiment tracking, and the outcome the gates read."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_assets.core.config import UnmetRequirement
from llmops_assets.core.costs import BudgetExceeded, RunBudget, cpu_seconds, probe_steps
from llmops_assets.training.config import TrackingSettings, TrainingSettings

Progress = Callable[[str], None]


@dataclass
class TrainingOutcome:
    backend: str
    steps: int
    final_loss: float
    train_losses: list[tuple[int, float]]
    eval_points: list[tuple[int, float]]  # (step, held-out loss)
    seconds: float
    stopped_by_time_budget: bool
    train_tokens: int
    final_evaluation: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def validation_losses(self) -> list[float]:
        return [loss for _, loss in self.eval_points]

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
            "final_evaluation": self.final_evaluation,
            **self.extra,
        }


def trainer_arguments(settings: TrainingSettings, work_dir: Path, report_to: list[str], run_name: str, *,
                      max_steps: int, learning_rate: float) -> dict[str, Any]:
    """TrainingArguments every stage uses (SFTConfig/DPOConfig take them): bf16 autocast on CPU, no
    gradient checkpointing (small models: recomputation costs more than it saves), a resumable
    checkpoint at every evaluation, the last step always logged."""
    import torch

    on_cpu = not torch.cuda.is_available()
    return dict(
        output_dir=str(work_dir),
        num_train_epochs=settings.epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_seq_length,
        gradient_checkpointing=False,
        use_cpu=on_cpu,
        bf16=settings.bf16_on_cpu if on_cpu else torch.cuda.is_bf16_supported(),
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        logging_steps=max(1, settings.eval_steps // 4),
        save_strategy="steps",
        save_steps=settings.checkpoint_steps or settings.eval_steps,
        save_total_limit=2,
        report_to=report_to,
        run_name=run_name,
        seed=settings.seed,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def run_training(build_trainer: Callable[[list[str], list], Any], save: Callable[[Any], None], backend: str,
                 settings: TrainingSettings, work_dir: Path, tracking_dir: Path, progress: Progress,
                 run_budget: RunBudget | None = None) -> TrainingOutcome:
    """Train what `build_trainer(report_to, callbacks)` returns, resuming from the last complete
    checkpoint in `work_dir` (the same folder for the same inputs and settings), evaluate the final
    step, `save(trainer)`, then remove the checkpoints. When the rate of the first steps projects
    the run past `run_budget`, stop there with `BudgetExceeded`: nothing saved, a checkpoint kept."""
    with experiment_tracking(settings.tracking, tracking_dir) as report_to:
        budget = _Budget(settings.quality_gate.max_minutes * 60, progress, run_budget)
        trainer = build_trainer(report_to, [budget.callback()])
        resume = last_complete_checkpoint(work_dir)
        if resume:
            progress(f"resuming from {resume.name} (an earlier attempt stopped there)")
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if budget.overrun:
            raise BudgetExceeded(f"stopped at step {trainer.state.global_step}/{trainer.state.max_steps}: "
                                 f"{budget.overrun}; a rerun resumes from the checkpoint saved there")
        if not any(h.get("step") == trainer.state.global_step and "eval_loss" in h for h in trainer.state.log_history):
            trainer.evaluate()
        seconds = time.monotonic() - started
        if trainer.is_world_process_zero():  # under torchrun every rank gets here; one writes
            save(trainer)
        tracked = _tracking_run(report_to)
    state = trainer.state
    history = state.log_history
    train_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_points = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    final_evaluation = next(({k.removeprefix("eval_"): v for k, v in h.items() if k.startswith("eval_")}
                             for h in reversed(history) if "eval_loss" in h), {})
    early_stopping = settings.early_stopping_patience > 0
    if trainer.is_world_process_zero():
        shutil.rmtree(work_dir, ignore_errors=True)
    return TrainingOutcome(
        backend=backend,
        steps=state.global_step,
        final_loss=train_losses[-1][1] if train_losses else math.inf,
        train_losses=train_losses,
        eval_points=eval_points,
        seconds=seconds,
        stopped_by_time_budget=budget.exceeded,
        # Our SFT trainer counts the tokens it trained on (this rank's: under DDP each rank trains on
        # an equal share of every step's batches); TRL's trainers log a running `num_tokens`.
        train_tokens=int(getattr(trainer, "tokens_seen", 0)) * trainer.args.world_size
        or int(max((h.get("num_tokens", 0) for h in history), default=0)),
        final_evaluation=final_evaluation,
        extra={"resumed_from": resume.name if resume else None,
               "stopped_early": early_stopping and not budget.exceeded and state.global_step < state.max_steps,
               "best_checkpoint_step": _step_of(state.best_model_checkpoint),
               # Early stopping loads the best checkpoint at the end: that one is the adapter kept.
               "kept_checkpoint_step": _step_of(state.best_model_checkpoint) if early_stopping else None,
               "tracking": tracked,
               "world_size": trainer.args.world_size,
               "epochs": state.epoch},
    )


def held_out_split(items: list, share: float, seed: int, what: str) -> tuple[list, list]:
    """(train, validation): a seeded shuffle with `share` held out, at least one item on each side."""
    if len(items) < 2:
        raise ValueError(f"at least 2 {what} are needed (one held out), {len(items)} found")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held_out = min(len(items) - 1, max(1, round(len(items) * share)))
    return [items[i] for i in order[held_out:]], [items[i] for i in order[:held_out]]


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
        raise UnmetRequirement("training.tracking.wandb is 'online' but WANDB_API_KEY is not set in the environment; "
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


def validation_rise(eval_points: list[tuple[int, float]], kept_step: int | None = None) -> float:
    """How far the validation loss of the checkpoint that was kept sits above the best one, as a
    fraction of the best: 0 for the best checkpoint (what early stopping restores), growing as a
    run that kept its last checkpoint diverged. Infinite with fewer than two evaluations: one
    point says nothing about convergence."""
    if len(eval_points) < 2:
        return math.inf
    losses = dict(eval_points)
    best = min(losses.values())
    kept = losses.get(kept_step, eval_points[-1][1]) if kept_step is not None else eval_points[-1][1]
    return (kept - best) / best if best > 0 else 0.0


class _Budget:
    """Stops training at the stage's time budget, or as soon as the measured rate of its steps
    projects the run past its budget; reports step, loss and ETA as it goes."""

    def __init__(self, seconds: float, progress: Progress, run_budget: RunBudget | None = None):
        self.seconds, self.progress, self.exceeded = seconds, progress, False
        self.run_budget, self.overrun = run_budget, None
        self.started = time.monotonic()
        self.rate_since: tuple[int, float, float] | None = None  # (step, wall, CPU seconds) training began at

    def project(self, args, state) -> str | None:
        """Why the run would exceed its budget at the rate of the steps so far (None: it fits),
        decided by rank 0 for every rank so that DDP stops them together."""
        first_step, wall_then, cpu_then = self.rate_since
        done, now = state.global_step - first_step, time.monotonic()
        per_step = (now - wall_then) / done
        cores_busy = (cpu_seconds() - cpu_then) / max(now - wall_then, 1e-9) * args.world_size
        over = self.run_budget.overrun(time.time() + per_step * (state.max_steps - state.global_step), cores_busy)
        if args.world_size > 1:
            import torch.distributed as dist

            decision = [over]
            dist.broadcast_object_list(decision, src=0)
            over = decision[0]
        return over

    def callback(self):
        from transformers import TrainerCallback

        budget = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                budget.rate_since = (state.global_step, time.monotonic(), cpu_seconds())

            def on_log(self, args, state, control, logs=None, **kwargs):
                elapsed = time.monotonic() - budget.started
                eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
                shown = {k: round(v, 4) for k, v in (logs or {}).items()
                         if k in ("loss", "eval_loss", "eval_rewards/accuracies")}
                budget.progress(f"step {state.global_step}/{state.max_steps} {json.dumps(shown)} "
                                f"elapsed {elapsed:.0f}s ETA {eta:.0f}s")

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= state.max_steps:
                    control.should_log = True  # the final loss is always logged, however short the run
                if time.monotonic() - budget.started > budget.seconds:
                    budget.exceeded = True
                    control.should_training_stop = True
                if budget.run_budget is not None and budget.overrun is None and _probe_now(args, state, budget):
                    budget.overrun = budget.project(args, state)
                    if budget.overrun:
                        budget.progress(f"stopping at step {state.global_step}: {budget.overrun}")
                        control.should_training_stop = control.should_save = True

        return _Callback()


def _probe_now(args, state, budget: _Budget) -> bool:
    """Project after the first `probe_share` of the steps since training began, then at each evaluation."""
    done = state.global_step - budget.rate_since[0]
    first = probe_steps(state.max_steps - budget.rate_since[0], budget.run_budget.constraints.probe_share)
    return done == first or (done > first and state.global_step % max(args.eval_steps or 1, 1) == 0)
