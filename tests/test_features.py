"""THE feature builder: online == offline parity, the fixed "last 3" window, the version check."""

import numpy as np
import pytest

from aigb.features import (
    CPA_RATIO_CAP,
    FEATURE_DIM,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FeatureVersionError,
    build_features,
    check_feature_version,
    trajectory_features,
)
from aigb.sim.env import BiddingEnv
from aigb.types import N_CATEGORIES, TICK_STAT_FIELDS, MarketConfig

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
PARITY_CONFIG = MarketConfig(n_pv=20_000)


@pytest.fixture(scope="module")
def played():
    """A period played through BiddingEnv: the features seen online and the final own history."""
    advertiser = 5
    env = BiddingEnv(PARITY_CONFIG, advertiser=advertiser, seed=13)
    obs, _ = env.reset()
    online = []
    while True:
        online.append(obs.features)
        # A pacing-like bid that varies over the day, so the window features move.
        obs, _, terminated, _, _ = env.step(obs.p_value * obs.campaign.target_cpa * (1.0 + (obs.tick % 5) / 2))
        if terminated:
            break
    history = {f: v[:, advertiser] for f, v in env.sim.history.items()}
    c = env.campaign
    offline = trajectory_features(history, c.budget, c.target_cpa, c.category)
    return np.stack(online), offline, history


def test_offline_trajectory_has_one_state_per_tick(played):
    online, offline, _ = played
    assert online.shape == offline.shape == (PARITY_CONFIG.n_ticks, FEATURE_DIM)
    assert offline.dtype == np.float32


def test_online_features_equal_offline_except_the_current_p_value_mean(played):
    online, offline, history = played
    assert history["conversions"].sum() > 0 and history["cost"].sum() > 0
    keep = [i for i, n in enumerate(FEATURE_NAMES) if n != "cur_p_value_mean"]
    np.testing.assert_array_equal(online[:, keep], offline[:, keep])
    np.testing.assert_allclose(online[:, COL["cur_p_value_mean"]], offline[:, COL["cur_p_value_mean"]], rtol=1e-6)


def test_online_features_equal_offline_exactly(played):
    online, offline, _ = played
    np.testing.assert_array_equal(online, offline)


def synthetic_history(t, n_adv=None):
    """Own statistics of ``t`` ticks whose values identify the tick: field value = 10 * tick + k."""
    shape = (t,) if n_adv is None else (n_adv, t)
    ticks = np.broadcast_to(np.arange(t, dtype=np.float64), shape)
    return {f: 10.0 * ticks + k for k, f in enumerate(TICK_STAT_FIELDS)}


def test_last_3_window_is_the_three_ticks_before_the_current_one():
    n_ticks, t = 48, 20
    history = synthetic_history(t)
    x = build_features(history, n_ticks, 100, 0.5, 1000.0, 50.0, 2)
    k = {f: i for i, f in enumerate(TICK_STAT_FIELDS)}
    for name, field in [("last3_bid_mean", "bid_mean"), ("last3_lwc_mean", "lwc_mean"),
                        ("last3_p_value_mean", "p_value_mean"), ("last3_conversion_rate", "conversion_rate"),
                        ("last3_win_rate", "win_rate"), ("last3_n_pv", "n_pv")]:
        expected = 10.0 * np.mean([17, 18, 19]) + k[field]  # ticks t-3, t-2, t-1; not 0, 1, 2
        assert x[COL[name]] == pytest.approx(expected), name
        assert x[COL[name]] != pytest.approx(10.0 * np.mean([0, 1, 2]) + k[field]), f"{name}: the first 3 ticks"
    assert x[COL["hist_bid_mean"]] == pytest.approx(10.0 * np.mean(np.arange(t)) + k["bid_mean"])
    assert x[COL["hist_n_pv"]] == pytest.approx(np.sum(10.0 * np.arange(t) + k["n_pv"]))


def test_last_3_window_early_in_the_day():
    k = {f: i for i, f in enumerate(TICK_STAT_FIELDS)}
    one = build_features(synthetic_history(1), 48, 100, 0.5, 1000.0, 50.0, 0)
    assert one[COL["last3_bid_mean"]] == pytest.approx(k["bid_mean"])  # only tick 0
    two = build_features(synthetic_history(2), 48, 100, 0.5, 1000.0, 50.0, 0)
    assert two[COL["last3_bid_mean"]] == pytest.approx(5.0 + k["bid_mean"])  # ticks 0 and 1


