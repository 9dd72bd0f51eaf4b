"""The ``aigb`` command line. Thin: every command calls a library function."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from aigb.types import PRESETS, ConfigError, MarketConfig

__all__ = ["main"]


def _market_args(p: argparse.ArgumentParser) -> None:
    d = MarketConfig()
    p.add_argument("--preset", default=d.preset, help=f"advertiser profiles: {', '.join(PRESETS)} (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="root seed; the same seed gives bit-identical results (default %(default)s)")
    p.add_argument("--n-pv", type=int, default=d.n_pv, help="PVs per period (default %(default)s)")
    p.add_argument("--n-ticks", type=int, default=d.n_ticks, help="ticks per period (default %(default)s)")
    p.add_argument("--n-advertisers", type=int, default=d.n_advertisers, help="advertisers (default %(default)s)")


def _market(args) -> MarketConfig:
    return MarketConfig(n_pv=args.n_pv, n_ticks=args.n_ticks, n_advertisers=args.n_advertisers, preset=args.preset)


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
    print(f"{periods} period(s), preset {config.preset}, seed {args.seed}, {config.n_pv:,} PVs x {config.n_ticks} ticks"
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


def _overrides(args) -> dict:
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected KEY=VALUE, got {item!r}")
        # Values stay text: the algorithm's config parses them, naming the key on a bad value.
        overrides[key.strip()] = value
    return overrides


def cmd_train(args) -> int:
    from aigb.eval.training import ValidationSet, train

    overrides = _overrides(args)
    if args.algo == "oil" or (args.algo == "diffbid" and overrides.get("condition") == "oracle"):
        return _train_oil(args, overrides)   # learns in the simulator from the oracle
    if args.data is None:
        raise ConfigError(f"--data: {args.algo} learns from a dataset; give the directory `aigb generate` wrote")
    validation = None if args.no_validation else ValidationSet(periods=args.val_periods)
    result = train(args.algo, args.data, run_dir=args.out or f"runs/{args.algo}", steps=args.steps,
                   batch_size=args.batch_size, seed=args.seed, overrides=overrides, validation=validation,
                   eval_every=args.eval_every, patience=args.patience, progress=not args.quiet, device=args.device,
                   force=args.force)
    print(f"{args.algo}: {result.steps_done} updates in {result.run_dir}; best validation score "
          f"{result.best_score if result.best_score is None else round(result.best_score, 3)} at step {result.best_step}"
          f"{' (stopped early)' if result.stopped_early else ''}")
    print(f"evaluate it with: aigb evaluate --strategy {args.algo}:{result.run_dir}/best.pt --out results/{args.algo}")
    return 0


def _train_oil(args, overrides: dict) -> int:
    from aigb.backends import backend_from_args
    from aigb.eval.oil import train_oil
    from aigb.eval.training import ValidationSet

    if args.data is not None:
        raise ConfigError(f"--data: {args.algo} learns from its own rollouts in the simulator, not from a dataset")
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size)):
        if value is not None:
            overrides[key] = value
    market = MarketConfig(n_pv=args.n_pv, preset=args.preset)
    validation = None if args.no_validation else ValidationSet(periods=args.val_periods)
    result = train_oil(args.out or f"runs/{args.algo}", market=market, seed=args.seed, overrides=overrides, task=args.task,
                       validation=validation, workers=args.workers, backend=backend_from_args(args), progress=not args.quiet,
                       algo=args.algo)
    best = "none" if result.best_score is None else round(result.best_score, 3)
    print(f"{args.algo}: {result.rounds_done} rounds, {result.n_states} labelled states in {result.run_dir} "
          f"({result.seconds:.0f} s); best validation score {best} after round {result.best_round}")
    print(f"evaluate it with: aigb evaluate --strategy {args.algo}:{result.run_dir}/best.pt --out results/{args.algo}")
    return 0


def cmd_sweep(args) -> int:
    from aigb.backends import backend_from_args
    from aigb.eval.sweep import format_sweep, parse_grid, sweep
    from aigb.eval.training import ValidationSet

    backend = backend_from_args(args)
    result = sweep(args.algo, args.data, parse_grid(args.grid), args.out, overrides=_overrides(args), steps=args.steps,
                   batch_size=args.batch_size, seed=args.seed, validation=ValidationSet(periods=args.val_periods),
                   eval_every=args.eval_every, patience=args.patience, device=args.device, workers=args.workers,
                   backend=backend, progress=not args.quiet, force=args.force)
    print(format_sweep(args.algo, list(result.rows), len(result.rows)))
    print(f"{len(result.rows)} run(s) in {result.seconds:.0f} s; table in {result.out_dir / 'sweep.txt'}")
    if result.best is None:
        print("aigb sweep: no run produced a validation score", file=sys.stderr)
        return 1
    print(f"evaluate the best with: aigb evaluate --strategy {args.algo}:{result.best['run_dir']}/best.pt "
          f"--out results/{args.algo}")
    return 0


def _train_options(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    """Options ``aigb train`` and ``aigb sweep`` share."""
    p.add_argument("--data", required=data_required, default=None,
                   help="dataset directory written by `aigb generate`" + ("" if data_required else " (not for oil or diffbid --set condition=oracle)"))
    p.add_argument("--steps", type=int, default=None, help="updates (default: the algorithm's benchmarked default)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the algorithm's)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default %(default)s)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an algorithm config field")
    p.add_argument("--eval-every", type=int, default=None, help="updates between validations (default steps/10)")
    p.add_argument("--patience", type=int, default=4, help="validations without improvement before stopping")
    p.add_argument("--val-periods", type=int, default=1, help="validation periods (16 slots each)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where diffbid trains: auto takes the GPU when torch sees one (default %(default)s); the other algorithms use the CPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="write into an --out that another aigb command wrote, or over files there aigb did not write (refused otherwise)")


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
    from aigb.eval import guidance as guidance_commands
    from aigb.export import commands as export_commands
    from aigb.report import calibrate as calibrate_commands
    from aigb.report import commands as report_commands
    from aigb import demo

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

    from aigb.backends import add_backend_args

    p = sub.add_parser("train", help="train a learned strategy (bc, iql, cql, dt, diffbid) on a generated dataset, "
                                     "or oil (and diffbid --set condition=oracle) by imitating the hindsight oracle in the simulator")
    p.add_argument("algo", help="bc, iql, cql, dt, diffbid or oil")
    p.add_argument("--out", default=None, help="run directory (default runs/ALGO); re-running resumes from last.pt")
    p.add_argument("--no-validation", action="store_true", help="train without validation rollouts")
    _train_options(p, data_required=False)
    oil = p.add_argument_group("oil and diffbid --set condition=oracle only (rollouts on training periods of this market)")
    oil.add_argument("--preset", default=MarketConfig().preset, help=f"advertiser profiles: {', '.join(PRESETS)} (default %(default)s)")
    oil.add_argument("--n-pv", type=int, default=MarketConfig().n_pv, help="PVs per period (default %(default)s)")
    oil.add_argument("--task", choices=("cpa", "max-return"), default="cpa",
                     help="what the oracle and validation score: cpa (Target-CPA) or max-return (default %(default)s)")
    oil.add_argument("--workers", type=int, default=1, help="campaigns rolled out at once in local processes (default %(default)s)")
    add_backend_args(p, "oil's rollouts")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train one run per point of a grid of config overrides; table of validation scores",
                       description="One `aigb train` per point of the product of the --grid values, each validated "
                                   "and early-stopped as aigb train does; prints and writes OUT/sweep.txt and "
                                   "OUT/sweep.json, best validation score first, naming the best checkpoint. "
                                   "Re-running resumes.")
    p.add_argument("algo", help="bc, iql, cql, dt or diffbid")
    p.add_argument("--grid", nargs="+", action="extend", required=True, metavar="KEY=V1,V2",
                   help="config field and its values, e.g. --grid lr=1e-4,3e-4 expectile=0.7,0.8 (lists in brackets: "
                        "hidden_dims=[64,64],[256,256])")
    p.add_argument("--out", required=True, help="sweep directory: one run directory per point, and the tables")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once in local processes (default %(default)s)")
    add_backend_args(p, "training runs")
    _train_options(p)
    p.set_defaults(func=cmd_sweep)

    eval_commands.register(sub)
    report_commands.register(sub)
    calibrate_commands.register(sub)
    guidance_commands.register(sub)
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
