"""DiffBid in the loop (``condition="oracle"``): the oracle days it learns, which states and periods
it reads, that it learns, and that it resumes and round-trips through a weights-only checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aigb.algos.checkpoint import load_algorithm, load_policy, read_checkpoint, save_checkpoint
from aigb.workflows.oil import Mix, rollout_states, train_oil
from aigb.workflows.training import ValidationSet
from aigb.features import FEATURE_NAMES
from aigb.seeding import EVAL_FIRST_PERIOD, VALIDATION_FIRST_PERIOD
from aigb.strategies.oracle_state import solve_continuations
from aigb.types import ACTION_HIGH, ACTION_LOW, ConfigError
from tests.workflows.test_oil import MARKET, POP, Constant, StateRule, interrupt_in_round_1, record_periods, replay

# A planner small enough for seconds of CPU: the day of MARKET (8 ticks), a 16-wide transformer.
TINY = {"condition": "oracle", "guidance": 1.0, "n_ticks": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16,
        "diffusion_steps": 20, "sampling_steps": 4, "idm_hidden_dims": (32, 32), "batch_size": 32, "warmup_steps": 5,
        "rounds": 2, "periods_per_round": 1, "steps": 40, "slots": (1, 4), "expert_decay": 0.5}
V1 = {name: i for i, name in enumerate(FEATURE_NAMES)}


def test_an_oracle_day_is_the_realised_prefix_then_the_oracle_plan():
    d = rollout_states(Mix(StateRule(), 0.0, days=True), MARKET, POP, 3, [2], [1, 4])
    assert d["day"].shape == (d["obs"].shape[0], MARKET.n_ticks + 1, len(FEATURE_NAMES))
    for slot in (1, 4):
        rows = np.flatnonzero(d["advertiser"] == slot)
        campaign, states, spent, won, left, (p, comp, tick) = replay(StateRule(), 3, 2, slot)
        b, c = campaign.budget, campaign.target_cpa
        k = solve_continuations(p, comp, tick, b, c, d["tick"][rows], np.minimum(spent[d["tick"][rows]], b),
                                won[d["tick"][rows]], n_ticks=MARKET.n_ticks, exposure_probs=MARKET.net_exposure_probs,
                                reserve_price=MARKET.reserve_price, lp=False, plans=True,
                                alpha_range=(math.exp(ACTION_LOW) * c, math.exp(ACTION_HIGH) * c))
        for j, i in enumerate(rows):
            t, day = d["tick"][i], d["day"][i].astype(np.float64)
            # Rows 0..t are the states the campaign saw.
            np.testing.assert_allclose(day[: t + 1], states[: t + 1], rtol=1e-6, atol=1e-6)
            # Then each tick spends and converts what the oracle's plan says, to the day's end.
            spend = np.diff(day[:, V1["spend"]])[t:]
            np.testing.assert_allclose(spend, k.tick_spend[j, t:], rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(day[-1, V1["conversions"]], won[t] + k.conversions[j], rtol=1e-4, atol=1e-5)
            assert day[-1, V1["spend"]] <= b * (1 + 1e-6)
            # Its win rate: a brute-force count of the PVs whose bid alpha x p_value beats the last slot's price.
            if t <= MARKET.n_ticks - 3:
                last = range(MARKET.n_ticks - 3, MARKET.n_ticks)
                brute = np.mean([np.mean(k.alpha[j] * p[tick == s] > np.maximum(comp[tick == s, -1], MARKET.reserve_price))
                                 for s in last])
                np.testing.assert_allclose(day[-1, V1["last3_win_rate"]], brute, atol=1e-6)


def test_the_loop_labels_only_visited_states_on_training_periods(tmp_path, monkeypatch):
    played = record_periods(monkeypatch)
    train_oil(tmp_path / "run", market=MARKET, seed=1, overrides=TINY, first_period=5, algo="diffbid",
              validation=ValidationSet(periods=1, slots=(0, 3)), progress=False)
    assert {p for p in played if p < VALIDATION_FIRST_PERIOD} == {5, 6}
    assert {p for p in played if p >= VALIDATION_FIRST_PERIOD} == {VALIDATION_FIRST_PERIOD}
    assert all(p < EVAL_FIRST_PERIOD for p in played)
    # Every stored target's realised rows are the visited states of its campaign, tick by tick.
    z = np.load(tmp_path / "run" / "states.npz")
    algo = load_algorithm(tmp_path / "run" / "last.pt")
    for key in {(int(r), int(p), int(a)) for r, p, a in zip(z["round"], z["period"], z["advertiser"])}:
        rows = np.flatnonzero((z["round"] == key[0]) & (z["period"] == key[1]) & (z["advertiser"] == key[2]))
        ticks = z["tick"][rows]
        np.testing.assert_array_equal(ticks, np.arange(ticks.size))      # visited from tick 0 while budget lasts
        realised = algo.view.plan(z["obs"][rows])                            # (n, P) the visited states, as plan rows
        for i, t in zip(rows, ticks):
            np.testing.assert_allclose(z["plan"][i, : t + 1], realised[: t + 1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="condition"):
        train_oil(tmp_path / "outcome", market=MARKET, overrides={**TINY, "condition": "outcome"}, algo="diffbid")


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    kw = {"market": MARKET, "seed": 2, "overrides": TINY, "validation": None, "progress": False, "algo": "diffbid"}
    whole = train_oil(tmp_path / "whole", **kw)
    interrupt_in_round_1(monkeypatch, tmp_path / "cut", **kw)
    resumed = train_oil(tmp_path / "cut", **kw)
    assert resumed.resumed_from == 1 and resumed.n_states == whole.n_states
    a = read_checkpoint(tmp_path / "whole" / "last.pt")["algorithm"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["algorithm"]
    assert a["n_updates"] == b["n_updates"] == TINY["steps"]
    assert all(torch.equal(a["nets"][k], b["nets"][k]) for k in a["nets"])
    rounds = [json.loads(line)["round"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1]

    # The checkpoint holds tensors and plain values only, and plays as it was saved.
    payload = torch.load(tmp_path / "cut" / "best.pt", map_location="cpu", weights_only=True)
    assert payload["algo"] == "diffbid" and json.loads(payload["config"])["condition"] == "oracle"
    algo = load_algorithm(tmp_path / "cut" / "best.pt")
    save_checkpoint(tmp_path / "again.pt", algo, with_optimizers=False)
    first, second = load_policy(tmp_path / "cut" / "best.pt"), load_policy(tmp_path / "again.pt")
    states = np.load(tmp_path / "cut" / "states.npz")["obs"][:4]
    for t in range(1, 5):
        assert first.plan(states[:t], seed=7).action == second.plan(states[:t], seed=7).action


def test_diffbid_in_the_loop_learns_what_no_fixed_multiplier_can(tmp_path):
    """As OIL's test: budgets bind differently per campaign, so the best multiplier depends on the
    campaign and on its day so far. Trained on training periods 0-5, the planner's bids beat every
    fixed multiplier of a grid on unseen training periods."""
    train_oil(tmp_path, market=MARKET, seed=0, algo="diffbid", validation=None, progress=False,
              overrides={**TINY, "rounds": 3, "periods_per_round": 2, "steps": 200, "batch_size": 64, "slots": (),
                         "expert_decay": 0.0, "idm_hidden_dims": (64, 64), "warmup_steps": 20})
    policy = load_policy(tmp_path / "best.pt")
    held_out = range(50, 54)
    d = rollout_states(policy, MARKET, POP, 0, held_out, range(MARKET.n_advertisers))
    student = np.mean([c["expected_score"] for c in d["campaigns"]])
    fixed = {rate: np.mean([c["expected_score"] for c in rollout_states(
        Constant(math.log(rate)), MARKET, POP, 0, held_out, range(MARKET.n_advertisers))["campaigns"]])
        for rate in (0.5, 0.7, 1.0, 1.4, 2.0)}
    assert student > 1.05 * max(fixed.values()), (student, fixed)


def test_the_command_trains_the_oracle_form_and_it_plays_and_exports(tmp_path, capsys):
    from aigb.cli import main

    run = tmp_path / "run"
    sets = [x for key in ("d_model=16", "n_layers=1", "n_heads=2", "emb_dim=16", "diffusion_steps=20", "sampling_steps=4",
                          "idm_hidden_dims=[32]", "guidance=1.0", "condition=oracle", "rounds=1", "slots=[0, 5]")
            for x in ("--set", key)]
    assert main(["train", "diffbid", "--out", str(run), "--n-pv", "1500", "--steps", "5", "--batch-size", "16",
                 "--no-validation", "--quiet", *sets]) == 0
    assert f"diffbid:{run}/best.pt" in capsys.readouterr().out
    assert main(["evaluate", "--strategy", f"diffbid:{run}/best.pt", "--periods", "1", "--slots", "5", "--n-pv", "1500",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert main(["train", "diffbid", "--data", str(tmp_path), "--out", str(tmp_path / "x"), *sets]) == 2
    assert "--data: diffbid learns from its own rollouts" in capsys.readouterr().err


def test_a_dataset_cannot_train_the_oracle_form():
    from aigb.algos.registry import CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm

    data = SyntheticTrajectories()
    algo = make_algorithm("diffbid", data.feature_dim, {**CHECK_OVERRIDES["diffbid"], "condition": "oracle"})
    with pytest.raises(ConfigError, match="condition: 'oracle' learns in the simulator"):
        algo.prepare(data, 0)
