"""The Decision Transformer's return target: in score-efficiency units (score x C / B) by default,
in score units per campaign (efficiency quantile x B / C), or one target for every campaign (on
request, and in checkpoints written before the choice); counted down by the score or the conversions."""

import json

import numpy as np
import pytest
import torch

from aigb.algos.checkpoint import atomic_torch_save, load_algorithm, read_checkpoint, save_checkpoint
from aigb.algos.dt import left_padded_window, predict_actions
from aigb.algos.registry import CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm
from aigb.features import FEATURE_DIM, FEATURE_NAMES
from aigb.seeding import rng
from aigb.strategies.registry import make_strategy, strategy_factory
from aigb.types import ConfigError

B, C = FEATURE_NAMES.index("budget"), FEATURE_NAMES.index("target_cpa")
CAMPAIGN = {**CHECK_OVERRIDES["dt"], "target_scale": "campaign"}   # score tokens, a target per campaign


class Campaigns(SyntheticTrajectories):
    """Synthetic days in v1-shaped states whose budget and target CPA columns vary by campaign."""

    def __init__(self, n=200, penalised=True):
        super().__init__(n_trajectories=n, n_ticks=12, feature_dim=FEATURE_DIM, seed=4, feature_version="v1", penalised=penalised)
        g = np.random.default_rng(4)
        self.budget = g.uniform(1000, 5000, n)
        self.cpa = g.uniform(50, 150, n)
        self.obs[:, :, B] = self.budget[:, None]
        self.obs[:, :, C] = self.cpa[:, None]

    @property
    def campaign_efficiency(self):
        return self.score_to_go[:, 0].astype(np.float64) * self.cpa / self.budget


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = Campaigns()
    algo = make_algorithm("dt", FEATURE_DIM, CAMPAIGN, seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "dt-targets")
    for _ in range(3):
        algo.update(algo.sample_batch(data, 16, gen))
    path = save_checkpoint(tmp_path_factory.mktemp("dt") / "dt.pt", algo, with_optimizers=False)
    return data, algo, path


def _state(budget, cpa):
    s = np.zeros(FEATURE_DIM, np.float32)
    s[B], s[C] = budget, cpa
    return s


def test_the_target_is_the_efficiency_quantile_times_the_campaigns_budget_over_cpa(trained):
    data, algo, _ = trained
    efficiency = data.score_to_go[:, 0].astype(np.float64) * data.cpa / data.budget   # computed here, not by the code
    policy = algo.policy()
    assert policy.target_scale == "campaign" and not policy.efficiency
    for budget, cpa in ((3000.0, 100.0), (1200.0, 60.0), (4800.0, 140.0)):
        expected = np.quantile(efficiency, 0.9) * np.float32(budget) / np.float32(cpa)
        assert policy.target(_state(budget, cpa)) == pytest.approx(expected, rel=1e-9)
    low = algo.policy(target_quantile=0.5).target(_state(3000, 100))
    assert low == pytest.approx(np.quantile(efficiency, 0.5) * 30, rel=1e-2)
    # The data scale is the old target: one quantile of the raw scores, whatever the campaign.
    old = algo.policy(target_scale="data")
    assert old.target(_state(3000, 100)) == old.target(_state(1200, 60)) == pytest.approx(data.return_quantiles[0.9])


def test_the_campaign_target_conditions_the_served_actions(trained):
    data, algo, _ = trained
    traj = data.trajectory(3)
    policy = algo.policy()
    t = 5
    base = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t])
    bigger = traj["obs"].copy()
    bigger[:, B] *= 3    # a larger budget: a larger target, and a different state
    small = algo.policy(target_quantile=0.05)
    assert policy.target(bigger[0]) == pytest.approx(3 * policy.target(traj["obs"][0]), rel=1e-6)
    assert small.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t]) != base


def test_the_spec_options_pick_the_target_and_bad_ones_fail_naming_the_option(trained):
    _, algo, path = trained
    strategy = make_strategy(f"dt:{path}?return=0.5&scale=campaign")
    assert strategy.policy.target(_state(3000, 100)) == pytest.approx(algo.policy(target_quantile=0.5).target(_state(3000, 100)))
    assert make_strategy(f"dt:{path}?scale=data").policy.target_scale == "data"
    assert make_strategy(f"dt:{path}").policy.target_efficiency == algo.policy().target_efficiency
    for bad, word in (("?return=1.5", "return"), ("?scale=budget", "scale"), ("?decrement=cost", "decrement"), ("?w=2", "unknown option")):
        with pytest.raises(ConfigError, match=word):
            strategy_factory(f"dt:{path}{bad}")
    with pytest.raises(ConfigError, match="bc: takes no serving options"):
        strategy_factory(f"bc:{path}?return=0.5")


