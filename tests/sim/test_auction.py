"""Hand-computed GSP ticks through ``step_market`` (rules: DESIGN.md §2, ``aigb.sim.auction``).

Every case builds its own ``TickDraws`` so that exposure and conversion are controlled:
``exposure_u = 0`` shows every sold slot; with ``p_value_sigma = 0`` the true conversion probability
is ``p_value`` itself, so ``convert_u`` decides conversion exactly.
"""

import math

import numpy as np
import pytest

from aigb.sim.auction import TickDraws, advertiser_view, draw_tick, rank_bids, step_market, tick_stats
from aigb.types import TICK_STAT_FIELDS, MarketConfig

RESERVE = 1e-4


def market(n_adv, **kw):
    return MarketConfig(n_pv=1, n_ticks=1, n_advertisers=n_adv, **kw)


def play(bids, *, remaining=None, u=0.0, p_value=None, sigma=None, noise_u=0.5, convert_u=0.999,
         trunc=(-1.0, 1.0), config=None, drop_seed=0):
    """One tick with controlled draws; ``u`` is the exposure uniform: a scalar or (n_pv,) for every
    slot of a PV alike, or (n_pv, n_slots) one per slot."""
    bids = np.atleast_2d(np.asarray(bids, dtype=np.float64))
    n_pv, n_adv = bids.shape
    config = config or market(n_adv)
    n_slots = config.n_slots
    remaining = np.full(n_adv, 1e6) if remaining is None else np.asarray(remaining, dtype=np.float64)
    p_value = np.full((n_pv, n_adv), 1e-3, np.float32) if p_value is None else np.broadcast_to(
        np.asarray(p_value, np.float32), (n_pv, n_adv))
    sigma = np.zeros((n_pv, n_adv), np.float32) if sigma is None else np.broadcast_to(
        np.asarray(sigma, np.float32), (n_pv, n_adv))
    draws = TickDraws(
        exposure_u=_exposure_u(u, n_pv, n_slots),
        noise_u=np.full((n_pv, n_slots), noise_u),
        convert_u=np.broadcast_to(np.asarray(convert_u, dtype=np.float64), (n_pv, n_slots)).copy(),
    )
    low, high = np.full(n_adv, trunc[0]), np.full(n_adv, trunc[1])
    return step_market(bids, remaining, p_value, sigma, low, high, draws, config, np.random.default_rng(drop_seed))


def _exposure_u(u, n_pv, n_slots):
    u = np.asarray(u, dtype=np.float64)
    if u.ndim < 2:
        u = np.broadcast_to(u, (n_pv,))[:, None]
    return np.broadcast_to(u, (n_pv, n_slots)).copy()


# --- GSP allocation and prices ------------------------------------------------------------------

def test_each_slot_pays_the_next_highest_bid():
    out = play([0.3, 0.9, 0.5, 0.7, 0.1])
    np.testing.assert_array_equal(out.winner, [[1, 3, 2]])
    np.testing.assert_array_equal(out.price, [[0.7, 0.5, 0.3]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.3])
    np.testing.assert_array_equal(out.cost, [0.0, 0.7, 0.3, 0.5, 0.0])
    assert out.n_reruns == 0


def test_pvs_are_independent_auctions():
    out = play([[0.3, 0.9, 0.5, 0.7, 0.1],
                [0.8, 0.1, 0.2, 0.4, 0.6]])
    np.testing.assert_array_equal(out.winner, [[1, 3, 2], [0, 4, 3]])
    np.testing.assert_array_equal(out.price, [[0.7, 0.5, 0.3], [0.6, 0.4, 0.2]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.3, 0.2])
    np.testing.assert_allclose(out.cost, [0.6, 0.7, 0.3, 0.7, 0.4])


def test_ties_go_to_the_lower_index_and_the_tied_winner_pays_the_tied_bid():
    out = play([0.5, 0.8, 0.8, 0.2, 0.8])
    np.testing.assert_array_equal(out.winner, [[1, 2, 4]])
    np.testing.assert_array_equal(out.price, [[0.8, 0.8, 0.5]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.5])


def test_all_bids_tied():
    out = play([0.4] * 5)
    np.testing.assert_array_equal(out.winner, [[0, 1, 2]])
    np.testing.assert_array_equal(out.price, [[0.4, 0.4, 0.4]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.4])


