"""Market v2 and v3 against AuctionNet's own evaluation period: the calibration table and a truthful
bidder's day-to-day spread.

    python benchmarks/calibration_v3.py RLDATA.csv.zst [--periods 6] [--truthful-periods 8]

RLDATA is an AuctionNet rlData file of its evaluation roster with the player in slot 0 (the test
fixture ``tests/data/auctionnet_period-0-rlData.csv.zst`` is one). Prints:
1. ``aigb calibrate``'s statistics of the log beside v2 and v3 (mean [mean -+ 2 sd] over periods),
   in three views: all advertisers; the slots AuctionNet's shipped policies play (the log's
   stand-ins and the same slots of our markets left out); and all advertisers with our markets'
   stand-in slots played as the log's stand-ins play them (TD3_BC: alpha = 0.15 C, the empty-table
   OnlineLP: alpha = C), which tests the field under the log's own conditions;
2. per view, the count of the log's statistics inside each market's band;
3. bid = CPA x pValue in one slot per category over many periods: budget use and score per day,
   their day-to-day spread and the share of days under half the budget, v2 against v3.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from aigb.data.rldata import AUCTIONNET_EVAL_KINDS, read_rldata
from aigb.score import score
from aigb.seeding import EVAL_FIRST_PERIOD, rng
from aigb.sim.calibration import (_OUR_KIND_GROUP, STATISTICS, TickTable, inside_spread, period_statistics,
                                  summarise)
from aigb.sim.period import PeriodSim
from aigb.sim.population import FIXED, KINDS, RuleBidders, market_population
from aigb.sim.traffic import day_profile
from aigb.types import MarketConfig

# The log's stand-ins by slot: TD3_BC (its early checkpoint bids ~0.15 C) and OnlineLP without cost
# tables (alpha = C); the BCQ slots play the BC policy, an offline-RL policy like ours.
_EVEN = ("", "", "td3", "lp", "lp", "", "", "")
_ODD = ("", "", "", "lp", "lp", "td3", "", "")
STAND_IN = tuple((_EVEN if (a // 8) % 2 == 0 else _ODD)[a % 8] for a in range(48))
STAND_IN_RATE = {"td3": 0.15, "lp": 1.0}


def _bidders(config: MarketConfig, sim_seed: int, period: int, stand_ins: bool) -> RuleBidders:
    """The version's field as PeriodSim draws it, with the stand-in slots replaced on request."""
    from aigb.sim.market import campaigns_for

    campaigns = campaigns_for(config, sim_seed, period)
    cpa = np.array([c.target_cpa for c in campaigns])
    budget = np.array([c.budget for c in campaigns])
    profile = day_profile(config.n_ticks, config.version)
    b = RuleBidders.draw(market_population(config), cpa, budget, profile, rng(sim_seed, "population", period),
                         alpha_scale=config.alpha_scale)
    if not stand_ins:
        return b
    kind, rate, noise = b.kind.copy(), b.rate.copy(), b.noise.copy()
    for a, s in enumerate(STAND_IN[: kind.size]):
        if s:
            kind[a], rate[a], noise[a] = FIXED, STAND_IN_RATE[s], 0.0
    return RuleBidders(kind, rate, b.gain, b.lp_cap, noise, cpa, budget, profile, b.alpha_bounds,
                       market_gain=b.market_gain, lp_day_plan=b.lp_day_plan, alpha_scale=config.alpha_scale)


def _table(config: MarketConfig, period: int, stand_ins: bool, controlled: int | None = None) -> tuple[TickTable, PeriodSim]:
    bidders = _bidders(config, 0, period, stand_ins)
    sim = PeriodSim(config, 0, period, bidders=bidders)
    alpha = np.full((config.n_advertisers, config.n_ticks), np.nan)
    while not sim.done:
        bids = None
        if controlled is not None:
            p_value, _ = sim.tick_inputs()
            bids = {controlled: sim.target_cpa[controlled] * p_value[:, controlled].astype(np.float64)}
        record = sim.step(bids)
        alpha[:, record.tick] = record.alpha
    h = sim.history
    kind = tuple("stand-in" if stand_ins and STAND_IN[a] else _OUR_KIND_GROUP[KINDS[k]] for a, k in enumerate(bidders.kind))
    table = TickTable(sim.budget, sim.target_cpa, kind, np.zeros(config.n_advertisers, bool), alpha,
                      h["remaining_budget"].T, h["cost"].T, h["conversions"].T, h["p_value_mean"].T,
                      h["n_pv"][:, 0], h["lwc_mean"][:, 0], config.min_remaining_budget)
    return table, sim