def test_a_checkpoint_from_before_campaign_targets_serves_its_one_target(trained, tmp_path):
    data, algo, path = trained
    payload = read_checkpoint(path)
    config = json.loads(payload["config"])
    del config["target_scale"]                          # written before the field existed
    payload["config"] = json.dumps(config)
    for key in ("efficiency_quantiles", "return_quantiles"):
        del payload["algorithm"]["extra"][key]
    legacy = atomic_torch_save(payload, tmp_path / "legacy.pt")
    policy = load_algorithm(legacy).policy()
    assert policy.target_scale == "data" and policy.target(_state(1200, 60)) == algo.target_return
    with pytest.raises(ValueError, match="no campaign efficiency quantiles"):
        load_algorithm(legacy).policy(target_scale="campaign")


def test_campaign_targets_need_a_state_with_budget_and_cpa():
    data = SyntheticTrajectories(n_trajectories=16, n_ticks=12, feature_dim=5, seed=0)   # no budget, no CPA
    algo = make_algorithm("dt", data.feature_dim, {**CAMPAIGN, "target_scale": "data", "rtg_decrement": "score"}, seed=0)
    with pytest.raises(ConfigError, match="rtg_decrement: reads spend, conversions, target_cpa"):
        algo.prepare(data, 0)
    algo = make_algorithm("dt", data.feature_dim, CAMPAIGN, seed=0)
    with pytest.raises(ConfigError, match="target_scale: reads budget, target_cpa from the state, which feature set 'synthetic-v1'"):
        algo.prepare(data, 0)


def test_efficiency_tokens_are_score_to_go_times_c_over_b_in_training_and_serving():
    # Without a CPA penalty, score_to_go_t x C / B = (return - rewards before t) x C / B: what
    # serving computes from a target efficiency, so a training window and the served history agree.
    data = Campaigns(n=40, penalised=False)
    algo = make_algorithm("dt", FEATURE_DIM, {**CAMPAIGN, "target_scale": "efficiency"}, seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "dt-efficiency")
    for _ in range(5):
        algo.update(algo.sample_batch(data, 16, gen))
    i = 7
    traj = data.trajectory(i)
    scale = np.float32(data.cpa[i]) / np.float32(data.budget[i])
    algo.efficiency_quantiles = {0.5: float(traj["score_to_go"][0] * scale) - 1.0, 0.6: float(traj["score_to_go"][0] * scale)}
    policy = algo.policy(target_quantile=0.6)
    assert policy.efficiency and policy.target(traj["obs"][0]) == pytest.approx(traj["score_to_go"][0], rel=1e-5)
    k = algo.config.context_len
    algo.nets.eval()
    for t in (0, 2, 7, 11):
        served = policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t])
        lo = max(0, t - k + 1)
        tokens = traj["score_to_go"][lo: t + 1] * scale          # computed here, not by efficiency_to_go
        window = left_padded_window(traj["obs"][lo: t + 1], traj["action"][lo: t + 1], tokens, np.arange(lo, t + 1), k)
        w = {key: torch.from_numpy(v).unsqueeze(0) for key, v in window.items()}
        with torch.no_grad():
            trained = predict_actions(algo.nets["model"], algo.normalizer, algo.bounds, w, None, efficiency=True)[0, -1].item()
        assert served == pytest.approx(trained, abs=1e-6)   # equal in practice; a token off by x12 moves it ~3e-5
    with pytest.raises(ConfigError, match="efficiency units"):
        algo.policy(target_scale="campaign")


def test_the_score_decrement_counts_down_by_the_score_earned_so_far(trained):
    _, algo, _ = trained
    spend, conv = FEATURE_NAMES.index("spend"), FEATURE_NAMES.index("conversions")
    states = np.zeros((3, FEATURE_DIM), np.float32)
    states[:, C] = 100.0
    states[1, spend], states[1, conv] = 300.0, 2.0     # CPA 150 against 100: penalty (100 / 150)^2 = 4 / 9
    states[2, spend], states[2, conv] = 400.0, 5.0     # CPA 80: no penalty
    rewards = np.array([2.0, 3.0], np.float32)
    np.testing.assert_allclose(algo.policy(rtg_decrement="score").earned(states, rewards), [0.0, 8 / 9, 5.0], rtol=1e-12)
    np.testing.assert_allclose(algo.policy(rtg_decrement="conversions").earned(states, rewards), [0.0, 2.0, 5.0])
    served = algo.policy(rtg_decrement="score")
    assert served.act(states, np.zeros(2, np.float32), rewards) != algo.policy().act(states, np.zeros(2, np.float32), rewards)
    algo.task = "max-return"      # no CPA term: the score so far is the conversions
    try:
        np.testing.assert_allclose(algo.policy(rtg_decrement="score").earned(states, rewards), [0.0, 2.0, 5.0])
    finally:
        algo.task = None
