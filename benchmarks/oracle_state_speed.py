"""Cost of labelling every tick of one campaign with the oracle from a state.

    python benchmarks/oracle_state_speed.py [--advertiser 5] [--period 3] [--rate 0.9]

Plays one full-size campaign (default market, 500k PVs) with ``fixed:rate=RATE`` while recording
the competitors' bids, then times, side by side: the full-day ``best_uniform_alpha`` and
``solve_oracle`` (one state each), and ``solve_continuations`` from the 48 realised states, with and
without the action-bound range and the LP bound. Prints ms per label (per state).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aigb.sim.env import BiddingEnv
from aigb.strategies.oracle import best_uniform_alpha, solve_oracle
from aigb.strategies.oracle_state import solve_continuations
from aigb.types import ACTION_HIGH, ACTION_LOW, MarketConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--advertiser", type=int, default=5)
    ap.add_argument("--period", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.9)
    args = ap.parse_args()
    m = MarketConfig()
    env = BiddingEnv(m, args.advertiser, seed=0, record_competitors=True)
    obs, _ = env.reset(period=args.period)
    p, c, t, spend, conv = [], [], [], [], []
    done = False
    t0 = time.perf_counter()
    while not done:
        spend.append(float(obs.history["cost"].sum()))
        conv.append(float(obs.history["conversions"].sum()))
        tick = obs.tick
        obs, _, done, _, info = env.step(args.rate * obs.campaign.target_cpa * obs.p_value.astype(np.float64))
        p.append(info["p_value"].astype(np.float64))
        c.append(info["competitor_top"])
        t.append(np.full(info["p_value"].size, tick))
    rollout_s = time.perf_counter() - t0
    p, c, t = np.concatenate(p), np.concatenate(c), np.concatenate(t)
    camp = env.campaign
    rules = {"n_ticks": m.n_ticks, "exposure_probs": m.net_exposure_probs, "reserve_price": m.reserve_price}
    print(f"campaign {camp}, {p.size:,} PVs; the rollout itself: {rollout_s * 1000:.0f} ms")
    t0 = time.perf_counter()
    best_uniform_alpha(p, c, t, camp.budget, camp.target_cpa, **rules)
    print(f"full-day best_uniform_alpha: {1000 * (time.perf_counter() - t0):.0f} ms (one state)")
    t0 = time.perf_counter()
    solve_oracle(p, c, t, camp.budget, camp.target_cpa, **rules)
    print(f"full-day solve_oracle:       {1000 * (time.perf_counter() - t0):.0f} ms (one state)")
    bounds = (np.exp(ACTION_LOW) * camp.target_cpa, np.exp(ACTION_HIGH) * camp.target_cpa)
    starts = np.arange(m.n_ticks)
    for alpha_range, lp in ((None, False), (bounds, False), (None, True), (bounds, True)):
        t0 = time.perf_counter()
        k = solve_continuations(p, c, t, camp.budget, camp.target_cpa, starts, spend, conv, alpha_range=alpha_range,
                                lp=lp, **rules)
        ms = 1000 * (time.perf_counter() - t0)
        print(f"solve_continuations x{starts.size} states, range={'action bounds' if alpha_range else 'none':13s} "
              f"lp={lp!s:5s}: {ms:6.0f} ms, {ms / starts.size:5.1f} ms per label (score from tick 0 {k.score[0]:.2f})")


if __name__ == "__main__":
    main()
