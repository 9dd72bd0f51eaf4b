"""The ``aigb`` command line. Thin: every command calls a library function."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from aigb.types import MARKET_VERSION, MARKET_VERSIONS, PRESETS, ConfigError, MarketConfig

__all__ = ["main"]


def _market_args(p: argparse.ArgumentParser) -> None:
    d = MarketConfig()
    p.add_argument("--preset", default=d.preset, help=f"advertiser profiles: {', '.join(PRESETS)} (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="root seed; the same seed gives bit-identical results (default %(default)s)")
    p.add_argument("--n-pv", type=int, default=d.n_pv, help="PVs per period (default %(default)s)")
    p.add_argument("--n-ticks", type=int, default=d.n_ticks, help="ticks per period (default %(default)s)")
    p.add_argument("--n-advertisers", type=int, default=d.n_advertisers, help="advertisers (default %(default)s)")
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=MARKET_VERSION, help="market version: its competitor field and day profile; v2 reproduces earlier results (default %(default)s)")


def _market(args) -> MarketConfig:
    return MarketConfig(n_pv=args.n_pv, n_ticks=args.n_ticks, n_advertisers=args.n_advertisers, preset=args.preset,
                        version=args.market_version)


def _fmt(x, nd=1):
    return "nan" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:,.{nd}f}"


def cmd_simulate(args) -> int:
    from aigb.score import realized_cpa
    from aigb.sim.runs import simulate_periods

    config = _market(args)
    if args.out:  # checked before the simulation, so a bad path or another command's file fails at once
        from aigb.files import claim_file

        claim_file(args.out, "simulate", force=args.force)
    rows = simulate_periods(config, args.periods, args.seed, progress=not args.quiet)
    if args.out:
        from aigb.data.parquet import file_metadata, write_table_atomic
        import pyarrow as pa

        table = pa.table({k: v for k, v in rows.items()})
        write_table_atomic(table, args.out, file_metadata("simulation", config.to_dict(), args.seed, periods=args.periods))
    n_adv, periods = config.n_advertisers, args.periods
    head = f"{'adv':>3} {'cat':>3} {'budget':>8} {'CPA':>6} {'spend':>9} {'conv':>7} {'real CPA':>8} {'score':>7}"
    print(f"{periods} period(s), market {config.version}, preset {config.preset}, seed {args.seed}, {config.n_pv:,} PVs x {config.n_ticks} ticks"
          f" (per-advertiser means over periods)")
    print(head)
    for a in range(n_adv):
        sel = rows["advertiser"] == a
        spend, conv = rows["spend"][sel].mean(), rows["conversions"][sel].mean()
        print(f"{a:>3} {int(rows['category'][sel][0]):>3} {_fmt(rows['budget'][sel].mean(), 0):>8} "
              f"{_fmt(rows['target_cpa'][sel].mean(), 0):>6} {_fmt(spend):>9} {_fmt(conv):>7} "
              f"{_fmt(float(np.nanmean(rows['realized_cpa'][sel])) if np.isfinite(rows['realized_cpa'][sel]).any() else float('nan')):>8} "
              f"{_fmt(rows['score'][sel].mean(), 2):>7}")
    total_spend, total_conv = rows["spend"].sum() / periods, rows["conversions"].sum() / periods
    print(f"{'all':>3} {'':>3} {_fmt(rows['budget'].sum() / periods, 0):>8} {'':>6} {_fmt(total_spend):>9} "
          f"{_fmt(total_conv):>7} {_fmt(float(realized_cpa(total_spend, total_conv))):>8} {_fmt(rows['score'].sum() / periods, 2):>7}")
    print(f"mean score per campaign: {rows['score'].mean():.2f}; budget utilisation {rows['budget_utilisation'].mean():.1%}; "
          f"CPA violations {(np.nan_to_num(rows['realized_cpa']) > rows['target_cpa']).mean():.1%}")
    if args.out:
        print(f"wrote {rows['period'].size} rows to {args.out}")
    return 0


def cmd_import_csv(args) -> int:
    from aigb.data.csv_import import import_csv
    from aigb.files import claim_dir

    claim_dir(args.out, "import-csv", force=args.force)
    report = import_csv(args.paths, args.out, skip_bad=args.skip_bad, build_dataset=not args.no_dataset)
    print(report.summary())
    if report.dataset is not None:
        d = report.dataset
        print(f"{args.out}: dataset of {len(d.periods)} period(s) ({d.format}, feature set {d.feature_version}), "
              f"{len(d.built)} trajectory file(s) built; train with: aigb train ALGO --data {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aigb", description="AI-Generated Bidding: simulate, generate data, train, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="run periods of the rule-bidder market and print per-advertiser results")
    p.add_argument("--periods", type=int, default=1, help="periods to simulate (default %(default)s)")
    p.add_argument("--out", default=None, help="write one row per (period, advertiser) to this Parquet file")
    p.add_argument("--force", action="store_true", help="replace an --out file that another aigb command wrote, or that aigb did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _market_args(p)
    p.set_defaults(func=cmd_simulate)

    from aigb.data import commands as data_commands
    from aigb.eval import commands as eval_commands
    from aigb.export import commands as export_commands
    from aigb.report import calibrate as calibrate_commands
    from aigb.report import commands as report_commands
    from aigb.workflows import commands as workflow_commands
    from aigb.workflows import diffbid_commands
    from aigb.workflows import demo

    data_commands.register(sub)

    p = sub.add_parser("import-csv", help="convert the public AuctionNet CSV logs (impressions or trajectories) to Parquet")
    p.add_argument("paths", nargs="+", help="CSV files (.csv, .csv.gz, ...)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="write into an --out that another aigb command wrote, or over files there aigb did not write (refused otherwise)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows into a quarantine file instead of failing")
    p.add_argument("--no-dataset", action="store_true",
                   help="only convert to Parquet; by default the folder also becomes a dataset `aigb train` reads "
                        "(trajectories of the imported logs, or the rlData as it is, and dataset.json)")
    p.set_defaults(func=cmd_import_csv)

    workflow_commands.register(sub)
    eval_commands.register(sub)
    report_commands.register(sub)
    calibrate_commands.register(sub)
    diffbid_commands.register(sub)
    export_commands.register(sub)
    demo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"aigb {args.command}: invalid configuration: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"aigb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable or full output: one line naming the path, no traceback
        where = f"{e.filename}: " if e.filename and str(e.filename) not in str(e.strerror or "") else ""
        print(f"aigb {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"aigb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
