"""How far DiffBid's plans are from what then happens: plan-vs-realisation error from evaluation traces.

    python docs/experiments/probes/diffbid_diagnostics.py results/EVAL_DIR [results/OTHER ...]

For every planning strategy in each evaluation directory (``plans.parquet`` written by
``aigb evaluate``; remaining budget as a share of the campaign's budget B):

* next-tick error: |planned remaining budget after tick t - realised|, for plans made at tick t
  while budget was left; the share of plans whose next row lies *above* the realised budget now
  (a plan that un-spends money, i.e. ignores its own prefix);
* 6-tick and end-of-day errors: the plan of tick t against the realised remaining budget at t + 6
  and after the last tick;
* the realised outcome: mean score, % of the oracle bound, CPA violations, budget used.

The plans row ``tick`` t + 1 of plan ``plan_tick`` t is "after tick t". Nothing here is fitted: the
numbers come from the traces alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def _columns(path: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    return {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}


def diagnose(run_dir: Path) -> list[dict]:
    plans, rows = _columns(run_dir / "plans.parquet"), _columns(run_dir / "results.parquet")
    out = []
    for strategy in np.unique(plans["strategy"]):
        r = {k: v[rows["strategy"] == strategy] for k, v in rows.items()}
        p = {k: v[plans["strategy"] == strategy] for k, v in plans.items()}
        next_err, above, six_err, end_err = [], [], [], []
        for i in range(r["strategy"].size):
            key = (r["seed"][i], r["period"][i], r["advertiser"][i])
            budget = float(r["budget"][i])
            rem = np.asarray(r["remaining_budget"][i], dtype=float) / budget        # before each tick
            spend = np.asarray(r["tick_spend"][i], dtype=float) / budget
            after = rem - spend                                                     # after each tick
            n = rem.size
            m = (p["seed"] == key[0]) & (p["period"] == key[1]) & (p["advertiser"] == key[2])
            if not m.any():
                continue
            grid = np.full((n, n + 1), np.nan)
            grid[p["plan_tick"][m].astype(int), p["tick"][m].astype(int)] = p["planned_remaining_budget"][m] / budget
            for t in range(n):
                if rem[t] <= 1e-3 or np.isnan(grid[t, t + 1]):
                    continue
                next_err.append(abs(grid[t, t + 1] - after[t]))
                above.append(grid[t, t + 1] > rem[t] + 1e-6)
                if t + 6 < n:
                    six_err.append(abs(grid[t, t + 6] - rem[t + 6]))
                end_err.append(abs(grid[t, n] - after[-1]))
        ratio = r["score"] / r["bound_score"]
        out.append({
            "run": str(run_dir), "strategy": str(strategy), "campaigns": int(r["strategy"].size), "plans": len(next_err),
            "next_abs_err": float(np.mean(next_err)), "next_above_now": float(np.mean(above)),
            "six_abs_err": float(np.mean(six_err)), "end_abs_err": float(np.mean(end_err)),
            "score": float(np.mean(r["score"])), "pct_bound": float(100 * np.nanmean(ratio)),
            "cpa_viol": float(100 * np.mean(r["realized_cpa"] > r["target_cpa"] * (1 + 1e-9))),
            "budget_used": float(100 * np.mean(r["budget_utilisation"])),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation directories with plans.parquet")
    args = parser.parse_args()
    print("remaining-budget errors in shares of B; 'next above now': plans whose next row un-spends")
    print(f"{'strategy':70s} {'plans':>6s} {'next err':>9s} {'above now':>9s} {'t+6 err':>8s} {'end err':>8s}"
          f" {'score':>6s} {'% bound':>7s} {'CPA viol':>8s} {'budget':>6s}")
    for run in args.runs:
        for d in diagnose(run):
            print(f"{d['strategy'][:70]:70s} {d['plans']:6d} {d['next_abs_err']:9.4f} {100 * d['next_above_now']:8.1f}%"
                  f" {d['six_abs_err']:8.4f} {d['end_abs_err']:8.4f} {d['score']:6.2f} {d['pct_bound']:7.1f}"
                  f" {d['cpa_viol']:7.1f}% {d['budget_used']:5.1f}%")


if __name__ == "__main__":
    main()
