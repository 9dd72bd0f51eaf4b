"""Properties of one market tick that hold for any bids, budgets and draws (hypothesis).

Inputs are small (up to 40 PVs x 8 advertisers) and mix continuous bids with a few repeated values
(ties, the reserve, just below it, negatives) so that the edge cases of the rules come up often.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aigb.sim.auction import TickDraws, step_market, tick_stats
from aigb.sim.reference import reference_step
from aigb.types import MarketConfig

CONFIGS = (
    MarketConfig(n_pv=1, n_ticks=1, n_advertisers=1),
    MarketConfig(n_pv=1, n_ticks=1, n_advertisers=1, reserve_price=0.05, min_remaining_budget=0.0),
    MarketConfig(n_pv=1, n_ticks=1, n_advertisers=1, n_slots=2, exposure_probs=(1.0, 0.5)),
)

BID = st.one_of(
    st.sampled_from([0.0, 1e-4, 5e-5, 0.05, 0.25, 0.5, -0.5]),
    st.floats(-1.0, 3.0, allow_nan=False, allow_infinity=False),
)
UNIT = st.floats(0.0, 1.0, exclude_max=True)


@st.composite
def ticks(draw):
    config = draw(st.sampled_from(CONFIGS))
    n_pv = draw(st.integers(1, 40))
    n_adv = draw(st.integers(1, 8))
    n_slots = config.n_slots
    bids = draw(arrays(np.float64, (n_pv, n_adv), elements=BID))
    remaining = draw(arrays(np.float64, n_adv, elements=st.one_of(
        st.sampled_from([0.0, 0.05, 0.1, 0.5]), st.floats(0.0, 6.0))))
    p_value = draw(arrays(np.float32, (n_pv, n_adv), elements=st.floats(0.0, 1.0, width=32)))
    ratio = draw(arrays(np.float32, (n_pv, n_adv), elements=st.floats(0.0, 0.25, width=32)))
    draws = TickDraws(
        exposure_u=draw(arrays(np.float64, (n_pv, n_slots), elements=UNIT)),
        noise_u=draw(arrays(np.float64, (n_pv, n_slots), elements=st.floats(1e-9, 1.0 - 1e-9))),
        convert_u=draw(arrays(np.float64, (n_pv, n_slots), elements=UNIT)),
    )
    low = draw(arrays(np.float64, n_adv, elements=st.floats(-2.0, 0.0)))
    high = draw(arrays(np.float64, n_adv, elements=st.floats(0.0, 2.0)))
    drop_seed = draw(st.integers(0, 2**32 - 1))
    return dict(bids=bids, remaining_budget=remaining, p_value=p_value, p_value_sigma=ratio * p_value,
                trunc_low=low, trunc_high=high, draws=draws, config=config), drop_seed


def run(case, drop_seed):
    return step_market(**case, drop_rng=np.random.default_rng(drop_seed))


def sold_cells(out):
    pv, slot = np.nonzero(out.winner >= 0)
    return pv, slot, out.winner[pv, slot]


@given(ticks())
def test_no_advertiser_spends_more_than_its_remaining_budget(t):
    case, seed = t
    out = run(case, seed)
    assert (out.cost <= case["remaining_budget"]).all()
    assert (out.cost >= 0).all()
    broke = case["remaining_budget"] < case["config"].min_remaining_budget
    np.testing.assert_array_equal(out.bids[:, broke], 0.0)
    assert not np.isin(out.winner, np.flatnonzero(broke)).any()


@given(ticks())
def test_cost_is_the_sum_of_exposed_prices(t):
    case, seed = t
    out = run(case, seed)
    n_adv = case["bids"].shape[1]
    expected = np.zeros(n_adv)
    pv, slot, who = sold_cells(out)
    np.add.at(expected, who, np.where(out.exposed[pv, slot], out.price[pv, slot], 0.0))
    np.testing.assert_allclose(out.cost, expected, rtol=1e-12, atol=1e-15)


@given(ticks())
def test_prices_respect_bids_and_the_reserve(t):
    case, seed = t
    out = run(case, seed)
    pv, slot, who = sold_cells(out)
    own_bid = out.bids[pv, who]
    assert (out.price[pv, slot] <= own_bid).all()                                  # cost <= own bid
    assert (out.price[pv, slot] <= np.maximum(case["bids"][pv, who], 0)).all()    # ... as submitted
    assert (out.price[pv, slot] > case["config"].reserve_price).all()             # strictly above
    np.testing.assert_array_equal(out.price[out.winner < 0], 0.0)


@given(ticks())
def test_price_is_the_next_highest_effective_bid(t):
    case, seed = t
    out = run(case, seed)
    ranked = -np.sort(-out.bids, axis=1)  # (n_pv, n_adv) effective bids, descending
    n_pv, n_adv = ranked.shape
    padded = np.concatenate([ranked, np.zeros((n_pv, out.winner.shape[1] + 1))], axis=1)
    pv, slot, _ = sold_cells(out)
    np.testing.assert_array_equal(out.price[pv, slot], padded[pv, slot + 1])
    np.testing.assert_array_equal(out.least_winning_cost, padded[:, out.winner.shape[1]])


@given(ticks())
def test_winners_are_distinct_ranked_and_fill_slots_from_the_top(t):
    case, seed = t
    out = run(case, seed)
    n_slots = case["config"].n_slots
    assert out.winner.shape == (case["bids"].shape[0], n_slots)
    for row, bids in zip(out.winner, out.bids):
        sold = row[row >= 0]
        assert len(set(sold.tolist())) == sold.size           # distinct
        assert (row[: sold.size] >= 0).all()                   # sold slots form a prefix
        b = bids[sold]
        assert (b[:-1] >= b[1:]).all()                          # non-increasing bids in slot order
        # Nobody outside the winners outbids the last winner (ties to the lower index).
        if sold.size:
            others = np.setdiff1d(np.arange(bids.size), sold)
            last = sold[-1]
            assert not ((bids[others] > bids[last]) | ((bids[others] == bids[last]) & (others < last))).any()


@given(ticks())
def test_exposure_and_conversion_follow_allocation(t):
    case, seed = t
    out = run(case, seed)
    e = np.asarray(case["config"].exposure_probs)
    assert not (out.exposed & (out.winner < 0)).any()           # exposed implies won
    assert not (out.conversion & ~out.exposed).any()            # conversion implies exposed
    assert not (out.exposed[:, 1:] & ~out.exposed[:, :-1]).any()  # cascade
    u = case["draws"].exposure_u
    # Slot k is shown iff it is sold and every draw of slots 1..k succeeded (loop, not the code's accumulate).
    expected = np.array([[out.winner[i, k] >= 0 and all(u[i, j] < e[j] for j in range(k + 1))
                          for k in range(e.size)] for i in range(u.shape[0])], dtype=bool).reshape(out.exposed.shape)
    np.testing.assert_array_equal(out.exposed, expected)


@given(ticks())
def test_budget_cap_only_zeroes_bids(t):
    case, seed = t
    out = run(case, seed)
    submitted = np.maximum(case["bids"], 0.0)
    changed = out.bids != submitted
    np.testing.assert_array_equal(out.bids[changed], 0.0)
    if out.n_reruns == 0:
        broke = case["remaining_budget"] < case["config"].min_remaining_budget
        np.testing.assert_array_equal(changed, np.broadcast_to(broke & (submitted > 0), changed.shape))


@given(ticks())
def test_tick_stats_are_consistent(t):
    case, seed = t
    out = run(case, seed)
    stats = tick_stats(out, case["p_value"], case["remaining_budget"], case["config"])
    assert (stats["n_exposed"] <= stats["n_won"]).all()
    assert (stats["conversions"] <= stats["n_exposed"]).all()
    assert (stats["n_won"] <= case["bids"].shape[0]).all()
    np.testing.assert_array_equal(stats["cost"], out.cost)
    assert stats["n_won"].sum() == (out.winner >= 0).sum()
    assert (stats["expected_cost"] >= 0).all() and (stats["expected_conversions"] >= 0).all()


@given(ticks())
def test_fast_tick_equals_reference(t):
    case, seed = t
    fast = run(case, seed)
    winner, price, exposed, conversion, lwc, cost, final_bids = reference_step(
        **case, drop_rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(fast.winner, winner)
    np.testing.assert_array_equal(fast.price, price)
    np.testing.assert_array_equal(fast.exposed, exposed)
    np.testing.assert_array_equal(fast.conversion, conversion)
    np.testing.assert_array_equal(fast.least_winning_cost, lwc)
    np.testing.assert_allclose(fast.cost, cost, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(fast.bids, final_bids)
