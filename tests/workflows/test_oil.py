"""OIL with DAgger: what it labels, which periods it plays, that it learns, and that it resumes."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import aigb.workflows.oil as oil
from aigb.algos.checkpoint import load_policy, read_checkpoint
from aigb.workflows.oil import Mix, rollout_states, train_oil
from aigb.workflows.training import ValidationSet
from aigb.score import task_beta
from aigb.seeding import EVAL_FIRST_PERIOD, VALIDATION_FIRST_PERIOD
from aigb.sim.batch import CampaignBatch
from aigb.sim.env import BiddingEnv
from aigb.sim.population import PopulationConfig
from aigb.strategies.oracle_state import solve_continuations
from aigb.types import ACTION_HIGH, ACTION_LOW, ConfigError, MarketConfig

# A small market whose budgets bind (the random preset draws every campaign's budget and CPA per
# period): the best multiplier then depends on the campaign and on how its day has gone. A budget
# counts as spent below 5 (the market's rule), so bidding high runs some out before the day ends.
MARKET = MarketConfig(n_pv=2000, n_ticks=8, n_advertisers=8, p_value_base=0.06, preset="random", min_remaining_budget=5.0)
POP = PopulationConfig()
TINY = {"rounds": 2, "periods_per_round": 1, "steps": 20, "hidden_dims": (16, 16), "batch_size": 32, "slots": (1, 4),
        "expert_decay": 0.5}   # round 1 mixes expert and student


class StateRule:
    """A deterministic student that reads the state: bids up when behind the clock."""

    def act(self, states, actions, rewards):
        s = states[-1]
        return float(np.clip(-0.3 + 1.5 * (s[1] - s[0]), ACTION_LOW, ACTION_HIGH))


class Constant:
    def __init__(self, action: float):
        self.action = action

    def act(self, states, actions, rewards):
        return self.action


def replay(policy, seed: int, period: int, slot: int):
    """Play ``policy`` in one campaign by hand; its states, prefixes and the day's hindsight data."""
    env = BiddingEnv(MARKET, slot, seed=seed, population=POP, record_competitors=True)
    obs, _ = env.reset(period=period)
    states, actions, spent, won, left, days = [], [], [], [], [], []
    done = False
    while not done:
        states.append(obs.features)
        spent.append(obs.history["cost"].sum())
        won.append(obs.history["conversions"].sum())
        left.append(obs.remaining_budget)
        a = policy.act(np.stack(states), np.array(actions), obs.history["conversions"])
        actions.append(a)
        t = obs.tick
        obs, _, done, _, info = env.step(math.exp(a) * obs.campaign.target_cpa * obs.p_value.astype(np.float64))
        days.append((info["p_value"].astype(np.float64), info["competitor_top"], np.full(info["p_value"].size, t)))
    p, comp, tick = (np.concatenate(x) for x in zip(*days))
    return env.campaign, np.stack(states), np.array(spent), np.array(won), np.array(left), (p, comp, tick)


# Where conversions are scarcer (p_value_base 0.01) the CPA binds before the budget, so the two
# tasks label differently (Max-Return bids higher).
CPA_BOUND = replace(MARKET, p_value_base=0.01)


@pytest.mark.parametrize("policy, task, market", [(StateRule(), "cpa", MARKET), (Constant(ACTION_HIGH), "cpa", MARKET),
                                                  (StateRule(), "cpa", CPA_BOUND), (StateRule(), "max-return", CPA_BOUND)])
