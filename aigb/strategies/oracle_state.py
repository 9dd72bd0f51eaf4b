"""The hindsight oracle from any state: the best continuation of a day already under way.

Setting. A campaign stands at the start of tick ``s`` with ``spend_so_far`` (S_p) spent and
``conversions_so_far`` (V_p) won; the rest of the day's PVs (ticks >= s), the own p_value of each
and the competitors' top bids are known in hindsight and held fixed, as for the full-day oracle
(``aigb.strategies.oracle``: same GSP options, same expected-value outcome). The whole day scores

    score = (V_p + V) * min(1, C (V_p + V) / (S_p + S)) ** beta,   S <= B - S_p,

with (S, V) the expected spend and conversions of the rest. The prefix matters: a prefix already
above the target CPA makes cheap conversions worth more than their own CPA suggests, a prefix below
it leaves room to buy dearer ones.

Two answers per state (``solve_continuations``, vectorised over many states of one day):

* ``alpha``: the exact best single multiplier for ``bid = alpha * p_value`` on every remaining PV
  (what a strategy acting through one multiplier per tick can realise; the continuation of
  ``best_uniform_alpha``). Every step of the bid-vs-slot staircase (``uniform_bid_steps``) is a
  candidate, so the optimum is exact; ``alpha_range`` restricts it to the multipliers a policy can
  express (an exact optimum over that interval, not the clipped unrestricted one), and then only
  the steps inside the interval are scanned, which is what makes labelling every tick cheap.
* ``lp_score``: the LP-relaxation bound from the state (the continuation of ``solve_oracle``): the
  concave frontier V*(S) of the remaining PVs, maximised along S in [0, B - S_p] exactly (on each
  linear piece the penalised score peaks at an end or at a point where the CPA constraint starts to
  bind, so those are the candidates). ``alpha <= lp`` holds by construction, and for a prefix that
  any strategy realised against the same competitors (expected values) ``lp_score`` never exceeds
  the full-day ``solve_oracle(...).max_score``: prefix and continuation together are one feasible
  point of the full-day LP.

Cost. The candidates are sorted once per day (``DayOracle``) and summed per block of ``BLOCK``
candidates and per tick; a state's search then bounds each block's best score from those sums and
opens only the blocks that could beat the best found so far (exact, not a grid). On a 500k-PV day
(1.27M candidate steps in the action bounds): about 0.5 s to prepare and well under 1 ms per state
(``benchmarks/oracle_state_speed.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aigb.score import DEFAULT_BETA, score
from aigb.strategies.oracle import (
    DEFAULT_EXPOSURE_PROBS, DEFAULT_RESERVE_PRICE, _beta, _hull_segments, _market, _positive, _rules, _ticks,
    uniform_bid_steps,
)

__all__ = ["Continuations", "DayOracle", "solve_continuations"]

BLOCK = 2048
"""Candidate steps per block of the exact branch-and-bound search (``DayOracle._best_step``)."""


@dataclass(frozen=True, eq=False)
class Continuations:
    """The hindsight-optimal rest of the day from each of n states (see the module docstring)."""

    start_tick: np.ndarray
    """(n,) int64 the tick each state starts at."""
    alpha: np.ndarray
    """(n,) best multiplier for ``bid = alpha * p_value`` on the remaining PVs (0, or the range's low
    end, when bidding as little as possible is best)."""
    score: np.ndarray
    """(n,) the whole day's expected score (prefix plus the rest at ``alpha``)."""
    spend: np.ndarray
    """(n,) expected spend of the rest at ``alpha`` (<= budget - spend_so_far when ``feasible``)."""
    conversions: np.ndarray
    """(n,) expected conversions of the rest at ``alpha``."""
    feasible: np.ndarray
    """(n,) bool: some multiplier in the range keeps the rest within the budget left."""
    tick_spend: np.ndarray | None
    """(n, n_ticks) expected spend per tick at ``alpha`` (0 before the start tick); None unless asked."""
    tick_conversions: np.ndarray | None
    """(n, n_ticks) expected conversions per tick at ``alpha``; None unless asked."""
    lp_score: np.ndarray
    """(n,) LP bound on the whole day's expected score from the state (NaN when not asked)."""
    lp_spend: np.ndarray
    """(n,) expected spend of the rest at the LP optimum."""
    lp_conversions: np.ndarray
    """(n,) expected conversions of the rest at the LP optimum."""
    lp_alpha: np.ndarray
    """(n,) the LP multiplier (1 / efficiency at the cut; 0 when the LP buys nothing)."""


