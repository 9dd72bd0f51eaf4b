"""``aigb diffbid``: the commands that serve only DiffBid, grouped under one subcommand.

    aigb diffbid tune-guidance 'diffbid:runs/diffbid/best.pt?guide=cpa:0.9'     # then ...&strength=auto
    aigb diffbid fit-evaluator --data data/train --out runs/diffbid/evaluator.pt  # then ...&n=16
    aigb diffbid objective-check results/guided --guide cap:0.5@24

``aigb.cli`` calls ``register(subparsers)``; torch and the fits load only when a command runs, so
``aigb --help`` stays fast. Errors name the full command (``aigb diffbid fit-evaluator: error: ...``).
"""

from __future__ import annotations

from aigb.types import MARKET_VERSIONS, ConfigError, MarketConfig
from aigb.workflows.guidance import START_STRENGTH, tune_guidance

__all__ = ["register", "cmd_tune_guidance", "cmd_fit_evaluator", "cmd_objective_check"]


def register(subparsers) -> None:
    """Add ``diffbid`` and its subcommands (tune-guidance, fit-evaluator, objective-check)."""
    group = subparsers.add_parser(
        "diffbid", help="DiffBid's add-on commands: tune guidance strengths, fit the plan evaluator, check objectives",
        description="Commands that serve only DiffBid's strategy spec (docs/diffbid.md): `tune-guidance` stores the "
                    "strengths `strength=auto` serves, `fit-evaluator` the plan evaluator `n=N&select=evaluator` ranks "
                    "with, and `objective-check` counts how often evaluated campaigns met a `guide=` objective.")
    sub = group.add_subparsers(dest="diffbid_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "tune-guidance", help="search DiffBid's guidance strengths for an objective on validation campaigns (for strength=auto)",
        description="TFG's beam search over the preset's strengths; each candidate plays the validation campaigns of "
                    "`aigb train` and is scored by sum(expected score x f) / sum(oracle score), f the objective's f on "
                    "the realised day. The result is stored beside the checkpoint, keyed by its bytes and the spec's "
                    "options, where `strength=auto` with the same options finds it.")
    p.add_argument("spec", help="diffbid:PATH?guide=TERMS[&preset=...&steps=...] (the options strength=auto will be served with)")
    p.add_argument("--periods", type=int, default=1, help="validation periods (16 slots each; default %(default)s)")
    p.add_argument("--rounds", type=int, default=6, help="beam-search rounds (default %(default)s, TFG's)")
    p.add_argument("--keep", type=int, default=2, help="configurations kept per round (default %(default)s, TFG's)")
    p.add_argument("--start", type=float, default=START_STRENGTH, help="starting strength (default %(default)s)")
    p.add_argument("--n-pv", type=int, default=MarketConfig().n_pv, help="PVs per validation period (default %(default)s)")
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=MarketConfig().version,
                   help="market of the validation periods; the checkpoint must be trained for it (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_tune_guidance, command="diffbid tune-guidance")

    p = sub.add_parser("fit-evaluator", help="fit the plan evaluator that ranks DiffBid's candidate plans (for n > 1)")
    p.add_argument("--data", required=True, help="dataset directory written by `aigb generate`")
    p.add_argument("--out", required=True, help="evaluator file, e.g. runs/diffbid/evaluator.pt (found there by default)")
    p.add_argument("--force", action="store_true", help="replace an --out file that another aigb command wrote, or that aigb did not write")
    p.add_argument("--steps", type=int, default=None, help="updates (default: the benchmarked PlanEvaluatorConfig.steps)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_fit_evaluator, command="diffbid fit-evaluator")

    p = sub.add_parser("objective-check", help="how often evaluated campaigns met an objective (e.g. cap:0.5@24)")
    p.add_argument("results", nargs="+", metavar="DIR", help="`aigb evaluate --out` directories")
    p.add_argument("--guide", required=True, help="objective terms, e.g. cpa:0.8 or cap:0.5@24,util:0.95")
    p.set_defaults(func=cmd_objective_check, command="diffbid objective-check")


def cmd_tune_guidance(args) -> int:
    entry = tune_guidance(args.spec, periods=args.periods, rounds=args.rounds, keep=args.keep, start=args.start,
                          market=MarketConfig(n_pv=args.n_pv, version=args.market_version), progress=not args.quiet)
    c = entry["config"]
    print(f"best: rho={c['rho']:g} mu={c['mu']:g} gamma={c['gamma']:g} criterion {entry['criterion']:.4f} "
          f"(unguided {entry['unguided_criterion']:.4f}; {len(entry['history'])} configurations, {entry['seconds']:.0f} s)")
    print(f"stored in {entry['file']}; serve with {args.spec}{'&' if '?' in args.spec else '?'}strength=auto")
    return 0


def cmd_fit_evaluator(args) -> int:
    from aigb.algos.plan_evaluator import PlanEvaluatorConfig, fit_plan_evaluator
    from aigb.data.dataset import TrajectoryDataset

    from aigb.files import claim_file

    claim_file(args.out, "fit-evaluator", force=args.force)   # before the fit: never over a trained policy
    dataset = TrajectoryDataset.load(args.data)
    config = PlanEvaluatorConfig() if args.steps is None else PlanEvaluatorConfig(steps=args.steps)
    evaluator = fit_plan_evaluator(dataset, config, seed=args.seed, progress=not args.quiet)
    path = evaluator.save(args.out, dataset_fingerprint=getattr(dataset, "fingerprint", None))
    m = evaluator.metrics
    held = f"; held-out rank R^2 {m['holdout_r2']:.3f} (by tick {m['holdout_r2_by_tick']})" if "holdout_r2" in m else ""
    print(f"fit-evaluator: {m['steps']} updates on {m['train_campaigns']} campaigns in {m['seconds']:.0f} s{held}; wrote {path}")
    return 0


def cmd_objective_check(args) -> int:
    from aigb.algos.plan_objectives import objective_compliance, parse_guide
    from aigb.eval.evaluate import load_results
    from aigb.eval.metrics import name_width, strategy_label

    try:
        terms = parse_guide(args.guide)
    except ValueError as err:
        raise ConfigError(f"guide: {err}") from None
    rows = [r for d in args.results for r in load_results(d)[0].to_pylist()]
    by_strategy: dict[str, list[dict]] = {}
    for r in rows:
        by_strategy.setdefault(r["strategy"], []).append(r)
    labels = [t.label for t in terms]
    w = name_width(by_strategy)
    print(f"{'strategy':<{w}} {'campaigns':>9} " + " ".join(f"{lab + ' met':>16} {'mean':>8}" for lab in labels) + f" {'all met':>8}")
    for name, group in by_strategy.items():
        res = objective_compliance(group, terms)
        cells = " ".join(f"{res[lab]['met']:>16.1%} {res[lab]['measure']:>8.3f}" for lab in labels)
        print(f"{strategy_label(name, w):<{w}} {res['all']['campaigns']:>9} {cells} {res['all']['met']:>8.1%}")
    return 0
