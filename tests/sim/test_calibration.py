"""Calibration statistics against values worked out by hand on a small synthetic period."""

from __future__ import annotations

import numpy as np
import pytest

from aigb.sim.calibration import STATISTICS, TickTable, period_statistics, simulated_table, summarise, weighted_quantile
from aigb.types import MarketConfig

T = 48


def _table() -> TickTable:
    # Advertiser 0 is the player (alpha 10 C, left out of competitor statistics); 1 bids 2.5 C in
    # ticks 0-7 then 1 C and spends 20 a tick in ticks 8-15; 2 bids 0.5 C and spends 50 a tick
    # until its budget of 2,000 is gone before tick 40.
    cpa = np.array([100.0, 50.0, 100.0])
    budget = np.array([1000.0, 1000.0, 2000.0])
    rel = np.ones((3, T))
    rel[0] = 10.0
    rel[1, :8] = 2.5
    rel[2] = 0.5
    cost = np.zeros((3, T))
    cost[0] = 10.0
    cost[1, 8:16] = 20.0
    cost[2, :40] = 50.0
    remaining = budget[:, None] - np.concatenate([np.zeros((3, 1)), np.cumsum(cost, axis=1)[:, :-1]], axis=1)
    conversions = np.zeros((3, T))
    conversions[0, :4] = 1.0   # 4 conversions for 480: CPA 120 > 100
    conversions[2, :25] = 1.0  # 25 for 2,000: CPA 80 < 100; advertiser 1 spends 160 for none
    p_value = np.full((3, T), 5e-4)
    p_value[2] = 1e-3
    n_pv = np.full(T, 1000.0)
    n_pv[:8] = 500.0
    lwc = np.full(T, 0.1)
    lwc[:8] = 0.2
    lwc[-1] = np.nan  # unknown, as in an rlData file
    return TickTable(budget, cpa, ("rl", "pid", "rl"), np.array([True, False, False]), rel * cpa[:, None],
                     remaining, cost, conversions, p_value, n_pv, lwc)


def test_statistics_of_a_small_period_match_the_hand_computed_values():
    s = period_statistics(_table())
    # Live competitor decisions: 40 x 0.5 (advertiser 2 until tick 39), 40 x 1.0 and 8 x 2.5 (advertiser 1).
    assert s["mult_p5"] == pytest.approx(0.5)
    assert s["mult_p25"] == pytest.approx(0.5)
    assert s["mult_median"] == pytest.approx(1.0)
    assert s["mult_median_w0"] == pytest.approx(1.5)  # 8 x 2.5 and 8 x 0.5
    assert s["mult_median_w5"] == pytest.approx(1.0)  # advertiser 1 alone
    assert s["mult_median_pid"] == pytest.approx(1.0)
    assert s["mult_median_rl"] == pytest.approx(0.5)  # the player is no competitor
    assert np.isnan(s["mult_median_lp"])
    assert s["share_above_2cpa"] == pytest.approx(8 / 88)
    assert s["share_above_2cpa_t0_7"] == pytest.approx(0.5)
    assert s["share_bidders_above_2cpa"] == pytest.approx(0.5)
    assert s["lwc_mean"] == pytest.approx((8 * 500 * 0.2 + 39 * 1000 * 0.1) / 43000)
    assert s["lwc_p90"] == pytest.approx(0.1)  # the expensive ticks hold 9.3 % of the PVs
    assert s["budget_use_mean"] == pytest.approx((0.48 + 0.16 + 1.0) / 3)
    assert s["budget_use_p25"] == pytest.approx(0.32)
    assert s["total_spend"] == pytest.approx(2640.0)
    assert s["spend_share_t8_15"] == pytest.approx(640 / 2640)
    assert s["spend_share_t32_39"] == pytest.approx(480 / 2640)
    assert s["share_above_target_cpa"] == pytest.approx(2 / 3)
    assert s["n_pv"] == 44000 and s["conversions"] == 29
    assert s["p_value_mean"] == pytest.approx(2e-3 / 3)
    assert set(s) == set(STATISTICS)


def test_weighted_quantile_by_hand():
    assert weighted_quantile([3.0, 1.0, 2.0], [2.0, 1.0, 1.0], 0.5) == 2.0   # cumulative weights 1, 2, 4
    assert weighted_quantile([3.0, 1.0, 2.0], [2.0, 1.0, 1.0], 0.51) == 3.0
    assert weighted_quantile([1.0, np.nan], [1.0, 5.0], 0.9) == 1.0


def test_summary_band_is_two_standard_deviations_with_a_floor():
    periods = [{k: 1.0 for k in STATISTICS} for _ in range(3)]
    for p, v in zip(periods, (1.0, 2.0, 3.0)):
        p["total_spend"] = v
    s = summarise(periods)
    assert (s["total_spend"]["low"], s["total_spend"]["high"]) == pytest.approx((0.0, 4.0))
    assert (s["n_pv"]["low"], s["n_pv"]["high"]) == pytest.approx((0.99, 1.01))


def test_a_simulated_period_tabulates_the_population():
    config = MarketConfig(n_pv=4000, n_ticks=48, n_advertisers=16)
    t = simulated_table(config, 0, 0)
    assert t.alpha.shape == (16, 48) and np.isfinite(t.alpha).all()
    assert t.n_pv.sum() == 4000 and not t.player.any()
    assert set(t.kind) <= {"pid", "lp", "rl"}
    s = period_statistics(t)
    assert 0 < s["budget_use_mean"] <= 1 and s["total_spend"] == pytest.approx(t.cost.sum())
