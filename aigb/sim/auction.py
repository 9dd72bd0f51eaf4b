"""The tick transition: GSP auction, exposure, cost, conversions and the budget cap. Pure and vectorised.

Rules (AuctionNet, ../shared/DESIGN.md §2), per PV:
* bids are ranked (ties go to the lower advertiser index); the winner of slot k pays the (k+1)-th
  highest bid floored at the reserve; a slot whose price would be exactly the reserve is unsold,
  so slot k is sold iff the (k+1)-th highest bid exceeds the reserve;
* ``least_winning_cost`` is the (n_slots+1)-th highest bid (the price to enter the last slot);
* exposure is AuctionNet's cascade: each slot draws its own exposure (shown iff u_k < e_k,
  e = 1.0 / 0.8 / 0.6), then a hidden slot hides every slot below it (slot 3 needs slot 2), so
  slot k is shown with the net probability e_1 * ... * e_k (0.48 for slot 3);
* cost is paid only when shown;
* the true conversion probability is p_value + p_value_sigma * z, z a standard normal truncated to
  the winner's [trunc_low, trunc_high], clipped to [0, 1]; a shown PV converts with that probability;
* budget cap: an advertiser whose exposed cost in the tick exceeds its remaining budget loses a
  random ``ceil(n_won * (cost - remaining) / cost)`` of its won PVs (bids set to 0) and the tick is
  re-run until every advertiser fits. Advertisers below ``min_remaining_budget`` bid 0; negative
  bids count as 0.

Every random number of the tick is drawn up front (``TickDraws``, one set per (PV, slot)) so a re-run
re-uses them: the re-run changes who sits where, not the luck of the slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from aigb.types import MarketConfig

__all__ = ["cascade_exposure", "TickDraws", "TickOutcome", "draw_tick", "rank_bids", "step_market", "tick_stats", "advertiser_view"]


@dataclass(frozen=True)
class TickDraws:
    """The random numbers of one tick, drawn before bidding."""

    exposure_u: np.ndarray  # (n_pv, n_slots) slot k's own draw: shown iff u_j < e_j for every j <= k
    noise_u: np.ndarray     # (n_pv, n_slots) uniform mapped to the truncated conversion noise
    convert_u: np.ndarray   # (n_pv, n_slots) converts iff convert_u < true probability


def draw_tick(g: np.random.Generator, n_pv: int, n_slots: int) -> TickDraws:
    """Draw a tick's exposure and conversion uniforms from ``g`` (stream ``outcome``)."""
    return TickDraws(
        exposure_u=g.random((n_pv, n_slots)),
        noise_u=g.random((n_pv, n_slots)),
        convert_u=g.random((n_pv, n_slots)),
    )


@dataclass(frozen=True)
class TickOutcome:
    """What happened in one tick (after any budget re-runs)."""

    bids: np.ndarray                # (n_pv, n_adv) float64 effective bids (0 where capped or dropped)
    winner: np.ndarray              # (n_pv, n_slots) int64 advertiser in slot k, -1 if unsold
    price: np.ndarray               # (n_pv, n_slots) float64 price of slot k, 0 if unsold
    exposed: np.ndarray             # (n_pv, n_slots) bool
    conversion: np.ndarray          # (n_pv, n_slots) bool
    least_winning_cost: np.ndarray  # (n_pv,) float64
    cost: np.ndarray                # (n_adv,) float64 spend in the tick
    n_reruns: int                   # budget-cap re-runs that were needed


