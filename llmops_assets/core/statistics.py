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


def mean_bounds(x, alpha: float, truncation: float = 0.5):
    """Anytime-valid one-sided bounds (lower, upper) on the mean of observations in [0, 1], after
    each one: the lower bounds stay below the true mean at every step at once with probability at
    least 1 - alpha, and so do the upper bounds above it. Looking after every request therefore
    costs no error (a fixed-horizon interval peeked at repeatedly has no such guarantee).

    Waudby-Smith & Ramdas (2023), predictable plug-in empirical Bernstein confidence sequence: it
    narrows with the observed variance, so identical answers (variance 0) decide fast. `x` may be
    2-D (streams x steps); the running intersection is returned."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    t = np.arange(1, x.shape[-1] + 1)
    mean_after = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)  # with one fake observation at 1/2
    mean_before = np.concatenate([np.full(x.shape[:-1] + (1,), 0.5), mean_after[..., :-1]], axis=-1)
    variance_after = (0.25 + np.cumsum((x - mean_after) ** 2, axis=-1)) / (t + 1)
    variance_before = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), variance_after[..., :-1]], axis=-1)
    log_term = math.log(1 / alpha)
    bets = np.minimum(np.sqrt(2 * log_term / (variance_before * t * np.log1p(t))), truncation)
    spent = -np.log1p(-bets) - bets
    stake = np.cumsum(bets, axis=-1)
    center = np.cumsum(bets * x, axis=-1) / stake
    margin = (log_term + np.cumsum((x - mean_before) ** 2 * spent, axis=-1)) / stake
    lower = np.maximum.accumulate(np.clip(center - margin, 0, 1), axis=-1)
    upper = np.minimum.accumulate(np.clip(center + margin, 0, 1), axis=-1)
    return lower, upper


def paired_difference_bounds(differences, alpha: float) -> tuple[float, float]:
    """Anytime-valid one-sided bounds on the mean of paired differences in [-1, 1] (the same
    request answered by both models), each at level alpha."""
    import numpy as np

    lower, upper = mean_bounds((np.asarray(differences, dtype=float) + 1) / 2, alpha)
    return (2 * lower[-1] - 1, 2 * upper[-1] - 1) if len(lower) else (-1.0, 1.0)


def difference_bounds(a, b, alpha: float) -> tuple[float, float]:
    """Anytime-valid one-sided bounds on mean(a) - mean(b) for two independent streams in [0, 1]:
    each stream's bound at alpha/2, combined (a union bound)."""
    a_low, a_high = _last(a, alpha / 2)
    b_low, b_high = _last(b, alpha / 2)
    return a_low - b_high, a_high - b_low


def _last(x, alpha: float) -> tuple[float, float]:
    if len(x) == 0:
        return 0.0, 1.0
    lower, upper = mean_bounds(x, alpha)
    return float(lower[-1]), float(upper[-1])


def observations_to_width(n: int, variance: float, width: float, alpha: float, truncation: float = 0.5,
                          limit: int = 1_000_000) -> int | None:
    """About how many observations in all `mean_bounds` needs before its margin is below `width`,
    if the stream goes on with this variance: what a continuing sequential test still needs.
    None when not within `limit`."""
    import numpy as np

    if width <= 0:
        return None
    t = np.arange(1, limit + 1, dtype=float)
    variance = max(variance, 1e-6)
    bets = np.minimum(np.sqrt(2 * math.log(1 / alpha) / (variance * t * np.log1p(t))), truncation)
    margin = (math.log(1 / alpha) + np.cumsum(variance * (-np.log1p(-bets) - bets))) / np.cumsum(bets)
    reached = np.nonzero(margin[n:] < width)[0]
    return int(n + reached[0] + 1) if len(reached) else None
