"""Market statistics of a reduced period, advertiser presets and configuration errors (DESIGN.md §2)."""

import json
from pathlib import Path

import numpy as np
import pytest

import aigb.sim
from aigb.sim.market import SPARSE_RANGES, campaigns_for
from aigb.sim.period import PeriodSim, campaign_outcomes
from aigb.sim.population import KINDS, PopulationConfig, RuleBidders
from aigb.sim.traffic import day_profile, period_traffic, tick_p_values
from aigb.types import N_CATEGORIES, TICK_STAT_FIELDS, Campaign, ConfigError, MarketConfig

REDUCED = MarketConfig(n_pv=50_000)
REFERENCE_FILE = Path(aigb.sim.__file__).parent / "market_reference.json"


@pytest.fixture(scope="module")
def period():
    """One reduced sparse period's traffic: constants and every tick's predictions."""
    campaigns = campaigns_for(REDUCED, seed=11, period=0)
    traffic = period_traffic(REDUCED, campaigns, seed=11, period=0)
    ticks = [tick_p_values(traffic, 11, 0, t) for t in range(REDUCED.n_ticks)]
    return traffic, ticks


# --- traffic volume -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_pv, n_ticks", [(50_000, 48), (50_001, 48), (12_345, 24), (7, 48), (1, 1), (999, 5)])
def test_pv_counts_sum_exactly_to_n_pv(n_pv, n_ticks):
    config = MarketConfig(n_pv=n_pv, n_ticks=n_ticks, n_advertisers=6)
    traffic = period_traffic(config, campaigns_for(config), seed=3, period=2)
    assert traffic.n_pv.shape == (n_ticks,)
    assert traffic.n_pv.sum() == n_pv
    assert (traffic.n_pv >= 0).all()
    np.testing.assert_array_equal(traffic.offsets, np.concatenate([[0], np.cumsum(traffic.n_pv)]))


def test_generated_ticks_have_the_announced_sizes(period):
    traffic, ticks = period
    for t, (p, s) in enumerate(ticks):
        assert p.shape == s.shape == (traffic.n_pv[t], REDUCED.n_advertisers)
        assert p.dtype == s.dtype == np.float32


def test_day_profile_matches_the_reference_shares():
    share = np.asarray(json.loads(REFERENCE_FILE.read_text())["tick_volume_share"])
    np.testing.assert_allclose(day_profile(48, "v2"), share / share.sum())   # v2 plays the reference profile
    half = day_profile(24, "v2")
    np.testing.assert_allclose(half, (share[0::2] + share[1::2]) / share.sum())
    assert day_profile(7).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_volume_follows_the_day_profile_shape(seed):
    traffic = period_traffic(REDUCED, campaigns_for(REDUCED), seed, 0)
    share = traffic.n_pv / REDUCED.n_pv
    night, midday = share[4:10].mean(), share[16:23].mean()
    assert night < 0.3 * midday                     # reference: ~0.4 % vs ~3.5 % of the day
    assert share[4:10].max() < 0.012 and share[16:23].max() > 0.02
    assert np.corrcoef(share, day_profile(48))[0, 1] > 0.7


def test_each_window_of_4_ticks_is_scaled_by_one_factor_in_range():
    traffic = period_traffic(REDUCED, campaigns_for(REDUCED), seed=5, period=0)
    ref = day_profile(48)
    factor = traffic.n_pv / (ref * REDUCED.n_pv)  # (48,) window scale / renormalisation constant
    windows = factor.reshape(12, 4)
    # Up to the +-1 PV of rounding, a window shares one factor.
    tolerance = 1.0 / (ref.reshape(12, 4) * REDUCED.n_pv)
    assert (np.abs(windows - windows.mean(axis=1, keepdims=True)) <= tolerance).all()
    spread = windows.mean(axis=1).max() / windows.mean(axis=1).min()
    assert 1.0 < spread <= 1.4 / 0.6 + 1e-3


# --- p_value and sigma --------------------------------------------------------------------------

