"""DiffBid: guidance, in-painting, seeding, the completer loss, inverse dynamics, plan-feature parity."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from aigb.algos.checkpoint import load_algorithm, read_checkpoint, save_checkpoint
from aigb.algos.diffbid import SUPPORT_LEVELS, DiffBid, DiffBidConfig, held_from, open_loop_days, remaining_levels, transition_rows
from aigb.algos.plan_features import MARKET_CHANNELS, DemandPlan, MarketPlan, RobustScaler, efficiency_rank
from aigb.algos.registry import make_algorithm
from aigb.data.dataset import TrajectoryDataset
from aigb.data.generate import generate_dataset
from aigb.data.trajectories import trajectory_columns
from aigb.diffusion import cfg_combine, ddim_sample, x0_model_eps_fn
from aigb.features import FEATURE_DIM, FEATURE_NAMES
from aigb.seeding import rng, torch_seed
from aigb.sim.env import BiddingEnv
from aigb.sim.population import EXPLORE
from aigb.types import ConfigError, MarketConfig

SMALL = MarketConfig(n_pv=3000, preset="random")
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 4,
        "idm_hidden_dims": (32, 32), "batch_size": 16, "warmup_steps": 10}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffbid-data")
    generate_dataset(out, periods=2, seed=11, market=SMALL, progress=False)
    return TrajectoryDataset.load(out)


def _trained(dataset, steps=20, seed=0, **overrides):
    algo = make_algorithm("diffbid", dataset.feature_dim, {**TINY, **overrides}, seed=seed)
    algo.prepare(dataset, seed)
    gen = rng(seed, "diffbid-test")
    for _ in range(steps):
        algo.update(algo.sample_batch(dataset, 16, gen))
    return algo


@pytest.fixture(scope="module")
def algo(dataset):
    return _trained(dataset)


def _states(dataset, i=3, t=10):
    return dataset.obs[i, : t + 1]


def _reference_plan(algo, states, seed, emb_kind, w=None):
    """The plan a hand-written sampler makes from the EMA networks: conditional, unconditional or guided."""
    planner = algo.policy()
    t = states.shape[0] - 1
    prefix = torch.from_numpy(algo.plan_scaler.to_unit(algo.view.plan(states)))
    known_x = torch.zeros(1, algo.horizon, len(MARKET_CHANNELS))
    known_x[0, : t + 1] = prefix
    known_mask = torch.arange(algo.horizon)[None] <= t
    context = torch.from_numpy(algo.context_scaler.to_unit(algo.view.context(states)))[None]
    cond, den = algo.nets["ema_cond"].eval(), algo.nets["ema_denoiser"].eval()
    outcome = torch.tensor([[algo.config.target_return, algo.config.target_cpa, algo.config.target_util]])
    kw = {"known": known_mask} if den.known_input else {}   # the realised rows' flags (known_input)
    with torch.no_grad():
        e_c, e_u = cond(context, outcome), cond(context, None)
        if emb_kind == "cond":
            eps_fn = lambda x, k: den(x, k, e_c, **kw)  # noqa: E731
        elif emb_kind == "null":
            eps_fn = lambda x, k: den(x, k, e_u, **kw)  # noqa: E731
        else:
            eps_fn = lambda x, k: cfg_combine(den(x, k, e_c, **kw), den(x, k, e_u, **kw), w)  # noqa: E731
        if algo.config.prediction == "x0":   # the network predicts the plan; the sampler takes the implied noise
            eps_fn = x0_model_eps_fn(eps_fn, algo.schedule)
        g = torch.Generator().manual_seed(torch_seed(seed, "diffbid/plan", t))
        c = planner.config
        return ddim_sample(eps_fn, algo.schedule, (1, algo.horizon, len(MARKET_CHANNELS)), steps=c.sampling_steps,
                           temperature=c.temperature, known_x=known_x, known_mask=known_mask, generator=g,
                           clip_x0=c.clip_x0)[0].numpy()


def test_guidance_weight_0_and_1_are_the_unconditional_and_conditional_models(algo, dataset):
    states = _states(dataset)
    cond = _reference_plan(algo, states, 5, "cond")
    null = _reference_plan(algo, states, 5, "null")
    assert not np.allclose(cond, null, atol=1e-4)          # the outcome condition matters, so the test can fail
    np.testing.assert_array_equal(algo.policy(guidance=1.0).plan(states, seed=5).unit, cond)
    np.testing.assert_array_equal(algo.policy(guidance=0.0).plan(states, seed=5).unit, null)
    # In between, both branches run in one batch and are mixed: eps_u + w (eps_c - eps_u).
    np.testing.assert_allclose(algo.policy(guidance=2.5).plan(states, seed=5).unit,
                               _reference_plan(algo, states, 5, "mix", w=2.5), atol=1e-3)   # batch 2 vs 1 rounding
    # Unconditional plans ignore the targets; conditional ones follow them.
    low, high = algo.policy(guidance=0.0, target_return=0.1), algo.policy(guidance=0.0, target_return=0.95)
    np.testing.assert_array_equal(low.plan(states, seed=5).unit, high.plan(states, seed=5).unit)
    assert not np.array_equal(algo.policy(guidance=1.0, target_return=0.1).plan(states, seed=5).unit, cond)


@pytest.mark.parametrize("t", [0, 7, 46, 47])
def test_the_realised_prefix_is_unchanged_by_planning(algo, dataset, t):
    states = _states(dataset, 5, t)
    step = algo.policy(guidance=1.7, eta=0.5).plan(states, seed=1)
    expected = algo.plan_scaler.to_unit(algo.view.plan(states))
    assert step.unit.shape == (49, len(MARKET_CHANNELS)) and step.tick == t
    np.testing.assert_array_equal(step.unit[: t + 1], expected)
    np.testing.assert_allclose(step.plan[: t + 1], algo.view.plan(states), rtol=1e-5, atol=1e-4)
    # The rest is planned, not copied from anywhere.
    assert np.all(np.isfinite(step.unit)) and not np.allclose(step.unit[t + 1:], 0.0)


def test_same_seed_same_plan_other_seed_other_plan(algo, dataset):
    states = _states(dataset, 2, 20)
    planner = algo.policy(eta=1.0)                         # stochastic steps too, all from the seeded generator
    a, b, c = planner.plan(states, seed=9), planner.plan(states, seed=9), planner.plan(states, seed=10)
    np.testing.assert_array_equal(a.unit, b.unit)
    assert a.action == b.action
    assert not np.array_equal(a.unit, c.unit)
    # A fresh planner from the same weights, and torch's global generator left alone.
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    np.testing.assert_array_equal(algo.policy(eta=1.0).plan(states, seed=9).unit, a.unit)
    assert torch.equal(torch.random.get_rng_state(), before)


class _GarbageOnKnownRows(torch.nn.Module):
    """Wraps a denoiser and corrupts its output on rows 0..prefix (or on one unknown row)."""

    def __init__(self, inner, prefix, unknown_too=False):
        super().__init__()
        self.inner, self.prefix, self.unknown_too = inner, torch.as_tensor(prefix), unknown_too
        self.known_input = inner.known_input   # the loss hands it the known flags like the inner one

    def forward(self, x_t, t, emb, **known):
        out = self.inner(x_t, t, emb, **known)
        rows = torch.arange(out.shape[1])[None]
        bad = rows <= self.prefix[:, None]
        if self.unknown_too:
            bad = rows == self.prefix[:, None] + 1
        return torch.where(bad[..., None], out + 1e3, out)


def test_the_completer_loss_ignores_the_prefix(dataset):
    batch = make_algorithm("diffbid", dataset.feature_dim, TINY).sample_batch(dataset, 32, rng(0, "prefix"))
    losses = {}
    for variant in ("plain", "known", "unknown"):
        algo = make_algorithm("diffbid", dataset.feature_dim, TINY, seed=4)
        algo.prepare(dataset, 4)
        if variant != "plain":
            algo.nets["denoiser"] = _GarbageOnKnownRows(algo.nets["denoiser"], batch["prefix"], variant == "unknown")
        losses[variant] = algo.update(batch)["diffusion_loss"]
    assert losses["known"] == losses["plain"]
    assert losses["unknown"] > 100 * losses["plain"]       # the same garbage one row later counts


def test_without_completer_training_the_prefix_rows_are_learned(dataset):
    """completer=False (the ablation): the same days, but only row 0 is kept clean, so garbage on
    the rows a completer batch would have kept clean now counts in the loss."""
    full = make_algorithm("diffbid", dataset.feature_dim, TINY).sample_batch(dataset, 32, rng(0, "prefix"))
    whole = make_algorithm("diffbid", dataset.feature_dim, {**TINY, "completer": False}).sample_batch(dataset, 32, rng(0, "prefix"))
    assert (full["prefix"] > 0).sum() > 16 and not whole["prefix"].any()
    np.testing.assert_array_equal(whole["obs"], full["obs"])
    losses = {}
    for variant in ("plain", "garbage"):
        algo = make_algorithm("diffbid", dataset.feature_dim, {**TINY, "completer": False}, seed=4)
        algo.prepare(dataset, 4)
        if variant == "garbage":   # garbage on rows 0..t of the completer batch's prefixes t
            algo.nets["denoiser"] = _GarbageOnKnownRows(algo.nets["denoiser"], full["prefix"])
        losses[variant] = algo.update(whole)["diffusion_loss"]
    assert losses["garbage"] > 100 * losses["plain"]
    with pytest.raises(ConfigError, match="completer"):
        DiffBidConfig(completer=1)


def test_inverse_dynamics_fits_a_synthetic_mapping(dataset):
    algo = make_algorithm("diffbid", dataset.feature_dim, {**TINY, "idm_hidden_dims": (64, 64), "idm_lr": 3e-3}, seed=0)
    algo.prepare(dataset, 0)
    gen = rng(0, "idm")

    def target(batch):
        # An action that depends on the planned next state and the current one, as a spend target does.
        rows = transition_rows(algo.plan_scaler.to_unit(torch.from_numpy(batch["obs"])), torch.from_numpy(batch["tick"]))
        x = rows.numpy()
        return np.clip(-0.5 + 0.8 * (x[:, 3, 0] - x[:, 2, 0]) + 0.6 * np.tanh(x[:, 2, 4]) + 0.3 * x[:, 2, 6], -3, 2).astype(np.float32)

    for _ in range(400):
        batch = algo.sample_batch(dataset, 64, gen)
        batch["action"] = target(batch)
        algo.update(batch)
    test = algo.sample_batch(dataset, 512, rng(1, "idm-test"))
    y = target(test)
    algo.nets.eval()
    with torch.no_grad():
        rows = transition_rows(algo.plan_scaler.to_unit(torch.from_numpy(test["obs"])), torch.from_numpy(test["tick"]))
        context = algo.context_scaler.to_unit(torch.from_numpy(test["context"]))
        info = algo.info_scaler.to_unit(torch.from_numpy(test["tick_info"]))
        pred = algo.bounds.from_unit(algo.nets["idm"](rows, context, info)).numpy()
    assert np.mean((pred - y) ** 2) < 0.1 * np.var(y)


def test_transition_rows_take_any_offsets_and_clamp_at_both_ends():
    plans = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1)   # row r of plan b holds 6b + r
    rows = transition_rows(plans, torch.tensor([0, 4]), (-2, -1, 0, 1, 2, 4))
    assert rows[0, :, 0].tolist() == [0, 0, 0, 1, 2, 4]          # before row 0: row 0
    assert rows[1, :, 0].tolist() == [8, 9, 10, 11, 11, 11]      # after the last row (5): the last
    assert transition_rows(plans, torch.tensor([3]))[0, :, 0].tolist() == [1, 2, 3, 4]   # default t-2..t+1


@pytest.mark.parametrize("rows", [(0,), (-1, 0), (0, 1, 1), (0, 1, 49), (0, 1.5)])
def test_idm_rows_must_hold_the_current_and_next_state(rows):
    with pytest.raises(ConfigError, match="idm_rows"):
        DiffBidConfig(idm_rows=rows)


def test_inverse_dynamics_of_other_rows_refits_under_a_trained_planner(dataset, tmp_path):
    """update_inverse_dynamics trains the IDM alone (the planner's weights stay bit for bit) and a
    planner whose IDM reads rows (0, 1, 2) saves, loads and acts from the third row too."""
    algo = _trained(dataset, steps=5, idm_rows=(0, 1, 2), idm_lr=3e-3)
    before = {k: v.clone() for k, v in algo.nets.state_dict().items()}
    gen = rng(2, "refit")
    losses = [algo.update_inverse_dynamics(algo.sample_batch(dataset, 64, gen)) for _ in range(60)]
    after = algo.nets.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("idm."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("idm."))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    path = save_checkpoint(tmp_path / "refit.pt", algo)
    loaded = load_algorithm(path)
    assert loaded.config.idm_rows == (0, 1, 2) and loaded.nets["idm"].net[0].in_features == algo.nets["idm"].net[0].in_features
    states = _states(dataset)
    assert loaded.policy().plan(states, seed=3).action == algo.policy().plan(states, seed=3).action


def test_remaining_levels_by_hand():
    action = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 7.0, 7.0], [-1.0, 1.0, -1.0, 1.0]])
    levels = remaining_levels(action, np.array([3, 1, 4]))
    # active ticks 3: means of (1,2,3), (2,3), (3), then the last active action; 1 tick: 0.5 all day
    np.testing.assert_allclose(levels, [[2.0, 2.5, 3.0, 3.0], [0.5] * 4, [0.0, 1 / 3, 0.0, 1.0]])


def test_open_loop_days_by_hand():
    t = np.arange(20)
    fixed = np.full(20, 0.3)                                       # a constant level: open loop
    noisy = 0.3 + np.where(t % 2 == 0, 0.2, -0.2)                  # alternating noise: autocorrelation -1
    trend = np.linspace(-1.0, 1.0, 20)                             # a pacing drift: autocorrelation ~0.85
    short = np.full(20, 0.1)
    days = open_loop_days(np.stack([fixed, noisy, trend, short]), np.array([20, 20, 20, 8]))
    assert days.tolist() == [True, True, False, False]             # the last acts on 8 ticks only (< 12)
    d = trend - trend.mean()
    assert (d[1:] * d[:-1]).sum() / (d * d).sum() > 0.8            # the trend's autocorrelation, by numpy


def test_a_level_planner_learns_levels_from_open_loop_days_only(dataset, level_algo, monkeypatch):
    batch = level_algo.sample_batch(dataset, 64, rng(6, "open-loop"))
    a = level_algo._arrays(dataset)
    assert batch["condition_known"].dtype == bool and batch["condition_known"].shape == (64,)
    seen = {}
    cond = level_algo.nets["cond"]
    forward = cond.forward

    def spy(context, outcome=None, drop=None):
        seen["drop"] = drop.clone()
        return forward(context, outcome, drop)

    monkeypatch.setattr(cond, "forward", spy)
    batch["condition_known"] = np.arange(64) % 2 == 0              # every other day open-loop
    level_algo.update(batch)
    assert bool(seen["drop"][1::2].all())                          # closed-loop days: condition dropped
    assert not bool(seen["drop"][::2].all())                       # open-loop days keep it (but for dropout)
    assert a["open_loop"].shape == (a["plan"].shape[0],)


def test_held_from_by_hand():
    t_max = 8
    open_day = [0.3, 0.1, 0.5, 0.2, 0.4, 0.0, 0.3, 0.3]
    held = [0.9, 0.5, 0.7, 0.2, 0.2, 0.2, 0.2, 0.2]            # holds 0.2 from tick 3
    exhausted = [0.9, 0.5, 0.1, 0.1, 0.1, 0.8, 0.6, 0.4]       # holds 0.1 over ticks 2-4, then exhausted (5 active)
    pacing = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]          # never holds
    single = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7]          # a run of two at the end: held from 6
    action = np.array([open_day, held, exhausted, pacing, single])
    got = held_from(action, np.array([8, 8, 5, 8, 8]), np.array([True, False, False, False, False]))
    assert got.tolist() == [0, 3, 2, t_max, 6]
    assert held_from(action, np.array([8, 8, 5, 8, 8]), np.zeros(5, bool), min_ticks=3)[4] == t_max


def test_a_held_level_planner_keeps_the_condition_from_the_hold_on(tmp_path):
    generate_dataset(tmp_path, periods=2, seed=11, market=SMALL, progress=False,
                     population=replace(EXPLORE, hold_share=0.5))
    held_data = TrajectoryDataset.load(tmp_path)
    algo = make_algorithm("diffbid", held_data.feature_dim, {**TINY, "condition": "level", "guidance": 1.0,
                                                             "level_days": "held"}, seed=0)
    algo.prepare(held_data, 0)
    a = algo._arrays(held_data)
    t_max = a["action"].shape[1]
    holding = (a["held_from"] > 0) & (a["held_from"] < t_max)
    assert holding.mean() > 0.25                                   # half the advertisers hold (some exhaust first)
    batch = algo.sample_batch(held_data, 256, rng(7, "held"))
    # the batch's days, found by their plans, and whether each prefix ends inside the day's held part
    day = np.array([int(np.flatnonzero((a["plan"] == row).all(axis=(1, 2)))[0]) for row in batch["obs"]])
    np.testing.assert_array_equal(batch["condition_known"], batch["prefix"] >= a["held_from"][day])
    assert batch["condition_known"][holding[day]].any() and not batch["condition_known"][holding[day]].all()
    # the support at a tick: quantiles over the (day, tick)s from each day's hold on, still bidding
    for t in (0, 20, 40):
        rows = [a["level"][d, t] for d in range(a["level"].shape[0]) if t >= a["held_from"][d] and a["active_ticks"][d] > t]
        np.testing.assert_allclose(algo.level_support[:, t], np.quantile(rows, SUPPORT_LEVELS))
    # an open-loop planner on the same data reads the open-loop days only
    plain = make_algorithm("diffbid", held_data.feature_dim, {**TINY, "condition": "level", "guidance": 1.0}, seed=0)
    plain.prepare(held_data, 0)
    np.testing.assert_array_equal(plain.sample_batch(held_data, 256, rng(7, "held"))["condition_known"], a["open_loop"][day])


@pytest.fixture(scope="module")
def level_algo(dataset):
    return _trained(dataset, steps=20, condition="level", search_levels=5, search_samples=2, guidance=1.0)


def test_a_level_planner_is_conditioned_on_the_mean_remaining_logged_action(dataset, level_algo):
    batch = level_algo.sample_batch(dataset, 64, rng(5, "levels"))
    tr = dataset.trajectories()
    acts = level_algo.bounds.clip(tr["action"].astype(np.float64))
    active = np.maximum(1, level_algo.view.can_act(tr["obs"]).sum(axis=1))
    for j in range(64):   # find each sample's campaign by its plan, then average its logged actions by hand
        i = int(np.flatnonzero((level_algo._arrays(dataset)["plan"] == batch["obs"][j]).all(axis=(1, 2)))[0])
        t, k = int(batch["prefix"][j]), int(active[i])
        expected = acts[i, t:k].mean() if t < k else acts[i, k - 1]
        assert batch["outcome"][j, 0] == pytest.approx(float(level_algo.bounds.to_unit(expected)), abs=1e-5)
    low, high = level_algo.level_range
    assert level_algo.bounds.low <= low < high <= level_algo.bounds.high


def test_a_level_planner_bids_the_level_whose_plans_score_best(dataset, level_algo):
    """The batched search equals a brute force: each level sampled alone from the same noise, its
    plans scored by hand from the last row (v_T min(1, (v_T / spent)^2)) and their scores averaged."""
    planner = level_algo.policy()
    states = _states(dataset, i=2, t=7)
    step = planner.plan(states, seed=5)
    t = states.shape[0] - 1
    noise = torch.randn((2, planner.horizon, len(planner.channels)),
                        generator=torch.Generator().manual_seed(torch_seed(5, "diffbid/plan", t)))
    prefix = torch.from_numpy(level_algo.plan_scaler.to_unit(level_algo.view.plan(states)))
    known_x = torch.zeros(2, planner.horizon, len(planner.channels))
    known_x[:, : t + 1] = prefix
    known_mask = (torch.arange(planner.horizon)[None] <= t).expand(2, -1)
    context = torch.from_numpy(level_algo.context_scaler.to_unit(level_algo.view.context(states)))[None]
    scores = []
    for level in planner.levels:
        emb = planner.cond(context.expand(2, -1), level_algo.bounds.to_unit(level).view(1, 1).expand(2, 1))
        eps_fn = x0_model_eps_fn(lambda x, k, emb=emb: planner.denoiser(x, k, emb, known=known_mask), planner.schedule)
        x0 = ddim_sample(eps_fn, planner.schedule, (2, planner.horizon, len(planner.channels)), steps=4, temperature=0.5,
                         known_x=known_x, known_mask=known_mask, noise=noise, clip_x0=3.0, generator=torch.Generator())
        plan = level_algo.plan_scaler.from_unit(x0).numpy().astype(np.float64)
        v = plan[:, -1, MARKET_CHANNELS.index("value_delivered")]
        spent = np.maximum(1 - plan[:, -1, MARKET_CHANNELS.index("budget_left")], 1e-6)
        efficiency = np.maximum(v, 0) * np.minimum(1, (np.maximum(v, 0) / spent) ** 2)
        scores.append(np.log(np.mean(np.maximum(efficiency, 1e-6))))
    assert np.ptp(scores) > 1e-3                      # the levels' plans do differ
    # levels above the data's support at this tick are not searched (the lowest always is)
    cap = np.quantile(level_algo._arrays(dataset)["level"][:, t][_live_open_loop(level_algo, dataset, t)], 0.9)
    assert planner.level_cap[t] == pytest.approx(cap)
    scores = [sc if (j == 0 or lv <= cap) else -np.inf for j, (sc, lv) in enumerate(zip(scores, planner.levels.numpy()))]
    best = int(np.argmax(scores))
    assert step.candidate == best and step.action == pytest.approx(float(planner.levels[best]))
    assert step.plan.shape == (planner.horizon, len(planner.channels))


def test_a_level_planners_trust_region_limits_the_change_per_tick(dataset, level_algo):
    """With max_change, a level planner told that last tick's level was far from its free choice
    bids within max_change of that level instead."""
    free, held = level_algo.policy(support=1.0), level_algo.policy(max_change=0.5, support=1.0)
    levels = held.levels.numpy()
    for t in (0, 5, 11):
        states = _states(dataset, i=4, t=t)
        choice = free.plan(states, seed=9).action
        previous = float(levels[np.argmax(np.abs(levels - choice))])   # the level farthest from it
        assert abs(previous - choice) > 0.5
        step = held.plan(states, seed=9, previous=previous)
        assert abs(step.action - previous) <= 0.5 + 1e-6 and step.action != choice
        assert held.plan(states, seed=9).action == choice           # no previous level: no limit
    with pytest.raises(ConfigError, match="max_change"):
        DiffBidConfig(max_change=-1.0)


def test_a_level_search_samples_only_the_levels_it_may_choose(dataset, level_algo):
    """Levels outside the trust region (or above the support cap) are not sampled: the denoiser sees
    S rows per allowed level, and the choice and its plan are those of the unrestricted search
    whenever its choice is allowed (a level's plans depend on its condition and the shared noise only)."""
    free, held = level_algo.policy(support=1.0), level_algo.policy(max_change=0.8, support=1.0)
    levels = held.levels.numpy()
    batches = []
    inner = held.denoiser

    def counting(x, k, emb, **known):
        batches.append(x.shape[0])
        return inner(x, k, emb, **known)

    counting.known_input = inner.known_input   # the sampler hands it the known flags like the inner one
    held.denoiser = counting
    states = _states(dataset, i=3, t=9)
    choice = free.plan(states, seed=2)
    previous = float(choice.action)
    step = held.plan(states, seed=2, previous=previous)
    allowed = int((np.abs(levels - previous) <= 0.8).sum())
    assert 2 <= allowed < levels.size
    assert set(batches) == {allowed * held.config.search_samples}
    assert step.candidate == choice.candidate
    np.testing.assert_allclose(step.plan, choice.plan, rtol=1e-4, atol=1e-5)


def _live_open_loop(algo, dataset, t):
    a = algo._arrays(dataset)
    days = a["open_loop"] if a["open_loop"].any() else np.ones_like(a["open_loop"])
    return days & (a["active_ticks"] > t)


def test_a_level_planner_saves_its_levels_and_refuses_candidate_search(dataset, level_algo, tmp_path):
    loaded = load_algorithm(save_checkpoint(tmp_path / "level.pt", level_algo))
    np.testing.assert_array_equal(loaded.level_range, level_algo.level_range)
    np.testing.assert_array_equal(loaded.level_support, level_algo.level_support)
    assert loaded.task == "cpa" and loaded.config.condition == "level"
    states = _states(dataset)
    assert loaded.policy().plan(states, seed=2).action == level_algo.policy().plan(states, seed=2).action
    with pytest.raises(ValueError, match="n: a level planner"):
        level_algo.policy(n_candidates=4, select="plan")
    with pytest.raises(ConfigError, match="condition"):
        DiffBidConfig(condition="levels")


def test_plan_features_online_equal_offline():
    """A period played through the env: the plan prefix the strategy builds online from its
    observations equals the plan built offline from the dataset's trajectory rows."""
    market, advertiser = MarketConfig(n_pv=50_000), 20
    env = BiddingEnv(market, advertiser=advertiser, seed=13)
    obs, _ = env.reset()
    view = MarketPlan(FEATURE_DIM, market.n_ticks)
    online_rows, seen = [], []
    while True:
        seen.append(obs.features)
        online_rows.append(view.plan(np.stack(seen))[-1])  # what the planner in-paints at this tick
        obs, _, done, _, _ = env.step(obs.p_value * obs.campaign.target_cpa * (2.5 + (obs.tick % 4) / 2))
        if done:
            break
    history = {f: v[:, [advertiser]] for f, v in env.sim.history.items()}
    columns = trajectory_columns(0, [env.campaign], history, np.ones((market.n_ticks, 1)))
    days = np.concatenate([columns["state"], columns["next_state"][-1:]])             # (T + 1, F), as the dataset holds it
    offline = view.plan(days)
    assert history["conversions"].sum() > 0
    np.testing.assert_array_equal(np.stack(online_rows), offline[:-1])
    # Rows move over the day; the row after the day has no traffic.
    assert offline[-1, MARKET_CHANNELS.index("pv")] == 0 and np.ptp(offline[:, 0]) > 0.1


def test_demand_plan_adds_the_money_of_the_ticks_own_pvs():
    """plan='demand': the market plan's channels unchanged, plus log1p(sum of the tick's p_values x C
    / (B / T)), checked against the p_values the env hands the bidder before each tick's bids."""
    market, advertiser = MarketConfig(n_pv=30_000), 5
    env = BiddingEnv(market, advertiser=advertiser, seed=3)
    obs, _ = env.reset()
    view, base = DemandPlan(FEATURE_DIM, market.n_ticks), MarketPlan(FEATURE_DIM, market.n_ticks)
    assert view.channels[:-1] == MARKET_CHANNELS and view.channels[-1] == "log_demand"
    seen, expected = [], []
    while True:
        seen.append(obs.features)
        c, b = obs.campaign.target_cpa, obs.campaign.budget
        expected.append(np.log1p(float(np.sum(obs.p_value, dtype=np.float64)) * c / (b / market.n_ticks)))
        obs, _, done, _, _ = env.step(obs.p_value * c * 2.0)
        if done:
            break
    rows = view.plan(np.stack(seen))
    np.testing.assert_array_equal(rows[:, :-1], base.plan(np.stack(seen)))
    np.testing.assert_allclose(rows[:, -1], expected, rtol=1e-5)
    assert np.ptp(rows[:, -1]) > 0.5                                        # the surge shows
    with pytest.raises(ConfigError, match="plan"):
        DiffBidConfig(plan="demands")


def test_plan_features_are_bounded_and_scaled(dataset, algo):
    days = np.concatenate([dataset.obs, dataset.terminal[:, None]], axis=1)
    plan = algo.view.plan(days)
    assert plan.shape == (dataset.n_trajectories, 49, 7) and np.all(np.isfinite(plan))
    unit = algo.plan_scaler.to_unit(plan)
    inside = np.mean(np.abs(unit) <= 1.0 + 1e-6, axis=(0, 1))
    assert np.all(inside >= 0.97), dict(zip(MARKET_CHANNELS, inside))
    np.testing.assert_allclose(plan[:, 0, 0], 1.0)                                   # budget left at the start
    outcomes = algo._arrays(dataset)["outcome"]
    assert outcomes.shape == (dataset.n_trajectories, 3) and np.all((outcomes >= 0) & (outcomes <= 1))


def test_efficiency_rank_and_scaler():
    np.testing.assert_allclose(efficiency_rank(np.array([3.0, 1.0, 2.0, 2.0])), [1.0, 0.0, 0.5, 0.5])
    s = RobustScaler.fit(np.linspace(0, 10, 1001)[:, None])
    np.testing.assert_allclose(s.to_unit(np.array([[0.1], [9.9]])), [[-1.0], [1.0]], atol=1e-6)
    np.testing.assert_allclose(s.from_unit(s.to_unit(np.array([[3.0]]))), [[3.0]], rtol=1e-6)


def test_checkpoint_carries_what_serving_needs(algo, dataset, tmp_path):
    path = save_checkpoint(tmp_path / "d.pt", algo, with_optimizers=False)
    payload = read_checkpoint(path)                                                   # weights_only inside
    extra = payload["algorithm"]["extra"]
    assert payload["feature_version"] == dataset.feature_version and extra["plan_version"] == "plan-v1"
    assert list(extra["channels"]) == list(MARKET_CHANNELS)
    restored = load_algorithm(path)
    np.testing.assert_array_equal(restored.plan_scaler.center, algo.plan_scaler.center)
    np.testing.assert_array_equal(restored.efficiency_levels, algo.efficiency_levels)
    states = _states(dataset, 1, 30)
    assert restored.policy().plan(states, seed=2).action == algo.policy().plan(states, seed=2).action


def test_serving_options_change_the_plan_without_retraining(algo, dataset):
    states = _states(dataset, 0, 12)
    base = algo.policy().plan(states, seed=0).unit
    assert not np.array_equal(algo.policy(steps=2).plan(states, seed=0).unit, base)
    assert not np.array_equal(algo.policy(temperature=1.0).plan(states, seed=0).unit, base)
    assert algo.policy(guidance=3.0).options()["guidance"] == 3.0
    with pytest.raises(ConfigError, match="sampling_steps"):
        algo.policy(steps=algo.config.diffusion_steps + 1)
    with pytest.raises(ConfigError, match="target_return"):
        algo.policy(target_return=1.5)
    with pytest.raises(ValueError, match="beyond the planner's day"):
        algo.policy().plan(np.concatenate([dataset.obs[0], dataset.obs[0, :1]]), seed=0)


def test_market_plan_refuses_other_features(dataset):
    with pytest.raises(ValueError, match="plan 'market' reads v1 states"):
        DiffBid(DiffBidConfig(**TINY), feature_dim=5)
    with pytest.raises(ValueError, match="set n_ticks=48"):
        make_algorithm("diffbid", dataset.feature_dim, {**TINY, "n_ticks": 12}).prepare(dataset, 0)


def test_device_choice():
    from aigb.algos.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            resolve_device("cuda")


def test_inverse_dynamics_learns_only_from_ticks_whose_bids_count(dataset, algo):
    # Half the campaigns run out of budget at tick 30: from then on the market zeroes their bids.
    exhausted = copy.copy(dataset)
    exhausted.obs = dataset.obs.copy()
    exhausted.obs[::2, 30:, FEATURE_NAMES.index("budget_left")] = 0.0
    assert (~algo.view.can_act(exhausted.obs)).mean() == pytest.approx(0.5 * 18 / 48)
    batch = algo.sample_batch(exhausted, 4000, rng(0, "active"))
    rows = batch["obs"][np.arange(4000), batch["tick"]]                               # plan row of the IDM's tick
    assert np.all(rows[:, 0] * np.exp(batch["context"][:, 0]) >= 0.1 - 1e-6)
    assert batch["tick"].max() == 47 and np.any(batch["prefix"] > batch["tick"]) and np.any(batch["prefix"] < batch["tick"])


def test_next_row_weight_weighs_the_row_the_inverse_dynamics_reads(dataset):
    batch = make_algorithm("diffbid", dataset.feature_dim, TINY).sample_batch(dataset, 32, rng(0, "weight"))
    losses = {}
    for weight in (1.0, 10.0):
        for garbage in (False, True):
            algo = make_algorithm("diffbid", dataset.feature_dim, {**TINY, "next_row_weight": weight}, seed=4)
            algo.prepare(dataset, 4)
            if garbage:   # +1e3 on the first unknown row only
                algo.nets["denoiser"] = _GarbageOnKnownRows(algo.nets["denoiser"], batch["prefix"], unknown_too=True)
            losses[weight, garbage] = algo.update(batch)["diffusion_loss"]
    # The corrupted row's share of the loss grows with its weight.
    assert losses[10.0, True] / losses[1.0, True] > 3.0
    assert losses[10.0, False] == pytest.approx(losses[1.0, False], rel=0.5)


def test_a_checkpoint_from_before_prediction_and_known_input_loads_as_it_was_trained(dataset, tmp_path):
    import json

    old = _trained(dataset, prediction="eps", known_input=False)
    path = save_checkpoint(tmp_path / "old.pt", old)
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    del config["prediction"], config["known_input"]       # what a checkpoint written before them holds
    payload["config"] = json.dumps(config, sort_keys=True)
    torch.save(payload, path)
    loaded = load_algorithm(path)
    assert (loaded.config.prediction, loaded.config.known_input) == ("eps", False)
    states = _states(dataset)
    np.testing.assert_array_equal(loaded.policy().plan(states, seed=3).unit, old.policy().plan(states, seed=3).unit)


def test_a_checkpoint_with_retired_serving_options_loads_when_they_were_off(dataset, level_algo, tmp_path):
    """refine and day_noise were removed (within noise); checkpoints written with them load when they
    were off (serving exactly as before) and are refused, naming the option, when one was on."""
    import json

    path = save_checkpoint(tmp_path / "level.pt", level_algo)
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    states = _states(dataset, i=2, t=9)
    for values, refused in (({"refine": False, "day_noise": False}, None), ({"refine": False, "day_noise": True}, "day_noise"),
                            ({"refine": True, "day_noise": False}, "refine")):
        payload["config"] = json.dumps({**config, **values}, sort_keys=True)
        torch.save(payload, path)
        if refused is None:
            loaded = load_algorithm(path)
            np.testing.assert_array_equal(loaded.policy(device="cpu").plan(states, seed=3).unit,
                                          level_algo.policy(device="cpu").plan(states, seed=3).unit)
        else:
            with pytest.raises(ValueError, match=f"{refused}: this diffbid checkpoint serves with {refused} set"):
                load_algorithm(path)


class _PeakCritic:
    """A stand-in Q that peaks at one level: value 100 - (a - peak)^2 (positive on the grid)."""

    def __init__(self, peak: float, feature_dim: int = FEATURE_DIM) -> None:
        self.peak, self.feature_dim, self.source, self.seen = peak, feature_dim, "peak", []

    def values(self, state, actions):
        self.seen.append((np.array(state), np.array(actions)))
        return 100.0 - (np.asarray(actions, dtype=np.float64) - self.peak) ** 2


def test_a_critic_ranks_a_level_planners_levels(dataset, level_algo):
    """select='critic': the level bid is the critic's best among the levels the search may choose,
    asked at the tick's own state; a critic preferring a level above the support cap gets the
    highest level under it, and with change= the best within the trust region."""
    states = _states(dataset, i=5, t=12)
    open_ = level_algo.policy(device="cpu", support=1.0)
    levels = open_.levels.numpy()
    for peak in (levels[1] + 0.01, levels[3] - 0.01):
        critic = _PeakCritic(float(peak))
        step = level_algo.policy(device="cpu", support=1.0, select="critic", critic=critic).plan(states, seed=3)
        nearest = int(np.argmin(np.abs(levels - peak)))
        assert step.candidate == nearest and step.action == pytest.approx(float(levels[nearest]))
        np.testing.assert_array_equal(critic.seen[-1][0], states[-1])
    capped = level_algo.policy(device="cpu", select="critic", critic=_PeakCritic(5.0))
    cap = capped.level_cap[12]
    below = np.flatnonzero(levels <= cap)
    assert below.size < levels.size                                   # the cap leaves some levels out
    assert capped.plan(states, seed=3).candidate == int(below.max())
    near = level_algo.policy(device="cpu", support=1.0, max_change=0.3, select="critic", critic=_PeakCritic(5.0))
    step = near.plan(states, seed=3, previous=float(levels[1]))
    assert step.candidate == int(np.flatnonzero(np.abs(levels - levels[1]) <= 0.3).max())
    # an objective's log f (here -1 on every plan of the critic's favourite) weighs in, x mean |Q|
    guided = level_algo.policy(device="cpu", support=1.0, select="critic", critic=_PeakCritic(float(levels[2])))
    samples = guided.config.search_samples
    guided.objective = lambda x0, t: -(torch.arange(x0.shape[0]) // samples == 2).double()
    second = int(np.argsort(np.abs(levels - levels[2]))[1])
    assert guided.plan(states, seed=3).candidate == second


def test_a_critic_alone_plans_only_the_level_it_keeps(dataset, level_algo, monkeypatch):
    """Without an objective the critic decides from the state: one level's plans are drawn (not the
    whole grid's), and they are the plans that level gets inside the whole grid's batch (an objective
    that is 0 everywhere still plans every level and changes no ranking: the reference)."""
    import aigb.algos.diffbid.search as module
    rows = []
    sample = module.ddim_sample

    def spy(*args, **kwargs):
        rows.append(args[2][0])
        return sample(*args, **kwargs)

    monkeypatch.setattr(module, "ddim_sample", spy)
    states = _states(dataset, i=5, t=12)
    alone = level_algo.policy(device="cpu", support=1.0, select="critic", critic=_PeakCritic(0.1))
    grid = level_algo.policy(device="cpu", support=1.0, select="critic", critic=_PeakCritic(0.1))
    grid.objective = lambda x0, t: torch.zeros(x0.shape[0], dtype=torch.float64)
    fast, full = alone.plan(states, seed=3), grid.plan(states, seed=3)
    samples, n_levels = alone.config.search_samples, alone.levels.numel()
    assert rows == [samples, n_levels * samples]
    assert fast.candidate == full.candidate and fast.action == full.action
    np.testing.assert_allclose(fast.plan, full.plan, rtol=1e-4, atol=1e-5)


def test_a_critic_needs_a_level_planner_and_select_critic(dataset, algo, level_algo):
    with pytest.raises(ValueError, match="ranking by a critic needs one"):
        level_algo.policy(select="critic")
    with pytest.raises(ValueError, match="ranking by a critic needs one"):
        level_algo.policy(critic=_PeakCritic(0.0))
    with pytest.raises(ValueError, match="'critic' ranks the bid levels of a planner trained with condition='level'"):
        algo.policy(select="critic", critic=_PeakCritic(0.0))
    with pytest.raises(ValueError, match="critic: it reads states of 5 features"):
        level_algo.policy(select="critic", critic=_PeakCritic(0.0, feature_dim=5))


def _min_q_by_hand(cql, state, levels):
    """min(Q1, Q2) of a CQL's critic at raw state ``state`` and levels log(alpha / C), from the
    layers' weights: the state normalised and clipped, the bounds [-3, 2] mapped to [-1, 1]."""
    levels = np.clip(np.asarray(levels, dtype=np.float64), -3.0, 2.0)
    norm = cql.normalizer
    s = np.clip((state - norm.state_mean) / norm.state_std, -norm.clip, norm.clip)
    unit = (levels - (-3.0 + 2.0) / 2) / ((2.0 - -3.0) / 2)

    def head(q, x):   # the MLP's Linear/ReLU layers applied by hand
        for layer in q:
            x = np.maximum(x, 0) if isinstance(layer, torch.nn.ReLU) else x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        return x[:, 0]

    x = np.hstack([np.repeat(s[None], len(levels), 0), unit[:, None]]).astype(np.float64)
    twin = cql.nets["critic"]
    return np.minimum(head(twin.q1, x), head(twin.q2, x))


def test_level_critic_is_the_smaller_twin_q_of_a_saved_cql_checkpoint(dataset, tmp_path):
    """LevelCritic.load reads a CQL checkpoint (weights_only) and values a level a at state s as
    min(Q1, Q2) of the normalised state and the unit action, by hand from the network's layers;
    a checkpoint without a Q critic is refused, naming the file."""
    from aigb.algos.level_critic import LevelCritic

    cql = make_algorithm("cql", dataset.feature_dim, {"hidden_dims": (16, 16), "batch_size": 16}, seed=0)
    cql.prepare(dataset, 0)
    gen = rng(0, "critic-test")
    for _ in range(5):
        cql.update(cql.sample_batch(dataset, 16, gen))
    critic = LevelCritic.load(save_checkpoint(tmp_path / "cql.pt", cql))
    state = dataset.obs[2, 7]
    levels = np.array([-3.0, -0.4, 0.0, 0.7, 2.0])
    got = critic.values(state, levels)
    np.testing.assert_allclose(got, _min_q_by_hand(cql, state, levels), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="state: expected shape"):
        critic.values(state[:5], levels)
    bc = make_algorithm("bc", dataset.feature_dim, {"hidden_dims": (8,)}, seed=0)
    bc.prepare(dataset, 0)
    with pytest.raises(ValueError, match="bc.pt holds a BC policy without a Q critic"):
        LevelCritic.load(save_checkpoint(tmp_path / "bc.pt", bc))


def test_an_ensemble_critic_averages_and_qsmooth_integrates_over_a_gaussian(dataset, tmp_path):
    """critic=A,B values a level by the mean of the two checkpoints' min(Q1, Q2) (by hand from each
    network's layers); qsmooth=SD by the critic's expectation over N(level, SD^2), against scipy's
    adaptive quadrature of the hand-computed critic; a level near a bound integrates the clipped
    values (the critic is never asked outside its action interval)."""
    from scipy import integrate, stats

    from aigb.algos.level_critic import LevelCritic

    cqls, paths = [], []
    for seed in (0, 1):
        cql = make_algorithm("cql", dataset.feature_dim, {"hidden_dims": (16, 16), "batch_size": 16}, seed=seed)
        cql.prepare(dataset, seed)
        gen = rng(seed, "critic-ensemble-test")
        for _ in range(5):
            cql.update(cql.sample_batch(dataset, 16, gen))
        cqls.append(cql)
        paths.append(save_checkpoint(tmp_path / f"cql{seed}.pt", cql))
    state = dataset.obs[3, 11]
    levels = np.array([-2.9, -0.4, 0.0, 0.7, 1.9])
    by_hand = [_min_q_by_hand(c, state, levels) for c in cqls]
    assert np.abs(by_hand[0] - by_hand[1]).max() > 1e-3                   # two different critics
    ensemble = LevelCritic.load(paths)
    np.testing.assert_allclose(ensemble.values(state, levels), (by_hand[0] + by_hand[1]) / 2, rtol=1e-4, atol=1e-4)

    sd, cql = 0.3, cqls[0]
    with torch.no_grad():   # a critic bent by the action (kinks within the levels' reach), saved again
        for head in (cql.nets["critic"].q1, cql.nets["critic"].q2):
            head[0].weight[:, -1] *= 20.0
    bent = save_checkpoint(tmp_path / "bent.pt", cql)
    got = LevelCritic.load(bent, smooth=sd).values(state, levels)
    expect = np.array([integrate.quad(lambda z, a=a: _min_q_by_hand(cql, state, [a + sd * z])[0] * stats.norm.pdf(z),
                                      -8, 8, limit=200, epsabs=1e-7, epsrel=1e-5)[0] for a in levels])
    raw = _min_q_by_hand(cql, state, levels)
    assert np.abs(raw - expect).max() > 2e-3                                # smoothing matters here
    assert np.abs(got - expect).max() < 0.25 * np.abs(raw - expect).max()   # and the quadrature finds it
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(LevelCritic.load(paths[0], smooth=0.0).values(state, levels),
                                  LevelCritic.load(paths[0]).values(state, levels))
    with pytest.raises(ValueError, match="qsmooth: must be a finite number >= 0"):
        LevelCritic.load(paths[0], smooth=-1.0)