def calibration(log: TickTable, periods: int) -> dict:
    shipped = np.array([k != "stand-in" for k in AUCTIONNET_EVAL_KINDS])
    views = {"all advertisers": {}, "shipped-policy slots": {}, "all, our stand-in slots as the log's": {}}
    views["all advertisers"]["log"] = period_statistics(log)
    views["shipped-policy slots"]["log"] = period_statistics(log.select(shipped))
    views["all, our stand-in slots as the log's"]["log"] = views["all advertisers"]["log"]
    for version in ("v2", "v3"):
        config = MarketConfig(version=version)
        plain, ship, emulated = [], [], []
        for p in range(EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + periods):
            t, _ = _table(config, p, stand_ins=False)
            plain.append(period_statistics(t))
            ship.append(period_statistics(t.select(shipped)))
            emulated.append(period_statistics(_table(config, p, stand_ins=True)[0]))
        views["all advertisers"][version] = summarise(plain)
        views["shipped-policy slots"][version] = summarise(ship)
        views["all, our stand-in slots as the log's"][version] = summarise(emulated)
    return views


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def print_views(views: dict, periods: int) -> None:
    print(f"Calibration: AuctionNet evaluation period vs market v2 / v3 (mean [mean -+ 2 sd] over {periods} periods; "
          f"'!' = the log's value is outside that market's band)")
    for view, cols in views.items():
        print(f"\n== {view}")
        print(f"{'statistic':<26} {'AuctionNet':>11} {'v2 mean [band]':>30} {'v3 mean [band]':>30}")
        counts = {"v2": [0, 0], "v3": [0, 0]}
        for name in STATISTICS:
            value = cols["log"][name]
            cells = []
            for v in ("v2", "v3"):
                s = cols[v][name]
                ok = inside_spread(value, s)
                if ok is not None:
                    counts[v][0] += ok
                    counts[v][1] += 1
                band = f"{_fmt(s['mean'])} [{_fmt(s['low'])}, {_fmt(s['high'])}]{'' if ok in (None, True) else ' !'}"
                cells.append(f"{band:>30}")
            print(f"{name:<26} {_fmt(value):>11} " + " ".join(cells))
        print("inside the band: " + "; ".join(f"{v} {a} of {n} ({a / max(n, 1):.0%})" for v, (a, n) in counts.items()))


def truthful_days(periods: int) -> None:
    """bid = CPA x pValue in one slot per category (its CPAs span 60-130), one period per day."""
    slots = tuple(8 * c + (c % 8) + 1 for c in range(6))  # positions 1..6 of categories 0..5
    print(f"\nbid = CPA x pValue (fixed rate 1) in slots {slots}, {periods} periods each (day-to-day spread):")
    print(f"{'market':<7} {'budget use mean':>15} {'sd':>6} {'days < 0.5':>10} {'score mean':>10} {'sd':>6} {'score cv':>8}")
    for version in ("v2", "v3"):
        config = MarketConfig(version=version)
        use, sc = [], []
        for a in slots:
            for p in range(EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + periods):
                sim = PeriodSim(config, 0, p)
                c = sim.target_cpa[a]
                while not sim.done:
                    p_value, _ = sim.tick_inputs()
                    sim.step({a: c * p_value[:, a].astype(np.float64)})
                spend, conv = sim.history["cost"][:, a].sum(), sim.history["conversions"][:, a].sum()
                use.append(spend / sim.budget[a])
                sc.append(float(score(conv, spend, c)))
        use, sc = np.array(use), np.array(sc)
        print(f"{version:<7} {use.mean():>15.3f} {use.std(ddof=1):>6.3f} {np.mean(use < 0.5):>10.1%} "
              f"{sc.mean():>10.2f} {sc.std(ddof=1):>6.2f} {sc.std(ddof=1) / sc.mean():>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rldata", help="AuctionNet rlData file (evaluation roster, player in slot 0)")
    ap.add_argument("--periods", type=int, default=6, help="periods per market version for the table")
    ap.add_argument("--truthful-periods", type=int, default=8, help="periods per slot for the truthful bidder")
    args = ap.parse_args()
    t0 = time.perf_counter()
    (log,) = read_rldata(args.rldata, kinds=AUCTIONNET_EVAL_KINDS, player=0)[:1]
    print_views(calibration(log, args.periods), args.periods)
    if args.truthful_periods:
        truthful_days(args.truthful_periods)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
