"""``aigb export-neurips2024``: argparse wiring over ``aigb.export.export_neurips2024``.

``aigb.cli`` calls ``register(subparsers)``; the handler returns the process exit code.
"""

from __future__ import annotations

import argparse

from aigb.types import MARKET_VERSIONS, PRESETS, MarketConfig

__all__ = ["register", "cmd_export"]


def cmd_export(args: argparse.Namespace) -> int:
    from aigb.export.exporter import export_neurips2024

    market = MarketConfig(n_pv=args.n_pv, n_ticks=args.n_ticks, n_advertisers=args.n_advertisers, preset=args.preset,
                          version=args.market_version)
    report = export_neurips2024(args.source, args.out, market=market, seed=args.seed, advertiser=args.advertiser,
                                device=args.device, force=args.force)
    print(report.summary())
    print(f"check it where it will run with: python {report.out / 'selftest.py'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-neurips2024`` command to the ``aigb`` parser."""
    d = MarketConfig()
    p = subparsers.add_parser(
        "export-neurips2024", help="export a strategy as a self-contained folder for the NeurIPS 2024 competition's harness",
        description="Write a folder with a PlayerBiddingStrategy class in the NeurIPS 2024 auto-bidding competition's "
                    "interface that bids as the aigb strategy does. Its code needs numpy (and torch for learned "
                    "strategies), never aigb. The export is checked bid for bid over a period before it is written.")
    p.add_argument("source", metavar="CHECKPOINT_OR_SPEC",
                   help="a checkpoint (runs/cql/best.pt; diffbid's may carry ?w=1.2&steps=10) or a strategy spec "
                        "(fixed:rate=0.9, pid, onlinelp:cap=1.5, dt:runs/dt/best.pt, diffbid:PATH?options)")
    p.add_argument("--out", required=True, help="folder to write (an earlier export there is replaced; other files there are kept)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out that another aigb command wrote, or over files there no export wrote (refused otherwise)")
    p.add_argument("--seed", type=int, default=0,
                   help="root of the exported strategy's random streams (OnlineLP's subsample, DiffBid's noise) (default %(default)s)")
    p.add_argument("--advertiser", type=int, default=None,
                   help="OnlineLP with a prior: the advertiser slot whose prior row to use (default: the mean row of "
                        "the campaign's category, as the competition's interface names no slot)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                   help="where an exported learned strategy runs by default (default: a diffbid spec's device= option, "
                        "else cpu); the export is checked on the CPU")
    p.add_argument("--preset", default=d.preset, help=f"market the strategy is built for: {', '.join(PRESETS)} (default %(default)s)")
    p.add_argument("--n-pv", type=int, default=d.n_pv, help="PVs per period (OnlineLP's prior) (default %(default)s)")
    p.add_argument("--n-ticks", type=int, default=d.n_ticks, help="ticks per period (default %(default)s)")
    p.add_argument("--n-advertisers", type=int, default=d.n_advertisers, help="advertisers (OnlineLP's default prior) (default %(default)s)")
    p.add_argument("--market-version", choices=MARKET_VERSIONS, default=d.version,
                   help="market the strategy is built for: the rules' day profile; a checkpoint must be trained for it (default %(default)s)")
    p.set_defaults(func=cmd_export)
