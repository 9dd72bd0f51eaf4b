"""The single-advertiser environments: contract, episode length, bid validation, optional records."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from aigb.features import FEATURE_DIM, FEATURE_NAMES
from aigb.sim.env import AlphaBiddingEnv, BiddingEnv, InvalidBids, Observation, validate_bids
from aigb.sim.period import PeriodSim
from aigb.types import ACTION_HIGH, ACTION_LOW, TICK_STAT_FIELDS, Campaign, ConfigError, MarketConfig

SMALL = MarketConfig(n_pv=3_000, n_ticks=12, n_advertisers=8)


def test_alpha_env_passes_the_gymnasium_checker():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # advisory notes on unbounded boxes
        check_env(AlphaBiddingEnv(MarketConfig(n_pv=3000)))


def test_alpha_env_episode():
    env = AlphaBiddingEnv(SMALL, advertiser=2)
    obs, info = env.reset(seed=5)
    assert obs.shape == (FEATURE_DIM,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert info["period"] == 0
    steps, total = 0, 0.0
    terminated = False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(np.array([0.2], np.float32))
        steps += 1
        total += reward
        assert not truncated and env.observation_space.contains(obs)
        assert info["alpha"] == pytest.approx(np.exp(0.2) * env.inner.campaign.target_cpa, rel=1e-6)
    assert steps == SMALL.n_ticks
    assert total == env.inner.sim.history["conversions"][:, 2].sum()


def test_alpha_env_clips_actions_to_the_action_box():
    env = AlphaBiddingEnv(SMALL)
    env.reset(seed=1)
    cpa = env.inner.campaign.target_cpa
    _, _, _, _, high = env.step(np.array([50.0], np.float32))
    _, _, _, _, low = env.step(np.array([-50.0], np.float32))
    assert high["alpha"] == pytest.approx(np.exp(ACTION_HIGH) * cpa)
    assert low["alpha"] == pytest.approx(np.exp(ACTION_LOW) * cpa)


def test_alpha_env_reset_without_seed_plays_the_next_period():
    env = AlphaBiddingEnv(SMALL)
    first, info0 = env.reset(seed=3)
    _, info1 = env.reset()
    again, info2 = env.reset(seed=3)
    assert (info0["period"], info1["period"], info2["period"]) == (0, 1, 0)
    np.testing.assert_array_equal(first, again)
    _, info = env.reset(options={"period": 7})
    assert info["period"] == 7


def play(env, policy):
    obs, _ = env.reset()
    records = [obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        records.append((obs, reward, info))
        if terminated:
            return records


def test_bidding_env_episode_lasts_n_ticks():
    for config in (SMALL, MarketConfig(n_pv=2_000)):
        env = BiddingEnv(config, advertiser=1, seed=2)
        steps = play(env, lambda o: o.p_value * o.campaign.target_cpa)[1:]
        assert len(steps) == config.n_ticks
        assert [s[2]["tick"] for s in steps] == list(range(config.n_ticks))
        final = steps[-1][0]
        assert final.tick == config.n_ticks and final.p_value.shape == (0,)
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(0))


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        BiddingEnv(SMALL).step(np.zeros(3))


def test_observation_contents():
    env = BiddingEnv(SMALL, advertiser=4, seed=7)
    obs, info = env.reset()
    assert isinstance(obs, Observation) and info == {"period": 0, "seed": 7}
    assert obs.features.shape == (FEATURE_DIM,) == (len(FEATURE_NAMES),)
    assert obs.features.dtype == np.float32
    assert obs.p_value.shape == obs.p_value_sigma.shape == (env.sim.traffic.n_pv[0],)
    assert obs.remaining_budget == obs.campaign.budget
    assert set(obs.history) == set(TICK_STAT_FIELDS) and all(v.shape == (0,) for v in obs.history.values())
    budget = obs.campaign.budget
    spent = 0.0
    for _ in range(3):
        obs, reward, _, _, info = env.step(obs.p_value * 3 * obs.campaign.target_cpa)
        spent += info["stats"]["cost"]
        assert reward == info["stats"]["conversions"]
        assert obs.remaining_budget == pytest.approx(budget - spent)
    assert all(v.shape == (3,) for v in obs.history.values())
    np.testing.assert_array_equal(obs.history["cost"], env.sim.history["cost"][:3, 4])


@pytest.mark.parametrize("bad, problem", [
    (lambda n: np.zeros(n + 1), "shape"),
    (lambda n: np.zeros(n - 1), "shape"),
    (lambda n: np.zeros((n, 1)), "shape"),
    (lambda n: 0.5, "shape"),
    (lambda n: np.where(np.arange(n) == 2, np.nan, 0.1), "NaN or infinite"),
    (lambda n: np.where(np.arange(n) == 0, np.inf, 0.1), "NaN or infinite"),
    (lambda n: np.where(np.arange(n) == n - 1, -np.inf, 0.1), "NaN or infinite"),
])
def test_invalid_bids_raise_and_leave_the_tick_unplayed(bad, problem):
    env = BiddingEnv(SMALL, seed=1)
    obs, _ = env.reset()
    with pytest.raises(InvalidBids, match=problem):
        env.step(bad(obs.p_value.size))
    assert env.sim.tick == 0
    env.step(np.zeros(obs.p_value.size))  # still playable
    assert env.sim.tick == 1


def test_invalid_bids_message_names_the_first_bad_pv():
    with pytest.raises(InvalidBids, match="PV 3"):
        validate_bids([0.1, 0.2, 0.3, np.nan, np.inf], 5)


def test_negative_bids_are_invalid_bids():
    # One rule with check_strategy (tests/strategies/test_registry.py): bids must be >= 0.
    with pytest.raises(InvalidBids, match="1 bids are negative .first at PV 0"):
        validate_bids([-1.0, 0.0, 2.0], 3)
    np.testing.assert_array_equal(validate_bids([0.0, -0.0, 2.0], 3), [0.0, 0.0, 2.0])
    env = BiddingEnv(SMALL, seed=3)
    obs, _ = env.reset()
    with pytest.raises(InvalidBids, match="negative"):
        env.step(-np.ones(obs.p_value.size))
    assert env.sim.tick == 0  # nothing was played


def test_keep_pv_history_shapes():
    env = BiddingEnv(SMALL, advertiser=3, seed=4, keep_pv_history=True)
    obs, _ = env.reset()
    assert obs.pv_history == []
    sizes = []
    for _ in range(4):
        sizes.append(obs.p_value.size)
        obs, *_ = env.step(obs.p_value * obs.campaign.target_cpa)
    assert len(obs.pv_history) == 4
    for n, rec in zip(sizes, obs.pv_history):
        assert set(rec) >= {"p_value", "p_value_sigma", "bid", "least_winning_cost", "won", "slot", "cost",
                            "exposed", "conversion"}
        assert all(v.shape == (n,) for v in rec.values())
        assert set(np.unique(rec["slot"])) <= {0, 1, 2, 3}
        np.testing.assert_array_equal(rec["won"], rec["slot"] > 0)
    assert BiddingEnv(SMALL).reset()[0].pv_history is None


def test_an_observation_keeps_the_history_it_was_given():
    env = BiddingEnv(SMALL, seed=4, keep_pv_history=True)
    obs, _ = env.reset()
    obs, *_ = env.step(obs.p_value)
    seen_at_tick_1 = obs
    env.step(obs.p_value)
    assert len(seen_at_tick_1.pv_history) == 1


def test_kept_per_pv_arrays_own_their_memory():
    env = BiddingEnv(SMALL, seed=4, keep_pv_history=True, record_competitors=True)
    obs, _ = env.reset()
    obs, _, _, _, info = env.step(obs.p_value)
    kept = [*obs.pv_history[0].values(), info["p_value"], info["competitor_top"]]
    for arr in kept:
        assert arr.base is None or arr.base.nbytes <= arr.nbytes


def test_record_competitors_shapes_and_values():
    a = 5
    env = BiddingEnv(SMALL, advertiser=a, seed=8, record_competitors=True)
    obs, _ = env.reset()
    n = obs.p_value.size
    _, _, _, _, info = env.step(obs.p_value * obs.campaign.target_cpa)
    top = info["competitor_top"]
    assert top.shape == (n, SMALL.n_slots)
    assert (top[:, :-1] >= top[:, 1:]).all() and (top >= 0).all()
    np.testing.assert_array_equal(info["p_value"], obs.p_value)
    assert (top[:, 0] > 0).any()
    assert "competitor_top" not in BiddingEnv(SMALL, seed=8).reset()[1]


def test_competitor_top_is_the_others_best_bid():
    a = 2
    env = BiddingEnv(SMALL, advertiser=a, seed=9, record_competitors=True)
    obs, _ = env.reset()
    _, _, _, _, info = env.step(np.zeros(obs.p_value.size))
    top = info["competitor_top"]
    # Recompute from the market's own outcome of the same seed, played without the env.
    sim = PeriodSim(SMALL, 9, 0)
    record = sim.step({a: np.zeros(obs.p_value.size)})
    others = np.delete(record.outcome.bids, a, axis=1)
    np.testing.assert_array_equal(top, -np.sort(-others, axis=1)[:, :SMALL.n_slots])


def test_campaign_override_and_advertiser_range():
    override = Campaign(advertiser=0, category=5, budget=123.0, target_cpa=7.5)
    env = BiddingEnv(SMALL, advertiser=6, seed=2, campaign=override)
    obs, _ = env.reset()
    assert obs.campaign == Campaign(6, 5, 123.0, 7.5)
    assert env.sim.budget[6] == 123.0 and obs.remaining_budget == 123.0
    with pytest.raises(ConfigError, match="advertiser"):
        BiddingEnv(SMALL, advertiser=SMALL.n_advertisers)
    with pytest.raises(ConfigError, match="advertiser"):
        AlphaBiddingEnv(SMALL, advertiser=-1)


def test_alpha_env_is_a_gymnasium_env():
    env = AlphaBiddingEnv(SMALL)
    assert isinstance(env, gym.Env)
    assert env.action_space.shape == (1,) and env.observation_space.shape == (FEATURE_DIM,)


def test_an_exhausted_budget_keeps_playing_to_the_end():
    tiny = Campaign(advertiser=0, category=0, budget=1.0, target_cpa=100.0)
    env = BiddingEnv(SMALL, advertiser=0, seed=6, campaign=tiny)
    steps = play(env, lambda o: 1000.0 * o.p_value)[1:]
    assert len(steps) == SMALL.n_ticks
    spend = env.sim.history["cost"][:, 0]
    assert 0.5 < spend.sum() <= 1.0
    assert steps[-1][0].remaining_budget == pytest.approx(1.0 - spend.sum())