def _states(start_tick, spend_so_far, conversions_so_far, budget: float, n_ticks: int):
    s = np.atleast_1d(np.asarray(start_tick))
    if s.ndim != 1 or (s.size and not np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"start_tick: must be integers of shape (n,), got {s.dtype} {s.shape}")
    s = s.astype(np.int64)
    if s.size and (s.min() < 0 or s.max() >= n_ticks):
        raise ValueError(f"start_tick: must lie in [0, n_ticks={n_ticks}), got values in [{s.min()}, {s.max()}]")
    out = [s]
    for name, value in (("spend_so_far", spend_so_far), ("conversions_so_far", conversions_so_far)):
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), s.shape).copy()
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"{name}: must be finite numbers >= 0 (one per state), got {value!r}")
        out.append(v)
    if np.any(out[1] > budget * (1 + 1e-9)):
        i = int(np.flatnonzero(out[1] > budget * (1 + 1e-9))[0])
        raise ValueError(f"spend_so_far: state {i} has spent {out[1][i]} of a budget of {budget}")
    return out


def _alpha_range(alpha_range) -> tuple[float, float]:
    if alpha_range is None:
        return 0.0, math.inf
    lo, hi = (float(x) for x in alpha_range)
    if not (math.isfinite(lo) and lo >= 0 and hi > lo):
        raise ValueError(f"alpha_range: must be (low, high) with 0 <= low < high, got {alpha_range!r}")
    return lo, hi


