"""Decision latency of a strategy: time of each ``bid`` call over one full-size campaign.

    python benchmarks/decision_latency.py SPEC [--advertiser 5] [--period 1000000] [--threads 1]

Plays SPEC (e.g. ``oil:runs/oil/best.pt``) in one campaign of the default market and prints the
median and 95th percentile of the time ``strategy.bid(obs)`` takes per tick (features, network
and bids; the market's own step is not counted).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aigb.sim.env import BiddingEnv
from aigb.strategies.base import strategy_seed
from aigb.strategies.registry import make_strategy
from aigb.types import MarketConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--advertiser", type=int, default=5)
    ap.add_argument("--period", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    market = MarketConfig()
    strategy = make_strategy(args.spec, market)
    env = BiddingEnv(market, args.advertiser, seed=0)
    obs, _ = env.reset(period=args.period)
    strategy.reset(obs.campaign, market.n_ticks, strategy_seed(0, args.period, args.advertiser))
    times, done = [], False
    while not done:
        t0 = time.perf_counter()
        bids = strategy.bid(obs)
        times.append(time.perf_counter() - t0)
        obs, _, done, _, _ = env.step(bids)
    ms = 1000 * np.array(times)
    print(f"{args.spec}: {ms.size} decisions, median {np.median(ms):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms, "
          f"max {ms.max():.3f} ms ({args.threads} torch thread(s))")


if __name__ == "__main__":
    main()
