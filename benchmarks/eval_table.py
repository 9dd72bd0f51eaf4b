"""The rule strategies against the hindsight oracle on the default market.

Fixed rate, PID pacing, OnlineLP (prior fitted on training periods) and the hindsight oracle each
play every advertiser slot of N evaluation periods (sparse preset, 500k PVs, 48 slots), paired on
the same campaigns. Prints the summary table (means with 95 % intervals, % of the per-row oracle
bound, paired differences vs PID) and, as the last line, one JSON object with the figures.

    .venv/bin/python benchmarks/eval_table.py [--periods 5] [--slots all] [--workers 2] \
        | tee benchmarks/results/eval_table.txt
"""

from __future__ import annotations

import argparse
import json
import math
import time

from aigb.eval.evaluate import evaluate
from aigb.types import MarketConfig

STRATEGIES = ("fixed", "pid", "onlinelp", "oracle")


def _num(x: float):
    return None if math.isnan(x) else round(x, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, default=5, help="evaluation periods (default %(default)s)")
    parser.add_argument("--slots", default="all", help="'all', indices '0,7,12' or 'spread:K' (default %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation seeds (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default %(default)s)")
    parser.add_argument("--n-pv", type=int, default=MarketConfig().n_pv, help="PVs per period (default %(default)s)")
    parser.add_argument("--out", default="runs/eval_table", help="results directory (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()

    market = MarketConfig(n_pv=args.n_pv)
    start = time.perf_counter()
    res = evaluate(STRATEGIES, periods=args.periods, slots=args.slots, seeds=args.seeds, market=market,
                   workers=args.workers, out_dir=args.out, baseline="pid", progress=not args.quiet)
    total = time.perf_counter() - start
    c = res.config
    campaigns = len(c.seeds) * len(c.periods) * len(c.slots)
    # The oracle replays its period once with the reference strategy before playing it.
    period_rollouts = campaigns * (len(STRATEGIES) + 1)
    print(f"{len(STRATEGIES)} strategies x {campaigns} campaigns ({len(c.periods)} periods x {len(c.slots)} slots), "
          f"preset {market.preset}, {market.n_pv:,} PVs x {market.n_ticks} ticks, {args.workers} workers")
    print(f"wall {total:.0f} s total, {res.wall_s:.0f} s rollouts: {period_rollouts} period rollouts "
          f"(+ {campaigns * len(STRATEGIES)} oracle bounds), {res.wall_s * args.workers / period_rollouts:.2f} s per rollout per worker")
    print(res.format())
    figures = {
        "strategies": {
            s.strategy: {
                "n": s.n_rows, "errors": s.n_errors,
                "score": _num(s.score.mean), "score_ci": [_num(s.score.low), _num(s.score.high)],
                "expected_score": _num(s.expected_score.mean), "oracle_score": _num(s.oracle_score.mean),
                "pct_oracle": _num(s.pct_oracle.mean), "pct_oracle_ci": [_num(s.pct_oracle.low), _num(s.pct_oracle.high)],
                "pct_oracle_expected": _num(s.pct_oracle_expected.mean), "pct_oracle_sum": _num(s.pct_oracle_sum.mean),
                "cpa_violation_rate": _num(s.cpa_violation_rate), "budget_utilisation": _num(s.budget_utilisation.mean),
                "exhausted_share": _num(s.exhausted_share), "spend_oscillation": _num(s.spend_oscillation.mean),
                "bound_violations": s.bound_violations, "budget_slack_rows": s.budget_slack_rows,
            } for s in res.summary.strategies
        },
        "paired_vs_pid": {p.strategy: {"d_score": _num(p.score.mean), "ci": [_num(p.score.low), _num(p.score.high)]}
                          for p in res.summary.paired},
        "periods": len(c.periods), "slots": len(c.slots), "campaigns": campaigns, "n_pv": market.n_pv,
        "workers": args.workers, "wall_s": round(total, 1), "rollout_wall_s": round(res.wall_s, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