class DayOracle:
    """One day of one campaign in hindsight, prepared once (candidates sorted), queried per state.

    ``DayOracle(...).solve(start_tick, spend_so_far, conversions_so_far)`` is
    ``solve_continuations`` without re-sorting: what an expert that re-plans every tick calls.
    Arguments as ``solve_continuations``.
    """

    def __init__(self, p_value, comp_top, tick, budget: float, target_cpa: float, *, n_ticks: int = 48,
                 exposure_probs=DEFAULT_EXPOSURE_PROBS, reserve_price: float = DEFAULT_RESERVE_PRICE,
                 beta: float = DEFAULT_BETA, alpha_range: tuple[float, float] | None = None, lp: bool = True):
        self.budget = _positive("budget", budget)
        self.target_cpa = _positive("target_cpa", target_cpa)
        self.beta = _beta(beta)
        p, c = _market(p_value, comp_top)
        t, self.n_ticks = _ticks(tick, p.size, n_ticks)
        e, r = _rules(exposure_probs, reserve_price, c.shape[1])
        self.lo, self.hi = lo, hi = _alpha_range(alpha_range)
        n_ticks = self.n_ticks

        # The uniform multiplier: every step of bid = alpha * p_value in [lo, hi) is a candidate.
        at, dw, dv = uniform_bid_steps(p, c, e, r)                          # (n_pv, K) each
        k_slots = c.shape[1]
        step_tick = np.repeat(t, k_slots)
        at, dw, dv = at.ravel(), dw.ravel(), dv.ravel()
        real = (np.repeat(p, k_slots) > 0) & ((dw != 0) | (dv != 0))
        below = real & (at < lo)                                            # bought at any alpha in range
        self.base_w = np.bincount(step_tick[below], weights=dw[below], minlength=n_ticks)   # (n_ticks,)
        self.base_v = np.bincount(step_tick[below], weights=dv[below], minlength=n_ticks)
        self.base_w_rest = np.cumsum(self.base_w[::-1])[::-1]               # (n_ticks,) from tick s on
        self.base_v_rest = np.cumsum(self.base_v[::-1])[::-1]
        inside = np.flatnonzero(real & (at >= lo) & (at < hi))
        order = inside[np.argsort(at[inside], kind="stable")]
        self.at, self.dw, self.dv, self.step_tick = at[order], dw[order], dv[order], step_tick[order]
        # A multiplier just above at[j] buys every step through the last one at the same alpha.
        a_s = self.at
        self.is_end = np.append(a_s[1:] > a_s[:-1], True) if a_s.size else np.zeros(0, bool)
        # Blocks of BLOCK consecutive candidates: their spend and conversions per tick, cumulated over
        # blocks and over ticks from the end, give every start tick's exact totals at each block end.
        n_blocks = -(-a_s.size // BLOCK)
        cell = (np.arange(a_s.size) // BLOCK) * n_ticks + self.step_tick
        sums = []
        for x in (self.dw, self.dv):
            m = np.bincount(cell, weights=x, minlength=n_blocks * n_ticks).reshape(n_blocks, n_ticks)
            m = np.cumsum(m[:, ::-1], axis=1)[:, ::-1]                      # ticks >= s, per block
            sums.append(np.concatenate([np.zeros((1, n_ticks)), np.cumsum(m, axis=0)]))   # (n_blocks + 1, n_ticks)
        self.block_w, self.block_v = sums

        self.lp = bool(lp)
        if self.lp:
            pv, sw, sv, _ = _hull_segments(p, c, e, r)
            eff = sv / sw
            o = np.argsort(-eff, kind="stable")
            self.seg_w, self.seg_v, self.seg_eff, self.seg_tick = sw[o], sv[o], eff[o], t[pv[o]]

    def _best_step(self, s0: int, w0: float, v0: float, cap: float, s_pre: float, v_pre: float, to_beat: float):
        """(index, score, spend, conversions) of the best candidate step from start tick ``s0`` that
        scores more than ``to_beat`` within ``cap``, or None. Exact branch and bound: a block of
        candidates can score at most score(its largest conversions, its smallest spend) (the score
        rises with conversions and falls with spend), so blocks are opened best bound first until the
        bound falls below the best score found; ties go to the lower index, as a full scan's argmax."""
        c, beta = self.target_cpa, self.beta
        w_lo, w_hi = w0 + self.block_w[:-1, s0], w0 + self.block_w[1:, s0]            # (n_blocks,)
        v_hi = v0 + self.block_v[1:, s0]
        bound = np.where(w_lo <= cap, score(v_pre + v_hi, s_pre + w_lo, c, beta), -math.inf)
        best, best_j, out = to_beat, None, None
        for g in np.argsort(-bound, kind="stable"):
            if bound[g] < best or (bound[g] == best and best_j is not None and g * BLOCK > best_j) or bound[g] == -math.inf:
                break
            lo_i, hi_i = g * BLOCK, min((g + 1) * BLOCK, self.at.size)
            live = self.step_tick[lo_i:hi_i] >= s0
            s_cum = w_lo[g] + np.cumsum(np.where(live, self.dw[lo_i:hi_i], 0.0))
            v_cum = v0 + self.block_v[g, s0] + np.cumsum(np.where(live, self.dv[lo_i:hi_i], 0.0))
            ok = np.flatnonzero(self.is_end[lo_i:hi_i] & (s_cum <= cap))
            if not ok.size:
                continue
            sc = score(v_pre + v_cum[ok], s_pre + s_cum[ok], c, beta)
            k = int(np.argmax(sc))
            j = lo_i + int(ok[k])
            if sc[k] > best or (sc[k] == best and best_j is not None and j < best_j):
                best, best_j, out = float(sc[k]), j, (j, float(sc[k]), float(s_cum[ok[k]]), float(v_cum[ok[k]]))
        return out

    def _next_at(self, j: int, s0: int) -> float:
        """The multiplier of the first candidate step after ``j`` on a tick >= s0 (4 x at[j] if none)."""
        pos = j + 1
        while pos < self.at.size:
            live = np.flatnonzero(self.step_tick[pos:pos + BLOCK] >= s0)
            if live.size:
                return float(self.at[pos + live[0]])
            pos += BLOCK
        return 4.0 * float(self.at[j])

    def solve(self, start_tick, spend_so_far=0.0, conversions_so_far=0.0, *, plans: bool = False) -> Continuations:
        """The best continuation from each state (n,); see ``solve_continuations``."""
        budget, target_cpa, beta, n_ticks = self.budget, self.target_cpa, self.beta, self.n_ticks
        starts, s_pre, v_pre = _states(start_tick, spend_so_far, conversions_so_far, budget, n_ticks)
        left = np.maximum(budget - s_pre, 0.0)                              # (n,) budget of the rest
        n = starts.size
        lo, hi = self.lo, self.hi
        at_s, tk_s = self.at, self.step_tick

        alpha, best_score = np.zeros(n), np.zeros(n)
        spend, conv = np.zeros(n), np.zeros(n)
        feasible = np.zeros(n, dtype=bool)
        for i in range(n):
            s0 = starts[i]
            w0, v0 = self.base_w_rest[s0], self.base_v_rest[s0]
            # The low end of the range (0: bid nothing) is a candidate of its own. Cumulative sums
            # round: steps that spend exactly the budget may sum a hair above it, hence the slack.
            cap = left[i] * (1.0 + 1e-12)
            ok0 = w0 <= cap
            sc0 = score(v_pre[i] + v0, s_pre[i] + w0, target_cpa, beta)
            a, w, v, f = lo, w0, v0, bool(ok0)
            found = self._best_step(s0, w0, v0, cap, s_pre[i], v_pre[i], sc0 if ok0 else -math.inf)
            if found is not None:
                j, sc_j, w, v = found
                # Bid from the middle (geometric) of the interval up to the next remaining step.
                nxt = min(self._next_at(j, s0), hi)
                a = float(at_s[j] * min(math.sqrt(nxt / at_s[j]), 2.0))
                best, f = sc_j, True
            else:
                best = sc0                                # also when nothing in range fits the budget
            alpha[i], spend[i], conv[i], best_score[i], feasible[i] = a, w, v, best, f

        tick_spend = tick_conv = None
        if plans:
            tick_spend, tick_conv = np.zeros((n, n_ticks)), np.zeros((n, n_ticks))
            for tau in range(n_ticks):
                sel = tk_s == tau
                cw = np.concatenate([[0.0], np.cumsum(self.dw[sel])])
                cv = np.concatenate([[0.0], np.cumsum(self.dv[sel])])
                bought = np.searchsorted(at_s[sel], alpha, side="left")     # steps with at < alpha
                live = tau >= starts
                tick_spend[:, tau] = np.where(live, self.base_w[tau] + cw[bought], 0.0)
                tick_conv[:, tau] = np.where(live, self.base_v[tau] + cv[bought], 0.0)

        lp_score, lp_spend, lp_conv, lp_alpha = (np.full(n, np.nan) for _ in range(4))
        if self.lp:
            for s0 in np.unique(starts):
                mask = self.seg_tick >= s0
                bs = np.concatenate([[0.0], np.cumsum(np.where(mask, self.seg_w, 0.0))])   # breakpoints of V*(S)
                bv = np.concatenate([[0.0], np.cumsum(np.where(mask, self.seg_v, 0.0))])
                for i in np.flatnonzero(starts == s0):
                    res = _lp_state(bs, bv, self.seg_eff, left[i], s_pre[i], v_pre[i], target_cpa, beta)
                    lp_score[i], lp_spend[i], lp_conv[i], lp_alpha[i] = res
        return Continuations(starts, alpha, best_score, spend, conv, feasible, tick_spend, tick_conv,
                             lp_score, lp_spend, lp_conv, lp_alpha)


def solve_continuations(p_value, comp_top, tick, budget: float, target_cpa: float, start_tick, spend_so_far=0.0,
                        conversions_so_far=0.0, *, n_ticks: int = 48, exposure_probs=DEFAULT_EXPOSURE_PROBS,
                        reserve_price: float = DEFAULT_RESERVE_PRICE, beta: float = DEFAULT_BETA,
                        alpha_range: tuple[float, float] | None = None, plans: bool = False,
                        lp: bool = True) -> Continuations:
    """The best continuation of the day from each state (see the module docstring).

    Args:
        p_value: (n_pv,) the advertiser's p_value for every PV of the day.
        comp_top: (n_pv, n_slots) the competitors' top bids per PV, sorted descending, 0 if absent.
        tick: (n_pv,) integer tick of each PV; only PVs with ``tick >= start_tick`` are the rest.
        budget, target_cpa: the campaign (> 0).
        start_tick: (n,) the tick each state stands at (before it bids).
        spend_so_far, conversions_so_far: (n,) or scalars, what the campaign has spent and won before
            ``start_tick`` (realised or expected: the caller's choice, the score adds them as given).
        alpha_range: (low, high) restrict the multiplier to this interval (e.g. a policy's action
            bounds times C); None: any alpha >= 0.
        plans: also return the per-tick plan (n, n_ticks) of each state's ``alpha``.
        lp: also solve the LP bound (``lp_*`` fields; NaN otherwise).
    """
    day = DayOracle(p_value, comp_top, tick, budget, target_cpa, n_ticks=n_ticks, exposure_probs=exposure_probs,
                    reserve_price=reserve_price, beta=beta, alpha_range=alpha_range, lp=lp)
    return day.solve(start_tick, spend_so_far, conversions_so_far, plans=plans)


def _lp_state(bs, bv, eff, left, s_pre, v_pre, target_cpa, beta):
    """max over S in [0, left] of score(v_pre + V*(S), s_pre + S) on the frontier (bs, bv)."""
    m = int(np.searchsorted(bs, left, side="right"))                   # breakpoints within the budget
    xs, ys = bs[:m], bv[:m]
    if m < bs.size:                                                    # the piece crossing the budget
        xs, ys = np.append(xs, left), np.append(ys, np.interp(left, bs, bv))
    # h(S) = C (v_pre + V) - (s_pre + S) is concave: the CPA binds where it changes sign.
    h = target_cpa * (v_pre + ys) - (s_pre + xs)
    flip = np.flatnonzero((h[:-1] < 0) != (h[1:] < 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = xs[flip] + h[flip] * (xs[flip + 1] - xs[flip]) / (h[flip] - h[flip + 1])
    cross = np.clip(cross, xs[flip], xs[flip + 1])
    cand_s = np.concatenate([xs, cross])
    cand_v = np.concatenate([ys, np.interp(cross, xs, ys)])
    sc = score(v_pre + cand_v, s_pre + cand_s, target_cpa, beta)
    j = int(np.argmax(sc))
    s_opt = float(cand_s[j])
    a = 0.0
    if s_opt > 0 and eff.size:
        k = min(int(np.searchsorted(bs[1:], s_opt, side="left")), eff.size - 1)
        a = float(1.0 / eff[k])
    return float(sc[j]), s_opt, float(cand_v[j]), a
