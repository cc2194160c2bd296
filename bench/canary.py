"""Canary decision benchmark: requests the sequential test needs, against a fixed-horizon test of
the same error rates.

    .venv/bin/python bench/canary.py [--streams 400] [--margin 0.05] [--alpha 0.05]

Simulates paired probe outcomes (challenger - champion: +1, 0 or -1, 10% of pairs discordant at
no difference). The fixed-horizon baseline is the one-sided z-test of non-inferiority planned for
90% power at no difference, n = ((z_(1-alpha) + z_0.9) sd / margin)^2: it must wait for all n
pairs and may be looked at only once. The sequential test (the confidence sequence of
`core.statistics.mean_bounds`, the one `canary_analysis` uses) stops as soon as it is decided,
may be looked at after every request, and keeps its error rates. Prints, per scenario, the
median and 90th percentile of pairs to a decision and their ratio to the fixed-horizon n.
"""

import argparse
import math
from statistics import NormalDist

import numpy as np

from llmops_assets.core.statistics import mean_bounds


def first_crossing(hit: np.ndarray) -> np.ndarray:
    """The 1-based index of the first True per stream; the horizon + 1 where none."""
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, hit.shape[1] + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    z = NormalDist().inv_cdf
    discordant = 0.10
    fixed = math.ceil(((z(1 - args.alpha) + z(0.9)) * math.sqrt(discordant) / args.margin) ** 2)
    horizon = 12 * fixed
    rng = np.random.default_rng(0)
    print(f"fixed-horizon test: {fixed} pairs (alpha {args.alpha}, power 0.9 at no difference, margin {args.margin})")
    scenarios = {"equal (promote)": 0.0, "worse by 0.10 (roll back)": -0.10, "worse by 0.50 (roll back)": -0.50}
    for name, difference in scenarios.items():
        wins = max(0.0, (discordant + difference) / 2) if difference > -discordant else 0.0
        losses = wins - difference
        u = rng.random((args.streams, horizon))
        d = np.where(u < wins, 1.0, np.where(u < wins + losses, -1.0, 0.0))
        lower, upper = mean_bounds((d + 1) / 2, args.alpha)
        promote = first_crossing(2 * lower - 1 > -args.margin)
        rollback = first_crossing(2 * upper - 1 < 0)
        decided_at = np.minimum(promote, rollback)
        share = {"promote": float(np.mean(promote < rollback)), "rollback": float(np.mean(rollback < promote))}
        median, p90 = np.percentile(decided_at, [50, 90])
        print(f"{name:28s} sequential: median {median:6.0f} pairs ({median / fixed:4.2f}x fixed), p90 {p90:6.0f} "
              f"({p90 / fixed:4.2f}x); promoted {share['promote']:.1%}, rolled back {share['rollback']:.1%}")


if __name__ == "__main__":
    main()
