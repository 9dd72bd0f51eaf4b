"""aigb's v1 state, rebuilt from the competition's history arguments (numpy only).

The competition hands a strategy, per past tick t, the arrays

    historyPValueInfo[t]       (n, 2)  pValue, pValueSigma
    historyBid[t]              (n,)    the bids that went to the auction
    historyAuctionResult[t]    (n, 3)  won (0/1), slot (1..3, 0 = none), cost (the slot's price)
    historyImpressionResult[t] (n, 2)  exposed (0/1), conversion (0/1)
    historyLeastWinningCost[t] (n,)

``TickLedger`` turns each past tick into the per-tick statistics aigb's simulator records for an
advertiser (``aigb.types.TICK_STAT_FIELDS``), and ``v1_features`` is aigb's ``build_features`` for
one campaign. Spend is what the harness charges: the cost of a PV counts only where it was
exposed (cost x exposed), the amount the harness subtracts from ``remaining_budget``.

Every reduction here takes the numbers in the order aigb's simulator takes them (a running sum
in PV order for per-advertiser columns, numpy's pairwise sum for the least winning cost and for
sums over ticks), so the features equal the ones aigb's environment hands its own strategies bit
for bit, and an exported strategy bids exactly as the original does.

This file is copied into exported folders: it imports numpy and the standard library only.
"""

from __future__ import annotations

import numpy as np

FEATURE_VERSION = "v1"
WINDOW = 3
CPA_RATIO_CAP = 10.0
N_CATEGORIES = 6
FEATURE_NAMES = (
    "time_left", "budget_left",
    "hist_bid_mean", "hist_lwc_mean", "hist_p_value_mean", "hist_conversion_rate", "hist_win_rate",
    "last3_bid_mean", "last3_lwc_mean", "last3_p_value_mean", "last3_conversion_rate", "last3_win_rate",
    "cur_p_value_mean", "cur_n_pv", "last3_n_pv", "hist_n_pv",
    "budget", "target_cpa", "spend", "conversions", "realized_cpa", "cpa_ratio",
) + tuple("category_%d" % i for i in range(N_CATEGORIES))
AUCTIONNET_FEATURE_VERSION = "auctionnet16"
AUCTIONNET_FEATURE_NAMES = (
    "time_left", "budget_left", "hist_bid_mean", "last3_bid_mean", "hist_lwc_mean", "hist_p_value_mean",
    "hist_conversion_rate", "hist_win_rate", "last3_lwc_mean", "last3_p_value_mean", "last3_conversion_rate",
    "last3_win_rate", "cur_p_value_mean", "cur_n_pv", "last3_n_pv_sum", "hist_n_pv_sum",
)
TICK_FIELDS = ("n_pv", "bid_mean", "lwc_mean", "p_value_mean", "win_rate", "conversion_rate", "cost", "conversions")
_MEANS = ("bid_mean", "lwc_mean", "p_value_mean", "conversion_rate", "win_rate")


def running_sum(x) -> float:
    """Sum in index order, one addition after another (how a column of a per-PV matrix is summed)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return float(np.cumsum(x)[-1]) if x.size else 0.0


def tick_statistics(p_value_info, bid, auction, impression, least_winning_cost) -> dict:
    """One past tick's statistics from its five history arrays (layouts in the module docstring)."""
    p_value = np.asarray(p_value_info, dtype=np.float64).reshape(-1, 2)[:, 0]
    n = p_value.shape[0]
    bid = np.asarray(bid, dtype=np.float64).reshape(-1)
    auction = np.asarray(auction, dtype=np.float64).reshape(-1, 3)
    impression = np.asarray(impression, dtype=np.float64).reshape(-1, 2)
    lwc = np.ascontiguousarray(least_winning_cost, dtype=np.float64).reshape(-1)
    for name, arr in (("historyBid", bid), ("historyAuctionResult", auction), ("historyImpressionResult", impression),
                      ("historyLeastWinningCost", lwc)):
        if arr.shape[0] != n:
            raise ValueError("%s: %d rows for a tick of %d PVs (historyPValueInfo)" % (name, arr.shape[0], n))
    exposed = impression[:, 0] > 0
    denom = max(n, 1)
    n_won = float(np.count_nonzero(auction[:, 0] > 0))
    conversions = float(np.count_nonzero((impression[:, 1] > 0) & exposed))
    return {
        "n_pv": float(n),
        "bid_mean": running_sum(bid) / denom,
        "lwc_mean": float(lwc.sum()) / denom,
        "p_value_mean": running_sum(p_value) / denom,
        "win_rate": n_won / denom,
        "conversion_rate": conversions / denom,
        "cost": running_sum(auction[:, 2] * exposed),
        "conversions": conversions,
    }


