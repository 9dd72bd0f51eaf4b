"""Market statistics that tell one market version from another, side by side.

    python benchmarks/market_stats.py --out benchmarks/results/market_v2.json
    python benchmarks/market_stats.py --compare benchmarks/results/market_v1.json benchmarks/results/market_v2.json

What it measures on the default market (sparse preset, 500k PVs, 48 advertisers, the default
competitor population), the statistics of issue 9:
* net exposure by slot: shown / sold;
* median first-slot price by 8-tick window (money per PV);
* advertisers exhausted (remaining budget <= 1 % of B) before ticks 12 / 24 / 36, per period;
* ticks per period that needed a budget re-run;
* share of live competitor-ticks whose multiplier is under 0.25 x their target CPA;
* the bid = CPA x pValue strategy (fixed rate 1) in every one of the 48 slots: budget use and score
  by CPA target;
* seed-to-seed spread of the population's total score (one period per seed).

It uses only ``PeriodSim`` and its tick records, so the same script runs on any market version
(check out an older commit in a worktree and point PYTHONPATH at it to measure "before").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aigb.score import score
from aigb.sim.period import PeriodSim
from aigb.types import MarketConfig

EXHAUSTED_SHARE = 0.01


def _market_version() -> str:
    try:
        from aigb.types import MARKET_VERSION
    except ImportError:
        return "v1"
    return MARKET_VERSION


def population_periods(market: MarketConfig, seeds: list[int], period: int) -> dict:
    """Statistics of the population alone, one period per seed."""
    n_slots = market.n_slots
    shown = np.zeros(n_slots)
    sold = np.zeros(n_slots)
    window_prices: dict[int, list[np.ndarray]] = {}
    exhausted = {12: [], 24: [], 36: []}
    reruns, low_alpha, live_ticks, total_score = [], 0, 0, []
    for seed in seeds:
        sim = PeriodSim(market, seed, period)
        n_rerun = 0
        remaining_at = {}
        while not sim.done:
            t = sim.tick
            remaining = sim.remaining_budget.copy()
            remaining_at[t] = remaining
            rec = sim.step()
            o = rec.outcome
            is_sold = o.winner >= 0
            sold += is_sold.sum(axis=0)
            shown += (is_sold & o.exposed).sum(axis=0)
            p1 = o.price[:, 0][is_sold[:, 0]]
            window_prices.setdefault(t // 8, []).append(p1)
            n_rerun += int(o.n_reruns > 0)
            live = remaining >= market.min_remaining_budget
            rel = rec.alpha / sim.target_cpa
            low_alpha += int(((rel < 0.25) & live).sum())
            live_ticks += int(live.sum())
        for t in exhausted:
            exhausted[t].append(int((remaining_at[t] <= EXHAUSTED_SHARE * sim.budget).sum()))
        reruns.append(n_rerun)
        spend = sim.history["cost"].sum(axis=0)
        conv = sim.history["conversions"].sum(axis=0)
        total_score.append(float(np.sum(score(conv, spend, sim.target_cpa))))
    ts = np.asarray(total_score)
    return {
        "net_exposure_by_slot": (shown / np.maximum(sold, 1)).round(4).tolist(),
        "median_first_slot_price_by_window": [float(np.median(np.concatenate(window_prices[w]))) for w in sorted(window_prices)],
        "exhausted_before_tick": {str(t): float(np.mean(v)) for t, v in exhausted.items()},
        "ticks_with_budget_reruns": float(np.mean(reruns)),
        "share_live_competitor_ticks_under_0.25C": low_alpha / max(live_ticks, 1),
        "total_score_mean": float(ts.mean()),
        "total_score_std": float(ts.std(ddof=1)) if ts.size > 1 else 0.0,
        "total_score_cv": float(ts.std(ddof=1) / ts.mean()) if ts.size > 1 else 0.0,
        "seeds": seeds,
    }


def truthful_sweep(market: MarketConfig, seed: int, periods: list[int]) -> dict:
    """bid = CPA x pValue in every slot in turn; budget use and score by CPA target."""
    rows = []
    for period in periods:
        for adv in range(market.n_advertisers):
            sim = PeriodSim(market, seed, period)
            c = sim.target_cpa[adv]
            while not sim.done:
                p_value, _ = sim.tick_inputs()
                sim.step(controlled={adv: c * p_value[:, adv].astype(np.float64)})
            spend = sim.history["cost"][:, adv].sum()
            conv = sim.history["conversions"][:, adv].sum()
            rows.append((c, spend / sim.budget[adv], float(score(conv, spend, c))))
    arr = np.asarray(rows)
    by_cpa = {}
    for c in np.unique(arr[:, 0]):
        sel = arr[:, 0] == c
        by_cpa[str(int(c))] = {"n": int(sel.sum()), "budget_use": float(arr[sel, 1].mean()), "score": float(arr[sel, 2].mean())}
    return {"by_target_cpa": by_cpa, "budget_use": float(arr[:, 1].mean()), "score": float(arr[:, 2].mean()),
            "periods": periods, "seed": seed}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def print_side_by_side(results: list[dict]) -> None:
    names = [r["market_version"] for r in results]
    print(f"{'statistic':<42} " + "  ".join(f"{n:<48}" for n in names))
    for key in results[0]["population"]:
        if key == "seeds":
            continue
        print(f"{key:<42} " + "  ".join(f"{_fmt(r['population'].get(key)):<48}" for r in results))
    print("truthful bid = CPA x pValue over all 48 slots:")
    print(f"{'  budget use / score (all)':<42} " + "  ".join(
        f"{r['truthful']['budget_use']:.3f} / {r['truthful']['score']:.2f}{'':<34}" for r in results))
    cpas = sorted({c for r in results for c in r["truthful"]["by_target_cpa"]}, key=int)
    for c in cpas:
        cells = []
        for r in results:
            row = r["truthful"]["by_target_cpa"].get(c)
            cells.append(f"{row['budget_use']:.3f} / {row['score']:.2f} (n={row['n']})" if row else "-")
        print(f"{'  CPA ' + c + ': budget use / score':<42} " + "  ".join(f"{x:<48}" for x in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="seeds (one period each) for the population statistics")
    ap.add_argument("--sweep-periods", type=int, default=2, help="periods of the 48-slot truthful sweep")
    ap.add_argument("--period", type=int, default=1_000_000, help="first period index (evaluation range)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    ap.add_argument("--compare", type=Path, nargs="+", help="print saved JSON files side by side and exit")
    args = ap.parse_args()
    if args.compare:
        print_side_by_side([json.loads(p.read_text()) for p in args.compare])
        return
    market = MarketConfig()
    t0 = time.perf_counter()
    result = {
        "market_version": _market_version(),
        "population": population_periods(market, list(range(args.seeds)), args.period),
        "truthful": truthful_sweep(market, 0, [args.period + i for i in range(args.sweep_periods)]),
    }
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print_side_by_side([result])
    print(f"({result['wall_s']} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
