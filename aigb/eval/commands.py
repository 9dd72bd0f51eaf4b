"""``aigb evaluate`` and ``aigb compare``: the command-line faces of ``aigb.eval.evaluate``.

``aigb.cli`` calls ``register(subparsers)``. ``evaluate`` prints the summary table and writes
``results.parquet`` and ``config.json`` to ``--out``; ``compare`` prints one table from several
such directories that played the same campaigns. Both exit with status 1 when any row holds an
error (the table then covers only the campaigns every strategy completed).
"""

from __future__ import annotations

import argparse
import sys

from aigb.backends import add_backend_args, backend_from_args
from aigb.score import DEFAULT_TASK, TASKS
from aigb.strategies.registry import describe_strategies
from aigb.types import MARKET_VERSIONS, PRESETS, MarketConfig

__all__ = ["register", "cmd_evaluate", "cmd_compare", "exit_status"]


def register(subparsers) -> None:
    """Add the ``evaluate`` command to an argparse sub-parser set."""
    d = MarketConfig()
    p = subparsers.add_parser(
        "evaluate", help="evaluate strategies paired on the same campaigns, with the hindsight oracle per row",
        description="Every strategy plays every chosen advertiser slot of every (seed, period) against the "
                    "rule-bidder population; evaluation periods start at 1,000,000, disjoint from training data.",
        epilog="strategies (spec NAME or NAME:ARGS):\n" + describe_strategies(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", nargs="+", action="extend", required=True, metavar="SPEC",
                   help="strategy specs, e.g. fixed:rate=0.9 pid onlinelp oracle iql:runs/iql/best.pt")
    p.add_argument("--periods", type=int, default=5, help="evaluation periods per seed (default %(default)s)")
    p.add_argument("--slots", default="all",
                   help="advertiser slots each strategy plays: 'all', advertiser indices ('7' is advertiser 7; '0,7,12'), "
                        "or 'spread:K' for K slots spread evenly over the advertisers (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation root seeds (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    add_backend_args(p, "campaigns")
    p.add_argument("--out", required=True,
                   help="directory for results.parquet and config.json; rows are kept as campaigns finish, so re-running "
                        "the same command resumes an interrupted evaluation")
    p.add_argument("--force", action="store_true", help="replace the evaluation --out already holds instead of refusing")
    p.add_argument("--keep-going", action="store_true",
                   help="play every campaign when a strategy fails (error rows, exit status 1) instead of stopping at the first failure")
    p.add_argument("--baseline", default=None, help="strategy spec for paired differences")
    p.add_argument("--task", choices=TASKS, default=DEFAULT_TASK,
                   help="what campaigns are scored and bounded on: 'cpa' (Target-CPA, conversions x CPA penalty) or "
                        "'max-return' (budget only: the conversions) (default %(default)s)")
    p.add_argument("--preset", default=d.preset, help=f"advertiser profiles: {', '.join(PRESETS)} (default %(default)s)")
    p.add_argument("--n-pv", type=int, default=d.n_pv, help="PVs per period (default %(default)s)")
    p.add_argument("--n-ticks", type=int, default=d.n_ticks, help="ticks per period (default %(default)s)")
    p.add_argument("--n-advertisers", type=int, default=d.n_advertisers, help="advertisers (default %(default)s)")
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=d.version,
                   help="market version: its competitor field and day profile; checkpoints trained for another version "
                        "are refused; v2 reproduces earlier results (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    r = p.add_argument_group("offline replay on logged impressions (aigb.eval.replay)")
    r.add_argument("--replay", metavar="DIR", default=None,
                   help="replay each logged advertiser of the impression logs in DIR (aigb import-csv or aigb generate "
                        "--impressions) instead of simulating: logged competitors stay, a PV is won at its logged least "
                        "winning cost; --slots picks advertisers, --seeds the value/conversion draws")
    r.add_argument("--replay-periods", type=int, nargs="+", default=None, metavar="P",
                   help="logged periods to replay (default: every period in DIR)")
    r.add_argument("--budget-rate", type=float, nargs="+", default=None, metavar="R",
                   help="factor(s) on every logged budget, e.g. 0.5 1 1.5; several rates write OUT/budget-<percent>/ each "
                        "(default 1)")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "compare", help="one table from several evaluations of the same campaigns",
        description="Summarise the results of several `aigb evaluate --out` directories together, e.g. the rule "
                    "table and a later evaluation of trained strategies. They must have played the same seeds, "
                    "periods, slots, market and population, so rows pair up, and the same task (cpa or max-return).")
    p.add_argument("results", nargs="+", metavar="DIR", help="evaluation output directories")
    p.add_argument("--baseline", default=None, help="strategy spec for paired differences")
    p.set_defaults(func=cmd_compare)


def cmd_evaluate(args) -> int:
    from aigb.eval.evaluate import EvaluationStopped, evaluate

    if args.replay is not None:
        return _cmd_replay(args)
    if args.budget_rate is not None or args.replay_periods is not None:
        print("aigb evaluate: --budget-rate and --replay-periods need --replay DIR", file=sys.stderr)
        return 2

    backend = backend_from_args(args)
    market = MarketConfig(n_pv=args.n_pv, n_ticks=args.n_ticks, n_advertisers=args.n_advertisers, preset=args.preset,
                          version=args.market_version)
    try:
        results = evaluate(args.strategy, periods=args.periods, slots=args.slots, seeds=args.seeds, market=market,
                           workers=args.workers, out_dir=args.out, baseline=args.baseline, progress=not args.quiet,
                           keep_going=args.keep_going, force=args.force, backend=backend, task=args.task)
    except EvaluationStopped as err:
        print(f"aigb evaluate: error: {err}", file=sys.stderr)
        return 1
    c = results.config
    slots = f"slot(s) {','.join(map(str, c.slots))}" if len(c.slots) <= 8 else f"{len(c.slots)} slots"
    print(f"{len(c.strategies)} strategies x {len(c.seeds)} seed(s) x {len(c.periods)} period(s) x {slots}, "
          f"market {market.version}, preset {market.preset}, {market.n_pv:,} PVs{'' if c.task == DEFAULT_TASK else ', task ' + c.task}; "
          f"{results.wall_s:.1f} s")
    print(results.format())
    print(f"wrote {results.table.num_rows} rows to {results.out_dir / 'results.parquet'}")
    return exit_status(results.summary)


def exit_status(summary) -> int:
    errors = sum(s.n_errors for s in summary.strategies)
    if errors:
        print(f"aigb: {errors} row(s) hold errors (column err); the table covers the {summary.campaigns} campaign(s) "
              "every strategy completed", file=sys.stderr)
    return 1 if errors else 0


def cmd_compare(args) -> int:
    from aigb.eval.evaluate import combine_results
    from aigb.eval.metrics import format_summary

    summary = combine_results(args.results, baseline=args.baseline)
    print(format_summary(summary))
    return exit_status(summary)


def _cmd_replay(args) -> int:
    from pathlib import Path

    from aigb.eval.evaluate import EvaluationStopped
    from aigb.eval.replay import replay_evaluate

    backend = backend_from_args(args)
    market = MarketConfig(n_ticks=args.n_ticks, version=args.market_version)
    rates = args.budget_rate or [1.0]
    status = 0
    for rate in rates:
        out = Path(args.out) if len(rates) == 1 else Path(args.out) / f"budget-{rate * 100:g}"
        try:
            results = replay_evaluate(args.strategy, args.replay, periods=args.replay_periods,
                                      slots=args.slots, seeds=args.seeds, budget_rate=rate, market=market,
                                      workers=args.workers, out_dir=out, baseline=args.baseline, progress=not args.quiet,
                                      keep_going=args.keep_going, force=args.force, backend=backend, task=args.task)
        except EvaluationStopped as err:
            print(f"aigb evaluate: error: {err}", file=sys.stderr)
            return 1
        c = results.config
        print(f"replay of {args.replay}: {len(c.strategies)} strategies x {len(c.seeds)} seed(s) x {len(c.periods)} "
              f"period(s) x {'every advertiser' if c.every_advertiser else f'{len(c.slots)} advertiser(s)'}, "
              f"budget rate {rate:g}{'' if c.task == DEFAULT_TASK else ', task ' + c.task}; {results.wall_s:.1f} s")
        print(results.format())
        print(_period_means(results.table))
        print(f"wrote {results.table.num_rows} rows to {out / 'results.parquet'}")
        status = max(status, exit_status(results.summary))
    return status


def _period_means(table) -> str:
    """Mean score per strategy and logged period (rows without errors), one line per period."""
    import numpy as np

    rows = [r for r in table.select(["strategy", "period", "score", "error"]).to_pylist() if r["error"] is None]
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    lines = ["mean score per period: " + " | ".join(strategies)]
    for period in sorted({r["period"] for r in rows}):
        means = [np.mean([r["score"] for r in rows if r["period"] == period and r["strategy"] == s]) for s in strategies]
        lines.append(f"  period {period}: " + " | ".join(f"{m:.2f}" for m in means))
    return "\n".join(lines)
