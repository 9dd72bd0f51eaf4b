"""The hindsight oracle against brute force, an independent LP solver and random bid vectors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from aigb.score import score
from aigb.strategies.oracle import (
    best_uniform_alpha,
    efficient_frontier,
    expected_outcome,
    lagrangian_slots,
    slot_bids,
    solve_oracle,
)

E = (1.0, 0.8, 0.48)  # net probability that slot k is shown (AuctionNet cascade)
R = 1e-4


def make_market(seed: int, n: int, n_ticks: int = 4):
    """Random PVs with the awkward cases mixed in: missing competitors, bids at or below the
    reserve, tied competitors (an unreachable slot) and zero p_value."""
    g = np.random.default_rng(seed)
    p = g.uniform(0.0, 1.0, n) * (g.random(n) > 0.1)
    comp = -np.sort(-g.uniform(0.0, 2.0, (n, 3)), axis=1)
    kind = g.integers(0, 6, n)
    comp[kind == 1, 2] = 0.0                     # two competitors
    comp[kind == 2, 1:] = [R, 0.0]               # slot 2 priced exactly at the reserve: unsold
    comp[kind == 3, 1] = comp[kind == 3, 0]      # tie: slot 2 unreachable, slot 3 still sold
    comp[kind == 4, 2] = 0.5 * R                 # below the reserve
    comp[kind == 5] = 0.0 if seed % 2 else comp[kind == 5]
    tick = g.integers(0, n_ticks, n)
    return p, comp, tick


def reference_outcome(p, comps, bid):
    """One PV by the book: rank everyone (competitors win ties), pay the next bid, unsold at the reserve."""
    entries = [(c, 0) for c in comps if c > 0] + ([(bid, 1)] if bid > 0 else [])
    entries.sort(key=lambda x: (-x[0], x[1]))
    pos = next((i for i, x in enumerate(entries) if x[1] == 1), None)
    if pos is None or pos >= len(E):
        return 0.0, 0.0
    price = entries[pos + 1][0] if pos + 1 < len(entries) else 0.0
    if price <= R:
        return 0.0, 0.0
    return E[pos] * p, E[pos] * price


def reachable_outcomes(p, comps):
    """Every (conversions, cost) one PV can end up with: a bid inside every interval and on every tie."""
    levels = sorted({0.0, *comps})
    bids = [0.0, *levels, levels[-1] + 1.0] + [(a + b) / 2 for a, b in zip(levels, levels[1:])]
    return sorted({reference_outcome(p, comps, b) for b in bids})


def integer_table(p, comp):
    """Totals of every combination of per-PV outcomes: (n_combos,) conversions and cost."""
    per_pv = [reachable_outcomes(p[i], comp[i]) for i in range(p.size)]
    conv = np.zeros(1)
    cost = np.zeros(1)
    for opts in per_pv:
        o = np.array(opts)
        conv = (conv[:, None] + o[None, :, 0]).ravel()
        cost = (cost[:, None] + o[None, :, 1]).ravel()
    return conv, cost, per_pv


def lp_conversions(per_pv, budget, target_cpa=None):
    """The multiple-choice knapsack LP solved by HiGHS on the reachable outcomes (an independent check)."""
    items = [(i, v, w) for i, opts in enumerate(per_pv) for v, w in opts if v > 0 or w > 0]
    if not items:
        return 0.0
    v = np.array([x[1] for x in items])
    w = np.array([x[2] for x in items])
    a_ub = [w]
    b_ub = [budget]
    if target_cpa is not None:
        a_ub.append(w - target_cpa * v)
        b_ub.append(0.0)
    for i in range(len(per_pv)):
        a_ub.append(np.array([1.0 if x[0] == i else 0.0 for x in items]))
        b_ub.append(1.0)
    res = linprog(-v, A_ub=np.array(a_ub), b_ub=np.array(b_ub), bounds=(0, None), method="highs")
    assert res.status == 0
    return -res.fun


def test_expected_outcome_matches_the_auction_rules():
    p, comp, _ = make_market(1, 300)
    g = np.random.default_rng(2)
    bids = g.uniform(0, 2.5, p.size)
    bids[::7] = comp[::7, 1]                    # exact ties with a competitor
    bids[::11] = R
    bids[::13] = -1.0
    conv, cost = expected_outcome(p, comp, bids, per_pv=True)
    ref = np.array([reference_outcome(p[i], comp[i], bids[i]) for i in range(p.size)])
    np.testing.assert_array_equal(conv, ref[:, 0])
    np.testing.assert_array_equal(cost, ref[:, 1])
    assert expected_outcome(p, comp, bids) == pytest.approx((conv.sum(), cost.sum()), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_oracle_bounds_brute_force_and_equals_the_lp(seed):
    p, comp, tick = make_market(seed, 7)
    conv, cost, per_pv = integer_table(p, comp)
    full_cost, full_conv = cost.max(), conv.max()
    assert full_cost > 0
    for b_frac in (0.05, 0.2, 0.5, 1.0, 3.0):
        for c_frac in (0.3, 1.0, 3.0):
            budget = b_frac * full_cost
            cpa = c_frac * full_cost / full_conv
            sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=4)
            ok = (cost <= budget) & (cost <= cpa * conv)
            assert conv[ok].max() <= sol.max_conversions + 1e-12
            in_budget = cost <= budget
            assert score(conv[in_budget], cost[in_budget], cpa).max() <= sol.max_score + 1e-12
            assert sol.max_conversions == pytest.approx(lp_conversions(per_pv, budget, cpa), rel=1e-7, abs=1e-9)
            assert sol.frontier(budget) == pytest.approx(lp_conversions(per_pv, budget), rel=1e-7, abs=1e-9)
    # A budget and CPA that bind nothing make the knapsack integral: the LP value is reached.
    sol = solve_oracle(p, comp, tick, 10 * full_cost + 1, 1e9, n_ticks=4)
    assert sol.max_conversions == pytest.approx(full_conv, abs=1e-9)
    assert sol.max_score == pytest.approx(full_conv, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    budget_frac=st.floats(0.01, 2.0),
    cpa_frac=st.floats(0.1, 5.0),
    beta=st.sampled_from([2.0, 1.0, 3.0]),
)
def test_no_bid_vector_beats_the_oracle(seed, n, budget_frac, cpa_frac, beta):
    p, comp, tick = make_market(seed, n)
    all_conv, all_cost = expected_outcome(p, comp, comp[:, 0] + 1.0)
    budget = max(budget_frac * all_cost, 1e-3)
    cpa = cpa_frac * max(all_cost, 1e-3) / max(all_conv, 1e-3)
    sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=4, beta=beta)
    uni = best_uniform_alpha(p, comp, tick, budget, cpa, n_ticks=4, beta=beta)
    tol = 1e-9 * (1 + sol.frontier(np.inf))
    g = np.random.default_rng(seed)
    alphas = np.exp(g.uniform(np.log(1e-2), np.log(1e3), 40))
    per_pv = g.uniform(0, 2.5, (40, n)) * (g.random((40, n)) < 0.7)
    for k in range(40):
        for bids, uniform in ((alphas[k] * p, True), (per_pv[k], False)):
            v, w = expected_outcome(p, comp, bids)
            if w <= budget:
                assert score(v, w, cpa, beta) <= sol.max_score + tol
                if uniform:
                    assert score(v, w, cpa, beta) <= uni.score + tol
                if w <= cpa * v:
                    assert v <= sol.max_conversions + tol
    assert uni.score <= sol.max_score + tol
    assert uni.spend <= budget + tol
    assert sol.max_score >= sol.max_conversions - tol  # the CPA-feasible point is a candidate
    assert sol.spend <= budget and sol.spend_cpa_feasible <= budget


def test_frontier_is_concave_and_non_decreasing():
    p, comp, _ = make_market(7, 3000)
    f = efficient_frontier(p, comp)
    assert np.all(f.efficiency > 0) and np.all(np.diff(f.efficiency) <= 0)
    assert np.all(np.diff(f.spend) > 0) and np.all(np.diff(f.conversions) > 0)
    s = np.random.default_rng(0).uniform(0, 1.2 * f.spend[-1], (2, 5000))
    mid = f(s.mean(axis=0))
    assert np.all(mid >= (f(s[0]) + f(s[1])) / 2 - 1e-9)
    grid = np.linspace(0, 1.2 * f.spend[-1], 5000)
    assert np.all(np.diff(f(grid)) >= 0)
    assert f(2 * f.spend[-1]) == f.conversions[-1]
    # Its end buys each PV's best option.
    v_best, _ = expected_outcome(p, comp, comp[:, 0] + 1.0)
    assert f.conversions[-1] == pytest.approx(v_best, rel=1e-12)


def test_max_score_is_the_exact_maximum_along_the_frontier():
    p, comp, tick = make_market(3, 400)
    f = efficient_frontier(p, comp)
    full_s, full_v = f.spend[-1], f.conversions[-1]
    for budget, cpa in ((0.3 * full_s, 0.5 * full_s / full_v), (full_s, 0.3 * full_s / full_v), (0.7 * full_s, 2 * full_s / full_v)):
        sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=4)
        # No point of a grid, zoomed three times around its best, beats it; and it is attained.
        lo, hi = 0.0, min(budget, full_s)
        for _ in range(4):
            grid = np.linspace(lo, hi, 20_001)
            values = score(f(grid), grid, cpa)
            assert values.max() <= sol.max_score + 1e-12
            step = grid[1] - grid[0]
            lo, hi = max(grid[values.argmax()] - step, 0.0), min(grid[values.argmax()] + step, budget, full_s)
        assert sol.max_score - values.max() <= 1e-9 * sol.max_score
        assert sol.max_score == score(f(sol.spend), sol.spend, cpa) and sol.conversions == f(sol.spend)
        assert sol.spend >= sol.spend_cpa_feasible - 1e-12
    # Without a penalty the whole budget is worth spending.
    sol = solve_oracle(p, comp, tick, 0.5 * full_s, 0.01, n_ticks=4, beta=0.0)
    assert sol.max_score == pytest.approx(f(0.5 * full_s), rel=1e-12)


def test_overshooting_the_cpa_pays_when_the_marginal_cpa_is_low():
    # One slot; 10 PVs at CPA 0.5 then 100 at CPA 1.2 against C = 1. The CPA-feasible point spends
    # 35 (5 + 30 at 1.2 per conversion); beyond it the penalised score V^3 / S^2 falls then rises on
    # the straight piece, so its maximum sits at an end of the piece, never at the stationary point.
    p = np.ones(110)
    comp = np.concatenate([np.full(10, 0.5), np.full(100, 1.2)])[:, None]
    tick = np.zeros(110, dtype=np.int64)
    kw = dict(n_ticks=1, exposure_probs=(1.0,))
    sol = solve_oracle(p, comp, tick, 125.0, 1.0, **kw)
    assert sol.max_conversions == pytest.approx(35.0) and sol.spend_cpa_feasible == pytest.approx(35.0)
    assert sol.spend == pytest.approx(125.0) and sol.max_score == pytest.approx(110 * (110 / 125) ** 2)
    sol = solve_oracle(p, comp, tick, 60.0, 1.0, **kw)
    v = 10 + 55 / 1.2
    assert sol.spend == pytest.approx(60.0) and sol.max_score == pytest.approx(v * (v / 60) ** 2)
    # With the dear PVs at CPA 2 (> 1.5 C) a small overshoot loses; with budget 30 so does the largest
    # (22.5 * 0.75^2 < 15): the optimum is the CPA point. With budget 205 the far end wins again.
    comp[10:] = 2.0
    sol = solve_oracle(p, comp, tick, 30.0, 1.0, **kw)
    assert sol.spend == pytest.approx(15.0) and sol.max_score == pytest.approx(sol.max_conversions) == pytest.approx(15.0)
    sol = solve_oracle(p, comp, tick, 205.0, 1.0, **kw)
    assert sol.spend == pytest.approx(205.0) and sol.max_score == pytest.approx(110 * (110 / 205) ** 2)


@pytest.mark.parametrize("budget_frac,cpa_frac", [(0.2, 5.0), (1.0, 0.4), (0.6, 1.0)])
def test_alpha_realises_the_optimal_point(budget_frac, cpa_frac):
    p, comp, tick = make_market(11, 2000, n_ticks=8)
    f = efficient_frontier(p, comp)
    budget = budget_frac * f.spend[-1]
    cpa = cpa_frac * f.spend[-1] / f.conversions[-1]
    sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=8)
    pairs = {}
    for name, alpha, spend in (("score", sol.alpha, sol.spend), ("cpa", sol.alpha_cpa_feasible, sol.spend_cpa_feasible)):
        # Just below alpha the cut segment is not bought, just above it is: the spend lies between.
        pair = []
        for a in (alpha * (1 - 1e-9), alpha * (1 + 1e-9)):
            conv, cost = expected_outcome(p, comp, slot_bids(comp, lagrangian_slots(p, comp, a)), per_pv=True)
            assert conv.sum() == pytest.approx(f(cost.sum()), rel=1e-9)   # a frontier point
            pair.append(cost)
        assert pair[0].sum() - 1e-9 <= spend <= pair[1].sum() + 1e-9
        assert np.count_nonzero(pair[0] != pair[1]) == 1                 # one fractional segment
        pairs[name] = pair
    # Per tick, the oracle allocation lies between the two integral allocations.
    lo_t, hi_t = (np.bincount(tick, weights=w, minlength=8) for w in pairs["score"])
    assert np.all(lo_t - 1e-9 <= sol.tick_spend) and np.all(sol.tick_spend <= hi_t + 1e-9)
    # bid = alpha * p_value in GSP buys dearer slots than the LP: it never spends less.
    _, gsp_cost = expected_outcome(p, comp, sol.alpha * p)
    assert gsp_cost >= pairs["score"][0].sum() - 1e-9


def test_tick_arrays_add_up():
    p, comp, tick = make_market(5, 1500, n_ticks=6)
    f = efficient_frontier(p, comp)
    budget, cpa = 0.4 * f.spend[-1], f.spend[-1] / f.conversions[-1]
    sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=6)
    assert sol.tick_spend.shape == sol.tick_conversions.shape == sol.tick_alpha.shape == sol.remaining_budget.shape == (6,)
    assert sol.tick_spend.sum() == pytest.approx(sol.spend, rel=1e-12)
    assert sol.tick_conversions.sum() == pytest.approx(sol.conversions, rel=1e-9)
    assert sol.remaining_budget[0] == budget
    np.testing.assert_allclose(-np.diff(sol.remaining_budget), sol.tick_spend[:-1], rtol=1e-12)
    assert np.all(sol.tick_alpha == sol.alpha) and sol.alpha > 0


def test_best_uniform_alpha_is_exact():
    p, comp, tick = make_market(9, 60)
    budget, cpa = 3.0, 1.5
    uni = best_uniform_alpha(p, comp, tick, budget, cpa, n_ticks=4)
    assert (uni.conversions, uni.spend) == pytest.approx(expected_outcome(p, comp, uni.alpha * p), rel=1e-12)
    # Every step of the alpha -> outcome map sits at some c_k / p_value: try just above each one.
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.unique((comp / p[:, None])[np.isfinite(comp / p[:, None])])
    best = 0.0
    for a in np.concatenate([steps * (1 + 1e-9), [0.0]]):
        v, w = expected_outcome(p, comp, a * p)
        if w <= budget:
            best = max(best, score(v, w, cpa))
    assert uni.score == pytest.approx(best, rel=1e-12)
    assert uni.tick_spend.sum() == pytest.approx(uni.spend, rel=1e-12)


def test_degenerate_markets():
    g = np.random.default_rng(0)
    comp = -np.sort(-g.uniform(0, 1, (5, 3)), axis=1)
    tick = np.zeros(5, dtype=np.int64)
    for p, c in ((np.zeros(5), comp), (np.full(5, 0.5), np.zeros((5, 3))), (np.full(5, 0.5), np.full((5, 3), R))):
        sol = solve_oracle(p, c, tick, 10.0, 1.0, n_ticks=2)
        assert sol.max_conversions == sol.max_score == sol.spend == sol.alpha == 0.0
        assert best_uniform_alpha(p, c, tick, 10.0, 1.0, n_ticks=2).score == 0.0
    sol = solve_oracle(np.zeros(0), np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 1.0, 1.0)
    assert sol.max_score == 0.0 and sol.remaining_budget.shape == (48,)


@pytest.mark.parametrize("change,field", [
    (dict(p_value=np.array([0.1, np.nan, 0.2])), "p_value"),
    (dict(p_value=np.array([0.1, -0.2, 0.2])), "p_value"),
    (dict(p_value=np.ones((3, 1))), "p_value"),
    (dict(comp_top=np.ones((2, 3))), "comp_top"),
    (dict(comp_top=np.array([[1.0, 2.0, 0.0]] * 3)), "comp_top"),
    (dict(comp_top=np.array([[1.0, np.nan, 0.0]] * 3)), "comp_top"),
    (dict(comp_top=np.array([[1.0, 0.5, -0.1]] * 3)), "comp_top"),
    (dict(tick=np.array([0, 1, 48])), "tick"),
    (dict(tick=np.array([0.0, 1.0, 2.0])), "tick"),
    (dict(tick=np.array([0, 1])), "tick"),
    (dict(budget=0.0), "budget"),
    (dict(budget=np.inf), "budget"),
    (dict(target_cpa=-1.0), "target_cpa"),
    (dict(exposure_probs=(1.0, 0.8)), "exposure_probs"),
    (dict(exposure_probs=(0.6, 0.8, 1.0)), "exposure_probs"),
    (dict(reserve_price=-1.0), "reserve_price"),
    (dict(beta=-1.0), "beta"),
    (dict(n_ticks=0), "n_ticks"),
])
def test_invalid_input_names_the_field(change, field):
    args = dict(p_value=np.array([0.1, 0.3, 0.2]), comp_top=np.array([[1.0, 0.5, 0.2]] * 3),
                tick=np.array([0, 1, 2]), budget=5.0, target_cpa=2.0)
    args.update(change)
    with pytest.raises(ValueError, match=field):
        solve_oracle(**args)


def test_bid_helpers_reject_bad_input():
    comp = np.array([[1.0, 1.0, 0.5], [1.0, R, 0.0]])
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="slots"):
        slot_bids(comp, np.array([2, 0]))        # slot 2 is unreachable behind a tie
    with pytest.raises(ValueError, match="slots"):
        slot_bids(comp, np.array([0, 2]))        # slot 2 would be sold at the reserve
    with pytest.raises(ValueError, match="bids"):
        expected_outcome(p, comp, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="alpha"):
        lagrangian_slots(p, comp, -1.0)
    np.testing.assert_array_equal(lagrangian_slots(p, comp, 1e6), [1, 1])


def test_full_period_solves():
    n = 500_000
    g = np.random.default_rng(0)
    p = np.clip(g.normal(5e-4, 2.5e-4, n), 0, 1).astype(np.float32)
    comp = -np.sort(-g.lognormal(np.log(0.04), 0.6, (n, 3)), axis=1)
    tick = np.sort(g.integers(0, 48, n))
    sol = solve_oracle(p, comp, tick, 3000.0, 100.0)
    assert 0 < sol.spend <= 3000.0 and np.isfinite(sol.max_score) and sol.alpha > 0
    assert sol.tick_spend.sum() == pytest.approx(sol.spend, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_max_return_bound_is_the_budget_knapsack(seed):
    """Max-Return (no CPA term): the bound is the most expected conversions within the budget. The
    LP equals HiGHS on the reachable outcomes, is above every integer combination and every single
    multiplier (brute force over each step c_k / p_value of the alpha -> outcome map), the best
    uniform multiplier is that brute force, and neither is below its Target-CPA counterpart."""
    from aigb.score import task_beta

    beta = task_beta("max-return")
    p, comp, tick = make_market(seed, 7)
    conv, cost, per_pv = integer_table(p, comp)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.unique((comp / p[:, None])[np.isfinite(comp / p[:, None])])
    alphas = np.concatenate([steps, steps * (1 + 1e-9), [0.0, 1e12]])
    outcomes = np.array([expected_outcome(p, comp, a * p) for a in alphas])     # (n_alpha, 2)
    for b_frac in (0.05, 0.3, 1.0, 3.0):
        budget = b_frac * cost.max()
        cpa = 0.5 * cost.max() / conv.max()            # a target that binds: the CPA task loses to it
        sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=4, beta=beta)
        uni = best_uniform_alpha(p, comp, tick, budget, cpa, n_ticks=4, beta=beta)
        brute = outcomes[outcomes[:, 1] <= budget, 0].max()
        assert uni.score == pytest.approx(brute, rel=1e-12, abs=1e-15)
        assert uni.score == uni.conversions and uni.spend <= budget
        assert sol.max_score == pytest.approx(lp_conversions(per_pv, budget), rel=1e-7, abs=1e-9)
        assert conv[cost <= budget].max() <= sol.max_score + 1e-12
        assert brute <= sol.max_score + 1e-12
        cpa_sol = solve_oracle(p, comp, tick, budget, cpa, n_ticks=4)
        assert sol.max_score >= cpa_sol.max_score - 1e-12
        assert uni.score >= best_uniform_alpha(p, comp, tick, budget, cpa, n_ticks=4).score - 1e-12


def test_the_oracle_strategy_plays_the_episode_task():
    """``Episode.task`` reaches the hindsight strategy: under Max-Return it bids the best uniform
    multiplier for conversions within the budget (beta 0), which spends at least as much as the
    Target-CPA one on a campaign whose target binds."""
    from aigb.score import task_beta
    from aigb.sim.env import BiddingEnv
    from aigb.sim.population import PopulationConfig
    from aigb.strategies.base import Episode
    from aigb.strategies.oracle_strategy import replay_competitors
    from aigb.strategies.registry import strategy_factory
    from aigb.types import MarketConfig

    market = MarketConfig(n_pv=20000, n_ticks=8, n_advertisers=8)
    env = BiddingEnv(market, 3, seed=0)
    obs, _ = env.reset(period=1_000_000)
    played = {}
    for task in ("cpa", "max-return"):
        episode = Episode(market, 0, 1_000_000, 3, PopulationConfig(), obs.campaign, task)
        oracle = strategy_factory("oracle")(market)
        oracle.prepare(episode)
        oracle.reset(obs.campaign, market.n_ticks, 0)
        p, comp, tick = replay_competitors(episode, strategy_factory("pid")(market))  # the default reference
        want = best_uniform_alpha(p, comp, tick, obs.campaign.budget, obs.campaign.target_cpa, n_ticks=market.n_ticks,
                                  exposure_probs=market.net_exposure_probs, reserve_price=market.reserve_price,
                                  beta=task_beta(task))
        np.testing.assert_allclose(oracle.bid(obs), want.alpha * obs.p_value.astype(np.float64), rtol=1e-12)
        played[task] = want
    assert played["max-return"].spend >= played["cpa"].spend
    assert played["max-return"].conversions >= played["cpa"].conversions


@pytest.mark.parametrize("seed, budget, spend_to", [(0, 300.0, 300.0), (1, 800.0, 1200.0), (2, 5.0, 5.0), (3, 1e6, 1e6)])
def test_a_prefix_frontier_gives_the_whole_frontiers_solution(seed, budget, spend_to):
    """``frontier_spend`` builds V* only as far as a row needs it: every field of the solution, and
    V* up to that spend, equal the whole frontier's (the awkward PVs of ``make_market`` included,
    a budget beyond everything the market sells included); asking V* beyond the prefix is an error."""
    p, comp, tick = make_market(seed, 60_000, n_ticks=8)
    whole = solve_oracle(p, comp, tick, budget, 2.0, n_ticks=8)
    part = solve_oracle(p, comp, tick, budget, 2.0, n_ticks=8, frontier_spend=spend_to)
    assert whole.frontier.complete
    if budget < 1e5:   # a small budget needs a small part of the 60,000 PVs' segments
        assert not part.frontier.complete and part.frontier.efficiency.size < whole.frontier.efficiency.size / 2
    for field in ("max_conversions", "spend_cpa_feasible", "alpha_cpa_feasible", "max_score", "spend", "conversions", "alpha"):
        assert getattr(part, field) == pytest.approx(getattr(whole, field), rel=1e-12, abs=1e-12), field
    for field in ("tick_spend", "tick_conversions", "remaining_budget"):
        np.testing.assert_allclose(getattr(part, field), getattr(whole, field), rtol=1e-12, atol=1e-9)
    s = np.linspace(0.0, min(spend_to, whole.frontier.spend[-1]), 101)
    np.testing.assert_allclose(part.frontier(s), whole.frontier(s), rtol=1e-12, atol=1e-12)
    from aigb.strategies.oracle import score_at_budget
    assert score_at_budget(part.frontier, spend_to, 2.0) == pytest.approx(score_at_budget(whole.frontier, spend_to, 2.0), rel=1e-12)
    if not part.frontier.complete:
        with pytest.raises(ValueError, match="prefix"):
            part.frontier(part.frontier.spend[-1] * 1.01)
    with pytest.raises(ValueError, match="frontier_spend"):
        solve_oracle(p, comp, tick, budget, 2.0, n_ticks=8, frontier_spend=float("nan"))
