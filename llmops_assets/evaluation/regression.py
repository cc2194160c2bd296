"""Regression against the champion with a paired bootstrap, so a small test set does not flip
the gate on noise: both models answer the same examples, and the per-example differences are
resampled together."""

from __future__ import annotations

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


def regression_analysis(candidate: dict[str, list[float]], champion: dict[str, list[float]], champion_name: str,
                        tolerance: float, samples: int, confidence: float) -> dict[str, Any]:
    """Per metric: delta and interval. A metric regressed when it dropped by more than
    `tolerance` *and* the whole interval lies below zero (worse beyond noise)."""
    metrics = {}
    for name in candidate:
        result = paired_bootstrap(candidate[name], champion[name], samples, confidence)
        result["candidate"] = float(np.mean(candidate[name]))
        result["champion"] = float(np.mean(champion[name]))
        result["regressed"] = result["delta"] < -tolerance and result["ci_high"] < 0
        metrics[name] = result
    return {"champion": champion_name, "tolerance": tolerance, "confidence": confidence,
            "metrics": metrics, "regressed": any(m["regressed"] for m in metrics.values())}
