"""A hyperparameter search for SFT with Optuna: TPE over the learning rate, LoRA rank and alpha and
the number of steps, each trial a real SFT run whose validation loss is reported at every
evaluation so that the median pruner stops trials that trail the earlier ones. The study lives in
Optuna's storage: a search killed midway resumes where it was (its interrupted trial marked
failed, the finished ones kept, the time already spent counted against the budget)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_assets.core.costs import RunBudget
from llmops_assets.training.config import TrainingSettings
from llmops_assets.training.runner import Progress
from llmops_assets.training.sft import train_sft


@dataclass
class StudyResult:
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]  # number, state, value, params, seconds, pruned_at
    importances: dict[str, float]  # each parameter's importance for the validation loss (Optuna's PED-ANOVA)
    resumed: bool


def with_params(settings: TrainingSettings, params: dict[str, Any]) -> TrainingSettings:
    """The training settings with a trial's (or the best trial's) values."""
    lora = settings.lora.model_copy(update={"r": params["lora_r"], "alpha": params["lora_alpha"]})
    return settings.model_copy(update={"learning_rate": params["learning_rate"], "max_steps": params["max_steps"],
                                       "lora": lora})


def search(base_dir: Path, train_rows: list[dict], validation_rows: list[dict],
           settings: TrainingSettings, system_prompt: str, work_root: Path, tracking_dir: Path, storage: Any,
           study_name: str, progress: Progress, run_budget: RunBudget | None = None) -> StudyResult:
    """Run (or resume) the study `study_name` in `storage` (a URL or an Optuna storage) until
    `settings.hpo.trials` trials have finished or its time budget is spent."""
    import optuna
    from optuna.trial import TrialState

    hpo = settings.hpo
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=hpo.seed, n_startup_trials=max(hpo.startup_trials, 1)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=hpo.startup_trials, n_warmup_steps=0))
    interrupted = [t for t in study.trials if t.state == TrialState.RUNNING]
    for trial in interrupted:  # an attempt killed midway: its trial cannot be resumed as such
        study.tell(trial.number, state=TrialState.FAIL)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    spent = sum(_seconds(t) for t in study.trials if t.datetime_complete)
    resumed = bool(study.trials)
    if resumed:
        progress(f"resuming study {study_name}: {len(finished)} of {hpo.trials} trials finished, {spent:.0f} s spent"
                 + (f", {len(interrupted)} interrupted trial marked failed" if interrupted else ""))

    def objective(trial) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", *hpo.learning_rate, log=True),
                  "lora_r": trial.suggest_categorical("lora_r", hpo.lora_r),
                  "lora_alpha": trial.suggest_categorical("lora_alpha", hpo.lora_alpha),
                  "max_steps": trial.suggest_int("max_steps", *hpo.max_steps, step=_step(hpo.max_steps))}
        progress(f"trial {trial.number}: {params}")
        folder = work_root / f"trial-{trial.number}"
        pruning = _pruning_callback(trial)
        try:
            outcome = train_sft(base_dir, train_rows, validation_rows, with_params(settings, params), system_prompt,
                            folder / "adapter", folder / "work", tracking_dir, progress, run_budget, [pruning])
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # a trial's adapter is not kept: the best values train sft
        if pruning.pruned_at is not None:
            trial.set_user_attr("pruned_at", pruning.pruned_at)
            progress(f"trial {trial.number} pruned at step {pruning.pruned_at}")
            raise optuna.TrialPruned()
        loss = outcome.validation_losses[-1]
        progress(f"trial {trial.number}: validation loss {loss:.4f}")
        return loss

    remaining = hpo.trials - len(finished)
    budget_s = hpo.max_minutes * 60 - spent
    if remaining > 0 and budget_s > 0:
        study.optimize(objective, n_trials=remaining, timeout=budget_s)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study_name}: no trial completed ({len(study.trials)} tried, "
                           f"{hpo.max_minutes} min budget): widen the budget or the ranges")
    return StudyResult(best_params=dict(study.best_params), best_value=float(study.best_value),
                       trials=[_trial_record(t) for t in study.trials], importances=_importances(study),
                       resumed=resumed)


def _step(steps: tuple[int, int]) -> int:
    """Steps of 8 where the range allows it (nearby step counts train alike)."""
    low, high = steps
    return 8 if high - low >= 8 and (high - low) % 8 == 0 else 1


def _pruning_callback(trial):
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        pruned_at: int | None = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            trial.report(metrics["eval_loss"], state.global_step)
            if state.global_step < state.max_steps and trial.should_prune():
                self.pruned_at = state.global_step
                control.should_training_stop = True

    return Pruning()


def _seconds(trial) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0


def _trial_record(trial) -> dict[str, Any]:
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "seconds": round(_seconds(trial), 1) if trial.datetime_complete else None,
            "pruned_at": trial.user_attrs.get("pruned_at"),
            "intermediate": sorted(trial.intermediate_values.items())}


def _importances(study) -> dict[str, float]:
    """Optuna's default importances (PED-ANOVA); empty while fewer than 3 trials completed, where
    it would report them all equal."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(states=(TrialState.COMPLETE,))) < 3:
        return {}
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
