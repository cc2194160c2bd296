"""Training gates: blocking checks on `cpt_model`, `sft_adapter` and `dpo_adapter`, thresholds
from `stages.training` (`quality_gate`, `continued_pretraining.quality_gate`, `dpo.quality_gate`)
and the run's budget from `constraints`.
A switched-off stage passes its gates with a note saying so: it changed nothing."""


import time

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from llmops_assets.core.statistics import binomial_bounds
from llmops_assets.core.storage import read_json
from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig, gate_result, run_budget
from llmops_assets.training.cpt import perplexity_ratio
from llmops_assets.training.runner import validation_rise

OFF = "stage off: its input passes through unchanged"


def _metrics(context, artifacts: ArtifactStoreResource, asset: str) -> dict | None:
    """training_metrics.json of the asset's latest artifact; None when the artifact records that
    the stage was off (a trained artifact without its metrics fails the check, it never passes)."""
    artifact = artifacts.upstream(context, asset)
    if artifact.manifest["config"].get("enabled") is False:
        return None
    return read_json(artifact.path / "training_metrics.json")


def _off(name: str, threshold: float) -> AssetCheckResult:
    """A switched-off stage's gate: it passes, and says it measured nothing."""
    return AssetCheckResult(passed=True, metadata={"gate": name, "value": "off", "threshold": threshold,
                                                   "verdict": "OFF", "note": OFF})


def _time_gate(metrics: dict | None, pipeline: PipelineConfig):
    threshold = pipeline.settings.stages.training.quality_gate.max_minutes
    if metrics is None:
        return _off("training_minutes", threshold)
    minutes = metrics["training_time_seconds"] / 60
    return gate_result("training_minutes", minutes, threshold, minutes <= threshold and not metrics["stopped_by_time_budget"])


@asset_check(asset="sft_adapter", blocking=True, description="Training loss at the end of the run.")
def final_loss(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    value = _metrics(context, artifacts, "sft_adapter")["final_loss"]
    threshold = pipeline.settings.stages.training.quality_gate.max_final_loss
    return gate_result("final_loss", value, threshold, value < threshold)


@asset_check(asset="sft_adapter", blocking=True,
             description="Validation loss of the adapter that was kept (the best checkpoint when early stopping "
                         "restored it, else the last) within max_validation_rise of the best; at least two evaluations.")
def validation_converging(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    metrics = _metrics(context, artifacts, "sft_adapter")
    history = [tuple(point) for point in metrics["validation_loss_history"]]
    kept = metrics.get("kept_checkpoint_step")  # the best checkpoint, when early stopping restored it
    rise = validation_rise(history, kept)
    threshold = pipeline.settings.stages.training.quality_gate.max_validation_rise
    losses = [loss for _, loss in history]
    return gate_result("validation_rise", rise, threshold, rise <= threshold, evaluations=len(history),
                       kept_step=kept if kept is not None else (history[-1][0] if history else -1),
                       best=min(losses, default=float("nan")), last=losses[-1] if losses else float("nan"),
                       **({"note": "fewer than two evaluations: lower eval_steps or train longer"} if len(history) < 2
                          else {}))


@asset_check(asset="sft_adapter", blocking=True, description="Training finished within the time budget.")
def within_time_budget(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    return _time_gate(_metrics(context, artifacts, "sft_adapter"), pipeline)


@asset_check(asset="cpt_model", blocking=True,
             description="Held-out domain text more predictable after continued pretraining (perplexity after / before).")
def domain_perplexity(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    threshold = pipeline.settings.stages.training.continued_pretraining.quality_gate.max_perplexity_ratio
    metrics = _metrics(context, artifacts, "cpt_model")
    if metrics is None:
        return _off("perplexity_ratio", threshold)
    history = [loss for _, loss in metrics["validation_loss_history"]]
    ratio = perplexity_ratio(history)
    return gate_result("perplexity_ratio", ratio, threshold, ratio <= threshold, loss_before=history[0], loss_after=history[-1])


@asset_check(asset="cpt_model", name="within_time_budget", blocking=True,
             description="Continued pretraining finished within the time budget.")
def cpt_within_time_budget(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                           artifacts: ArtifactStoreResource):
    return _time_gate(_metrics(context, artifacts, "cpt_model"), pipeline)


@asset_check(asset="dpo_adapter", blocking=True,
             description="Held-out preference pairs where the policy's implicit reward favours the chosen answer.")
def preference_accuracy(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    threshold = pipeline.settings.stages.training.dpo.quality_gate.min_reward_accuracy
    metrics = _metrics(context, artifacts, "dpo_adapter")
    if metrics is None:
        return _off("reward_accuracy", threshold)
    gate = pipeline.settings.stages.training.dpo.quality_gate
    accuracy, held_out = metrics["reward_accuracy"], metrics.get("held_out_pairs", 0)  # 0: recorded before the count
    lower, _ = binomial_bounds(round(accuracy * held_out), held_out, 0.95)
    enough = held_out >= gate.min_held_out_pairs
    return gate_result("reward_accuracy", accuracy, threshold, enough and lower >= threshold, bound=lower,
                       held_out_pairs=held_out,
                       note=f"{round(accuracy * held_out)}/{held_out} held-out pairs prefer the chosen answer; 95% lower "
                            f"bound {lower:.3f}" + ("" if enough else f"; fewer than min_held_out_pairs "
                                                                      f"{gate.min_held_out_pairs}"),
                       reward_margin=metrics["final_evaluation"].get("rewards/margins", float("nan")))


@asset_check(asset="dpo_adapter", name="within_time_budget", blocking=True,
             description="DPO finished within the time budget.")
def dpo_within_time_budget(context: AssetCheckExecutionContext, pipeline: PipelineConfig,
                           artifacts: ArtifactStoreResource):
    return _time_gate(_metrics(context, artifacts, "dpo_adapter"), pipeline)


def _run_budget_gate(asset: str):
    @asset_check(asset=asset, name="within_run_budget", blocking=True,
                 description="The run so far within its budget (constraints: max_time_hours, max_cost), as the larger "
                             "share of either used; training itself stops before a projected overrun.")
    def within_run_budget(context: AssetCheckExecutionContext, pipeline: PipelineConfig):
        budget = run_budget(context, pipeline.settings)
        limits, now = budget.constraints, time.time()
        share = budget.share_used(now, budget.spent_cost)
        unset = limits.max_time_hours is None and limits.max_cost is None
        return gate_result("run_budget_share", share, 1.0, share <= 1.0, run_hours=(now - budget.run_started) / 3600,
                           run_cost=budget.spent_cost, max_time_hours=limits.max_time_hours or "none",
                           max_cost=limits.max_cost or "none", currency=limits.currency,
                           **({"note": "no budget set (constraints)"} if unset else {}))

    within_run_budget.__name__ = f"{asset}_within_run_budget"
    return within_run_budget


cpt_within_run_budget, sft_within_run_budget, dpo_within_run_budget = (
    _run_budget_gate(asset) for asset in ("cpt_model", "sft_adapter", "dpo_adapter"))
