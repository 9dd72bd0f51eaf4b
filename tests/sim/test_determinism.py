"""Seeds decide everything, and nothing a strategy bids changes the luck of others (paired evaluation)."""

import numpy as np
import pytest

from aigb.sim.market import campaigns_for
from aigb.sim.period import PeriodSim
from aigb.sim.population import PopulationConfig
from aigb.sim.traffic import period_traffic, tick_p_values
from aigb.types import TICK_STAT_FIELDS, MarketConfig

CONFIG = MarketConfig(n_pv=20_000)
SMALL = MarketConfig(n_pv=6_000, n_ticks=12, n_advertisers=10)


def play(config, seed, period=0):
    sim = PeriodSim(config, seed, period)
    return sim, sim.run()


def test_same_seed_gives_bit_identical_history_and_outcomes():
    a, out_a = play(CONFIG, seed=21)
    b, out_b = play(CONFIG, seed=21)
    for f in TICK_STAT_FIELDS:
        np.testing.assert_array_equal(a.history[f], b.history[f], err_msg=f)
    assert out_a.keys() == out_b.keys()
    for k in out_a:
        np.testing.assert_array_equal(out_a[k], out_b[k], err_msg=k)
    assert out_a["conversions"].sum() > 0  # the comparison is not of empty periods


def test_different_seeds_and_periods_differ():
    a, _ = play(SMALL, seed=1)
    b, _ = play(SMALL, seed=2)
    c, _ = play(SMALL, seed=1, period=1)
    assert not np.array_equal(a.history["p_value_mean"], b.history["p_value_mean"])
    assert not np.array_equal(a.history["cost"], b.history["cost"])
    assert not np.array_equal(a.history["p_value_mean"], c.history["p_value_mean"])


def test_tick_traffic_does_not_depend_on_generation_order():
    campaigns = campaigns_for(SMALL)
    forward = period_traffic(SMALL, campaigns, seed=8, period=3)
    backward = period_traffic(SMALL, campaigns, seed=8, period=3)
    ticks = range(SMALL.n_ticks)
    first = {t: tick_p_values(forward, 8, 3, t) for t in ticks}
    second = {t: tick_p_values(backward, 8, 3, t) for t in reversed(ticks)}
    for t in ticks:
        np.testing.assert_array_equal(first[t][0], second[t][0])
        np.testing.assert_array_equal(first[t][1], second[t][1])
    # Ticks are distinct draws, not one stream replayed.
    assert not np.array_equal(first[0][0][:5], first[1][0][:5])


def test_period_traffic_does_not_depend_on_other_periods():
    campaigns = campaigns_for(SMALL)
    alone = period_traffic(SMALL, campaigns, seed=8, period=5)
    for p in range(5):
        period_traffic(SMALL, campaigns, seed=8, period=p)
    again = period_traffic(SMALL, campaigns, seed=8, period=5)
    for name in ("n_pv", "mean", "spread", "sigma_scale", "trunc_low", "trunc_high"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(again, name))


def test_simulated_ticks_equal_independently_generated_ticks():
    sim = PeriodSim(SMALL, seed=4, period=2)
    while not sim.done:
        t = sim.tick
        p, s = tick_p_values(sim.traffic, 4, 2, t)
        record = sim.step()
        np.testing.assert_array_equal(record.p_value, p)
        np.testing.assert_array_equal(record.p_value_sigma, s)


@pytest.mark.parametrize("controlled", [3, 7])
def test_a_controlled_advertiser_does_not_change_traffic_or_others_luck(controlled):
    # Two runs of one seed: the controlled advertiser bids nothing in one, aggressively in the other.
    config = MarketConfig(n_pv=8_000, n_ticks=16, n_advertisers=12)
    mix = PopulationConfig(roster=("fixed", "pid", "lp", "feedback"))
    timid = PeriodSim(config, seed=6, period=1, population=mix)
    bold = PeriodSim(config, seed=6, period=1, population=mix)
    fixed = (timid.bidders.kind == 0)  # fixed-rate bidders' alphas depend on the noise draws only
    fixed[controlled] = False
    assert fixed.any()
    same_luck = 0
    while not timid.done:
        p, _ = timid.tick_inputs()
        a = timid.step({controlled: np.zeros(p.shape[0])})
        b = bold.step({controlled: 500.0 * p[:, controlled].astype(np.float64)})
        np.testing.assert_array_equal(a.p_value, b.p_value)
        np.testing.assert_array_equal(a.p_value_sigma, b.p_value_sigma)
        np.testing.assert_array_equal(a.alpha[fixed], b.alpha[fixed])
        assert np.isnan(a.alpha[controlled]) and np.isnan(b.alpha[controlled])
        # Where the same advertisers hold the same slots, exposure and conversion are identical:
        # the (PV, slot) draws do not depend on what was bid.
        rows = (a.outcome.winner == b.outcome.winner).all(axis=1)
        np.testing.assert_array_equal(a.outcome.exposed[rows], b.outcome.exposed[rows])
        np.testing.assert_array_equal(a.outcome.conversion[rows], b.outcome.conversion[rows])
        same_luck += int(rows.sum())
    assert same_luck > 0
    # The aggressive bidder did change the market (otherwise the test would compare equal runs).
    assert bold.history["cost"][:, controlled].sum() > 0
    assert timid.history["cost"][:, controlled].sum() == 0


def test_population_draw_is_seeded():
    a = PeriodSim(SMALL, seed=3, period=0).bidders
    b = PeriodSim(SMALL, seed=3, period=0).bidders
    c = PeriodSim(SMALL, seed=3, period=1).bidders
    np.testing.assert_array_equal(a.kind, b.kind)
    np.testing.assert_array_equal(a.rate, b.rate)
    np.testing.assert_array_equal(a.noise, b.noise)
    assert not np.array_equal(a.rate, c.rate)


def test_no_global_random_state_is_used():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    _, out_a = play(SMALL, seed=9)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.random.seed(12345)
    _, out_b = play(SMALL, seed=9)
    np.testing.assert_array_equal(out_a["spend"], out_b["spend"])
