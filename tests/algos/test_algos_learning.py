"""Each algorithm learns on a fixed batch, is a pure function of its seed, and serves correctly."""

import math

import numpy as np
import pytest
import torch

from aigb.algos.bc import best_campaigns
from aigb.algos.dt import left_padded_window, predict_actions
from aigb.algos.registry import ALGORITHMS, CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm
from aigb.seeding import rng


@pytest.fixture(scope="module")
def data():
    return SyntheticTrajectories(n_trajectories=64, n_ticks=12, feature_dim=5, seed=0)


# The losses that must fall when one batch is fitted repeatedly. IQL's actor loss is excluded on
# purpose: its advantage weights grow as Q learns, so the weighted NLL may rise while the fit improves.
FALLING = {"bc": ("loss",), "iql": ("value_loss", "critic_loss"), "cql": ("critic_loss",), "dt": ("loss",),
           "diffbid": ("diffusion_loss", "idm_loss"), "oil": ("loss",)}
# CQL's Q targets start ~20 (rewards x reward_multiplier) against Q ~ 0, so its loss falls once
# the critic's output has grown: 0.56-0.64 of its start after 40 steps at critic_lr 3e-3, seeds 0-5.
RATIO = {"bc": 0.8, "iql": 0.8, "cql": 0.8, "dt": 0.8, "diffbid": 0.8, "oil": 0.8}
FAST_LR = {"bc": {}, "iql": {"critic_lr": 1e-3}, "cql": {"critic_lr": 3e-3, "actor_lr": 1e-3}, "dt": {"lr": 1e-3},
           "diffbid": {"lr": 1e-3, "idm_lr": 1e-3}, "oil": {}}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_updates_on_a_fixed_batch_lower_the_loss(name, data):
    algo = make_algorithm(name, data.feature_dim, {**CHECK_OVERRIDES[name], **FAST_LR[name]}, seed=1)
    algo.prepare(data, seed=1)
    batch = algo.sample_batch(data, 64, rng(1, "fixed-batch"))
    history = [algo.update(batch) for _ in range(40)]
    for key in FALLING[name]:
        first = np.mean([h[key] for h in history[:3]])
        last = np.mean([h[key] for h in history[-3:]])
        assert last < RATIO[name] * first, f"{name} {key}: {first:.4f} -> {last:.4f}"


def _train(name, data, seed, n=5):
    algo = make_algorithm(name, data.feature_dim, CHECK_OVERRIDES[name], seed=seed)
    algo.prepare(data, seed)
    gen = rng(seed, "batches")
    for _ in range(n):
        algo.update(algo.sample_batch(data, algo.config.batch_size, gen))
    return algo.nets.state_dict()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_same_seed_same_weights_other_seed_other_weights(name, data):
    a, b, c = _train(name, data, 7), _train(name, data, 7), _train(name, data, 8)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bc_imitates_the_behaviour_policy():
    data = SyntheticTrajectories(n_trajectories=256, n_ticks=12, feature_dim=5, seed=2, behaviour_noise=0.1)
    algo = make_algorithm("bc", data.feature_dim, {"hidden_dims": (64, 64), "lr": 3e-3, "top_fraction": 1.0,
                                                   "regress_on": "log_ratio"}, seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "bc-imitation")
    for _ in range(300):
        algo.update(algo.sample_batch(data, 128, gen))
    policy = algo.policy()
    errors = []
    for i in range(20):
        traj = data.trajectory(200 + i)
        for t in (0, 4, 11):
            a = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t])
            errors.append(a - data.best_action(traj["obs"][t]))
    # a* has a spread of about 1 action unit; imitation should land well inside it.
    assert math.sqrt(np.mean(np.square(errors))) < 0.3