def test_p_value_distribution(period):
    _, ticks = period
    p = np.concatenate([a for a, _ in ticks])
    assert (p >= 0).all() and (p <= 1).all()
    zeros = (p == 0).mean()
    assert 0.01 < zeros < 0.06, f"share of zero p_values {zeros:.4f}, reference ~3 %"
    assert 2e-3 < p.max() < 2e-2, f"max p_value {p.max():.2e}, reference ~5e-3"
    assert 3e-4 < p.mean() < 8e-4, f"mean p_value {p.mean():.2e}, reference base 5e-4"


def test_sigma_ratio(period):
    _, ticks = period
    p = np.concatenate([a for a, _ in ticks])
    s = np.concatenate([b for _, b in ticks])
    assert (s >= 0).all()
    np.testing.assert_array_equal(s[p == 0], 0.0)
    ratio = s[p > 0] / p[p > 0]
    assert 0.1 < ratio.mean() < 0.2, f"mean sigma ratio {ratio.mean():.3f}, reference ~0.15"
    assert ratio.max() <= 0.3 * (1 + 1e-6)


def test_p_value_mean_follows_the_per_tick_curves(period):
    traffic, ticks = period
    for t, (p, _) in enumerate(ticks):
        if p.shape[0] < 1000:
            continue
        np.testing.assert_allclose(p.mean(axis=0, dtype=np.float64), traffic.mean[t], rtol=0.12)


def test_curves_are_piecewise_constant_over_8_tick_windows(period):
    traffic, _ = period
    mean = traffic.mean.reshape(6, 8, -1)
    np.testing.assert_array_equal(mean, np.broadcast_to(mean[:, :1], mean.shape))
    rel = traffic.mean / REDUCED.base_p_value
    assert (rel >= 0.3 * 0.5 - 1e-9).all() and (rel <= 1.7 * 1.5 + 1e-9).all()
    # The first advertiser of each category carries the category curve alone; the others are that
    # curve times their own factor in [0.5, 1.5].
    categories = np.array([c.category for c in campaigns_for(REDUCED)])
    for k in range(N_CATEGORIES):
        members = np.flatnonzero(categories == k)
        first = traffic.mean[:, members[0]]
        assert ((first / REDUCED.base_p_value >= 0.3 - 1e-9) & (first / REDUCED.base_p_value <= 1.7 + 1e-9)).all()
        factor = traffic.mean[:, members[1:]] / first[:, None]
        assert ((factor >= 0.5 - 1e-9) & (factor <= 1.5 + 1e-9)).all()


def test_conversion_noise_truncation_bounds(period):
    traffic, _ = period
    assert ((traffic.trunc_low <= 0) & (traffic.trunc_low >= -2)).all()
    assert ((traffic.trunc_high >= 0) & (traffic.trunc_high <= 2)).all()


# --- presets ------------------------------------------------------------------------------------

def test_sparse_preset_is_auctionnets_table():
    # Entries of AuctionNet's published sparse advertiser table, written out here (not read from
    # market_reference.json, the file the code reads): a damaged or edited table fails.
    campaigns = campaigns_for(MarketConfig())
    assert len(campaigns) == 48
    for advertiser, category, budget, cpa in ((0, 0, 2900, 100), (1, 0, 4350, 70), (46, 5, 2000, 130), (47, 5, 2050, 120)):
        c = campaigns[advertiser]
        assert (c.advertiser, c.category, c.budget, c.target_cpa) == (advertiser, category, budget, cpa)
    assert sum(c.budget for c in campaigns) == 150_000
    assert [c.category for c in campaigns] == [k for k in range(6) for _ in range(8)]
    budgets = np.array([c.budget for c in campaigns])
    cpas = np.array([c.target_cpa for c in campaigns])
    assert budgets.min() >= SPARSE_RANGES["budget"][0] and budgets.max() <= SPARSE_RANGES["budget"][1]
    assert cpas.min() >= SPARSE_RANGES["target_cpa"][0] and cpas.max() <= SPARSE_RANGES["target_cpa"][1]
    np.testing.assert_array_equal(np.bincount([c.category for c in campaigns]), [8] * 6)
    # The table is the same for every seed and period.
    assert campaigns_for(MarketConfig(), seed=9, period=4) == campaigns


