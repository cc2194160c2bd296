"""A step's usage and cost, and the projection a run's budget is decided on."""

import time

import pytest

from llmops_assets.core.costs import Constraints, CostRates, Meter, RunBudget, Usage, probe_steps

RATES = CostRates(cpu_core_hour=0.36, gpu_hour=3.6)  # 0.0001 per core-second, 0.001 per GPU-second


def budget(**limits) -> RunBudget:
    return RunBudget(Constraints(rates=RATES, **limits), run_started=1000.0, spent_cost=0.5, step_started=1600.0, gpus=2)


def test_usage_is_priced_per_core_and_gpu_hour():
    assert Usage(wall_s=100, cpu_s=200, gpu_s=50).cost(RATES) == pytest.approx(200 * 0.0001 + 50 * 0.001)


def test_the_meter_counts_the_cpu_this_process_burns_and_the_gpus_it_holds():
    meter = Meter(gpus=3)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    usage = meter.usage()
    assert usage.cpu_s >= 0.25 and usage.wall_s >= 0.25
    assert usage.gpu_s == pytest.approx(usage.wall_s * 3)


def test_a_projection_within_the_budget_passes_and_one_beyond_names_the_limit():
    # The run began at t=1000 and spent 0.5 before this step, which began at t=1600 and holds 2 GPUs.
    # 2000 s more: the run ends at 0.72 h and costs 0.5 + 2000 * (1 * 0.0001 + 2 * 0.001) = 4.7.
    assert budget(max_time_hours=1.0, max_cost=5.0).overrun(projected_end=1600 + 2000, cores_busy=1) is None
    reason = budget(max_time_hours=0.5, max_cost=1.0).overrun(projected_end=1600 + 2000, cores_busy=1)
    assert "0.72 h > max_time_hours 0.5" in reason and "cost 4.7000 USD > max_cost 1.0" in reason


def test_no_budget_never_overruns():
    assert budget().overrun(projected_end=1e12, cores_busy=64) is None
    assert budget().share_used(run_end=1e12, run_cost=1e9) == 0.0


def test_the_share_used_is_the_larger_of_time_and_cost():
    assert budget(max_time_hours=1.0, max_cost=2.0).share_used(run_end=1000 + 1800, run_cost=1.5) == pytest.approx(0.75)
    assert budget(max_time_hours=1.0, max_cost=2.0).share_used(run_end=1000 + 7200, run_cost=1.5) == pytest.approx(2.0)


def test_the_first_projection_comes_after_a_share_of_the_steps_but_never_before_two():
    assert probe_steps(128, 0.05) == 7
    assert probe_steps(12, 0.05) == 2