def test_bc_on_the_bid_ratio_learns_the_mean_bid_not_the_median():
    # Logged actions are a* + N(0, 0.5^2) in log space: the median bid ratio is exp(a*), the mean
    # exp(a* + 0.125). Regressing on the log learns the first, regressing on the ratio the second.
    data = SyntheticTrajectories(n_trajectories=512, n_ticks=12, feature_dim=5, seed=3, behaviour_noise=0.5)
    offsets = {}
    for space in ("log_ratio", "ratio"):
        algo = make_algorithm("bc", data.feature_dim, {"hidden_dims": (64, 64), "lr": 3e-3, "regress_on": space, "top_fraction": 1.0}, seed=0)
        algo.prepare(data, 0)
        gen = rng(0, "bc-bid-space")
        for _ in range(600):
            algo.update(algo.sample_batch(data, 256, gen))
        policy = algo.policy()
        gaps = [policy.act(data.obs[i, : t + 1], data.action[i, :t], data.reward[i, :t]) - data.best_action(data.obs[i, t])
                for i in range(0, 512, 8) for t in (0, 5, 11)]
        offsets[space] = float(np.mean(gaps))
    assert abs(offsets["log_ratio"]) < 0.06, offsets
    assert abs(offsets["ratio"] - 0.125) < 0.06, offsets


def test_best_campaigns_picks_the_top_share():
    eff = np.array([0.3, 0.9, 0.1, 0.9, 0.5, 0.7])
    np.testing.assert_array_equal(best_campaigns(eff, 0.5), [1, 3, 5])
    np.testing.assert_array_equal(best_campaigns(eff, 0.01), [1])        # at least one; ties to the lower index
    np.testing.assert_array_equal(best_campaigns(eff, 1.0), np.arange(6))
    with pytest.raises(ValueError, match="campaign_efficiency"):
        best_campaigns(np.array([0.1, np.nan]), 0.5)


def test_filtered_bc_trains_only_on_the_best_campaigns(data):
    algo = make_algorithm("bc", data.feature_dim, {**CHECK_OVERRIDES["bc"], "top_fraction": 0.25}, seed=0)
    algo.prepare(data, 0)
    batch = algo.sample_batch(data, 512, rng(0, "filtered-bc"))
    top = best_campaigns(data.campaign_efficiency, 0.25)
    assert top.size == 16
    allowed = {row.tobytes() for row in data.obs[top].reshape(-1, data.feature_dim)}
    assert all(row.tobytes() in allowed for row in batch["obs"])
    rest = {row.tobytes() for row in np.delete(data.obs, top, axis=0).reshape(-1, data.feature_dim)}
    plain = make_algorithm("bc", data.feature_dim, {**CHECK_OVERRIDES["bc"], "top_fraction": 1.0}, seed=0)
    plain.prepare(data, 0)
    assert any(row.tobytes() in rest for row in plain.sample_batch(data, 512, rng(0, "filtered-bc"))["obs"])


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_serving_rejects_malformed_histories(name, data):
    algo = make_algorithm(name, data.feature_dim, CHECK_OVERRIDES[name])
    algo.prepare(data, 0)
    policy = algo.policy()
    traj = data.trajectory(0)
    with pytest.raises(ValueError, match="actions: expected 2 past actions"):
        policy.act(traj["obs"][:3], traj["action"][:1], traj["reward"][:2])
    with pytest.raises(ValueError, match="states: feature dim 4"):
        policy.act(traj["obs"][:3, :4], traj["action"][:2], traj["reward"][:2])
    with pytest.raises(ValueError, match="rewards: contains NaN"):
        policy.act(traj["obs"][:3], traj["action"][:2], np.array([0.0, np.nan]))


def test_update_rejects_a_batch_with_wrong_feature_dim(data):
    algo = make_algorithm("iql", data.feature_dim, CHECK_OVERRIDES["iql"])
    batch = data.sample_transitions(8, rng(0, "x"))
    batch["next_obs"] = batch["next_obs"][:, :3]
    with pytest.raises(ValueError, match="'next_obs': feature dim 3"):
        algo.update(batch)


