"""Kinds of day in market v2 and v3: a truthful bidder's day-to-day spread, and where bidding above
the truthful level pays.

    python benchmarks/day_types.py [--periods 12] [--seed 0]

bid = CPA x pValue (``fixed``, rate 1) plays one slot per category (CPAs 60-130) on ``--periods``
evaluation periods of each version; ``fixed:rate=1.5`` and ``fixed:rate=0.8`` play the same
campaigns (paired). Printed per version: the truthful bidder's budget use and score (mean, standard
deviation over days, 10th / 90th percentile), the share of sparse days (budget use under 0.5) and
of very sparse ones (under 0.2), and the paired score gain of bidding 1.5 x and 0.8 x the truthful
level on sparse and on other days. Days are periods: each plays a new draw of the category curves,
traffic volumes and competitor field.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aigb.eval.batched import play_period
from aigb.seeding import EVAL_FIRST_PERIOD
from aigb.types import MarketConfig

SPECS = ("fixed", "fixed:rate=1.5", "fixed:rate=0.8")
SLOTS = tuple(8 * c + (c % 8) + 1 for c in range(6))  # positions 1..6 of categories 0..5


def days(version: str, periods: int, seed: int) -> dict[str, np.ndarray]:
    """Per (period, slot): budget use and score of each spec.  # each (periods * len(SLOTS),)"""
    market = MarketConfig(version=version)
    out = {f"{k}_{s}": [] for k in ("use", "score") for s in SPECS}
    for p in range(EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + periods):
        for slot_rows in play_period(SPECS, market, None, seed, p, SLOTS, with_oracle=False):
            for spec, row in zip(SPECS, slot_rows):
                out[f"use_{spec}"].append(row["budget_utilisation"])
                out[f"score_{spec}"].append(row["score"])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def report(version: str, d: dict[str, np.ndarray]) -> str:
    use, sc = d["use_fixed"], d["score_fixed"]
    sparse = use < 0.5
    gain = {s: d[f"score_{s}"] - sc for s in SPECS[1:]}

    def paired(x: np.ndarray) -> str:
        if x.size < 2:
            return f"{x.mean() if x.size else float('nan'):+.2f} (n={x.size})"
        return f"{x.mean():+.2f} ±{1.96 * x.std(ddof=1) / np.sqrt(x.size):.2f} (n={x.size})"

    lines = [f"{version}: truthful budget use mean {use.mean():.3f}, sd {use.std(ddof=1):.3f}, p10 {np.quantile(use, 0.1):.3f}, "
             f"p90 {np.quantile(use, 0.9):.3f}; days < 0.5: {sparse.mean():.1%}, < 0.2: {np.mean(use < 0.2):.1%}",
             f"{'':4}truthful score mean {sc.mean():.2f}, sd {sc.std(ddof=1):.2f}, p10 {np.quantile(sc, 0.1):.2f}, "
             f"p90 {np.quantile(sc, 0.9):.2f}; sparse days {sc[sparse].mean():.2f}, others {sc[~sparse].mean():.2f}"]
    for s in SPECS[1:]:
        lines.append(f"{'':4}{s} - truthful, paired score: sparse days {paired(gain[s][sparse])}, "
                     f"other days {paired(gain[s][~sparse])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--periods", type=int, default=12, help="evaluation periods (days) per version (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed (default %(default)s)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"bid = CPA x pValue in slots {SLOTS}, {args.periods} periods (days) each, seed {args.seed}, "
          f"default market size; {len(SLOTS) * args.periods} campaigns per version")
    for version in ("v2", "v3"):
        print(report(version, days(version, args.periods, args.seed)))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