def test_dense_preset_ranges_and_layout():
    config = MarketConfig(preset="dense")
    campaigns = campaigns_for(config)
    budgets = np.array([c.budget for c in campaigns])
    cpas = np.array([c.target_cpa for c in campaigns])
    assert ((budgets >= 450) & (budgets <= 11_850)).all()
    assert ((cpas >= 6) & (cpas <= 12)).all()
    assert budgets.max() - budgets.min() > 5000  # spans the range, not one value
    np.testing.assert_array_equal(np.bincount([c.category for c in campaigns]), [8] * 6)
    assert campaigns_for(config, seed=4, period=7) == campaigns
    assert config.base_p_value == pytest.approx(10 * MarketConfig().base_p_value)


def test_dense_preset_has_about_ten_times_the_conversions():
    conversions = {}
    for preset in ("sparse", "dense"):
        sim = PeriodSim(MarketConfig(n_pv=50_000, preset=preset), seed=2, period=0)
        conversions[preset] = sim.run()["conversions"].sum()
    assert conversions["sparse"] > 20
    assert 4 < conversions["dense"] / conversions["sparse"] < 25, conversions


def test_random_preset_differs_across_periods_and_stays_in_range():
    config = MarketConfig(preset="random")
    tables = [campaigns_for(config, seed=1, period=p) for p in range(3)]
    assert tables[0] != tables[1] and tables[1] != tables[2]
    assert campaigns_for(config, seed=1, period=1) == tables[1]
    assert campaigns_for(config, seed=2, period=1) != tables[1]
    budgets = np.array([[c.budget for c in table] for table in tables])  # (3, 48)
    cpas = np.array([[c.target_cpa for c in table] for table in tables])
    # AuctionNet's sparse ranges, written out: budgets 2,000-4,850, target CPAs 60-130.
    assert budgets.min() >= 2000 and budgets.max() <= 4850 and cpas.min() >= 60 and cpas.max() <= 130
    # Drawn over the whole range, not clustered: 144 uniform draws reach both ends' tenths.
    assert budgets.min() < 2000 + 285 and budgets.max() > 4850 - 285
    assert cpas.min() < 60 + 7 and cpas.max() > 130 - 7


def test_smaller_markets_keep_valid_categories():
    for preset in ("sparse", "dense", "random"):
        campaigns = campaigns_for(MarketConfig(n_advertisers=7, preset=preset))
        assert [c.advertiser for c in campaigns] == list(range(7))
        assert all(0 <= c.category < N_CATEGORIES for c in campaigns)


def test_no_campaign_overspends_over_a_period():
    # Small budgets make the cap bind in most ticks.
    config = MarketConfig(n_pv=20_000, n_advertisers=12)
    campaigns = tuple(Campaign(a, a // 2, budget=3.0 + a, target_cpa=200.0) for a in range(12))
    sim = PeriodSim(config, seed=4, period=0, campaigns=campaigns)
    out = sim.run()
    budget = np.array([c.budget for c in campaigns])
    assert (out["spend"] <= budget).all()
    assert (np.cumsum(sim.history["cost"], axis=0) <= budget).all()
    assert (out["budget_utilisation"] > 0.5).mean() > 0.5  # the budgets did bind
    np.testing.assert_allclose(sim.history["remaining_budget"][1:], budget - np.cumsum(sim.history["cost"], axis=0)[:-1])


# --- configuration errors -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(n_pv=0), "n_pv"),
    (dict(n_pv=-5), "n_pv"),
    (dict(n_ticks=0), "n_ticks"),
    (dict(n_advertisers=0), "n_advertisers"),
    (dict(preset="crowded"), "preset"),
    (dict(n_slots=0, exposure_probs=()), "n_slots"),
    (dict(exposure_probs=(1.0, 0.8)), "exposure_probs"),
    (dict(exposure_probs=(1.0, 0.8, 1.2)), "exposure_probs"),
    (dict(exposure_probs=(1.0, -0.1, 0.0)), "exposure_probs"),
    (dict(exposure_probs=(0.6, 0.8, 1.0)), "exposure_probs"),
    (dict(exposure_probs=(1.0, float("nan"), 0.5)), "exposure_probs"),
    (dict(reserve_price=-1e-4), "reserve_price"),
    (dict(min_remaining_budget=-1.0), "min_remaining_budget"),
    (dict(p_value_base=0.0), "p_value_base"),
    (dict(p_value_base=1.5), "p_value_base"),
])
def test_market_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        MarketConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(budget=0.0), "budget"),
    (dict(budget=-10.0), "budget"),
    (dict(budget=float("inf")), "budget"),
    (dict(budget=float("nan")), "budget"),
    (dict(target_cpa=0.0), "target_cpa"),
    (dict(target_cpa=-3.0), "target_cpa"),
    (dict(advertiser=-1), "advertiser"),
    (dict(category=-1), "category"),
])
def test_campaign_errors_name_the_field(kwargs, field):
    args = dict(advertiser=0, category=0, budget=100.0, target_cpa=10.0) | kwargs
    with pytest.raises(ConfigError, match=field):
        Campaign(**args)


