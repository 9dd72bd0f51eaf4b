"""What a level planner expects of each bid level: planned end-of-day budget and value by level.

    python docs/experiments/probes/diffbid_level_curves.py CHECKPOINT [--data data/train] [--period 3] [--campaigns 2,11,25,30] [--ticks 0,24]

For training campaigns of one period, at the given ticks (their realised prefix in-painted), the
planner's search is run with 4 plans per level and, per level, the mean planned share of the
budget left after the day (b_T) and value delivered (v_T = conversions x C / B) are printed with
what the campaign's logged day actually did (its level from that tick, whether the day is
open-loop, its end-of-day b_T, v_T and score efficiency) and the level the search picked. A planner
that learned what a level does plans b_T falling as the level rises.
"""

from __future__ import annotations

import argparse

import torch

from aigb.algos.checkpoint import load_algorithm
from aigb.algos.plan_features import MARKET_CHANNELS
from aigb.data.dataset import TrajectoryDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="data/train")
    parser.add_argument("--period", type=int, default=3)
    parser.add_argument("--campaigns", default="2,11,25,30")
    parser.add_argument("--ticks", default="0,24")
    args = parser.parse_args()
    torch.set_num_threads(1)
    algo = load_algorithm(args.checkpoint)
    if algo.config.condition != "level":
        raise SystemExit(f"{args.checkpoint}: not a level planner (condition={algo.config.condition!r})")
    ds = TrajectoryDataset.load(args.data, periods=[args.period])
    a = algo._arrays(ds)
    planner = algo.policy(search_samples=4)
    print(f"search range {algo.level_range.round(2).tolist()}, open-loop days in this period {a['open_loop'].mean():.0%}")
    bi, vi = MARKET_CHANNELS.index("budget_left"), MARKET_CHANNELS.index("value_delivered")
    n_levels = planner.levels.numel()
    for i in (int(c) for c in args.campaigns.split(",")):
        for t in (int(x) for x in args.ticks.split(",")):
            seen = {}
            score = planner.plan_score

            def spy(x0, tick, score=score):
                seen["x0"] = x0
                return score(x0, tick)

            planner.plan_score = spy
            step = planner.plan(ds.obs[i, : t + 1], seed=1)
            planner.plan_score = score
            plans = algo.plan_scaler.from_unit(seen["x0"]).numpy().reshape(n_levels, 4, algo.horizon, -1)
            b_t, v_t = plans[:, :, -1, bi].mean(axis=1), plans[:, :, -1, vi].mean(axis=1)
            print(f"campaign {i}, tick {t}: logged level {a['level'][i, t]:+.2f} (open-loop {bool(a['open_loop'][i])}), "
                  f"ended b_T {a['plan'][i, -1, bi]:.2f} v_T {a['plan'][i, -1, vi]:.2f} efficiency {a['efficiency'][i]:.2f}; "
                  f"search picked {step.action:+.2f}")
            print("  level " + " ".join(f"{x:+6.2f}" for x in planner.levels.numpy()))
            print("  b_T   " + " ".join(f"{x:6.2f}" for x in b_t))
            print("  v_T   " + " ".join(f"{x:6.2f}" for x in v_t))


if __name__ == "__main__":
    main()
