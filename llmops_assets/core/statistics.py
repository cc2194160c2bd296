"""Confidence bounds for the gates that decide on a few dozen examples: a rate is judged by the
bound it is known to clear, not by its point value, so one example more or less cannot flip a gate."""

from __future__ import annotations

import math


def binomial_bounds(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided exact (Clopper-Pearson) bounds (lower, upper) of a binomial proportion at
    `confidence`: the true rate is above `lower` (or below `upper`) with at least that confidence,
    for every n. (Wilson's bounds are narrower but, being approximate, err the wrong way for some n:
    a model exactly at the threshold would pass more often than 1 - confidence.)"""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    log_choose = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)]

    def at_most(k: int, p: float) -> float:
        """P(X <= k) for X ~ Binomial(n, p), summed in log space so that large n does not overflow."""
        log_p, log_q = math.log(p), math.log1p(-p)
        terms = [log_choose[i] + i * log_p + (n - i) * log_q for i in range(k + 1)]
        top = max(terms)
        return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))

    lower = 0.0 if successes == 0 else _solve(lambda p: (1.0 - at_most(successes - 1, p)) - alpha)
    upper = 1.0 if successes == n else _solve(lambda p: alpha - at_most(successes, p))
    return lower, upper


def _solve(increasing) -> float:
    """The root in (0, 1) of a function that increases in p, by bisection to about 1e-12."""
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if increasing(middle) < 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2
