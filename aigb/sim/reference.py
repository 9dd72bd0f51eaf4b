"""A slow, one-auction-at-a-time implementation of the tick rules, for the parity test only.

It restates ``aigb.sim.auction`` with plain Python loops over PVs and slots, taking the same
random numbers (``TickDraws`` and the drop generator, consumed in the same order), so the fast
path must reproduce it exactly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from aigb.sim.auction import TickDraws
from aigb.types import MarketConfig

__all__ = ["reference_step"]


def _auction(bids_row, config):
    """One PV: returns [(advertiser, price)] per slot (None if unsold) and the least winning cost."""
    order = sorted((b, a) for a, b in enumerate(bids_row) if b > 0)
    order.sort(key=lambda ba: (-ba[0], ba[1]))  # highest bid first, ties to the lower index
    ranked = [a for _, a in order]
    values = [b for b, _ in order]
    slots = []
    for k in range(config.n_slots):
        next_bid = values[k + 1] if k + 1 < len(values) else 0.0
        price = max(next_bid, config.reserve_price)
        if k < len(values) and price > config.reserve_price:
            slots.append((ranked[k], price))
        else:
            slots.append(None)
    lwc = values[config.n_slots] if len(values) > config.n_slots else 0.0
    return slots, lwc


def reference_step(bids, remaining_budget, p_value, p_value_sigma, trunc_low, trunc_high,
                   draws: TickDraws, config: MarketConfig, drop_rng: np.random.Generator):
    """Same contract as ``step_market``; returns (winner, price, exposed, conversion, lwc, cost, bids)."""
    n_pv, n_adv = bids.shape
    bids = [[max(float(b), 0.0) for b in row] for row in np.asarray(bids, dtype=np.float64)]
    for a in range(n_adv):
        if remaining_budget[a] < config.min_remaining_budget:
            for i in range(n_pv):
                bids[i][a] = 0.0
    while True:
        winner = np.full((n_pv, config.n_slots), -1)
        price = np.zeros((n_pv, config.n_slots))
        exposed = np.zeros((n_pv, config.n_slots), dtype=bool)
        conversion = np.zeros((n_pv, config.n_slots), dtype=bool)
        lwc = np.zeros(n_pv)
        cost = np.zeros(n_adv)
        for i in range(n_pv):
            slots, lwc[i] = _auction(bids[i], config)
            for k, sold in enumerate(slots):
                if sold is None:
                    continue
                a, pr = sold
                winner[i, k], price[i, k] = a, pr
                # The cascade: slot k is shown when its own draw and every draw above it succeed.
                if all(draws.exposure_u[i, j] < config.exposure_probs[j] for j in range(k + 1)):
                    exposed[i, k] = True
                    cost[a] += pr
                    fa, fb = ndtr(trunc_low[a]), ndtr(trunc_high[a])
                    z = ndtri(fa + draws.noise_u[i, k] * (fb - fa))
                    q = min(max(float(p_value[i, a]) + float(p_value_sigma[i, a]) * z, 0.0), 1.0)
                    conversion[i, k] = draws.convert_u[i, k] < q
        over = [a for a in range(n_adv) if cost[a] > remaining_budget[a]]
        if not over:
            return winner, price, exposed, conversion, lwc, cost, np.array(bids)
        for a in over:
            won = [i for i in range(n_pv) if a in winner[i]]
            n_drop = math.ceil(len(won) * (cost[a] - remaining_budget[a]) / cost[a])
            for i in drop_rng.choice(np.array(won), size=min(n_drop, len(won)), replace=False):
                bids[i][a] = 0.0
