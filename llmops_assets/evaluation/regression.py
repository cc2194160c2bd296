"""Regression against the champion, decided so that a small test set does not flip the gate on
noise: both models answer the same examples, and only the examples where they disagree carry
evidence. A metric regressed when it fell by more than the tolerance and an exact one-sided
McNemar (sign) test on the discordant pairs says the fall is not chance; a candidate equal to the
champion is then flagged at most `1 - confidence` of the time. The paired bootstrap interval of
the difference is reported beside it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def paired_bootstrap(candidate: list[float], champion: list[float], samples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean difference candidate - champion with its bootstrap confidence interval."""
    if len(candidate) != len(champion) or not candidate:
        raise ValueError("paired bootstrap needs two equally long, non-empty score lists")
    differences = np.asarray(candidate, dtype=float) - np.asarray(champion, dtype=float)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(samples, len(differences)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return {"delta": float(differences.mean()), "ci_low": float(np.quantile(means, tail)),
            "ci_high": float(np.quantile(means, 1 - tail)), "n": len(differences)}


def mcnemar_worse_p(candidate: list[float], champion: list[float]) -> tuple[float, int, int]:
    """(one-sided exact p-value that the candidate is worse, wins, losses) from the discordant
    pairs: under "equally good" each one is a fair coin, so losses ~ Binomial(wins + losses, 1/2)."""
    wins = sum(c > h for c, h in zip(candidate, champion, strict=True))
    losses = sum(c < h for c, h in zip(candidate, champion, strict=True))
    discordant = wins + losses
    p_value = sum(math.comb(discordant, k) for k in range(losses, discordant + 1)) / 2 ** discordant
    return p_value, wins, losses


def regression_analysis(candidate: dict[str, list[float]], champion: dict[str, list[float]], champion_name: str,
                        tolerance: float, samples: int, confidence: float,
                        tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Per metric: delta, bootstrap interval, wins, losses and the McNemar p-value. A metric
    regressed when it dropped by more than its tolerance (`tolerances[name]`, else `tolerance`)
    *and* p < 1 - confidence (worse beyond noise). Each metric may be scored on its own examples."""
    metrics = {}
    for name in candidate:
        tolerance_here = (tolerances or {}).get(name, tolerance)
        result = paired_bootstrap(candidate[name], champion[name], samples, confidence)
        result["candidate"] = float(np.mean(candidate[name]))
        result["champion"] = float(np.mean(champion[name]))
        result["p_worse"], result["wins"], result["losses"] = mcnemar_worse_p(candidate[name], champion[name])
        result["tolerance"] = tolerance_here
        result["regressed"] = result["delta"] < -tolerance_here and result["p_worse"] < 1 - confidence
        metrics[name] = result
    return {"champion": champion_name, "tolerance": tolerance, "confidence": confidence,
            "metrics": metrics, "regressed": any(m["regressed"] for m in metrics.values())}