def test_campaign_rejects_an_unknown_category():
    with pytest.raises(ConfigError, match="category"):
        Campaign(advertiser=0, category=N_CATEGORIES, budget=100.0, target_cpa=10.0)


def test_market_config_rejects_a_fractional_pv_count():
    with pytest.raises(ConfigError, match="n_pv"):
        MarketConfig(n_pv=2.5)


def test_period_sim_rejects_a_campaign_table_of_the_wrong_size():
    with pytest.raises(ValueError, match="campaigns"):
        PeriodSim(MarketConfig(n_pv=100, n_advertisers=3), 0, 0,
                  campaigns=(Campaign(0, 0, 10.0, 1.0),))


# --- per-campaign outcomes and the rule population ----------------------------------------------

def test_campaign_outcomes_by_hand():
    campaigns = (Campaign(0, 0, 100.0, 10.0), Campaign(1, 0, 50.0, 10.0), Campaign(2, 1, 80.0, 5.0))
    zeros = np.zeros((3, 3))
    history = {f: zeros.copy() for f in TICK_STAT_FIELDS}
    history["cost"] = np.array([[10.0, 0.0, 0.0], [20.0, 30.0, 0.0], [0.0, 10.0, 0.0]])
    history["conversions"] = np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    history["expected_conversions"] = np.array([[1.0, 0.5, 0.0], [2.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    history["expected_cost"] = np.array([[10.0, 0.0, 0.0], [20.0, 20.0, 0.0], [0.0, 20.0, 0.0]])
    out = campaign_outcomes(history, campaigns)
    np.testing.assert_array_equal(out["spend"], [30.0, 40.0, 0.0])
    np.testing.assert_array_equal(out["conversions"], [3.0, 2.0, 0.0])
    np.testing.assert_allclose(out["realized_cpa"], [10.0, 20.0, np.nan])
    np.testing.assert_allclose(out["score"], [3.0, 2.0 * 0.25, 0.0])
    np.testing.assert_allclose(out["expected_score"], [3.0, 2.0 * (10 / 20) ** 2, 0.0])
    np.testing.assert_allclose(out["budget_utilisation"], [0.3, 0.8, 0.0])
    np.testing.assert_array_equal(out["last_spend_tick"], [1, 2, -1])


def bidders(kind, n=3, noise=0.0, rate=1.0):
    return RuleBidders(kind=np.full(n, KINDS.index(kind)), rate=np.full(n, rate), gain=np.full(n, 1.0),
                       lp_cap=np.full(n, 1.5), noise=np.full(n, noise), target_cpa=np.full(n, 50.0),
                       budget=np.full(n, 1000.0), profile=day_profile(48), alpha_bounds=(0.05, 5.0))


def test_fixed_rate_bidders_bid_rate_times_cpa():
    alphas = bidders("fixed", rate=0.8).alphas(10, np.full(3, 900.0), np.zeros(3), np.random.default_rng(0))
    np.testing.assert_allclose(alphas, 0.8 * 50.0)


def test_pid_bidders_speed_up_when_behind_and_slow_down_when_ahead():
    g = np.random.default_rng(0)
    planned = day_profile(48)[:24].sum() * 1000.0
    behind = bidders("pid").alphas(24, np.full(3, 0.2 * planned), np.zeros(3), g)
    ahead = bidders("pid").alphas(24, np.full(3, min(1.5 * planned, 999.0)), np.zeros(3), g)
    assert (behind > 50.0).all() and (ahead < 50.0).all()
    # The CPA guard: over target (realised CPA 100 > 50) pulls alpha down.
    guarded = bidders("pid").alphas(24, np.full(3, planned), np.full(3, planned / 100.0), g)
    on_plan = bidders("pid").alphas(24, np.full(3, planned), np.zeros(3), g)
    assert (guarded < on_plan).all()


def test_lp_bidders_respect_their_cap():
    alphas = bidders("lp").alphas(5, np.zeros(3), np.zeros(3), np.random.default_rng(0))
    assert (alphas <= 1.5 * 50.0 + 1e-9).all()


def test_population_alphas_stay_within_bounds():
    config = PopulationConfig(roster=("fixed", "pid", "lp"), noise=(0.5, 0.5))
    g = np.random.default_rng(1)
    pop = RuleBidders.draw(config, np.full(30, 40.0), np.full(30, 500.0), day_profile(48), g)
    for tick in range(0, 48, 6):
        alphas = pop.alphas(tick, np.full(30, 10.0 * tick), np.full(30, tick / 10), g)
        assert ((alphas >= 0.05 * 40.0 - 1e-9) & (alphas <= 5.0 * 40.0 + 1e-9)).all()
    assert set(np.unique(pop.kind)) <= {0, 1, 2}


@pytest.mark.parametrize("kwargs, field", [
    (dict(kind_shares=(0.5, 0.5)), "kind_shares"),
    (dict(roster=("pid", "dqn")), "roster"),
    (dict(lp_day_plan_share=1.5), "lp_day_plan_share"),
    (dict(aggressiveness=(0.0, 2.0)), "aggressiveness"),
    (dict(kind_shares=(0.0, 0.0, 0.0)), "kind_shares"),
    (dict(kind_shares=(-0.1, 0.5, 0.6, 0.0, 0.0)), "kind_shares"),
    (dict(fixed_rate=(1.3, 0.7)), "fixed_rate"),
    (dict(noise=(-0.1, 0.1)), "noise"),
    (dict(alpha_bounds=(0.05, float("inf"))), "alpha_bounds"),
])
def test_population_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        PopulationConfig(**kwargs)


def test_a_period_runs_without_numpy_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # Small budgets: exhausted bidders leave PVs with fewer than 4 bids (least_winning_cost 0).
        campaigns = tuple(Campaign(a, a // 2, budget=3.0 + a, target_cpa=200.0) for a in range(12))
        PeriodSim(MarketConfig(n_pv=20_000, n_advertisers=12), seed=4, period=0, campaigns=campaigns).run()


# --- market v2: AuctionNet's roster, its PID rule, CPA-blind state-feedback bidders ---------------

def test_default_field_is_auctionnets_roster_by_position():
    sim = PeriodSim(MarketConfig(n_pv=2_000, n_ticks=4), seed=0, period=0)
    names = [KINDS[k] for k in sim.bidders.kind]
    expected = ["anet_pid", "feedback", "feedback", "lp", "lp", "feedback", "feedback", "feedback"]
    for category in range(6):
        assert names[8 * category: 8 * category + 8] == expected
    # one PID, two OnlineLP, five offline-RL stand-ins per category; LP without a day plan
    assert not sim.bidders.lp_day_plan[sim.bidders.kind == KINDS.index("lp")].any()


def _anet(budget=1000.0, n_ticks=10, rate=0.2, scale=100.0):
    return RuleBidders(kind=[KINDS.index("anet_pid")], rate=[rate], gain=[0.0], lp_cap=[1.5], noise=[0.0],
                       target_cpa=[50.0], budget=[budget], profile=np.full(n_ticks, 1 / n_ticks),
                       alpha_bounds=(1e-3, 1e3), alpha_scale=scale)


def test_auctionnet_pid_update_on_a_hand_computed_sequence():
    # 10 ticks, budget 1000, first alpha 0.2 x 100 = 20. At tick t the rule compares
    # last_cost * (10 - t) / remaining with 0.7 and 1.1 (up x1.2, down x0.7, else keep).
    b = _anet()
    g = np.random.default_rng(0)
    spent = 0.0
    costs = [10.0, 200.0, 100.0, 0.0]
    got = [b.alphas(0, np.array([spent]), np.zeros(1), g)[0]]
    for t, c in enumerate(costs, start=1):
        spent += c
        got.append(b.alphas(t, np.array([spent]), np.zeros(1), g)[0])
    # t=1: 10 * 9 / 990 = 0.091 < 0.7 -> 24;  t=2: 200 * 8 / 790 = 2.03 > 1.1 -> 16.8
    # t=3: 100 * 7 / 690 = 1.014 -> keep 16.8;  t=4: 0 < 0.7 -> 20.16
    np.testing.assert_allclose(got, [20.0, 24.0, 16.8, 16.8, 20.16])


def test_state_feedback_alpha_ignores_its_cpa():
    def run(cpa):
        b = RuleBidders(kind=[KINDS.index("feedback")] * 2, rate=[0.8, 3.0], gain=[0.5, 0.2], lp_cap=[1.5] * 2,
                        noise=[0.1, 0.1], target_cpa=[cpa, cpa * 2], budget=[2000.0, 3000.0], profile=day_profile(48),
                        alpha_bounds=(0.05, 5.0), market_gain=[0.3, 0.0], alpha_scale=95.0)
        g = np.random.default_rng(3)
        p = np.random.default_rng(4).uniform(0, 1e-3, (5000, 2)).astype(np.float32)
        lwc = np.random.default_rng(5).uniform(0, 0.1, 5000)
        out = []
        for t in range(6):
            out.append(b.alphas(t, np.array([100.0 * t, 50.0 * t]), np.array([t, 0.0]), g))
            b.observe(p, lwc, g)
        return np.array(out)
    low, high = run(40.0), run(130.0)
    np.testing.assert_array_equal(low, high)
    assert np.ptp(low[:, 0]) > 0  # it does respond to budget, time and prices


def test_state_feedback_bids_less_when_ahead_of_its_budget():
    b = RuleBidders(kind=[KINDS.index("feedback")] * 2, rate=[2.0, 2.0], gain=[1.0, 1.0], lp_cap=[1.5] * 2,
                    noise=[0.0, 0.0], target_cpa=[100.0, 100.0], budget=[1000.0, 1000.0], profile=day_profile(48),
                    alpha_bounds=(0.05, 5.0), alpha_scale=95.0)
    a = b.alphas(24, np.array([200.0, 800.0]), np.zeros(2), np.random.default_rng(0))
    # half the day left: budget left 0.8 -> pace 1.6; 0.2 -> 0.4
    np.testing.assert_allclose(a, [95.0 * 2.0 * 1.6, 95.0 * 2.0 * 0.4])


def test_lp_without_a_day_plan_bids_higher_in_the_morning():
    profile = day_profile(48)
    kw = dict(kind=[KINDS.index("lp")] * 2, rate=[1.0, 1.0], gain=[0.0, 0.0], lp_cap=[5.0, 5.0], noise=[0.0, 0.0],
              target_cpa=[100.0, 100.0], budget=[3000.0, 3000.0], profile=profile, alpha_bounds=(0.05, 5.0),
              lp_day_plan=[True, False])
    b = RuleBidders(**kw)
    g = np.random.default_rng(0)
    p = np.random.default_rng(1).uniform(0, 1e-3, (20_000, 2)).astype(np.float32)
    lwc = np.random.default_rng(2).uniform(0, 0.1, 20_000)
    for t in range(8):  # the night: a small share of the day's traffic
        b.alphas(t, np.zeros(2), np.zeros(2), g)
        b.observe(p, lwc, g)
    plan, no_plan = b.alphas(8, np.zeros(2), np.zeros(2), g)
    assert no_plan > plan  # counting ticks under-forecasts the midday peak, so it spends faster