def test_three_bidders_leave_slot_3_unsold():
    # Slot 3's price would be the (absent) 4th bid floored at the reserve: exactly the reserve.
    out = play([0.6, 0.0, 0.4, 0.2])
    np.testing.assert_array_equal(out.winner, [[0, 2, -1]])
    np.testing.assert_array_equal(out.price, [[0.4, 0.2, 0.0]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.0])
    np.testing.assert_array_equal(out.cost, [0.4, 0.0, 0.2, 0.0])


def test_two_bidders_sell_slot_1_only():
    out = play([0.6, 0.4])
    np.testing.assert_array_equal(out.winner, [[0, -1, -1]])
    np.testing.assert_array_equal(out.price, [[0.4, 0.0, 0.0]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.0])


def test_one_bidder_buys_nothing():
    out = play([0.0, 0.9, 0.0])
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])
    np.testing.assert_array_equal(out.price, [[0.0, 0.0, 0.0]])
    assert not out.exposed.any() and not out.conversion.any()
    np.testing.assert_array_equal(out.cost, 0.0)


def test_no_bidders():
    out = play([[0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.0])


def test_fewer_advertisers_than_slots():
    out = play([[0.7]], config=market(1))
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])
    out = play([[0.7, 0.2]], config=market(2))
    np.testing.assert_array_equal(out.winner, [[0, -1, -1]])
    np.testing.assert_array_equal(out.price, [[0.2, 0.0, 0.0]])


def test_next_bid_at_the_reserve_leaves_the_slot_unsold():
    out = play([1.0, RESERVE])
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])
    out = play([1.0, 0.5, RESERVE, RESERVE])
    np.testing.assert_array_equal(out.winner, [[0, -1, -1]])
    np.testing.assert_array_equal(out.price, [[0.5, 0.0, 0.0]])
    np.testing.assert_array_equal(out.least_winning_cost, [RESERVE])  # the 4th bid, reserve or not


def test_next_bid_below_the_reserve_leaves_the_slot_unsold():
    out = play([1.0, 0.5 * RESERVE])
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])
    np.testing.assert_array_equal(out.cost, [0.0, 0.0])


def test_next_bid_just_above_the_reserve_sells_the_slot_at_that_bid():
    out = play([1.0, 1.5 * RESERVE])
    np.testing.assert_array_equal(out.winner, [[0, -1, -1]])
    np.testing.assert_array_equal(out.price, [[1.5 * RESERVE, 0.0, 0.0]])


def test_reserve_flooring_with_a_high_reserve():
    # Slot 3's price would be max(0.1, 0.2) = the reserve: unsold. Slots 1-2 clear the reserve.
    config = market(4, reserve_price=0.2)
    out = play([1.0, 0.5, 0.25, 0.1], config=config)
    np.testing.assert_array_equal(out.winner, [[0, 1, -1]])
    np.testing.assert_array_equal(out.price, [[0.5, 0.25, 0.0]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.1])
    # A bid between the reserve and the winner's does not sell a slot whose next bid is below it.
    out = play([1.0, 0.15, 0.1, 0.05], config=config)
    np.testing.assert_array_equal(out.winner, [[-1, -1, -1]])


def test_least_winning_cost_is_the_fourth_highest_bid():
    out = play([0.11, 0.95, 0.42, 0.73, 0.29, 0.64])
    np.testing.assert_array_equal(out.winner, [[1, 3, 5]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.42])
    np.testing.assert_array_equal(out.price, [[0.73, 0.64, 0.42]])


# --- exposure, cost, conversion -----------------------------------------------------------------

@pytest.mark.parametrize("u, shown", [
    (0.0, [True, True, True]),
    (0.59, [True, True, True]),
    (0.6, [True, True, False]),
    (0.7, [True, True, False]),
    (0.8, [True, False, False]),
    (0.95, [True, False, False]),
])
def test_exposure_cascade(u, shown):
    out = play([0.9, 0.7, 0.5, 0.3], u=u)
    np.testing.assert_array_equal(out.exposed, [shown])
    # Cost only where shown; the winner of a hidden slot pays nothing.
    paid = np.where(shown, [0.7, 0.5, 0.3], 0.0)
    np.testing.assert_allclose(out.cost, [paid[0], paid[1], paid[2], 0.0])


