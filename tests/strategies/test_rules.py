import math

import numpy as np
import pytest

from aigb.sim.env import BiddingEnv, Observation
from aigb.sim.population import LOG_RATIO_RANGE, N_RATIO_BINS
from aigb.strategies.rules import (ALPHA_BOUNDS, PRIOR_PERIODS, FixedRate, LPPrior, OnlineLP, PIDPacing,
                                   default_lp_prior, fit_lp_prior)
from aigb.types import TICK_STAT_FIELDS, Campaign, ConfigError, MarketConfig

MARKET = MarketConfig(n_pv=3000, n_ticks=12, n_advertisers=12)
CAMPAIGN = Campaign(advertiser=0, category=0, budget=1000.0, target_cpa=50.0)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path / "cache"))


def _obs(tick, spent=0.0, conversions=0.0, n_ticks=12, campaign=CAMPAIGN, pv_history=None):
    history = {f: np.zeros(tick) for f in TICK_STAT_FIELDS}
    if tick:
        history["cost"][-1] = spent
        history["conversions"][-1] = conversions
    p = np.full(4, 1e-3, dtype=np.float32)
    return Observation(tick, n_ticks, campaign, campaign.budget - spent, p, p * 0.1, history,
                       np.zeros(1, np.float32), pv_history)


def test_fixed_rate_bids_rate_times_cpa_times_p_value():
    s = FixedRate(0.8)
    env = BiddingEnv(MARKET, 3, seed=1)
    obs, _ = env.reset(period=0)
    s.reset(obs.campaign, MARKET.n_ticks, seed=0)
    done = False
    while not done:
        bids = s.bid(obs)
        np.testing.assert_allclose(bids, 0.8 * obs.campaign.target_cpa * obs.p_value.astype(np.float64), rtol=1e-12)
        obs, _, done, _, _ = env.step(bids)


def test_pid_raises_alpha_when_underspending_and_lowers_it_when_overspending():
    under, over = PIDPacing(gain=1.0), PIDPacing(gain=1.0)
    for s in (under, over):
        s.reset(CAMPAIGN, 12, seed=0)
        assert s.alpha(_obs(0)) == pytest.approx(CAMPAIGN.target_cpa)
    # After the first tick the plan expects a small share of the budget; nothing spent vs half of it.
    assert under.alpha(_obs(1, spent=0.0)) > CAMPAIGN.target_cpa
    assert over.alpha(_obs(1, spent=500.0, conversions=100.0)) < CAMPAIGN.target_cpa


def test_pid_cpa_guard_lowers_alpha_when_realised_cpa_is_above_target():
    on_target, expensive = PIDPacing(gain=0.0), PIDPacing(gain=0.0)
    for s in (on_target, expensive):
        s.reset(CAMPAIGN, 12, seed=0)
        s.alpha(_obs(0))
    a_ok = on_target.alpha(_obs(1, spent=100.0, conversions=2.0))   # CPA 50 = target
    a_bad = expensive.alpha(_obs(1, spent=100.0, conversions=1.0))  # CPA 100 = 2x target
    assert a_ok == pytest.approx(CAMPAIGN.target_cpa)
    assert a_bad == pytest.approx(0.5 * CAMPAIGN.target_cpa)


@pytest.mark.parametrize("kwargs, field", [({"rate": -1.0}, "rate"), ({"rate": math.nan}, "rate"), ({"rate": 100.0}, "rate")])
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FixedRate(**kwargs)
    with pytest.raises(ConfigError, match="gain"):
        PIDPacing(gain=-2.0)


def test_onlinelp_needs_pv_history_and_respects_its_cap():
    s = OnlineLP(None, cap=1.2)
    s.reset(CAMPAIGN, 12, seed=0)
    s.alpha(_obs(0, pv_history=[]))
    with pytest.raises(RuntimeError, match="pv_history"):
        s.alpha(_obs(1))
    env = BiddingEnv(MARKET, 2, seed=0, keep_pv_history=True)
    obs, _ = env.reset(period=0)
    s.reset(obs.campaign, MARKET.n_ticks, seed=0)
    done = False
    while not done:
        alpha = s.alpha(obs)
        assert ALPHA_BOUNDS[0] * obs.campaign.target_cpa - 1e-9 <= alpha <= 1.2 * obs.campaign.target_cpa + 1e-9
        obs, _, done, _, _ = env.step(alpha * obs.p_value.astype(np.float64))