class TickLedger:
    """The per-tick statistics of the ticks played so far, computed once per tick.

    ``update(histories)`` reads any ticks not seen yet; ``history(t)`` gives field -> (t,) arrays
    of ticks 0..t-1, ``spent(t)`` the money spent before tick t summed tick after tick (as a
    simulator's running total).
    """

    def __init__(self) -> None:
        self.ticks = []   # list of dicts, one per past tick

    def update(self, p_value_info, bid, auction, impression, least_winning_cost) -> None:
        n = len(p_value_info)
        if not len(bid) == len(auction) == len(impression) == len(least_winning_cost) == n:
            raise ValueError("history lists have different lengths: %d, %d, %d, %d, %d"
                             % (n, len(bid), len(auction), len(impression), len(least_winning_cost)))
        while len(self.ticks) < n:
            t = len(self.ticks)
            self.ticks.append(tick_statistics(p_value_info[t], bid[t], auction[t], impression[t], least_winning_cost[t]))

    def history(self, t: int) -> dict:
        return {f: np.array([s[f] for s in self.ticks[:t]], dtype=np.float64) for f in TICK_FIELDS}

    def spent(self, t: int) -> float:
        total = np.zeros(1)
        for s in self.ticks[:t]:
            total += s["cost"]
        return float(total[0])


def auctionnet16_features(history: dict, n_ticks: int, cur_n_pv, cur_p_value_mean, budget) -> np.ndarray:
    """AuctionNet's 16-feature state (aigb's ``auctionnet_features``, the same arithmetic), (16,) float32.

    history: field -> (t,) statistics of the t ticks already played (``TickLedger.history``).
    """
    cost = np.asarray(history["cost"], dtype=np.float64)
    t = cost.shape[-1]
    lead = ()
    budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), lead)

    def mean_over(field, ticks):
        x = np.asarray(history[field], dtype=np.float64)[..., ticks]
        return x.mean(axis=-1) if x.shape[-1] else np.zeros(lead)

    def sum_over(field, ticks):
        return np.broadcast_to(np.asarray(history[field], dtype=np.float64)[..., ticks].sum(axis=-1), lead)

    everything, last = slice(0, t), slice(max(0, t - WINDOW), t)
    with np.errstate(divide="ignore", invalid="ignore"):
        budget_left = np.where(budget > 0, (budget - cost.sum(axis=-1)) / budget, 0.0)
    columns = [
        np.full(lead, (n_ticks - t) / n_ticks), budget_left,
        mean_over("bid_mean", everything), mean_over("bid_mean", last),
        mean_over("lwc_mean", everything), mean_over("p_value_mean", everything),
        mean_over("conversion_rate", everything), mean_over("win_rate", everything),
        mean_over("lwc_mean", last), mean_over("p_value_mean", last),
        mean_over("conversion_rate", last), mean_over("win_rate", last),
        np.broadcast_to(np.asarray(cur_p_value_mean, dtype=np.float64), lead),
        np.broadcast_to(np.asarray(cur_n_pv, dtype=np.float64), lead),
        sum_over("n_pv", last), sum_over("n_pv", everything),
    ]
    return np.stack(columns, axis=-1).astype(np.float32)


def v1_features(history: dict, n_ticks: int, cur_n_pv, cur_p_value_mean, budget, target_cpa, category) -> np.ndarray:
    """The v1 state at the start of the current tick, (len(FEATURE_NAMES),) float32.

    history: field -> (t,) statistics of the t ticks already played (``TickLedger.history``).
    """
    t = np.asarray(history["cost"]).shape[-1]
    lead = ()
    budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), lead)
    target_cpa = np.broadcast_to(np.asarray(target_cpa, dtype=np.float64), lead)

    def mean_over(field, ticks):
        x = np.asarray(history[field], dtype=np.float64)[..., ticks]
        return x.mean(axis=-1) if x.shape[-1] else np.zeros(lead)

    def sum_over(field, ticks):
        return np.asarray(history[field], dtype=np.float64)[..., ticks].sum(axis=-1)

    everything = slice(0, t)
    last = slice(max(0, t - WINDOW), t)
    spend = sum_over("cost", everything)
    conversions = sum_over("conversions", everything)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpa = np.where(conversions > 0, spend / np.maximum(conversions, 1e-12), 0.0)
        # Spend without conversions counts as the worst ratio; no spend as on target.
        ratio = np.where(conversions > 0, cpa / target_cpa, np.where(spend > 0, CPA_RATIO_CAP, 1.0))
    columns = [
        np.full(lead, (n_ticks - t) / n_ticks),
        (budget - spend) / budget,
        *[mean_over(f, everything) for f in _MEANS],
        *[mean_over(f, last) for f in _MEANS],
        np.broadcast_to(np.asarray(cur_p_value_mean, dtype=np.float64), lead),
        np.broadcast_to(np.asarray(cur_n_pv, dtype=np.float64), lead),
        mean_over("n_pv", last),
        sum_over("n_pv", everything),
        budget, target_cpa, spend, conversions, cpa, np.minimum(ratio, CPA_RATIO_CAP),
    ]
    onehot = np.asarray(category)[..., None] == np.arange(N_CATEGORIES)
    onehot = np.broadcast_to(onehot, lead + (N_CATEGORIES,))
    return np.concatenate([np.stack(columns, axis=-1), onehot], axis=-1).astype(np.float32)


def current_tick(p_values) -> tuple:
    """(PV count, mean pValue) of the current tick; pValues are taken as float32, as aigb draws them."""
    p = np.asarray(p_values, dtype=np.float32).reshape(-1)
    return p.size, (float(p.mean(dtype=np.float64)) if p.size else 0.0)
