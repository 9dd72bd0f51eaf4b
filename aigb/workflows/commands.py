"""``aigb train`` and ``aigb sweep``: the command-line faces of ``aigb.workflows.training``,
``aigb.workflows.oil`` and ``aigb.workflows.sweep``.

``aigb.cli`` calls ``register(subparsers)``. The workflows themselves are imported when a command
runs, so ``aigb --help`` loads no training code.
"""

from __future__ import annotations

import argparse
import sys

from aigb.backends import add_backend_args
from aigb.types import MARKET_VERSION, MARKET_VERSIONS, PRESETS, ConfigError, MarketConfig

__all__ = ["register", "cmd_train", "cmd_sweep"]


def register(subparsers) -> None:
    """Add the ``train`` and ``sweep`` commands to an argparse sub-parser set."""
    p = subparsers.add_parser("train", help="train a learned strategy (bc, iql, cql, dt, diffbid) on a generated dataset, "
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

    p = subparsers.add_parser("sweep", help="train one run per point of a grid of config overrides; table of validation scores",
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
    from aigb.workflows.training import ValidationSet, train

    overrides = _overrides(args)
    if args.algo == "oil" or (args.algo == "diffbid" and overrides.get("condition") == "oracle"):
        return _train_oil(args, overrides)   # learns in the simulator from the oracle
    if args.data is None:
        raise ConfigError(f"--data: {args.algo} learns from a dataset; give the directory `aigb generate` wrote")
    validation = None if args.no_validation else ValidationSet(periods=args.val_periods)
    result = train(args.algo, args.data, run_dir=args.out or f"runs/{args.algo}", steps=args.steps,
                   batch_size=args.batch_size, seed=args.seed, overrides=overrides, validation=validation,
                   eval_every=args.eval_every, patience=args.patience, progress=not args.quiet, device=args.device,
                   force=args.force, market_version=args.market_version)
    print(f"{args.algo}: {result.steps_done} updates in {result.run_dir}; best validation score "
          f"{result.best_score if result.best_score is None else round(result.best_score, 3)} at step {result.best_step}"
          f"{' (stopped early)' if result.stopped_early else ''}")
    print(f"evaluate it with: aigb evaluate --strategy {args.algo}:{result.run_dir}/best.pt --out results/{args.algo}")
    return 0


def _train_oil(args, overrides: dict) -> int:
    from aigb.backends import backend_from_args
    from aigb.workflows.oil import train_oil
    from aigb.workflows.training import ValidationSet

    if args.data is not None:
        raise ConfigError(f"--data: {args.algo} learns from its own rollouts in the simulator, not from a dataset")
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size)):
        if value is not None:
            overrides[key] = value
    market = MarketConfig(n_pv=args.n_pv, preset=args.preset, version=args.market_version)
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
    from aigb.workflows.sweep import format_sweep, parse_grid, sweep
    from aigb.workflows.training import ValidationSet

    backend = backend_from_args(args)
    result = sweep(args.algo, args.data, parse_grid(args.grid), args.out, overrides=_overrides(args), steps=args.steps,
                   batch_size=args.batch_size, seed=args.seed, validation=ValidationSet(periods=args.val_periods),
                   eval_every=args.eval_every, patience=args.patience, device=args.device, workers=args.workers,
                   backend=backend, progress=not args.quiet, force=args.force, market_version=args.market_version)
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
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=MARKET_VERSION,
                   help="the market the policy is trained for and validated in; the dataset must be of it (default %(default)s)")