def test_labels_are_the_oracle_from_each_visited_state(policy, task, market, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "MARKET", market)   # replay() plays MARKET
    d = rollout_states(policy, market, POP, seed=3, periods=[2], slots=[1, 4], task=task)
    assert not d["expert"].any()
    for slot in (1, 4):
        rows = d["advertiser"] == slot
        campaign, states, spent, won, left, (p, comp, tick) = replay(policy, 3, 2, slot)
        visited = np.flatnonzero(left >= MARKET.min_remaining_budget)   # after the budget ran out: nothing to label
        np.testing.assert_array_equal(d["tick"][rows], visited)
        np.testing.assert_array_equal(d["obs"][rows], states[visited])
        c = campaign.target_cpa
        k = solve_continuations(p, comp, tick, campaign.budget, c, visited, np.minimum(spent[visited], campaign.budget),
                                won[visited], n_ticks=MARKET.n_ticks, exposure_probs=MARKET.net_exposure_probs,
                                reserve_price=MARKET.reserve_price, beta=task_beta(task), lp=False,
                                alpha_range=(math.exp(ACTION_LOW) * c, math.exp(ACTION_HIGH) * c))
        np.testing.assert_allclose(d["action"][rows], np.clip(np.log(k.alpha / c), ACTION_LOW, ACTION_HIGH), atol=1e-6)
    # Bidding the top of the range exhausts some budget early: those ticks are not labelled.
    if isinstance(policy, Constant):
        assert d["obs"].shape[0] < 2 * MARKET.n_ticks
    if task == "max-return":
        cpa = rollout_states(policy, market, POP, seed=3, periods=[2], slots=[1, 4], task="cpa")
        assert np.all(d["action"] >= cpa["action"]) and np.mean(d["action"] - cpa["action"]) > 0.3


def test_the_expert_alone_plays_and_labels_every_tick_as_the_expert():
    d = rollout_states(Mix(None, 1.0), MARKET, POP, seed=3, periods=[2], slots=[4])
    assert d["expert"].all() and d["expert"].size > 0
    assert d["campaigns"][0]["expert_ticks"] == MARKET.n_ticks


def record_periods(monkeypatch) -> list[int]:
    """The list every period played from now on is appended to (single campaigns and batched
    periods, which validation plays)."""
    played = []
    reset = BiddingEnv.reset

    def recording_reset(self, *, seed=None, period=0):
        played.append(period)
        return reset(self, seed=seed, period=period)

    monkeypatch.setattr(BiddingEnv, "reset", recording_reset)
    batch_init = CampaignBatch.__init__

    def recording_batch(self, config, seed, period, *args, **kwargs):
        played.append(period)
        batch_init(self, config, seed, period, *args, **kwargs)

    monkeypatch.setattr(CampaignBatch, "__init__", recording_batch)
    return played