@pytest.mark.parametrize("u, shown", [
    ([0.5, 0.9, 0.1], [True, False, False]),   # slot 3's own draw succeeds, but slot 2 is hidden
    ([0.5, 0.1, 0.7], [True, True, False]),    # slot 3's own draw fails
    ([0.99, 0.79, 0.59], [True, True, True]),
])
def test_independent_slot_draws_cascade(u, shown):
    out = play([0.9, 0.7, 0.5, 0.3], u=[u])
    np.testing.assert_array_equal(out.exposed, [shown])


def test_net_slot_exposure_on_a_large_draw():
    # AuctionNet: 1.0 / 0.8 / 0.6 per slot, slot 3 hidden with slot 2: net 1.0 / 0.8 / 0.48.
    n = 400_000
    draws = draw_tick(np.random.default_rng(11), n, 3)
    bids = np.tile([0.9, 0.7, 0.5, 0.3], (n, 1))
    p = np.full((n, 4), 1e-3, np.float32)
    out = step_market(bids, np.full(4, 1e9), p, np.zeros_like(p), np.full(4, -1.0), np.full(4, 1.0),
                      draws, market(4), np.random.default_rng(0))
    rate = out.exposed.mean(axis=0)
    se = np.sqrt(0.48 * 0.52 / n)
    assert rate[0] == 1.0
    assert abs(rate[1] - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n)
    assert abs(rate[2] - 0.48) < 4 * se, rate  # one shared uniform would give 0.6
    np.testing.assert_allclose(market(4).net_exposure_probs, [1.0, 0.8, 0.48])


def test_unsold_slots_are_never_exposed():
    out = play([0.9, 0.7, 0.0, 0.0], u=0.0)
    np.testing.assert_array_equal(out.exposed, [[True, False, False]])


def test_conversion_only_when_exposed():
    # p_value = 1 and convert_u = 0: every shown slot converts, no hidden one does.
    for u in (0.0, 0.7, 0.9):
        out = play([0.9, 0.7, 0.5, 0.3], u=u, p_value=1.0, convert_u=0.0)
        np.testing.assert_array_equal(out.conversion, out.exposed)


def test_no_conversion_at_zero_p_value():
    out = play([0.9, 0.7, 0.5, 0.3], p_value=0.0, convert_u=0.0)
    assert out.exposed.all() and not out.conversion.any()


def test_conversion_threshold_is_the_winners_p_value():
    p = np.array([0.3, 0.6, 0.9, 0.1], np.float32)  # per advertiser
    out = play([0.9, 0.7, 0.5, 0.3], p_value=p, convert_u=[0.31, 0.59, 0.91])
    np.testing.assert_array_equal(out.conversion, [[False, True, False]])


def test_conversion_noise_is_truncated_in_sigmas():
    # True probability p + sigma * z with z in [trunc_low, trunc_high]: here z spans [-1, 1].
    kw = dict(p_value=0.5, sigma=0.1, trunc=(-1.0, 1.0))
    top = play([0.9, 0.7], noise_u=1.0 - 1e-12, convert_u=0.59, **kw)
    bottom = play([0.9, 0.7], noise_u=1e-12, convert_u=0.41, **kw)
    assert top.conversion[0, 0] and not bottom.conversion[0, 0]
    # Zero-width truncation pins z at 0 whatever the uniform.
    for noise_u in (1e-9, 0.5, 1 - 1e-9):
        pinned = play([0.9, 0.7], noise_u=noise_u, convert_u=[0.499, 0.5, 0.5], p_value=0.5, sigma=0.1, trunc=(0.0, 0.0))
        np.testing.assert_array_equal(pinned.conversion, [[True, False, False]])


def test_noise_can_push_the_true_probability_to_zero():
    # p + sigma * z = 0.01 - 0.3 * 2 < 0 is clipped to 0: not even convert_u = 0 converts.
    kw = dict(p_value=0.01, sigma=0.3, trunc=(-2.0, 2.0), convert_u=0.0)
    assert not play([0.9, 0.7], noise_u=1e-12, **kw).conversion.any()
    assert play([0.9, 0.7], noise_u=0.5, **kw).conversion[0, 0]


