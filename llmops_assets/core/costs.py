"""What a step costs and whether the run can afford it. A step's usage is its wall time, the CPU
seconds of its process and the processes it waited for, and the GPU seconds it held (wall time x
GPUs); the rates in `constraints` price it. `RunBudget` carries a run's budget and what the run
spent before a step, so that a long step can stop as soon as the rate of its first units of work
projects the run past its budget, rather than after it has spent it."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass

from pydantic import Field

from llmops_assets.core.config import StrictModel


class CostRates(StrictModel):
    """Prices per resource-hour: what the machines the steps run on cost you."""

    cpu_core_hour: float = Field(0.04, ge=0, description="One CPU core busy for an hour.")
    gpu_hour: float = Field(2.5, ge=0, description="One GPU held for an hour.")


class Constraints(StrictModel):
    """A run's budget (`null`: no limit). A step whose measured rate projects the run past either
    stops before it spends it; the training stages' `within_run_budget` gates block what follows."""

    max_time_hours: float | None = Field(None, gt=0, description="Wall time of one run, from its start.")
    max_cost: float | None = Field(None, gt=0, description="Cost of one run's steps, in `currency`.")
    currency: str = "USD"
    rates: CostRates = CostRates()
    probe_share: float = Field(0.05, gt=0, le=1, description="A training stage projects its end from the rate of "
                                                              "this share of its steps (at least 2), then at each "
                                                              "evaluation.")


class BudgetExceeded(RuntimeError):
    """The run would exceed its budget: stopped before spending it (a rerun with a larger budget
    resumes from the last checkpoint)."""


def cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of the child processes it waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class Usage:
    wall_s: float
    cpu_s: float
    gpu_s: float

    def cost(self, rates: CostRates) -> float:
        return (self.cpu_s * rates.cpu_core_hour + self.gpu_s * rates.gpu_hour) / 3600


class Meter:
    """Usage from its creation on; `gpus`: how many GPUs the step holds while it runs."""

    def __init__(self, gpus: int = 0):
        self.gpus, self.started, self.cpu_started = gpus, time.monotonic(), cpu_seconds()

    def usage(self) -> Usage:
        wall = time.monotonic() - self.started
        return Usage(wall, cpu_seconds() - self.cpu_started, wall * self.gpus)


@dataclass(frozen=True)
class RunBudget:
    """A run's budget as one step sees it: the run's start (epoch seconds), what its earlier steps
    cost, and when this step started. Plain data: it crosses into torchrun's processes."""

    constraints: Constraints
    run_started: float
    spent_cost: float
    step_started: float
    gpus: int = 0

    def overrun(self, projected_end: float, cores_busy: float) -> str | None:
        """Why the run would exceed its budget if this step ends at `projected_end` (epoch seconds)
        keeping `cores_busy` CPU cores busy; None when it fits."""
        limits = self.constraints
        step_wall = max(0.0, projected_end - self.step_started)
        run_hours = (projected_end - self.run_started) / 3600
        cost = self.spent_cost + Usage(step_wall, step_wall * cores_busy, step_wall * self.gpus).cost(limits.rates)
        reasons = []
        if limits.max_time_hours is not None and run_hours > limits.max_time_hours:
            reasons.append(f"the run would take {run_hours:.2f} h > max_time_hours {limits.max_time_hours}")
        if limits.max_cost is not None and cost > limits.max_cost:
            reasons.append(f"the run would cost {cost:.4f} {limits.currency} > max_cost {limits.max_cost}")
        return "; ".join(reasons) or None

    def share_used(self, run_end: float, run_cost: float) -> float:
        """The larger share of the time or cost budget a run ending at `run_end` with `run_cost`
        used (above 1: over budget); 0 when no budget is set."""
        limits = self.constraints
        shares = [(run_end - self.run_started) / 3600 / limits.max_time_hours if limits.max_time_hours else 0.0,
                  run_cost / limits.max_cost if limits.max_cost else 0.0]
        return max(shares)


def probe_steps(total_steps: int, share: float) -> int:
    """After how many of `total_steps` a stage first projects its end."""
    return max(2, math.ceil(total_steps * share))
