"""Calibration statistics: what a market's competitor field does, per advertiser and per tick.

The statistics are computed from one table per period (``TickTable``: per advertiser and tick, the
bid multiplier, remaining budget, spend, conversions, mean p_value; per tick the PV count and the
mean least winning cost), the information AuctionNet's per-tick trajectory files (rlData) hold.
So the same function measures a preset of ours (``simulated_table``) and an imported AuctionNet
log (``aigb.data.rldata.read_rldata``), and the two can be put side by side.

Each statistic is computed per period; a market's spread is the period-to-period mean +- 2 standard
deviations (at least +- 1 % of the mean, so that a quantity the market holds fixed, such as the PV
count, is not "outside" by a rounding), and a log's value is "outside" when it falls out of that band.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aigb.types import MarketConfig

__all__ = ["TickTable", "STATISTICS", "period_statistics", "summarise", "simulated_table", "weighted_quantile",
           "KIND_GROUPS", "inside_spread"]

# Groups of bidder kinds compared across markets: our kinds map onto AuctionNet's controllers.
KIND_GROUPS = ("pid", "lp", "rl")
_OUR_KIND_GROUP = {"anet_pid": "pid", "pid": "pid", "lp": "lp", "feedback": "rl", "fixed": "fixed"}
WINDOW = 8  # ticks per time-of-day window (six windows in a 48-tick day)
BAND_FLOOR = 0.01  # the spread band is at least +- 1 % of the mean


@dataclass(frozen=True)
class TickTable:
    """One period of a market, per advertiser and tick (AuctionNet's rlData content)."""

    budget: np.ndarray          # (n_adv,)
    target_cpa: np.ndarray      # (n_adv,)
    kind: tuple[str, ...]       # (n_adv,) kind group ("pid", "lp", "rl", "fixed", "stand-in", "" unknown)
    player: np.ndarray          # (n_adv,) bool: the strategy under study, left out of competitor statistics
    alpha: np.ndarray           # (n_adv, n_ticks) bid multiplier of the tick (NaN: not known)
    remaining: np.ndarray       # (n_adv, n_ticks) remaining budget before the tick
    cost: np.ndarray            # (n_adv, n_ticks) spend of the tick
    conversions: np.ndarray     # (n_adv, n_ticks) conversions of the tick
    p_value_mean: np.ndarray    # (n_adv, n_ticks) mean p_value of the tick's PVs
    n_pv: np.ndarray            # (n_ticks,) PVs of the tick
    lwc_mean: np.ndarray        # (n_ticks,) mean least winning cost (NaN: not known)
    min_remaining_budget: float = 0.1

    def select(self, rows: np.ndarray) -> "TickTable":
        """The same period with only the advertisers ``rows`` (indices or a mask); market-wide columns kept."""
        rows = np.asarray(rows)
        return replace(self, budget=self.budget[rows], target_cpa=self.target_cpa[rows],
                       kind=tuple(np.asarray(self.kind, dtype=object)[rows]), player=self.player[rows],
                       alpha=self.alpha[rows], remaining=self.remaining[rows], cost=self.cost[rows],
                       conversions=self.conversions[rows], p_value_mean=self.p_value_mean[rows])

    @property
    def live(self) -> np.ndarray:
        """Decisions that reach the market: remaining budget at least the bidding floor.  # (n_adv, n_ticks)"""
        return self.remaining >= self.min_remaining_budget


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (NaN values dropped)."""
    values, weights = np.asarray(values, float).ravel(), np.asarray(weights, float).ravel()
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return float("nan")
    order = np.argsort(values[ok], kind="stable")
    v, w = values[ok][order], weights[ok][order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, q * cum[-1] - 1e-12 * cum[-1])])


# name -> one-line description, in report order.
STATISTICS: dict[str, str] = {
    "mult_p5": "competitors' alpha / CPA, 5th percentile (live decisions)",
    "mult_p25": "competitors' alpha / CPA, 25th percentile",
    "mult_median": "competitors' alpha / CPA, median",
    **{f"mult_median_w{w}": f"competitors' alpha / CPA, median, ticks {WINDOW * w}-{WINDOW * w + WINDOW - 1}" for w in range(6)},
    **{f"mult_median_{k}": f"alpha / CPA median of {k} bidders" for k in KIND_GROUPS},
    "share_above_2cpa": "share of competitor decisions with alpha > 2 CPA",
    "share_above_2cpa_t0_7": "the same in ticks 0-7",
    "share_bidders_above_2cpa": "share of competitors that ever bid alpha > 2 CPA",
    "lwc_mean": "least winning cost per PV, mean (money)",
    "lwc_p90": "least winning cost, 90th percentile of tick means (PV-weighted)",
    "budget_use_mean": "budget used, mean over advertisers",
    "budget_use_p25": "budget used, 25th percentile",
    "total_spend": "total spend of all advertisers",
    "spend_share_t8_15": "share of the day's spend in ticks 8-15",
    "spend_share_t32_39": "share of the day's spend in ticks 32-39",
    "share_above_target_cpa": "share of campaigns whose realised CPA exceeds the target",
    "n_pv": "PVs in the period",
    "conversions": "conversions of all advertisers",
    "p_value_mean": "mean p_value (PV-weighted over advertisers and ticks)",
}


def period_statistics(t: TickTable) -> dict[str, float]:
    """Every statistic of ``STATISTICS`` for one period."""
    n_adv, n_ticks = t.alpha.shape
    comp = ~np.asarray(t.player, bool)
    live = t.live & np.isfinite(t.alpha)
    rel = t.alpha / t.target_cpa[:, None]  # (n_adv, n_ticks)
    decisions = live & comp[:, None]
    mult = rel[decisions]
    out: dict[str, float] = {}
    for q, name in ((5, "mult_p5"), (25, "mult_p25"), (50, "mult_median")):
        out[name] = float(np.percentile(mult, q)) if mult.size else float("nan")
    for w in range(6):
        cols = np.zeros(n_ticks, bool)
        cols[WINDOW * w: WINDOW * (w + 1)] = True
        sel = rel[decisions & cols[None, :]]
        out[f"mult_median_w{w}"] = float(np.median(sel)) if sel.size else float("nan")
    kinds = np.asarray(t.kind)
    for k in KIND_GROUPS:
        sel = rel[decisions & (kinds == k)[:, None]]
        out[f"mult_median_{k}"] = float(np.median(sel)) if sel.size else float("nan")
    above = rel > 2.0
    out["share_above_2cpa"] = float(above[decisions].mean()) if decisions.any() else float("nan")
    early = decisions[:, :WINDOW]
    out["share_above_2cpa_t0_7"] = float(above[:, :WINDOW][early].mean()) if early.any() else float("nan")
    out["share_bidders_above_2cpa"] = float((above & decisions).any(axis=1)[comp].mean())
    known = np.isfinite(t.lwc_mean)
    out["lwc_mean"] = float((t.lwc_mean[known] * t.n_pv[known]).sum() / t.n_pv[known].sum())
    out["lwc_p90"] = weighted_quantile(t.lwc_mean, t.n_pv, 0.9)
    spend = t.cost.sum(axis=1)
    use = spend / t.budget
    out["budget_use_mean"] = float(use.mean())
    out["budget_use_p25"] = float(np.percentile(use, 25))
    out["total_spend"] = float(spend.sum())
    by_tick = t.cost.sum(axis=0)
    out["spend_share_t8_15"] = float(by_tick[8:16].sum() / by_tick.sum())
    out["spend_share_t32_39"] = float(by_tick[32:40].sum() / by_tick.sum())
    conv = t.conversions.sum(axis=1)
    # A campaign that spent without converting has an infinite CPA: above its target.
    over = np.where(conv > 0, spend > t.target_cpa * conv, spend > 0)
    out["share_above_target_cpa"] = float(over.mean())
    out["n_pv"] = float(t.n_pv.sum())
    out["conversions"] = float(conv.sum())
    out["p_value_mean"] = float((t.p_value_mean * t.n_pv[None, :]).sum() / (t.n_pv.sum() * n_adv))
    return out


def summarise(periods: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per statistic: mean, standard deviation (ddof 1; 0 for one period), low and high of the spread
    band (mean -+ max(2 sd, 1 % of |mean|)), over the periods."""
    out = {}
    for name in STATISTICS:
        v = np.array([p[name] for p in periods], dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[name] = {"mean": float("nan"), "sd": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
            continue
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        m = float(v.mean())
        half = max(2 * sd, BAND_FLOOR * abs(m))
        out[name] = {"mean": m, "sd": sd, "low": m - half, "high": m + half, "n": int(v.size)}
    return out


def inside_spread(value: float, spread: dict[str, float]) -> bool | None:
    """Whether ``value`` lies in the spread band; None when either side is unknown."""
    if not (np.isfinite(value) and np.isfinite(spread["mean"])):
        return None
    return bool(spread["low"] <= value <= spread["high"])


def simulated_table(config: MarketConfig, seed: int, period: int, population=None) -> TickTable:
    """Run one period of ``config``'s competitor field alone and tabulate it."""
    from aigb.sim.period import PeriodSim
    from aigb.sim.population import KINDS

    sim = PeriodSim(config, seed, period, population=population)
    n_adv, n_ticks = config.n_advertisers, config.n_ticks
    alpha = np.full((n_adv, n_ticks), np.nan)
    while not sim.done:
        record = sim.step()
        alpha[:, record.tick] = record.alpha
    h = sim.history
    kind = tuple(_OUR_KIND_GROUP[KINDS[k]] for k in sim.bidders.kind)
    return TickTable(
        budget=sim.budget.copy(), target_cpa=sim.target_cpa.copy(), kind=kind, player=np.zeros(n_adv, bool),
        alpha=alpha, remaining=h["remaining_budget"].T.copy(), cost=h["cost"].T.copy(),
        conversions=h["conversions"].T.copy(), p_value_mean=h["p_value_mean"].T.copy(),
        n_pv=h["n_pv"][:, 0].copy(), lwc_mean=h["lwc_mean"][:, 0].copy(),
        min_remaining_budget=config.min_remaining_budget)