def test_first_tick_state():
    history = {f: np.zeros(0) for f in TICK_STAT_FIELDS}
    x = build_features(history, 48, 1234, 7e-4, 2000.0, 80.0, 3)
    assert x.shape == (FEATURE_DIM,) and x.dtype == np.float32
    assert x[COL["time_left"]] == 1.0 and x[COL["budget_left"]] == 1.0
    for name in ("hist_bid_mean", "last3_win_rate", "last3_n_pv", "hist_n_pv", "spend", "conversions", "realized_cpa"):
        assert x[COL[name]] == 0.0, name
    assert x[COL["cpa_ratio"]] == 1.0
    assert x[COL["cur_n_pv"]] == 1234.0 and x[COL["cur_p_value_mean"]] == pytest.approx(7e-4)
    assert (x[COL["budget"]], x[COL["target_cpa"]]) == (2000.0, 80.0)
    onehot = x[COL["category_0"]:]
    np.testing.assert_array_equal(onehot, np.eye(N_CATEGORIES)[3])


def test_spend_and_cpa_features():
    history = {f: np.zeros(4) for f in TICK_STAT_FIELDS}
    history["cost"] = np.array([10.0, 20.0, 0.0, 30.0])
    history["conversions"] = np.array([0.0, 1.0, 0.0, 0.0])
    x = build_features(history, 8, 0, 0.0, 240.0, 40.0, 0)
    assert x[COL["time_left"]] == 0.5
    assert x[COL["budget_left"]] == pytest.approx(0.75)
    assert x[COL["spend"]] == 60.0 and x[COL["conversions"]] == 1.0
    assert x[COL["realized_cpa"]] == 60.0 and x[COL["cpa_ratio"]] == pytest.approx(1.5)
    # Spend without conversions counts as the worst ratio.
    history["conversions"] = np.zeros(4)
    y = build_features(history, 8, 0, 0.0, 240.0, 40.0, 0)
    assert y[COL["cpa_ratio"]] == CPA_RATIO_CAP and y[COL["realized_cpa"]] == 0.0
    # A ratio beyond the cap is capped.
    history["conversions"] = np.array([0.0, 0.0, 0.0, 0.1])
    z = build_features(history, 8, 0, 0.0, 240.0, 40.0, 0)
    assert z[COL["cpa_ratio"]] == CPA_RATIO_CAP


def test_batched_features_equal_per_advertiser_features():
    n_adv, t = 5, 9
    history = synthetic_history(t, n_adv)
    history["cost"] = history["cost"] * np.arange(1, n_adv + 1)[:, None]
    budget = np.linspace(1000, 3000, n_adv)
    cpa = np.linspace(50, 90, n_adv)
    category = np.arange(n_adv) % N_CATEGORIES
    cur_n, cur_p = np.arange(n_adv) + 100.0, np.linspace(1e-4, 5e-4, n_adv)
    batched = build_features(history, 48, cur_n, cur_p, budget, cpa, category)
    assert batched.shape == (n_adv, FEATURE_DIM)
    for a in range(n_adv):
        single = build_features({f: v[a] for f, v in history.items()}, 48, cur_n[a], cur_p[a], budget[a], cpa[a], category[a])
        np.testing.assert_array_equal(batched[a], single)


def test_trajectory_features_row_t_is_the_state_before_tick_t():
    n_ticks = 6
    history = synthetic_history(n_ticks)
    states = trajectory_features(history, 500.0, 20.0, 1)
    assert states.shape == (n_ticks, FEATURE_DIM)
    for t in range(n_ticks):
        expected = build_features({f: v[:t] for f, v in history.items()}, n_ticks, history["n_pv"][t],
                                  history["p_value_mean"][t], 500.0, 20.0, 1)
        np.testing.assert_array_equal(states[t], expected)
    batched = trajectory_features(synthetic_history(n_ticks, 3), np.full(3, 500.0), np.full(3, 20.0), np.ones(3, int))
    assert batched.shape == (3, n_ticks, FEATURE_DIM)
    np.testing.assert_array_equal(batched[1], states)


def test_feature_names_are_unique():
    assert len(set(FEATURE_NAMES)) == FEATURE_DIM


def test_feature_version_check():
    check_feature_version(FEATURE_VERSION, "dataset x")  # the current version passes
    with pytest.raises(FeatureVersionError, match=r"dataset x.*'v0'"):
        check_feature_version("v0", "dataset x")
    with pytest.raises(ValueError):  # FeatureVersionError is a ValueError for generic handlers
        check_feature_version("", "checkpoint")