# --- budget cap ---------------------------------------------------------------------------------

def test_budget_cap_drops_ceil_share_of_won_pvs_and_others_move_up():
    # Advertiser 0 would win slot 1 of all 10 PVs at 5.0 each (cost 50) with 27 left:
    # it loses ceil(10 * (50 - 27) / 50) = 5 PVs, then spends 25 <= 27.
    bids = np.tile([10.0, 5.0, 3.0, 2.0, 1.0], (10, 1))
    out = play(bids, remaining=[27.0, 1e3, 1e3, 1e3, 1e3])
    dropped = out.bids[:, 0] == 0.0
    assert dropped.sum() == math.ceil(10 * (50 - 27) / 50) == 5
    assert out.n_reruns == 1
    assert out.cost[0] == 25.0 and out.cost[0] <= 27.0
    np.testing.assert_array_equal(out.winner[~dropped], [[0, 1, 2]] * 5)
    np.testing.assert_array_equal(out.price[~dropped], [[5.0, 3.0, 2.0]] * 5)
    # Where advertiser 0 was dropped, the others move up one slot and pay the next bid.
    np.testing.assert_array_equal(out.winner[dropped], [[1, 2, 3]] * 5)
    np.testing.assert_array_equal(out.price[dropped], [[3.0, 2.0, 1.0]] * 5)
    np.testing.assert_array_equal(out.least_winning_cost[dropped], 1.0)
    # Only advertiser 0's bids change.
    np.testing.assert_array_equal(out.bids[:, 1:], bids[:, 1:])
    np.testing.assert_allclose(out.cost, [25.0, 5 * 3.0 + 5 * 3.0, 5 * 2.0 + 5 * 2.0, 5 * 1.0, 0.0])


def test_budget_cap_is_random_over_won_pvs_but_reproducible():
    bids = np.tile([10.0, 5.0, 3.0, 2.0, 1.0], (10, 1))
    a = play(bids, remaining=[27.0, 1e3, 1e3, 1e3, 1e3], drop_seed=1)
    b = play(bids, remaining=[27.0, 1e3, 1e3, 1e3, 1e3], drop_seed=1)
    np.testing.assert_array_equal(a.bids, b.bids)
    patterns = {tuple(play(bids, remaining=[27.0, 1e3, 1e3, 1e3, 1e3], drop_seed=s).bids[:, 0] == 0) for s in range(8)}
    assert len(patterns) > 1


def test_budget_cap_only_counts_exposed_cost():
    # Slot 3 of every PV is hidden (u = 0.7): its winner pays nothing and is not capped.
    bids = np.tile([10.0, 5.0, 3.0, 2.0], (4, 1))
    out = play(bids, remaining=[1e3, 1e3, 0.5, 1e3], u=0.7)
    assert out.n_reruns == 0 and out.cost[2] == 0.0
    np.testing.assert_array_equal(out.winner[:, 2], 2)


def test_budget_cap_can_drop_every_won_pv():
    bids = np.tile([10.0, 5.0, 3.0, 2.0], (3, 1))
    out = play(bids, remaining=[0.2, 1e3, 1e3, 1e3])  # one PV costs 5 > 0.2
    np.testing.assert_array_equal(out.bids[:, 0], 0.0)
    assert out.cost[0] == 0.0
    assert not (out.winner == 0).any()


@pytest.mark.parametrize("remaining, bids_zero", [(0.0999, True), (0.05, True), (0.0, True), (0.1, False), (0.2, False)])
def test_remaining_budget_below_minimum_bids_zero(remaining, bids_zero):
    out = play([[0.09, 0.07, 0.05, 0.03]], remaining=[remaining, 1e3, 1e3, 1e3])
    if bids_zero:
        assert out.bids[0, 0] == 0.0
        np.testing.assert_array_equal(out.winner, [[1, 2, -1]])
    else:
        np.testing.assert_array_equal(out.winner, [[0, 1, 2]])
        assert out.cost[0] == pytest.approx(0.07) and out.cost[0] <= remaining