def rank_bids(bids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest bids per PV and who bid them, ties to the lower advertiser index.

    Returns ``(who, value)``, each (n_pv, k); ``who`` is -1 and ``value`` 0 past the last bidder.
    Repeated argmax is used because np.argmax returns the first maximum, which makes the tie rule
    exact (argpartition gives no order among equal bids).
    """
    n_pv, n_adv = bids.shape
    work = bids.copy()
    rows = np.arange(n_pv)
    who = np.full((n_pv, k), -1, dtype=np.int64)
    value = np.zeros((n_pv, k), dtype=np.float64)
    for j in range(min(k, n_adv)):
        top = np.argmax(work, axis=1)
        v = work[rows, top]
        live = v > 0
        who[:, j] = np.where(live, top, -1)
        value[:, j] = np.where(live, v, 0.0)
        work[rows, top] = -np.inf
    return who, value


def _allocate(bids, p_value, p_value_sigma, trunc_low, trunc_high, draws, config):
    """Slots, prices, exposure and conversions of each PV row (rows are independent)."""
    n_slots = config.n_slots
    who, value = rank_bids(bids, n_slots + 1)
    sold = value[:, 1:] > config.reserve_price                  # (n_pv, n_slots)
    winner = np.where(sold, who[:, :n_slots], -1)
    price = np.where(sold, value[:, 1:], 0.0)
    e = np.asarray(config.exposure_probs)
    exposed = sold & cascade_exposure(draws.exposure_u, e)
    # Truncated-normal conversion noise by inverse CDF, z = Phi^-1(Phi(a) + u (Phi(b) - Phi(a))),
    # evaluated only where a conversion can happen (shown slots).
    pv, k = np.nonzero(exposed)
    a = winner[pv, k]
    fa, fb = ndtr(trunc_low[a]), ndtr(trunc_high[a])
    z = ndtri(fa + draws.noise_u[pv, k] * (fb - fa))
    true_p = np.clip(p_value[pv, a].astype(np.float64) + p_value_sigma[pv, a].astype(np.float64) * z, 0.0, 1.0)
    conversion = np.zeros_like(exposed)
    conversion[pv, k] = draws.convert_u[pv, k] < true_p
    return winner, price, exposed, conversion, value[:, n_slots].copy()


def cascade_exposure(exposure_u: np.ndarray, exposure_probs: np.ndarray) -> np.ndarray:
    """Shown slots: slot k's own draw succeeds and so does every slot above it.  # (n_pv, n_slots) bool"""
    return np.logical_and.accumulate(exposure_u < np.asarray(exposure_probs)[None, :], axis=1)


def _tick_cost(winner, price, exposed, n_adv):
    return np.bincount(winner[exposed], weights=price[exposed], minlength=n_adv)


def step_market(
    bids: np.ndarray,
    remaining_budget: np.ndarray,
    p_value: np.ndarray,
    p_value_sigma: np.ndarray,
    trunc_low: np.ndarray,
    trunc_high: np.ndarray,
    draws: TickDraws,
    config: MarketConfig,
    drop_rng: np.random.Generator,
) -> TickOutcome:
    """Run one tick of the market.

    Args:
        bids: (n_pv, n_adv) bids; negative values are treated as 0.
        remaining_budget: (n_adv,) budget left before the tick.
        p_value, p_value_sigma: (n_pv, n_adv) predictions.
        trunc_low, trunc_high: (n_adv,) truncation of the conversion noise, in sigmas.
        draws: the tick's uniforms (``draw_tick``).
        config: market rules.
        drop_rng: generator for the budget-cap drops (stream ``budget_drop``).
    """
    bids = np.maximum(np.asarray(bids, dtype=np.float64), 0.0)
    n_adv = bids.shape[1]
    remaining_budget = np.asarray(remaining_budget, dtype=np.float64)
    bids[:, remaining_budget < config.min_remaining_budget] = 0.0
    winner, price, exposed, conversion, lwc = _allocate(
        bids, p_value, p_value_sigma, trunc_low, trunc_high, draws, config)
    cost = _tick_cost(winner, price, exposed, n_adv)
    n_reruns = 0
    while True:
        over = np.flatnonzero(cost > remaining_budget)
        if over.size == 0:
            break
        n_reruns += 1
        changed = []
        for a in over:  # ascending advertiser index: the documented drop order
            won_pv = np.flatnonzero((winner == a).any(axis=1))
            n_drop = int(np.ceil(won_pv.size * (cost[a] - remaining_budget[a]) / cost[a]))
            dropped = drop_rng.choice(won_pv, size=min(n_drop, won_pv.size), replace=False)
            bids[dropped, a] = 0.0
            changed.append(dropped)
        # Re-running the tick only changes the PVs whose bids changed: every PV's auction and
        # luck depend on its own row alone, so the other rows' results stand as they are.
        rows = np.unique(np.concatenate(changed))
        sub = TickDraws(draws.exposure_u[rows], draws.noise_u[rows], draws.convert_u[rows])
        winner[rows], price[rows], exposed[rows], conversion[rows], lwc[rows] = _allocate(
            bids[rows], p_value[rows], p_value_sigma[rows], trunc_low, trunc_high, sub, config)
        cost = _tick_cost(winner, price, exposed, n_adv)
    return TickOutcome(bids, winner, price, exposed, conversion, lwc, cost, n_reruns)


def advertiser_view(outcome: TickOutcome, advertiser: int, config: MarketConfig) -> dict[str, np.ndarray]:
    """Per-PV results of one advertiser: won, slot (0 = none, 1..n_slots), cost, exposed, conversion."""
    mine = outcome.winner == advertiser  # (n_pv, n_slots)
    won = mine.any(axis=1)
    slot = np.where(won, mine.argmax(axis=1) + 1, 0).astype(np.int8)
    return {
        "won": won,
        "slot": slot,
        "price": (outcome.price * mine).sum(axis=1),
        "cost": (outcome.price * (mine & outcome.exposed)).sum(axis=1),
        "exposed": (mine & outcome.exposed).any(axis=1),
        "conversion": (mine & outcome.conversion).any(axis=1),
    }


def tick_stats(outcome: TickOutcome, p_value: np.ndarray, remaining_budget: np.ndarray, config: MarketConfig) -> dict[str, np.ndarray]:
    """Per-advertiser statistics of the tick, one (n_adv,) array per ``aigb.types.TICK_STAT_FIELDS``."""
    n_pv, n_adv = outcome.bids.shape
    sold = outcome.winner >= 0
    w = outcome.winner[sold]
    e = np.broadcast_to(np.asarray(config.net_exposure_probs), outcome.winner.shape)[sold]
    p_won = p_value[np.nonzero(sold)[0], w].astype(np.float64)
    ex = outcome.exposed[sold]

    def per_adv(weights=None, mask=None):
        idx, wts = w, weights
        if mask is not None:
            idx = w[mask]
            wts = None if weights is None else weights[mask]
        return np.bincount(idx, weights=wts, minlength=n_adv).astype(np.float64)

    n_won = per_adv()
    conversions = per_adv(mask=outcome.conversion[sold])
    denom = max(n_pv, 1)
    return {
        "n_pv": np.full(n_adv, n_pv, dtype=np.float64),
        "bid_mean": outcome.bids.sum(axis=0) / denom,
        "p_value_mean": p_value.sum(axis=0, dtype=np.float64) / denom,
        "lwc_mean": np.full(n_adv, outcome.least_winning_cost.sum() / denom),
        "win_rate": n_won / denom,
        "conversion_rate": conversions / denom,
        "n_won": n_won,
        "n_exposed": per_adv(mask=ex),
        "cost": outcome.cost.copy(),
        "conversions": conversions,
        "exposed_p_value": per_adv(p_won, mask=ex),
        "expected_conversions": per_adv(e * p_won),
        "expected_cost": per_adv(e * outcome.price[sold]),
        "remaining_budget": np.asarray(remaining_budget, dtype=np.float64).copy(),
    }