def interrupt_in_round_1(monkeypatch, run_dir, **kwargs) -> None:
    """Start ``train_oil(run_dir, **kwargs)`` and kill it (KeyboardInterrupt) in round 1's rollouts."""
    calls = {"n": 0}
    real = oil.rollout_states

    def dies_in_round_1(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(oil, "rollout_states", dies_in_round_1)
    with pytest.raises(KeyboardInterrupt):
        train_oil(run_dir, **kwargs)
    monkeypatch.setattr(oil, "rollout_states", real)


def test_rollouts_never_touch_validation_or_evaluation_periods(tmp_path, monkeypatch):
    played = record_periods(monkeypatch)
    train_oil(tmp_path / "run", market=MARKET, seed=1, overrides={**TINY, "rounds": 3}, first_period=5,
              validation=ValidationSet(periods=1, slots=(0, 3)), progress=False)
    training = [p for p in played if p < VALIDATION_FIRST_PERIOD]
    validation = [p for p in played if p >= VALIDATION_FIRST_PERIOD]
    assert set(training) == {5, 6, 7}                 # one new training period per round
    assert set(validation) == {VALIDATION_FIRST_PERIOD}
    assert all(p < EVAL_FIRST_PERIOD for p in played)
    with pytest.raises(ConfigError, match="periods"):
        rollout_states(StateRule(), MARKET, POP, 0, [VALIDATION_FIRST_PERIOD], [0])
    with pytest.raises(ConfigError, match="first_period"):
        train_oil(tmp_path / "late", market=MARKET, overrides=TINY, first_period=VALIDATION_FIRST_PERIOD - 1)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    whole = train_oil(tmp_path / "whole", market=MARKET, seed=2, overrides=TINY, validation=None, progress=False)
    interrupt_in_round_1(monkeypatch, tmp_path / "cut", market=MARKET, seed=2, overrides=TINY, validation=None, progress=False)
    resumed = train_oil(tmp_path / "cut", market=MARKET, seed=2, overrides=TINY, validation=None, progress=False)
    assert resumed.resumed_from == 1 and resumed.n_states == whole.n_states
    mixed = np.load(tmp_path / "cut" / "states.npz")
    assert 0 < mixed["expert"][mixed["round"] == 1].mean() < 1           # round 1: expert share 0.5
    a = read_checkpoint(tmp_path / "whole" / "last.pt")["algorithm"]["nets"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["algorithm"]["nets"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rounds = [json.loads(line)["round"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1]
    with pytest.raises(ValueError, match="config"):
        train_oil(tmp_path / "cut", market=MARKET, seed=2, overrides={**TINY, "lr": 3e-3}, validation=None, progress=False)
    longer = train_oil(tmp_path / "cut", market=MARKET, seed=2, overrides={**TINY, "rounds": 3}, validation=None, progress=False)
    assert longer.resumed_from == 2 and longer.n_states > whole.n_states
    rounds = [json.loads(line)["round"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2]


def test_oil_learns_what_no_fixed_multiplier_can():
    """Budgets bind differently per campaign, so the best multiplier depends on the campaign and on
    its day so far: trained on training periods 0-5, the student beats every fixed multiplier of a
    grid on unseen training periods, and predicts the oracle's labels on its own states better
    than any constant (a constant's squared error is at least the labels' variance)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train_oil(tmp, market=MARKET, seed=0, overrides={"rounds": 3, "periods_per_round": 2, "steps": 300,
                                                         "hidden_dims": (64, 64), "batch_size": 128},
                  validation=None, progress=False)
        policy = load_policy(f"{tmp}/best.pt")
    held_out = range(50, 54)
    d = rollout_states(policy, MARKET, POP, 0, held_out, range(MARKET.n_advertisers))
    student = np.mean([c["expected_score"] for c in d["campaigns"]])
    fixed = {rate: np.mean([c["expected_score"] for c in rollout_states(
        Constant(math.log(rate)), MARKET, POP, 0, held_out, range(MARKET.n_advertisers))["campaigns"]])
        for rate in (0.5, 0.7, 1.0, 1.4, 2.0)}
    assert student > 1.05 * max(fixed.values()), (student, fixed)
    predicted = np.array([policy.act(s[None], np.zeros(0), np.zeros(0)) for s in d["obs"]])
    assert np.mean((predicted - d["action"]) ** 2) < 0.8 * np.var(d["action"])


def test_the_command_trains_and_the_checkpoint_evaluates_as_oil(tmp_path, capsys):
    from aigb.cli import main

    run = tmp_path / "run"
    assert main(["train", "oil", "--out", str(run), "--n-pv", "1500", "--set", "rounds=1", "--set", "slots=[0, 5]",
                 "--steps", "5", "--no-validation", "--quiet"]) == 0
    assert f"oil:{run}/best.pt" in capsys.readouterr().out
    assert read_checkpoint(run / "best.pt")["algo"] == "oil"
    assert main(["evaluate", "--strategy", f"oil:{run}/best.pt", "--periods", "1", "--slots", "5", "--n-pv", "1500",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert main(["train", "oil", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "--data: oil learns from its own rollouts" in capsys.readouterr().err
    assert main(["train", "bc", "--out", str(tmp_path / "y")]) == 2
    assert "--data: bc learns from a dataset" in capsys.readouterr().err


def test_worker_processes_give_the_states_of_one_process():
    mix = Mix(StateRule(), 0.5, stream=1)
    one = rollout_states(mix, MARKET, POP, 4, [3], [0, 2, 5], workers=1)
    two = rollout_states(mix, MARKET, POP, 4, [3], [0, 2, 5], workers=2)
    assert 0 < one["expert"].mean() < 1
    for key in ("obs", "action", "tick", "period", "advertiser", "expert"):
        np.testing.assert_array_equal(one[key], two[key])
