"""Hard caps on early spend by probabilistic throttling: ``diffbid:PATH?guide=cap:0.3@24&throttle=0.1``.

A plan can only steer the mean of a day. An advertiser's "at most 30 % of the budget before noon"
is a limit on every day, and a planner's days overshoot it when the market turns busier than the
plan expected (on the level planner, with the cap in its objective, the realised days spent 0.17
of the budget before tick 24 on average, yet 27 % of them more than 0.3: the morning surge of
traffic arrived faster than planned, and the lowest bid level searched still bought too much).
Production bidders meet such limits by throttling: taking part in only a share of the auctions.

``SpendCapGuard`` holds caps (share S of the budget by tick TAU) and, at every tick before a
cap's TAU, forecasts the tick's spend at full participation from what is known when bidding:

    F_t = q_t x sum_i bid_i          (this tick's bids, this tick's PVs)
    q_t = max over the last ``window`` ticks with bids of  cost_k / (bid_mean_k x n_pv_k)

q is the share of the offered bid money the market actually charged (the win rate times the
price paid relative to the bid); the bid money follows the tick's traffic and the bidder's
level, so the forecast sees a surge of traffic in the same tick. Before any tick with bids
q = 1 (the worst case: paying the full bid on every PV). q is not stable: it jumps when the
competitors' budgets and bids change (measured through mornings: 0.008, 0.118, 0.135, 0.245 in four
ticks on one campaign; 0.084, 0.026, 0.523 on another, whose day then spent 56 % of its budget in one
tick), so the forecast takes at least ``q_floor`` = 0.3, and a tick may use at most half of what is
left under the cap at its forecast. Together the cap holds unless a tick charges more than
2 x 0.3 = 60 % of the bid money offered; on the default training dataset (60 periods, every tick
with bids) q's 99th / 99.9th percentiles are 0.56 / 0.62 and its median 0: a forecast from the
recent ticks alone (no floor) let 7.9 % of the standard evaluation's days cross a noon cap.
The participation share is

    phi_t = clip((S (1 - margin) B - spent_t) / (2 max(q_t, q_floor) sum_i bid_i), 0, 1)   (smallest over the caps)

and each PV is kept with probability phi_t (the others get a bid of 0), from the campaign's
seed and the tick (stream "throttle"), so a run is reproducible. ``margin`` aims below the cap
to absorb the forecast's error; after TAU the cap no longer binds.

A cap term ``cap:S@TAU`` gives (S, TAU); ``exhaust:F@TAU`` (keep a share F until TAU) gives
(1 - F, TAU). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aigb.algos.diffbid.serving import CAP_KINDS
from aigb.seeding import rng
from aigb.sim.env import Observation

__all__ = ["SpendCapGuard", "caps_of_terms", "CAP_KINDS", "TICK_SHARE_DIVISOR", "Q_FLOOR"]

TICK_SHARE_DIVISOR = 2.0
"""A tick may spend, at its forecast, at most 1 / TICK_SHARE_DIVISOR of what is left under a cap."""
Q_FLOOR = 0.3
"""The least charge rate a forecast assumes (with TICK_SHARE_DIVISOR: safe up to q = 0.6)."""


def caps_of_terms(terms: Sequence, n_ticks: int) -> tuple[tuple[float, int], ...]:
    """The (share, tick) caps of objective terms (``aigb.algos.diffbid.objectives.ObjectiveTerm``):
    ``cap:S@TAU`` -> (S, TAU), ``exhaust:F@TAU`` -> (1 - F, TAU) with F = 1 / T when not given.
    Other terms are not caps on early spend and give none."""
    caps = []
    for term in terms:
        if term.kind == "cap":
            caps.append((float(term.level), int(term.tick)))
        elif term.kind == "exhaust":
            keep = 1.0 / n_ticks if term.level is None else float(term.level)
            caps.append((1.0 - keep, int(term.tick)))
    return tuple(caps)


class SpendCapGuard:
    """Throttles bids so that the spend before each cap's tick stays under its share of the budget."""

    def __init__(self, caps: Sequence[tuple[float, int]], margin: float = 0.1, window: int = 3,
                 q_floor: float = Q_FLOOR) -> None:
        caps = tuple((float(s), int(t)) for s, t in caps)
        if not caps:
            raise ValueError("caps: no cap on early spend to enforce (give a cap:S@TAU or exhaust:F@TAU term)")
        for share, tick in caps:
            if not 0.0 <= share <= 1.0:     # 0: nothing before the tick (exhaust:1@TAU)
                raise ValueError(f"caps: a share must lie in [0, 1], got {share}")
            if tick < 1:
                raise ValueError(f"caps: a tick must be >= 1, got {tick}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin: must lie in [0, 1), got {margin}")
        if window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        if not 0.0 <= q_floor <= 1.0:
            raise ValueError(f"q_floor: must lie in [0, 1], got {q_floor}")
        self.caps, self.margin, self.window, self.q_floor = caps, float(margin), int(window), float(q_floor)

    def charge_rate(self, history: dict[str, np.ndarray]) -> float:
        """q: the largest cost / offered bid money over the last ``window`` ticks with bids (1 before any)."""
        offered = np.asarray(history["bid_mean"], dtype=np.float64) * np.asarray(history["n_pv"], dtype=np.float64)
        cost = np.asarray(history["cost"], dtype=np.float64)
        ticks = np.flatnonzero(offered > 0.0)[-self.window:]
        if ticks.size == 0:
            return 1.0
        return float(min(1.0, np.max(cost[ticks] / offered[ticks])))

    def participation(self, obs: Observation, bids: np.ndarray) -> float:
        """phi in [0, 1]: the share of this tick's PVs to bid on (1: no cap binds)."""
        offered = float(np.sum(bids))
        open_caps = [(s, tau) for s, tau in self.caps if obs.tick < tau]
        if not open_caps or offered <= 0.0:
            return 1.0
        budget = obs.campaign.budget
        spent = budget - obs.remaining_budget
        forecast = max(self.charge_rate(obs.history), self.q_floor) * offered
        allowance = min(s * (1.0 - self.margin) * budget for s, _ in open_caps) - spent
        if forecast <= 0.0:
            return 1.0 if allowance > 0.0 else 0.0
        return float(np.clip(allowance / (TICK_SHARE_DIVISOR * forecast), 0.0, 1.0))

    def apply(self, obs: Observation, bids: np.ndarray, seed: int) -> np.ndarray:
        """``bids`` with each PV kept with probability phi (the others bid 0), drawn from ``seed`` and the tick."""
        phi = self.participation(obs, bids)
        if phi >= 1.0:
            return bids
        if phi <= 0.0:
            return np.zeros_like(bids)
        keep = rng(seed, "throttle", obs.tick).random(bids.shape[0]) < phi
        return np.where(keep, bids, 0.0)