def test_dt_serving_sees_exactly_the_training_window():
    # Without a CPA penalty, score_to_go_t = return - rewards before t, which is what serving
    # computes from the target return; so a training window and the served history must agree.
    data = SyntheticTrajectories(n_trajectories=16, n_ticks=12, feature_dim=5, seed=3, penalised=False)
    algo = make_algorithm("dt", data.feature_dim, CHECK_OVERRIDES["dt"], seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "dt")
    for _ in range(5):
        algo.update(algo.sample_batch(data, 16, gen))
    traj = data.trajectory(5)
    algo.target_return = float(traj["score_to_go"][0])
    policy = algo.policy()
    k = algo.config.context_len
    for t in (0, 2, k - 1, 9, 11):
        served = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t])
        lo = max(0, t - k + 1)
        window = left_padded_window(traj["obs"][lo: t + 1], traj["action"][lo: t + 1], traj["score_to_go"][lo: t + 1],
                                    np.arange(lo, t + 1), k)
        w = {key: torch.from_numpy(v).unsqueeze(0) for key, v in window.items()}
        with torch.no_grad():
            algo.nets.eval()
            trained_path = predict_actions(algo.nets["model"], algo.normalizer, algo.bounds, w, None)[0, -1].item()
        assert served == pytest.approx(trained_path, abs=1e-5)


def test_dt_padding_values_are_never_attended(data):
    algo = make_algorithm("dt", data.feature_dim, CHECK_OVERRIDES["dt"], seed=0)
    algo.prepare(data, 0)
    w = {k: torch.from_numpy(v) for k, v in data.sample_windows(32, algo.config.context_len, rng(0, "pad")).items()}
    assert (w["mask"] == 0).any()
    noisy = dict(w)
    pad = (w["mask"] == 0)
    noisy["obs"] = torch.where(pad.unsqueeze(-1), torch.full_like(w["obs"], 7.0), w["obs"])
    noisy["rtg"] = torch.where(pad, torch.full_like(w["rtg"], -50.0), w["rtg"])
    algo.nets.eval()
    with torch.no_grad():
        clean = predict_actions(algo.nets["model"], algo.normalizer, algo.bounds, w, None)
        dirty = predict_actions(algo.nets["model"], algo.normalizer, algo.bounds, noisy, None)
    real = w["mask"] == 1
    torch.testing.assert_close(clean[real], dirty[real])


def test_dt_rtg_counts_down_with_observed_rewards(data):
    algo = make_algorithm("dt", data.feature_dim, CHECK_OVERRIDES["dt"], seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "dt-rtg")
    for _ in range(20):
        algo.update(algo.sample_batch(data, 16, gen))
    policy = algo.policy()
    traj = data.trajectory(1)
    t = 6
    base = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t])
    more = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t] + 2.0)
    assert base != more


def test_dt_target_return_comes_from_config_quantiles_or_an_estimate(data):
    algo = make_algorithm("dt", data.feature_dim, CHECK_OVERRIDES["dt"])
    algo.prepare(data, 0)
    q = data.return_quantiles
    assert algo.target_return == pytest.approx(q[0.9])
    fixed = make_algorithm("dt", data.feature_dim, {**CHECK_OVERRIDES["dt"], "target_return": 12.5})
    fixed.prepare(data, 0)
    assert fixed.target_return == 12.5

    class NoQuantiles(SyntheticTrajectories):
        return_quantiles = None

    bare = NoQuantiles(n_trajectories=64, n_ticks=12, feature_dim=5, seed=0)
    estimated = make_algorithm("dt", bare.feature_dim, CHECK_OVERRIDES["dt"])
    estimated.prepare(bare, 0)
    returns = bare.score_to_go[:, 0]
    assert np.quantile(returns, 0.8) <= estimated.target_return <= np.quantile(returns, 0.97)


def test_dt_refuses_ticks_beyond_its_embedding(data):
    algo = make_algorithm("dt", data.feature_dim, {**CHECK_OVERRIDES["dt"], "max_ticks": 12})
    algo.prepare(data, 0)
    states = np.zeros((13, data.feature_dim), np.float32)
    with pytest.raises(ValueError, match="tick 12 is beyond the model's max_ticks 12"):
        algo.policy().act(states, np.zeros(12), np.zeros(12))
    batch = data.sample_windows(4, algo.config.context_len, rng(0, "w"))
    batch["timestep"] = batch["timestep"] + 12
    with pytest.raises(ValueError, match="'timestep': values must lie in"):
        algo.update(batch)
