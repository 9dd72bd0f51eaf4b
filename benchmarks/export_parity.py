"""Competition export parity: each strategy played by aigb in its environment and exported, in our
competition loop, over the same campaigns; the largest bid difference and the score both ways.

    python benchmarks/export_parity.py [--strategies fixed,pid,onlinelp,runs] [--campaigns 3]
        [--n-pv 500000] [--n-advertisers 48] [--out benchmarks/results/export_parity.txt]

``runs`` stands for every ``runs/*/best.pt`` that exists (bc, iql, cql, dt, diffbid). An OnlineLP
with a prior is played twice: exported as by default (the prior's mean row of the campaign's
category: the competition's interface names no advertiser slot, aigb's OnlineLP reads its slot's
row, so the two bid differently) and exported per campaign with ``--advertiser`` its slot. Each strategy
is exported (``aigb.export.export_neurips2024``, which checks itself on a small period first)
into a temporary folder; then for each evaluation campaign (seed 0, periods from 1,000,000, slots
spread over the market) the aigb strategy plays ``BiddingEnv`` (reset with the export's seed) and
the exported folder, loaded by file path, plays ``aigb.export.harness.play_competition``; a third
play runs the folder back through the ``neurips2024:`` adapter. Printed per strategy: the largest
|bid difference| over all PVs of all campaigns (env vs harness, and env vs adapter), the mean
score each way and the largest score difference, and the wall time. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from aigb.export.exporter import export_neurips2024, load_exported_class
from aigb.export.harness import play_competition, play_env
from aigb.seeding import EVAL_FIRST_PERIOD
from aigb.strategies.registry import make_strategy
from aigb.types import MarketConfig

RUNS = ("bc", "iql", "cql", "dt", "diffbid")


def sources(names: list[str]) -> list[str]:
    out = []
    for name in names:
        if name == "runs":
            out += [f"{algo}:runs/{algo}/best.pt" for algo in RUNS if Path(f"runs/{algo}/best.pt").is_file()]
        else:
            out.append(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default="fixed,pid,onlinelp,runs")
    parser.add_argument("--campaigns", type=int, default=3, help="evaluation campaigns per strategy")
    parser.add_argument("--n-pv", type=int, default=MarketConfig().n_pv)
    parser.add_argument("--n-advertisers", type=int, default=MarketConfig().n_advertisers)
    parser.add_argument("--seed", type=int, default=0, help="the exports' seed (OnlineLP's subsample, DiffBid's noise)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    market = MarketConfig(n_pv=args.n_pv, n_advertisers=args.n_advertisers)
    slots = np.linspace(0, market.n_advertisers - 1, args.campaigns).round().astype(int)
    campaigns = [(0, EVAL_FIRST_PERIOD + i, int(slot)) for i, slot in enumerate(slots)]
    lines = [f"market: {market.n_pv:,} PVs x {market.n_ticks} ticks, {market.n_advertisers} advertisers, "
             f"{market.preset}; campaigns (seed, period, slot): {campaigns}",
             f"{'strategy':<32} {'kind':<12} {'max|dbid| env-harness':>22} {'env-adapter':>12} "
             f"{'score env':>10} {'score harness':>13} {'max|dscore|':>11} {'s':>6}"]
    print("\n".join(lines), flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(spec, False) for spec in sources(args.strategies.split(","))]
        # An OnlineLP prior has a row per advertiser slot, which the competition's interface does not
        # name: the export takes the category's mean row unless told the slot (--advertiser).
        runs += [(spec, True) for spec, _ in runs if spec.startswith("onlinelp") and "prior=none" not in spec]
        for spec, per_slot in runs:
            t0 = time.time()
            exported = {}
            try:
                for seed, period, slot in campaigns:
                    key = slot if per_slot else None
                    if key not in exported:
                        folder = Path(tmp) / f"{spec.split(':')[0]}-{key}"
                        exported[key] = export_neurips2024(spec, folder, market=market, seed=args.seed, advertiser=key)
            except (ValueError, OSError) as err:    # e.g. a checkpoint replaced by a training run meanwhile
                line = f"{spec:<32} skipped: {err}"
                lines.append(line)
                print(line, flush=True)
                continue
            report = next(iter(exported.values()))
            diff = adapter_diff = score_gap = 0.0
            env_scores, harness_scores = [], []
            for seed, period, slot in campaigns:
                out = exported[slot if per_slot else None].out
                adapter_spec = f"neurips2024:{out / 'player.py'}:PlayerBiddingStrategy"
                env = play_env(make_strategy(report.spec, market), market, seed, period, slot, strategy_seed=args.seed)
                harness = play_competition(load_exported_class(out)(), market, seed, period, slot)
                back = play_env(make_strategy(adapter_spec, market), market, seed, period, slot)
                diff = max(diff, env.max_bid_difference(harness))
                adapter_diff = max(adapter_diff, env.max_bid_difference(back))
                score_gap = max(score_gap, abs(env.score - harness.score))
                env_scores.append(env.score)
                harness_scores.append(harness.score)
            label = report.spec + (" (--advertiser slot)" if per_slot else "")
            row = {"strategy": label, "kind": report.kind, "max_bid_difference": diff,
                   "max_bid_difference_adapter": adapter_diff, "score_env": float(np.mean(env_scores)),
                   "score_harness": float(np.mean(harness_scores)), "max_score_difference": score_gap,
                   "seconds": round(time.time() - t0, 1)}
            summary.append(row)
            line = (f"{label:<32} {report.kind:<12} {diff:>22.3g} {adapter_diff:>12.3g} {row['score_env']:>10.4f} "
                    f"{row['score_harness']:>13.4f} {score_gap:>11.3g} {row['seconds']:>6.0f}")
            lines.append(line)
            print(line, flush=True)
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
