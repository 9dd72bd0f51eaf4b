"""Where in the day one strategy loses to another: paired campaigns grouped by spend, then a replay
of the campaigns where both spend about the same, tick by tick.

    python docs/experiments/probes/day_profile.py results/std/s0 results/std/s1 results/std/diffbid_level \\
        --a cql:runs/cql/best.pt --b diffbid:runs/diffbid_level2/best_s.pt --replay 30

Part 1, from the evaluations' rows (nothing re-run): the paired campaigns of A and B split by B's
spend against A's (below 0.95x, above 1.05x, within), with each group's share of the mean score
difference B - A and both strategies' CPA violation rates.

Part 2, ``--replay N`` (0: skip): N campaigns drawn (seeded) from the "within" group are played
again by both strategies in the evaluation's market (the default market and population only), and
the simulator's per-tick history gives, by windows of ticks, the expected conversions bought, the
share of the budget spent and expected conversions per budget share (value per money). A strategy
that spends the same money for fewer conversions spent it at the wrong time or the wrong price.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from aigb.eval.evaluate import load_results
from aigb.seeding import rng
from aigb.sim.env import BiddingEnv
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import strategy_seed
from aigb.strategies.registry import make_strategy
from aigb.types import MarketConfig

WINDOWS = ((0, 12), (12, 16), (16, 20), (20, 24), (24, 28), (28, 32), (32, 40), (40, 48))
"""Tick windows of the replay table (the morning surge starts at about tick 16)."""


def _rows(dirs) -> tuple[dict, dict]:
    rows, config = {}, None
    for d in dirs:
        table, cfg = load_results(d)
        config = config or cfg
        for r in table.to_pylist():
            if r["error"] is None:
                rows[(r["strategy"], r["seed"], r["period"], r["advertiser"])] = r
    return rows, config


def spend_groups(rows: dict, a: str, b: str) -> list[tuple]:
    keys = sorted(k[1:] for k in rows if k[0] == b and (a,) + k[1:] in rows)
    if not keys:
        raise SystemExit(f"no paired campaigns of {a!r} and {b!r}")
    ra, rb = [rows[(a,) + k] for k in keys], [rows[(b,) + k] for k in keys]
    ratio = np.array([y["spend"] / max(x["spend"], 1e-9) for x, y in zip(ra, rb)])
    d = np.array([y["score"] - x["score"] for x, y in zip(ra, rb)])
    viol = lambda rs, m: np.mean([r["realized_cpa"] > r["target_cpa"] for r, k in zip(rs, m) if k])   # noqa: E731
    print(f"{len(keys)} paired campaigns; mean score {np.mean([r['score'] for r in ra]):.2f} ({a}) vs "
          f"{np.mean([r['score'] for r in rb]):.2f} ({b}), difference {d.mean():+.2f}")
    print(f"{'B spends':<22} {'n':>4} {'mean d':>8} {'share of d':>11} {'A viol':>7} {'B viol':>7}")
    groups = {"< 0.95 x A": ratio < 0.95, "> 1.05 x A": ratio > 1.05}
    groups["within 5 % of A"] = ~(groups["< 0.95 x A"] | groups["> 1.05 x A"])
    for name, m in groups.items():
        if m.any():
            print(f"{name:<22} {m.sum():>4} {d[m].mean():>+8.2f} {d[m].sum() / d.size:>+11.2f} "
                  f"{viol(ra, m):>7.1%} {viol(rb, m):>7.1%}")
    return [k for k, m in zip(keys, groups["within 5 % of A"]) if m]


def replay(strategy, key: tuple, market: MarketConfig, population: PopulationConfig) -> np.ndarray:
    """(3, T): expected conversions, expected cost / B and cost / B per tick of one campaign
    played by ``strategy`` (reset here, as the evaluation resets it for every campaign)."""
    seed, period, adv = key
    env = BiddingEnv(market, adv, seed=seed, population=population, keep_pv_history=strategy.needs_pv_history)
    obs, _ = env.reset(period=period)
    strategy.reset(obs.campaign, market.n_ticks, strategy_seed(seed, period, adv))
    done = False
    while not done:
        obs, _, done, _, _ = env.step(strategy.bid(obs))
    h, b = env.sim.history, obs.campaign.budget
    return np.stack([h["expected_conversions"][:, adv], h["expected_cost"][:, adv] / b, h["cost"][:, adv] / b])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="aigb evaluate --out directories holding both strategies")
    parser.add_argument("--a", required=True, help="the reference strategy's name (e.g. the runner-up)")
    parser.add_argument("--b", required=True, help="the strategy examined")
    parser.add_argument("--replay", type=int, default=30, help="campaigns of the equal-spend group to replay (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the replay's draw of campaigns")
    args = parser.parse_args()
    rows, config = _rows(args.results)
    same = spend_groups(rows, args.a, args.b)
    if args.replay <= 0 or not same:
        return
    market = MarketConfig()
    population = market_population(market)
    plain = lambda d: json.loads(json.dumps(d))   # noqa: E731 - tuples as the JSON config holds them (lists)
    if config["market"] != plain(market.to_dict()) or config["population"] != plain(population.to_dict()):
        raise SystemExit("--replay: only evaluations of the default market and population can be replayed here")
    pick = rng(args.seed, "day-profile").choice(len(same), size=min(args.replay, len(same)), replace=False)
    keys = [same[i] for i in sorted(pick)]
    torch.set_num_threads(1)   # as the evaluation plays learned strategies
    traces = {}
    for spec in (args.a, args.b):
        strategy = make_strategy(spec, market)
        traces[spec] = np.array([replay(strategy, k, market, population) for k in keys])
    print(f"\nreplay of {len(keys)} equal-spend campaigns (seed {args.seed}): per tick window, mean over campaigns")
    print(f"{'':<24}" + "".join(f"{f'{lo}-{hi - 1}':>8}" for lo, hi in WINDOWS) + f"{'day':>8}")
    for s, x in traces.items():
        label = "A" if s == args.a else "B"
        conv = [x[:, 0, lo:hi].sum(1).mean() for lo, hi in WINDOWS] + [x[:, 0].sum(1).mean()]
        spent = [x[:, 2, lo:hi].sum(1).mean() for lo, hi in WINDOWS] + [x[:, 2].sum(1).mean()]
        per = [x[:, 0, lo:hi].sum() / max(x[:, 1, lo:hi].sum(), 1e-12) for lo, hi in WINDOWS] + [x[:, 0].sum() / x[:, 1].sum()]
        print(f"{label + ' expected conversions':<24}" + "".join(f"{v:>8.2f}" for v in conv))
        print(f"{label + ' budget share spent':<24}" + "".join(f"{v:>8.3f}" for v in spent))
        print(f"{label + ' conv per budget':<24}" + "".join(f"{v:>8.1f}" for v in per))
    print(f"A = {args.a}, B = {args.b}")


if __name__ == "__main__":
    main()
