"""The vectorised tick equals the one-auction-at-a-time reference, random numbers included."""

import numpy as np
import pytest

from aigb.sim.auction import draw_tick, step_market
from aigb.sim.reference import reference_step
from aigb.types import MarketConfig


@pytest.mark.parametrize("seed", range(12))
def test_fast_tick_matches_reference(seed):
    config = MarketConfig(n_advertisers=6)
    g = np.random.default_rng(seed)
    n_pv, n_adv = 120, 6
    p_value = g.uniform(0, 0.01, (n_pv, n_adv)).astype(np.float32)
    sigma = (p_value * g.uniform(0, 0.3, (n_pv, n_adv))).astype(np.float32)
    bids = g.uniform(-0.1, 1.0, (n_pv, n_adv))
    bids[g.random((n_pv, n_adv)) < 0.3] = 0.0
    bids[:10, 1] = bids[:10, 2]  # ties
    bids[10:15] = 0.0            # no bidders
    bids[15:20, 3:] = 0.0        # fewer than 4 bidders
    remaining = g.uniform(0, 20, n_adv)
    remaining[0] = 0.05          # below the minimum: bids 0
    low, high = -2 * g.random(n_adv), 2 * g.random(n_adv)
    draws = draw_tick(g, n_pv, config.n_slots)
    fast = step_market(bids, remaining, p_value, sigma, low, high, draws, config, np.random.default_rng(seed + 100))
    winner, price, exposed, conversion, lwc, cost, final_bids = reference_step(
        bids, remaining, p_value, sigma, low, high, draws, config, np.random.default_rng(seed + 100))
    np.testing.assert_array_equal(fast.winner, winner)
    np.testing.assert_allclose(fast.price, price)
    np.testing.assert_array_equal(fast.exposed, exposed)
    np.testing.assert_array_equal(fast.conversion, conversion)
    np.testing.assert_allclose(fast.least_winning_cost, lwc)
    np.testing.assert_allclose(fast.cost, cost)
    np.testing.assert_allclose(fast.bids, final_bids)
    assert (fast.cost <= remaining + 1e-9).all()
