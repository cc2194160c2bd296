import pytest

from llmops_assets.core.statistics import binomial_bounds


@pytest.mark.parametrize("n", [1, 12, 62, 120, 2000])
def test_binomial_bounds_match_the_closed_forms_at_the_edges(n):
    """At 0 or n successes the exact bounds have closed forms: 1 - alpha^(1/n) and alpha^(1/n)."""
    assert binomial_bounds(0, n, 0.95) == (0.0, pytest.approx(1 - 0.05 ** (1 / n), abs=1e-7))
    assert binomial_bounds(n, n, 0.95) == (pytest.approx(0.05 ** (1 / n), abs=1e-7), 1.0)


def test_binomial_bounds_hold_their_confidence_on_simulated_samples():
    import numpy as np

    rng = np.random.default_rng(0)
    for rate, n in ((0.8, 93), (0.03, 126), (0.5, 19)):
        draws = rng.binomial(n, rate, size=2000)
        bounds = {int(k): binomial_bounds(int(k), n, 0.95) for k in set(draws.tolist())}
        lower_misses = sum(bounds[k][0] > rate for k in draws.tolist()) / len(draws)
        upper_misses = sum(bounds[k][1] < rate for k in draws.tolist()) / len(draws)
        assert lower_misses <= 0.05 and upper_misses <= 0.05, (rate, n, lower_misses, upper_misses)