def test_negative_bids_count_as_zero():
    out = play([-1.0, 0.5, 0.3, -0.2, 0.1])
    np.testing.assert_array_equal(out.winner, [[1, 2, -1]])
    np.testing.assert_array_equal(out.price, [[0.3, 0.1, 0.0]])
    np.testing.assert_array_equal(out.bids, [[0.0, 0.5, 0.3, 0.0, 0.1]])
    np.testing.assert_array_equal(out.least_winning_cost, [0.0])


# --- helpers: ranking, per-advertiser view, tick statistics -------------------------------------

def test_rank_bids_orders_with_ties_and_pads_past_the_last_bidder():
    who, value = rank_bids(np.array([[0.2, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]), 4)
    np.testing.assert_array_equal(who, [[1, 2, 0, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(value, [[0.5, 0.5, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_draw_tick_shapes_and_reproducibility():
    a = draw_tick(np.random.default_rng(3), 7, 3)
    b = draw_tick(np.random.default_rng(3), 7, 3)
    assert a.exposure_u.shape == (7, 3) and a.noise_u.shape == (7, 3) and a.convert_u.shape == (7, 3)
    for x, y in zip((a.exposure_u, a.noise_u, a.convert_u), (b.exposure_u, b.noise_u, b.convert_u)):
        np.testing.assert_array_equal(x, y)
        assert ((0 <= x) & (x < 1)).all()


def test_advertiser_view_and_tick_stats_by_hand():
    bids = [[0.9, 0.7, 0.5, 0.3],   # u = 0.7: slots 1-2 shown
            [0.2, 0.8, 0.6, 0.0]]   # u = 0.0: slots 1-2 sold (3 bidders), both shown
    p = np.array([[0.5, 0.25, 0.125, 0.5], [0.5, 1.0, 0.0, 0.5]], np.float32)
    config = market(4)
    out = play(bids, u=[0.7, 0.0], p_value=p, convert_u=0.4)
    np.testing.assert_array_equal(out.winner, [[0, 1, 2], [1, 2, -1]])
    view = advertiser_view(out, 1, config)
    np.testing.assert_array_equal(view["won"], [True, True])
    np.testing.assert_array_equal(view["slot"], [2, 1])
    np.testing.assert_allclose(view["price"], [0.5, 0.6])
    np.testing.assert_allclose(view["cost"], [0.5, 0.6])
    np.testing.assert_array_equal(view["exposed"], [True, True])
    np.testing.assert_array_equal(view["conversion"], [False, True])  # 0.25 < 0.4 < 1.0

    stats = tick_stats(out, p, np.array([5.0, 6.0, 7.0, 8.0]), config)
    assert set(stats) == set(TICK_STAT_FIELDS)
    np.testing.assert_array_equal(stats["n_pv"], 2.0)
    np.testing.assert_array_equal(stats["n_won"], [1, 2, 2, 0])
    np.testing.assert_array_equal(stats["n_exposed"], [1, 2, 1, 0])
    np.testing.assert_array_equal(stats["win_rate"], [0.5, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(stats["conversions"], [1, 1, 0, 0])
    np.testing.assert_array_equal(stats["conversion_rate"], [0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(stats["cost"], [0.7, 1.1, 0.2, 0.0])
    np.testing.assert_allclose(stats["bid_mean"], [0.55, 0.75, 0.55, 0.15])
    np.testing.assert_allclose(stats["p_value_mean"], [0.5, 0.625, 0.0625, 0.5])
    np.testing.assert_allclose(stats["lwc_mean"], 0.15)
    np.testing.assert_allclose(stats["exposed_p_value"], [0.5, 1.25, 0.0, 0.0])
    # Expected values weight every won slot by its net exposure probability (1.0, 0.8, 0.8 x 0.6).
    np.testing.assert_allclose(stats["expected_conversions"], [0.5, 0.8 * 0.25 + 1.0, 0.48 * 0.125 + 0.8 * 0.0, 0.0])
    np.testing.assert_allclose(stats["expected_cost"], [0.7, 0.8 * 0.5 + 0.6, 0.48 * 0.3 + 0.8 * 0.2, 0.0])
    np.testing.assert_array_equal(stats["remaining_budget"], [5.0, 6.0, 7.0, 8.0])
