"""The oracle from a state against the full-day oracle, brute force over multipliers and per-PV
choices, an independent LP solver, and the full-day bound."""

from __future__ import annotations

import numpy as np
import pytest

from aigb.score import score
from aigb.strategies.oracle import best_uniform_alpha, expected_outcome, solve_oracle
from aigb.strategies import oracle_state
from aigb.strategies.oracle_state import DayOracle, solve_continuations
from tests.strategies.test_oracle import integer_table, lp_conversions, make_market

N_TICKS = 4


@pytest.fixture(params=[oracle_state.BLOCK, 5])
def block(request, monkeypatch):
    """The search's block size: the default (one block on these small days) and 5 (many blocks, so
    the branch and bound opens, skips and ties across blocks)."""
    monkeypatch.setattr(oracle_state, "BLOCK", request.param)
    return request.param


def brute_uniform(p, comp, tick, start, budget_left, s_pre, v_pre, cpa, beta=2.0, lo=0.0, hi=np.inf):
    """Best score over every distinct outcome of bid = alpha * p on the PVs of ticks >= start:
    alpha just above each competitor bid / p (and lo), within [lo, hi), by ``expected_outcome``."""
    rest = tick >= start
    p, comp = p[rest], comp[rest]
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = (comp / p[:, None])[np.isfinite(comp / p[:, None])].ravel()
    alphas = np.concatenate([[lo], steps * (1 + 1e-9)])
    alphas = alphas[(alphas >= lo) & (alphas < hi)]
    best = -np.inf
    for a in alphas:
        v, w = expected_outcome(p, comp, a * p)
        if w <= budget_left * (1 + 1e-12):
            best = max(best, score(v_pre + v, s_pre + w, cpa, beta))
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("beta", [2.0, 0.0])
def test_tick_zero_is_the_full_day_oracle(seed, beta, block):
    p, comp, tick = make_market(seed, 300, N_TICKS)
    budget, cpa = 40.0 * (1 + seed % 3), 1.5
    k = solve_continuations(p, comp, tick, budget, cpa, [0], n_ticks=N_TICKS, beta=beta, plans=True)
    u = best_uniform_alpha(p, comp, tick, budget, cpa, n_ticks=N_TICKS, beta=beta)
    o = solve_oracle(p, comp, tick, budget, cpa, n_ticks=N_TICKS, beta=beta)
    assert k.alpha[0] == u.alpha
    assert k.score[0] == pytest.approx(u.score, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(k.tick_spend[0], u.tick_spend, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(k.tick_conversions[0], u.tick_conversions, rtol=1e-10, atol=1e-12)
    assert k.lp_score[0] == pytest.approx(o.max_score, rel=1e-12)
    assert k.lp_spend[0] == pytest.approx(o.spend, rel=1e-12, abs=1e-12)
    assert k.lp_alpha[0] == pytest.approx(o.alpha, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_uniform_continuation_is_the_brute_force_optimum(seed, block):
    g = np.random.default_rng(100 + seed)
    p, comp, tick = make_market(seed, 40, N_TICKS)
    budget, cpa = 6.0, 1.2
    start = g.integers(0, N_TICKS, 6)
    s_pre = g.uniform(0, 3.0, 6)
    v_pre = g.uniform(0, 3.0, 6)          # prefixes above, at and below the target CPA
    v_pre[0], s_pre[0] = 0.0, 2.0         # spent without a conversion: the CPA is already broken
    day = DayOracle(p, comp, tick, budget, cpa, n_ticks=N_TICKS)
    k = day.solve(start, s_pre, v_pre, plans=True)
    for i in range(start.size):
        left = budget - s_pre[i]
        assert k.score[i] == pytest.approx(brute_uniform(p, comp, tick, start[i], left, s_pre[i], v_pre[i], cpa),
                                           rel=1e-10, abs=1e-12)
        # The multiplier it returns realises that score against the rules, PV by PV.
        rest = tick >= start[i]
        v, w = expected_outcome(p[rest], comp[rest], k.alpha[i] * p[rest])
        assert (v, w) == pytest.approx((k.conversions[i], k.spend[i]), rel=1e-10, abs=1e-12)
        assert w <= left * (1 + 1e-12)
        assert score(v_pre[i] + v, s_pre[i] + w, cpa) == pytest.approx(k.score[i], rel=1e-10, abs=1e-12)
        # The plan spends nothing before the state and adds up to the rest.
        assert np.all(k.tick_spend[i, :start[i]] == 0)
        assert k.tick_spend[i].sum() == pytest.approx(w, rel=1e-10, abs=1e-12)
        assert k.tick_conversions[i].sum() == pytest.approx(v, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_alpha_range_is_the_optimum_inside_the_range(seed, block):
    p, comp, tick = make_market(seed, 40, N_TICKS)
    budget, cpa, lo, hi = 5.0, 1.0, 0.8, 2.5
    k = solve_continuations(p, comp, tick, budget, cpa, [0, 1, 2, 3], 0.5, 0.4, n_ticks=N_TICKS, alpha_range=(lo, hi))
    for i in range(4):
        assert lo <= k.alpha[i] < hi
        if k.feasible[i]:
            expected = brute_uniform(p, comp, tick, i, budget - 0.5, 0.5, 0.4, cpa, lo=lo, hi=hi)
            assert k.score[i] == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_tiny_days_uniform_le_best_integer_choice_le_lp(seed):
    """Per PV the rest can take any reachable GSP outcome (every combination enumerated): the best
    uniform multiplier is one such combination, so it is <= the best one; the LP relaxes the
    combinations, so it is >= it, and its V*(S) is HiGHS's LP optimum at the same spend."""
    g = np.random.default_rng(seed)
    p, comp, tick = make_market(seed, 9, N_TICKS)
    start = 1 + seed % 3
    rest = tick >= start
    conv, cost, per_pv = integer_table(p[rest], comp[rest])
    full = cost.max()
    for b_frac, s_pre, v_pre, cpa in ((0.3, 0.2, 0.3, 1.0), (0.7, 1.0, 0.1, 2.0), (1.5, 0.0, 0.0, 0.5),
                                      (0.5, g.uniform(0, 1), g.uniform(0, 1), g.uniform(0.3, 3))):
        left = b_frac * full
        k = solve_continuations(p, comp, tick, s_pre + left, cpa, [start], s_pre, v_pre, n_ticks=N_TICKS)
        ok = cost <= left * (1 + 1e-12)
        best_integer = score(v_pre + conv[ok], s_pre + cost[ok], cpa).max()
        assert k.score[0] <= best_integer + 1e-12
        assert k.lp_score[0] >= best_integer - 1e-12
        assert k.lp_conversions[0] == pytest.approx(lp_conversions(per_pv, k.lp_spend[0]), rel=1e-7, abs=1e-9)
        assert k.lp_score[0] == pytest.approx(score(v_pre + k.lp_conversions[0], s_pre + k.lp_spend[0], cpa), rel=1e-12)
        # No spend level of the LP frontier (HiGHS at a grid of spends) scores more.
        for s in np.linspace(0, left, 9):
            assert score(v_pre + lp_conversions(per_pv, s), s_pre + s, cpa) <= k.lp_score[0] + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_never_above_the_full_day_bound(seed, block):
    """A prefix some strategy played (expected values, same competitors) plus the best continuation
    is one feasible point of the full-day LP."""
    g = np.random.default_rng(seed)
    p, comp, tick = make_market(seed, 400, N_TICKS)
    budget, cpa = 30.0, 1.3
    full = solve_oracle(p, comp, tick, budget, cpa, n_ticks=N_TICKS).max_score
    bids = g.uniform(0, 2.5, p.size) * p
    conv, cost = expected_outcome(p, comp, bids, per_pv=True)
    starts = np.arange(N_TICKS)
    s_pre = np.array([cost[tick < s].sum() for s in starts])
    v_pre = np.array([conv[tick < s].sum() for s in starts])
    keep = s_pre <= budget
    k = solve_continuations(p, comp, tick, budget, cpa, starts[keep], s_pre[keep], v_pre[keep], n_ticks=N_TICKS)
    assert np.all(k.score <= k.lp_score + 1e-9)
    assert np.all(k.lp_score <= full + 1e-9)


def test_bad_states_name_the_field():
    p, comp, tick = make_market(0, 20, N_TICKS)
    with pytest.raises(ValueError, match="start_tick"):
        solve_continuations(p, comp, tick, 5.0, 1.0, [N_TICKS], n_ticks=N_TICKS)
    with pytest.raises(ValueError, match="spend_so_far"):
        solve_continuations(p, comp, tick, 5.0, 1.0, [1], 6.0, n_ticks=N_TICKS)
    with pytest.raises(ValueError, match="conversions_so_far"):
        solve_continuations(p, comp, tick, 5.0, 1.0, [1], 1.0, -1.0, n_ticks=N_TICKS)
    with pytest.raises(ValueError, match="alpha_range"):
        solve_continuations(p, comp, tick, 5.0, 1.0, [1], alpha_range=(2.0, 1.0), n_ticks=N_TICKS)
