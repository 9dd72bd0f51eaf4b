"""How far each strategy's bid level is from the hindsight oracle's, per campaign.

    python docs/experiments/probes/level_error.py results/std/s0 results/std/s1 results/std/diffbid_level [--oracle oracle]

The hindsight oracle bids one multiplier alpha* all day; every strategy here bids alpha_t = exp(a_t) C
per tick. For each campaign, a strategy's day level is the mean of log(alpha_t / C) over the ticks it
spent in, weighted by that spend (the level its money was actually placed at); its error is that
minus log(alpha* / C) of the oracle row of the same campaign (same seed, period, advertiser). Printed
per strategy: campaigns, mean error (bias), RMS error, the within-day spread of its levels
(spend-weighted SD), its mean score; then the bias and RMS error by bins of the oracle level (does a
strategy shrink its levels toward the middle?) and how the level moves from tick to tick over the
ticks with spend: the mean |change|, the lag-1 autocorrelation of the changes (negative: it
oscillates) and the share of consecutive changes that flip sign. Needs the evaluations' ``ticks.parquet``
(``tick_alpha``) and results (``tick_spend``, ``oracle_alpha``); nothing is fitted.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from aigb.eval.evaluate import load_results
from aigb.eval.metrics import name_width, strategy_label
from aigb.eval.traces import TICKS_FILE

BINS = (-math.inf, -0.5, -0.2, 0.1, 0.4, math.inf)
"""Edges of the oracle-level bins, log(alpha* / C)."""


def _ticks(directory) -> dict[tuple, np.ndarray]:
    """(strategy, seed, period, advertiser) -> tick_alpha of an evaluation's ticks.parquet (none: {})."""
    path = Path(directory) / TICKS_FILE
    if not path.is_file():
        return {}
    t = pq.read_table(path).to_pydict()
    return {(s, seed, p, a): np.asarray(x, dtype=np.float64)
            for s, seed, p, a, x in zip(t["strategy"], t["seed"], t["period"], t["advertiser"], t["tick_alpha"])}


def _spent_levels(tick_alpha: np.ndarray, tick_spend: np.ndarray, target_cpa: float) -> tuple[np.ndarray, np.ndarray]:
    """(log(alpha_t / C), spend_t) over the ticks with spend, in tick order."""
    spend = np.asarray(tick_spend, dtype=np.float64)
    live = (spend > 0) & (np.asarray(tick_alpha) > 0)
    return np.log(np.asarray(tick_alpha)[live] / target_cpa), spend[live]


def day_level(tick_alpha: np.ndarray, tick_spend: np.ndarray, target_cpa: float) -> tuple[float, float] | None:
    """(spend-weighted mean, spend-weighted SD) of log(alpha_t / C) over the ticks with spend; None
    with fewer than 2 such ticks."""
    a, spend = _spent_levels(tick_alpha, tick_spend, target_cpa)
    if a.size < 2:
        return None
    w = spend / spend.sum()
    mean = float((w * a).sum())
    return mean, float(np.sqrt((w * (a - mean) ** 2).sum()))


def level_changes(tick_alpha: np.ndarray, tick_spend: np.ndarray, target_cpa: float) -> tuple[float, float, float] | None:
    """(mean |change|, lag-1 autocorrelation of the changes, share of sign flips) of log(alpha_t / C)
    over the ticks with spend, taken in order; None with fewer than 6 such ticks or constant changes."""
    a, _ = _spent_levels(tick_alpha, tick_spend, target_cpa)
    if a.size < 6:
        return None
    d = np.diff(a)
    if d[1:].std() == 0 or d[:-1].std() == 0:
        return None
    return float(np.abs(d).mean()), float(np.corrcoef(d[1:], d[:-1])[0, 1]), float((np.sign(d[1:]) != np.sign(d[:-1])).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="aigb evaluate --out directories (one must hold the oracle)")
    parser.add_argument("--oracle", default="oracle", help="the hindsight oracle's strategy name (default %(default)s)")
    args = parser.parse_args()
    rows, ticks = {}, {}
    for d in args.results:
        table, _ = load_results(d)
        for r in table.to_pylist():
            rows[(r["strategy"], r["seed"], r["period"], r["advertiser"])] = r
        ticks.update(_ticks(d))
    oracle = {k[1:]: r for k, r in rows.items() if k[0] == args.oracle}
    if not oracle:
        raise SystemExit(f"no rows of {args.oracle!r} in {args.results}")
    names = list(dict.fromkeys(k[0] for k in rows if k[0] != args.oracle))
    w = name_width(names)
    print(f"{'strategy':<{w}} {'n':>5} {'bias':>7} {'rmse':>7} {'day sd':>7} {'score':>7} {'|chg|':>7} {'chg ac1':>7} {'flips':>6}")
    per_bin = {}
    for name in names:
        err, sd, score, level, moves = [], [], [], [], []
        for k, r in rows.items():
            if k[0] != name or k[1:] not in oracle or k not in ticks or r["error"] is not None:
                continue
            got = day_level(ticks[k], r["tick_spend"], r["target_cpa"])
            if got is None:
                continue
            o = oracle[k[1:]]
            star = math.log(o["oracle_alpha"] / o["target_cpa"])
            err.append(got[0] - star), sd.append(got[1]), score.append(r["score"]), level.append(star)
            move = level_changes(ticks[k], r["tick_spend"], r["target_cpa"])
            if move is not None:
                moves.append(move)
        if not err:
            continue
        err, level = np.array(err), np.array(level)
        print(f"{strategy_label(name, w):<{w}} {err.size:>5} {err.mean():>+7.3f} {np.sqrt((err ** 2).mean()):>7.3f} "
              f"{np.mean(sd):>7.3f} {np.mean(score):>7.2f} " + " ".join(f"{v:>{n}.{p}f}" for v, n, p in
                                                                         zip(np.mean(moves, axis=0) if moves else [np.nan] * 3, (7, 7, 6), (3, 3, 2))))
        per_bin[name] = (err, level)
    print("\nby oracle level log(alpha*/C): bias / rmse (campaigns)")
    edges = list(zip(BINS[:-1], BINS[1:]))
    print(f"{'strategy':<{w}} " + " ".join(f"{f'[{lo:+.1f},{hi:+.1f})':>19}" for lo, hi in edges))
    for name, (err, level) in per_bin.items():
        cells = []
        for lo, hi in edges:
            m = (level >= lo) & (level < hi)
            cells.append(f"{err[m].mean():+.2f} / {np.sqrt((err[m] ** 2).mean()):.2f} ({m.sum():>3})" if m.any() else "-")
        print(f"{strategy_label(name, w):<{w}} " + " ".join(f"{c:>19}" for c in cells))


if __name__ == "__main__":
    main()
