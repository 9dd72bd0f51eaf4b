"""``aigb calibrate``: a market's competitor field against an AuctionNet log, statistic by statistic.

For each market version asked for, runs ``periods`` periods of the competitor field alone (the
sparse preset unless told otherwise) and computes ``aigb.sim.calibration.STATISTICS`` per period;
for each rlData file, the same statistics per logged period. Prints one table, the markets' means
with their period-to-period spread (mean -+ 2 sd) beside the logs' values, marks each log value
that falls outside a market's band, and counts the statistics inside.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from aigb.seeding import EVAL_FIRST_PERIOD

__all__ = ["register", "cmd_calibrate", "calibration_report", "format_report"]


def calibration_report(versions=("v2",), *, rldata=(), periods: int = 4, seed: int = 0,
                       first_period: int = EVAL_FIRST_PERIOD, market=None, player: int | None = None,
                       auctionnet_roster: bool = False, exclude=(), progress: bool = True) -> dict:
    """Statistics of each market version (per period and summarised) and of each rlData file.

    exclude: advertiser indices left out of every statistic but the market-wide ones (least winning
    cost, PVs), on both sides (e.g. the log's stand-in slots and the same slots of our market).
    """
    from aigb.data.rldata import AUCTIONNET_EVAL_KINDS, read_rldata
    from aigb.sim.calibration import period_statistics, simulated_table, summarise
    from aigb.types import MarketConfig

    if periods < 1:
        raise ValueError(f"periods: must be >= 1, got {periods}")
    base = market if market is not None else MarketConfig()
    out = {"markets": {}, "logs": {}, "periods": periods, "seed": seed, "first_period": first_period,
           "excluded_advertisers": sorted(int(a) for a in exclude)}

    def kept(t):
        return t.select(~np.isin(np.arange(t.budget.size), list(exclude))) if len(exclude) else t

    for path in rldata:  # read first: a bad file fails before any simulation
        tables = read_rldata(path, kinds=AUCTIONNET_EVAL_KINDS if auctionnet_roster else None, player=player)
        per = [period_statistics(kept(t)) for t in tables]
        out["logs"][str(path)] = {"per_period": per, "summary": summarise(per)}
    for version in versions:
        config = replace(base, version=version)
        per = []
        for p in range(first_period, first_period + periods):
            per.append(period_statistics(kept(simulated_table(config, seed, p))))
            if progress:
                print(f"market {version}: period {p} done", flush=True)
        out["markets"][version] = {"config": config.to_dict(), "per_period": per, "summary": summarise(per)}
    return out


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    a = abs(x)
    return f"{x:,.0f}" if a >= 1000 else f"{x:.3g}" if a >= 1e-3 or a == 0 else f"{x:.2e}"


def format_report(report: dict) -> str:
    """The side-by-side table: logs' values (a '!' after a value outside the first market's band),
    then each market's mean and its band; then the count inside each market's band per log."""
    from aigb.sim.calibration import STATISTICS, inside_spread

    logs, markets = report["logs"], report["markets"]
    head = [f"{'statistic':<26}"] + [f"{Path(p).name[:22]:>24}" for p in logs] + [f"{v + ' mean [band]':>28}" for v in markets]
    lines = [" ".join(head)]
    inside = {(p, v): [0, 0] for p in logs for v in markets}
    for name in STATISTICS:
        cells = [f"{name:<26}"]
        for p, log in logs.items():
            value = log["summary"][name]["mean"]
            marks = ""
            for v, m in markets.items():
                ok = inside_spread(value, m["summary"][name])
                if ok is not None:
                    inside[(p, v)][0] += ok
                    inside[(p, v)][1] += 1
                    marks += "" if ok else "!"
            cells.append(f"{_fmt(value) + (' ' + marks if marks else ''):>24}")
        for v, m in markets.items():
            s = m["summary"][name]
            cells.append(f"{_fmt(s['mean']) + ' [' + _fmt(s['low']) + ', ' + _fmt(s['high']) + ']':>28}")
        lines.append(" ".join(cells))
    if logs and markets:
        lines.append("'!' marks a log value outside a market's band (one mark per market, in column order).")
        for (p, v), (n_in, n) in inside.items():
            lines.append(f"{Path(p).name}: {n_in} of {n} statistics inside market {v}'s band ({n_in / max(n, 1):.0%})")
    return "\n".join(lines)


def _plain(x):
    """JSON values: unknown (NaN) statistics become null."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def register(subparsers) -> None:
    """Add the ``calibrate`` command."""
    from aigb.types import MARKET_VERSION, MARKET_VERSIONS, PRESETS

    p = subparsers.add_parser(
        "calibrate", help="a market's competitor-field statistics beside an AuctionNet rlData log",
        description="Per-advertiser and per-tick statistics (bid multiplier / CPA by time of day and kind, bids above "
                    "2 x CPA, least winning cost, budget use, spend by time of day, CPA violations, volumes) of market "
                    "versions over several periods, with their period-to-period spread, beside the same statistics of "
                    "AuctionNet per-tick trajectory files (rlData CSV, plain or .zst/.gz); marks what falls outside.")
    p.add_argument("--rldata", nargs="*", default=[], metavar="CSV", help="AuctionNet rlData files (one or more periods each)")
    p.add_argument("--versions", nargs="+", default=[MARKET_VERSION], choices=MARKET_VERSIONS,
                   help="market versions to simulate (default %(default)s)")
    p.add_argument("--preset", default="sparse", choices=PRESETS, help="advertiser profiles of our markets (default %(default)s)")
    p.add_argument("--periods", type=int, default=4, help="periods simulated per market version (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default %(default)s)")
    p.add_argument("--first-period", type=int, default=EVAL_FIRST_PERIOD, help="first simulated period (default %(default)s)")
    p.add_argument("--player", type=int, default=None,
                   help="advertiser number of the log's strategy under study, left out of competitor statistics")
    p.add_argument("--auctionnet-roster", action="store_true",
                   help="label the log's advertisers with AuctionNet's evaluation roster (PID, offline-RL, stand-ins) "
                        "for the per-kind statistics")
    p.add_argument("--exclude-stand-ins", action="store_true",
                   help="with --auctionnet-roster: leave the roster's stand-in slots (agents the public repository "
                        "plays with substitutes) out of the per-advertiser statistics, in the log and in our markets")
    p.add_argument("--out", default=None, help="also write every figure (per period and summarised) as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from aigb.data.parquet import atomic_output

    exclude = ()
    if args.exclude_stand_ins:
        if not args.auctionnet_roster:
            raise ValueError("--exclude-stand-ins: needs --auctionnet-roster (the stand-ins are slots of its roster)")
        from aigb.data.rldata import AUCTIONNET_EVAL_KINDS
        exclude = tuple(a for a, k in enumerate(AUCTIONNET_EVAL_KINDS) if k == "stand-in")
    if args.out and Path(args.out).is_dir():
        raise ValueError(f"--out: {args.out} is a directory; give a file name")
    from aigb.types import MarketConfig

    report = calibration_report(args.versions, rldata=args.rldata, periods=args.periods, seed=args.seed,
                                market=MarketConfig(preset=args.preset),
                                first_period=args.first_period, player=args.player,
                                auctionnet_roster=args.auctionnet_roster, exclude=exclude, progress=not args.quiet)
    print(format_report(report))
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(json.dumps(_plain(report), indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.out}")
    return 0
