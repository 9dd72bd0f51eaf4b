"""``aigb generate`` and ``aigb dataset info``: argparse wiring over the library functions.

``aigb.cli`` calls ``register(subparsers)``; each handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from aigb.backends import add_backend_args, backend_from_args
from aigb.score import DEFAULT_TASK, TASKS
from aigb.types import DATASET_MARKET, MARKET_VERSIONS, PRESETS, MarketConfig

__all__ = ["register", "cmd_generate", "cmd_dataset_info"]


def cmd_generate(args: argparse.Namespace) -> int:
    from aigb.data.generate import DatasetMismatchError, generate_dataset
    from aigb.sim.population import EXPLORE, market_population

    backend = backend_from_args(args)
    market = MarketConfig(n_pv=args.n_pv, n_ticks=args.n_ticks, n_advertisers=args.n_advertisers, preset=args.preset,
                          version=args.market_version)
    try:
        base = EXPLORE if args.population == "explore" else market_population(market)
        population = replace(base, hold_share=args.hold_share, hold_tick=tuple(args.hold_ticks))
        report = generate_dataset(args.out, args.periods, args.seed, market=market, impressions=args.impressions,
                                  population=population,
                                  workers=args.workers, first_period=args.first_period, progress=not args.quiet,
                                  explore_campaigns=not args.fixed_campaigns, backend=backend, task=args.task, force=args.force)
    except DatasetMismatchError as err:
        print(f"aigb generate: {err}", file=sys.stderr)
        return 2
    for line in report.damaged:
        print(f"aigb generate: {line}; regenerated", file=sys.stderr)
    print(f"{args.out}: generated {len(report.generated)} period(s), skipped {len(report.skipped)} already complete; "
          f"{report.trajectory_rows:,} trajectory rows, {report.impression_rows:,} impression rows in {report.seconds:.1f} s"
          + (f" ({report.periods_per_minute:.1f} periods/min, mean behaviour score {report.mean_score:.2f})"
             if report.generated else ""))
    return 0


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from aigb.data.dataset import dataset_info, format_dataset_info
    from aigb.features import FeatureVersionError

    try:
        info = dataset_info(args.dir, verify=args.verify)
    except (FileNotFoundError, ValueError, FeatureVersionError) as err:
        print(f"aigb dataset info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
    if info["damaged"]:
        print(f"aigb dataset info: {len(info['damaged'])} damaged file(s); `aigb generate` with the same arguments "
              "regenerates them", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` and ``dataset`` commands to the ``aigb`` parser."""
    d = DATASET_MARKET
    p = subparsers.add_parser("generate", help="simulate periods of an exploring market and write a trajectory dataset",
                              description="Simulate periods with exploring rule bidders and write per-tick trajectories "
                                          "(and optionally the per-impression log) as Parquet. Resumable: re-running "
                                          "skips complete periods.")
    p.add_argument("--periods", type=int, required=True, help="periods to simulate")
    p.add_argument("--out", required=True, help="dataset directory")
    p.add_argument("--force", action="store_true", help="write into an --out that another aigb command wrote, or over files there aigb did not write (refused otherwise)")
    p.add_argument("--impressions", action="store_true", help="also write the per-impression log (~24M rows per default period)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default %(default)s)")
    add_backend_args(p, "periods")
    p.add_argument("--seed", type=int, default=0, help="root seed (default %(default)s)")
    p.add_argument("--first-period", type=int, default=0,
                   help="index of the first period; periods from 500,000 on are reserved for validation and "
                        "evaluation (default %(default)s)")
    p.add_argument("--preset", default=d.preset, choices=PRESETS,
                   help="advertiser profiles; 'random' is the sparse regime with random campaigns (default %(default)s)")
    p.add_argument("--fixed-campaigns", action="store_true",
                   help="keep the sparse/dense preset's table instead of redrawing budgets and CPAs per period")
    p.add_argument("--task", choices=TASKS, default=DEFAULT_TASK,
                   help="what the score_to_go column scores: 'cpa' (Target-CPA, conversions x CPA penalty) or "
                        "'max-return' (budget only: the conversions); recorded in dataset.json (default %(default)s)")
    p.add_argument("--hold-share", type=float, default=0.0,
                   help="share of the advertisers that stop controlling at a random tick (--hold-ticks) and hold "
                        "one level (alpha / C log-uniform in 0.3..2.5) for the rest of the day, without noise: data "
                        "for a level planner (`--set level_days=held`); recorded in dataset.json (default %(default)s)")
    p.add_argument("--hold-ticks", type=float, nargs=2, default=(4.0, 44.0), metavar=("LO", "HI"),
                   help="range of the tick a hold starts at (whole ticks, default 4 44)")
    p.add_argument("--population", choices=("explore", "field"), default="explore",
                   help="behaviour policies: 'explore' (every kind, wide ranges, noisy; the default) or 'field' (the "
                        "evaluation field's population: AuctionNet's roster and parameter ranges), holds on top")
    p.add_argument("--n-pv", type=int, default=d.n_pv, help="PVs per period (default %(default)s)")
    p.add_argument("--n-ticks", type=int, default=d.n_ticks, help="ticks per period (default %(default)s)")
    p.add_argument("--n-advertisers", type=int, default=d.n_advertisers, help="advertisers (default %(default)s)")
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=d.version,
                   help="market version the data is simulated on (its day profile; the field of --population field); "
                        "recorded in dataset.json, and training for another version is refused (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    ds = subparsers.add_parser("dataset", help="inspect a generated dataset")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True)
    info = ds_sub.add_parser("info", help="periods, campaigns, rows, size, feature version, behaviour scores")
    info.add_argument("dir", help="dataset directory")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--verify", action="store_true",
                      help="also read every page of every file, checking its checksum (slower); exit 1 if any is damaged")
    info.set_defaults(func=cmd_dataset_info)