def _flat_prior(cost_per_pv: float) -> LPPrior:
    per_pv = np.zeros((1, N_RATIO_BINS, 2))
    per_pv[0, :, 0] = 1.0 / N_RATIO_BINS
    per_pv[0, :, 1] = cost_per_pv / N_RATIO_BINS
    return LPPrior(per_pv, np.array([CAMPAIGN.target_cpa]), np.array([0]), {"format": 1})


def test_onlinelp_prior_steers_the_early_threshold():
    # A prior of cheap traffic lets the budget cover every bin: alpha reaches the cap. A prior of
    # dear traffic (the whole day's forecast cost far above the budget) keeps alpha low.
    cheap, dear = OnlineLP(_flat_prior(1e-6), n_pv=1000), OnlineLP(_flat_prior(100.0), n_pv=1000)
    alphas = []
    for s in (cheap, dear):
        s.reset(CAMPAIGN, 12, seed=0)
        s.alpha(_obs(0, pv_history=[]))
        past = {"p_value": np.full(10, 1e-3, np.float32), "least_winning_cost": np.full(10, 1e-3)}
        alphas.append(s.alpha(_obs(1, pv_history=[past])))
    assert alphas[0] == pytest.approx(1.5 * CAMPAIGN.target_cpa)
    assert alphas[1] < 0.2 * CAMPAIGN.target_cpa


def test_prior_fit_save_load_round_trip_and_cpa_shift(tmp_path):
    prior = fit_lp_prior(MARKET, periods=2)
    assert prior.per_pv.shape == (MARKET.n_advertisers, N_RATIO_BINS, 2)
    assert prior.metadata["periods"] == 2 and prior.metadata["market"]["n_pv"] == MARKET.n_pv
    # Each PV lands in at most one bin (those with p_value 0 or no 4th bid in none): per PV of the
    # period the counts sum to a little under 1.
    counts = prior.per_pv[:, :, 0].sum(axis=1)
    assert np.all(counts <= 1.0 + 1e-9) and np.all(counts > 0.8)
    loaded = LPPrior.load(prior.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(loaded.per_pv, prior.per_pv)
    assert loaded.metadata == prior.metadata
    same = prior.for_campaign(Campaign(0, int(prior.category[0]), 1000.0, float(prior.target_cpa[0])), 100)
    np.testing.assert_allclose(same, prior.per_pv[0] * 100)
    # Doubling C halves every ratio: the mass moves down by log(2) / bin width bins.
    width = (LOG_RATIO_RANGE[1] - LOG_RATIO_RANGE[0]) / N_RATIO_BINS
    shifted = prior.for_campaign(Campaign(0, 0, 1000.0, 2 * float(prior.target_cpa[0])), 100)
    k = round(math.log(2) / width)
    np.testing.assert_allclose(shifted[1:N_RATIO_BINS - k], same[k + 1:])
    np.testing.assert_allclose(shifted.sum(axis=0), same.sum(axis=0))


def test_prior_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no OnlineLP prior file"):
        LPPrior.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ConfigError, match="not an OnlineLP prior"):
        LPPrior.load(bad)


def test_default_prior_is_fitted_once_into_the_cache_dir(tmp_path):
    small = MarketConfig(n_pv=600, n_ticks=6, n_advertisers=6)
    prior, path = default_lp_prior(small)
    assert path.parent == tmp_path / "cache" and path.is_file()
    assert prior.metadata["periods"] == PRIOR_PERIODS
    mtime = path.stat().st_mtime_ns
    again, path2 = default_lp_prior(small)
    assert path2 == path and path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.per_pv, prior.per_pv)


def test_prior_training_periods_are_disjoint_from_evaluation_periods():
    from aigb.eval.evaluate import EVAL_FIRST_PERIOD

    assert PRIOR_PERIODS <= EVAL_FIRST_PERIOD
