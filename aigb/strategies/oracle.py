"""The hindsight oracle: the most any strategy could get for one advertiser in one period.

Setting. Fix every competitor's bid as it was recorded. For PV i the advertiser knows its
``p_value[i]`` and the competitors' three highest bids ``comp_top[i] = (c_1 >= c_2 >= c_3)`` (0 where
fewer competitors bid). Under the market's GSP rules (aigb.sim.auction: 3 slots shown with
probability e = (1.0, 0.8, 0.48) (net, after the cascade), reserve r = 1e-4, a slot priced exactly at the reserve is unsold,
cost paid only when shown; the advertiser loses ties) a bid b takes slot k iff c_k < b <= c_{k-1}
(c_0 = +inf) and then pays c_k when shown. Per PV the advertiser therefore chooses one option:

* lose: expected conversions 0, expected cost 0;
* slot k: expected conversions v_k = e_k * p_value, expected cost w_k = e_k * c_k. The option exists
  iff c_k > r (otherwise the slot is unsold), e_k > 0 and c_k < c_{k-1} (if c_k == c_{k-1} no bid
  lands in slot k; the option lies on the chord from "lose" to slot k-1, so the LP value is the same).
  Losing ties is the conservative reading; the simulator's tie rule (lower advertiser index wins)
  adds no outcome off these chords, so the bound holds there too.

The oracle solves the LP relaxation of this multiple-choice knapsack. Per PV only the upper concave
hull of its options in (cost, conversions) space matters; sorting every hull segment of every PV by
efficiency (conversions per unit cost, descending) and cumulating gives the efficient frontier V*(S),
the largest expected conversions reachable with expected spend S (fractional on one segment only).

What it bounds. For ANY strategy of this advertiser (any bids, any information, any adaptivity),
given the competitors' bids fixed as recorded, with exposure and conversion replaced by their
expectations and the budget applied to the expected spend:
* ``max_conversions`` bounds the expected conversions of every strategy whose expected spend is
  <= budget and <= target_cpa * expected conversions;
* ``max_score`` bounds ``aigb.score.score(expected conversions, expected spend)`` of every strategy
  whose expected spend is <= budget (the CPA penalty is applied to expectations, and a small CPA
  violation can pay, so this is the maximum of the penalised score along the frontier).

What it does not bound. The realised score of one run: lucky exposure and conversion draws can beat
the expectation (and the hard budget cap acts on realised, not expected, spend). Nor a market where
the competitors react differently to the advertiser's bids (their bids are held fixed here).

Multipliers. ``alpha`` is the LP's multiplier, 1 / (marginal efficiency at the cut), i.e.
``(1 + nu*C) / (mu + nu)`` of ../shared/DESIGN.md §1: PV i takes the option maximising
``e_k * (alpha * p_value - c_k)`` (``lagrangian_slots``), and ``slot_bids`` turns that choice into
bids. In a truthful auction ``bid = alpha * p_value`` would make the same choice; in GSP it does not:
the bid lands in slot k as soon as it exceeds c_k, while the LP moves up a slot only when alpha *
p_value exceeds the incremental price ``(e_k c_k - e_j c_j) / (e_k - e_j) >= c_k``, so
``alpha * p_value`` buys higher, dearer slots and spends at least as much. ``best_uniform_alpha``
gives the exact best single multiplier for ``bid = alpha * p_value`` under GSP (a lower bound on the
oracle, and the target for strategies that act through one multiplier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from aigb.score import DEFAULT_BETA, score

__all__ = [
    "score_at_budget",
    "Frontier",
    "OracleSolution",
    "UniformAlphaSolution",
    "efficient_frontier",
    "solve_oracle",
    "expected_outcome",
    "lagrangian_slots",
    "slot_bids",
    "best_uniform_alpha",
    "uniform_bid_steps",
]

DEFAULT_EXPOSURE_PROBS = (1.0, 0.8, 0.48)  # net probability that slot k is shown (MarketConfig.net_exposure_probs)
DEFAULT_RESERVE_PRICE = 1e-4


# --------------------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Frontier:
    """The efficient frontier V*(S): breakpoints of a concave, non-decreasing piecewise-linear map."""

    spend: np.ndarray
    """(n_seg + 1,) float64 expected spend at each breakpoint, starting at 0."""
    conversions: np.ndarray
    """(n_seg + 1,) float64 expected conversions at each breakpoint, starting at 0."""
    efficiency: np.ndarray
    """(n_seg,) float64 conversions per unit cost of each segment, non-increasing."""
    segment_pv: np.ndarray
    """(n_seg,) int64 the PV each segment belongs to."""
    segment_slot: np.ndarray
    """(n_seg,) int8 the slot the PV holds once the segment is fully bought."""
    complete: bool = True
    """False for a prefix (``efficient_frontier(..., max_spend=S)``): V* is known up to the last
    breakpoint only, and asking beyond it is an error."""

    def __call__(self, spends) -> np.ndarray | float:
        """Expected conversions V*(S) at expected spend(s) S (flat beyond the last breakpoint of a
        complete frontier; ValueError beyond the end of a prefix)."""
        s = np.asarray(spends, dtype=np.float64)
        if not self.complete and np.any(s > self.spend[-1]):
            raise ValueError(f"spends: this frontier is a prefix up to spend {self.spend[-1]:.6g}, "
                             f"asked at {float(np.max(s)):.6g} (build it with a larger max_spend)")
        out = np.interp(s, self.spend, self.conversions)
        return out if out.ndim else float(out)


@dataclass(frozen=True, eq=False)
class OracleSolution:
    """The hindsight-LP optimum of one advertiser over one period (see the module docstring)."""

    max_conversions: float
    """V*(S) at the largest S with S <= budget and S <= target_cpa * V*(S)."""
    spend_cpa_feasible: float
    """Expected spend of the max_conversions point."""
    alpha_cpa_feasible: float
    """LP multiplier realising the max_conversions point (0 when it spends nothing)."""
    max_score: float
    """max over S in [0, budget] of score(V*(S), S, target_cpa, beta); >= max_conversions."""
    spend: float
    """Expected spend at the score-optimal point."""
    conversions: float
    """Expected conversions at the score-optimal point."""
    alpha: float
    """LP multiplier of the score-optimal point: 1 / efficiency of the cut segment. Realised by
    ``slot_bids(comp_top, lagrangian_slots(p_value, comp_top, alpha))``; ``alpha * p_value`` as a GSP bid
    overspends (module docstring), see ``best_uniform_alpha`` for the best realisable multiplier."""
    tick_spend: np.ndarray
    """(n_ticks,) expected spend per tick of the score-optimal allocation."""
    tick_conversions: np.ndarray
    """(n_ticks,) expected conversions per tick of the score-optimal allocation."""
    tick_alpha: np.ndarray
    """(n_ticks,) the multiplier per tick; constant in hindsight, stored per tick as a teacher signal."""
    remaining_budget: np.ndarray
    """(n_ticks,) budget left before each tick under the score-optimal allocation."""
    frontier: Frontier
    """V*(S); call ``solution.frontier(spends)`` for plotting."""
    budget: float
    """The budget B the solution was computed for."""
    target_cpa: float
    """The target CPA C the solution was computed for."""
    beta: float
    """Exponent of the CPA penalty in the score."""


@dataclass(frozen=True, eq=False)
class UniformAlphaSolution:
    """The best single multiplier for ``bid = alpha * p_value`` under GSP, in hindsight."""

    alpha: float
    """A multiplier inside the interval that realises the best outcome (0: bidding nothing is best)."""
    score: float
    """Score of expected conversions and expected spend when bidding alpha * p_value."""
    conversions: float
    """Expected conversions when bidding alpha * p_value."""
    spend: float
    """Expected spend when bidding alpha * p_value (<= budget)."""
    tick_spend: np.ndarray
    """(n_ticks,) expected spend per tick."""
    tick_conversions: np.ndarray
    """(n_ticks,) expected conversions per tick."""
    remaining_budget: np.ndarray
    """(n_ticks,) budget left before each tick."""


# ------------------------------------------------------------------------------------ validation


def _positive(name: str, value) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def _rules(exposure_probs, reserve_price, n_slots: int) -> tuple[np.ndarray, float]:
    e = np.asarray(exposure_probs, dtype=np.float64)
    if e.ndim != 1 or e.size != n_slots:
        raise ValueError(f"exposure_probs: needs one probability per comp_top column ({n_slots}), got {tuple(e.ravel())}")
    if not np.all((e >= 0) & (e <= 1)):
        raise ValueError(f"exposure_probs: must lie in [0, 1], got {tuple(e)}")
    if np.any(e[1:] > e[:-1]):
        raise ValueError(f"exposure_probs: must be non-increasing, got {tuple(e)}")
    r = float(reserve_price)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"reserve_price: must be a finite number >= 0, got {reserve_price!r}")
    return e, r


def _comp_top(comp_top, n_pv: int | None = None) -> np.ndarray:
    c = np.asarray(comp_top, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 1 or (n_pv is not None and c.shape[0] != n_pv):
        rows = "n_pv" if n_pv is None else str(n_pv)
        raise ValueError(f"comp_top: must have shape (n_pv, n_slots) = ({rows}, n_slots >= 1), got {c.shape}")
    i, problem = _first_bad_row(c)
    if problem == 1:
        raise ValueError(f"comp_top: holds NaN or inf at PV {i}")
    if problem == 2:
        raise ValueError(f"comp_top: competitor bids must be >= 0, PV {i} has a negative one")
    if problem == 3:
        raise ValueError(f"comp_top: each row must be sorted descending (c_1 >= c_2 >= ...), PV {i} has {tuple(c[i])}")
    return c


@numba.njit(cache=True, nogil=True)
def _first_bad_row(c):  # pragma: no cover - compiled
    """(row, problem) of comp_top's first problem in one pass, by kind in the order NaN/inf (1),
    negative (2), unsorted (3); (-1, 0) when there is none."""
    first = np.full(4, -1, dtype=np.int64)
    for i in range(c.shape[0]):
        for k in range(c.shape[1]):
            x = c[i, k]
            if not np.isfinite(x):
                if first[1] < 0:
                    first[1] = i
            elif x < 0:
                if first[2] < 0:
                    first[2] = i
            if k > 0 and c[i, k] > c[i, k - 1] and first[3] < 0:
                first[3] = i
    for problem in range(1, 4):
        if first[problem] >= 0:
            return first[problem], problem
    return -1, 0


def _market(p_value, comp_top) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_value, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_value: must be 1-D (n_pv,), got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"p_value: holds NaN or inf at PV {int(np.flatnonzero(~np.isfinite(p))[0])}")
    if np.any(p < 0):
        raise ValueError(f"p_value: must be >= 0, PV {int(np.flatnonzero(p < 0)[0])} has {p[p < 0][0]}")
    return p, _comp_top(comp_top, p.size)


def _ticks(tick, n_pv: int, n_ticks) -> tuple[np.ndarray, int]:
    if int(n_ticks) != n_ticks or int(n_ticks) < 1:
        raise ValueError(f"n_ticks: must be an integer >= 1, got {n_ticks!r}")
    n_ticks = int(n_ticks)
    t = np.asarray(tick)
    if t.shape != (n_pv,):
        raise ValueError(f"tick: must have shape (n_pv,) = ({n_pv},), got {t.shape}")
    if n_pv and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"tick: must hold integers, got dtype {t.dtype}")
    t = t.astype(np.int64)
    if n_pv and (t.min() < 0 or t.max() >= n_ticks):
        raise ValueError(f"tick: must lie in [0, n_ticks={n_ticks}), got values in [{t.min()}, {t.max()}]")
    return t, n_ticks


def _beta(beta) -> float:
    b = float(beta)
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"beta: must be a finite number >= 0, got {beta!r}")
    return b


# -------------------------------------------------------------------------------------- the LP


def _slot_options(p, c, e, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-PV options by slot: cost (n_pv, K), conversions (n_pv, K) and whether each exists."""
    above = np.concatenate([np.full((c.shape[0], 1), np.inf), c[:, :-1]], axis=1)  # c_{k-1}
    exists = (c > r) & (e[None, :] > 0) & (c < above)  # (n_pv, K)
    return e[None, :] * c, e[None, :] * p[:, None], exists


def _hull_segments(p, c, e, r):
    """Upper-hull segments of every PV, emitted round by round (a PV's segments in hull order).

    Gift wrapping from the origin (``_hull_walk``, compiled): from the current vertex take the
    option of steepest positive slope (ties to the dearer one, which drops collinear middles). At
    most K rounds over K options; every PV's first segment is emitted, then every second one, ...
    """
    return _walk_segments(p, c, e, r, np.arange(p.shape[0]), -np.inf)


def _walk_segments(p, c, e, r, rows, min_efficiency):
    """``_hull_segments`` of the PVs ``rows`` (ascending), keeping the segments of efficiency >= min_efficiency."""
    k = c.shape[1]
    seg_pv, seg_dw, seg_dv, seg_j, count = _hull_walk(np.ascontiguousarray(p), np.ascontiguousarray(c), e, float(r),
                                                      rows, float(min_efficiency))
    if count.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8)
    rounds = range(k)
    return (np.concatenate([seg_pv[i, :count[i]] for i in rounds]),
            np.concatenate([seg_dw[i, :count[i]] for i in rounds]),
            np.concatenate([seg_dv[i, :count[i]] for i in rounds]),
            np.concatenate([(k - seg_j[i, :count[i]]).astype(np.int8) for i in rounds]))


@numba.njit(cache=True, nogil=True, inline="always")
def _option_exists(c, e, r, i, s):  # pragma: no cover - compiled
    """Whether PV i's slot s is an option (``_slot_options``): sold (above the reserve), shown, and
    reachable (its price below the slot above's)."""
    above = np.inf if s == 0 else c[i, s - 1]
    return c[i, s] > r and e[s] > 0 and c[i, s] < above


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _hull_walk(p, c, e, r, rows, min_efficiency):  # pragma: no cover - compiled
    """Each PV's hull walk over its options (``_slot_options``: slot K, ..., slot 1, i.e. by
    increasing cost), segments stored by round: (PV, cost and conversions increments, option) of
    each round's segments in PV order, and the count per round. Walks the PVs ``rows`` only and
    stores only segments of efficiency (dv / dw) >= min_efficiency.

    From the current vertex (the origin first), the slopes (v_j - v) / (w_j - w) of the options
    beyond it; the steepest, when positive, is the next vertex (the last option reaching the
    maximum, the dearer one). A NaN slope ends the walk, as it ends a NumPy maximum.
    """
    k = c.shape[1]
    n_rows = rows.shape[0]
    seg_pv = np.empty((k, n_rows), dtype=np.int64)
    seg_dw = np.empty((k, n_rows))
    seg_dv = np.empty((k, n_rows))
    seg_j = np.empty((k, n_rows), dtype=np.int64)
    count = np.zeros(k, dtype=np.int64)
    w = np.empty(k)
    v = np.empty(k)
    ok = np.empty(k, dtype=np.bool_)
    for ri in range(n_rows):
        i = rows[ri]
        for j in range(k):
            s = k - 1 - j
            ok[j] = _option_exists(c, e, r, i, s)
            w[j] = e[s] * c[i, s]
            v[j] = e[s] * p[i]
        w_cur, v_cur, pos = 0.0, 0.0, -1
        for rnd in range(k):
            best = -np.inf
            for j in range(k):
                slope = (v[j] - v_cur) / (w[j] - w_cur) if (ok[j] and pos < j) else -np.inf
                if slope != slope or best != best:
                    best = np.nan
                elif slope > best:
                    best = slope
            if not best > 0:
                break
            best_j = 0
            for j in range(k):
                slope = (v[j] - v_cur) / (w[j] - w_cur) if (ok[j] and pos < j) else -np.inf
                if slope == best:
                    best_j = j
            dw, dv = w[best_j] - w_cur, v[best_j] - v_cur
            if dv / dw < min_efficiency:
                break  # the later segments are less efficient still
            q = count[rnd]
            seg_pv[rnd, q] = i
            seg_dw[rnd, q] = dw
            seg_dv[rnd, q] = dv
            seg_j[rnd, q] = best_j
            count[rnd] = q + 1
            w_cur, v_cur, pos = w[best_j], v[best_j], best_j
    return seg_pv, seg_dw, seg_dv, seg_j, count


@numba.njit(cache=True, nogil=True)
def _sorted_frontier(order, dw, dv, eff, pv, slot):  # pragma: no cover - compiled
    """The segments in ``order`` and the running sums of their cost and conversions from 0, as
    ``np.cumsum`` accumulates them."""
    n = order.shape[0]
    spend = np.empty(n + 1)
    conversions = np.empty(n + 1)
    spend[0] = conversions[0] = 0.0
    efficiency = np.empty(n)
    segment_pv = np.empty(n, dtype=np.int64)
    segment_slot = np.empty(n, dtype=np.int8)
    s = v = 0.0
    for m in range(n):
        o = order[m]
        s = dw[o] if m == 0 else s + dw[o]
        v = dv[o] if m == 0 else v + dv[o]
        spend[m + 1], conversions[m + 1] = s, v
        efficiency[m], segment_pv[m], segment_slot[m] = eff[o], pv[o], slot[o]
    return spend, conversions, efficiency, segment_pv, segment_slot


_PREFIX_FIRST = 1 << 14
"""PVs a prefix frontier (``max_spend``) ranks first; more (by the shortfall) until they reach the spend."""


def efficient_frontier(p_value, comp_top, *, exposure_probs=DEFAULT_EXPOSURE_PROBS,
                       reserve_price: float = DEFAULT_RESERVE_PRICE, max_spend: float | None = None) -> Frontier:
    """V*(S) of the LP relaxation: hull segments of all PVs sorted by efficiency and cumulated.

    Args:
        p_value: (n_pv,) the advertiser's predicted conversion probabilities.
        comp_top: (n_pv, n_slots) competitors' highest bids per PV, sorted descending, 0 if absent.
        max_spend: build only the prefix of the frontier that reaches this expected spend (a
            campaign's budget buys a fraction of a period's segments, and the prefix walks and sorts
            only the PVs that could reach it); None builds it whole. The prefix is V* itself up to its end.
    """
    p, c = _market(p_value, comp_top)
    e, r = _rules(exposure_probs, reserve_price, c.shape[1])
    if max_spend is not None:
        m = float(max_spend)
        if not (math.isfinite(m) and m >= 0):
            raise ValueError(f"max_spend: must be a finite number >= 0, got {max_spend!r}")
    return _frontier(p, c, e, r, max_spend)


@numba.njit(cache=True, nogil=True)
def _first_segments(p, c, e, r):  # pragma: no cover - compiled
    """Per PV, the efficiency of its hull's first segment (the steepest from the origin, as
    ``_hull_walk`` computes it; 0 when it has none) and a lower bound on that segment's cost (its
    cheapest option's). Every later segment of a PV's hull is less efficient than its first."""
    n_pv, k = c.shape
    eff1 = np.zeros(n_pv)
    cost1 = np.zeros(n_pv)
    for i in range(n_pv):
        best, w_min = -np.inf, np.inf
        for s in range(k):
            if _option_exists(c, e, r, i, s):
                w = e[s] * c[i, s]
                slope = (e[s] * p[i]) / w
                if slope > best:
                    best = slope
                if w < w_min:
                    w_min = w
        if best > 0:
            eff1[i] = best
            cost1[i] = w_min
    return eff1, cost1


def _prefix_pvs(p, c, e, r, max_spend: float) -> tuple[np.ndarray, float] | None:
    """The PVs whose hulls hold every segment of the frontier's prefix up to ``max_spend``, and the
    efficiency T above which those segments lie; None when the prefix is (nearly) everything.

    With the PVs ranked by their first segment's efficiency, take the fewest whose first segments
    cost at least ``max_spend`` in total; T is the lowest of their efficiencies. The frontier's
    segments of efficiency >= T include these first segments, so they reach the spend, and they all
    belong to PVs whose first segment is at least as efficient (a hull's later segments are less
    efficient than its first), which the PVs returned include (with a margin for rounding).
    """
    eff1, cost1 = _first_segments(p, c, e, r)
    n = eff1.size
    need = max_spend * (1.0 + 1e-9) + 1e-12
    k = _PREFIX_FIRST
    while k < n:
        top = np.argpartition(-eff1, k - 1)[:k]
        reached = float(cost1[top].sum())
        if reached >= need:
            t = float(eff1[top].min())
            if t <= 0:
                return None
            return np.flatnonzero(eff1 >= t * (1.0 - 1e-9)), t
        k = int(k * max(2.0, 1.25 * need / max(reached, 1e-300)))  # the next try, by the shortfall
    return None


def _frontier(p, c, e, r, max_spend: float | None) -> Frontier:
    """``efficient_frontier`` of inputs already checked."""
    prefix = None if max_spend is None else _prefix_pvs(p, c, e, r, float(max_spend))
    complete = prefix is None
    if prefix is None:
        pv, dw, dv, slot = _hull_segments(p, c, e, r)
        eff = dv / dw
    else:
        pv, dw, dv, slot = _walk_segments(p, c, e, r, *prefix)
        eff = dv / dw
        if float(dw.sum()) < max_spend * (1.0 + 1e-9):   # cannot happen (``_prefix_pvs``); never return a short prefix
            return _frontier(p, c, e, r, None)
    # Segments of equal efficiency lie on one line of the frontier, so their order changes no value
    # of V*(S); an unstable sort (twice as fast as a stable one here) is enough.
    order = np.argsort(-eff)
    spend, conversions, efficiency, segment_pv, segment_slot = _sorted_frontier(order, dw, dv, eff, pv, slot)
    return Frontier(spend=spend, conversions=conversions, efficiency=efficiency, segment_pv=segment_pv,
                    segment_slot=segment_slot, complete=complete)


def _cpa_limit(f: Frontier, target_cpa: float) -> float:
    """Largest S on the frontier with S <= C * V*(S); h(S) = C V*(S) - S is concave with h(0) = 0
    (on a prefix that h never leaves, the prefix's end: the limit lies at or beyond it)."""
    h = target_cpa * f.conversions - f.spend
    neg = np.flatnonzero(h < 0)
    if neg.size == 0:
        return float(f.spend[-1])
    j = neg[0] - 1  # last feasible breakpoint; segment j leaves it with C*g < 1
    s = f.spend[j] + h[j] / (1.0 - target_cpa * f.efficiency[j])
    return float(np.clip(s, f.spend[j], f.spend[j + 1]))


def _score_optimal_spend(f: Frontier, budget: float, target_cpa: float, beta: float, s_cpa: float) -> float:
    """argmax over S in [0, budget] of score(V*(S), S), exactly.

    Up to s_cpa the score is V*(S), increasing, so s_cpa is the only candidate there. Beyond it, on a
    piece V = a + g S (a >= 0 by concavity) the score is V^(1+beta) C^beta / S^beta, whose
    log-derivative has the sign of g S - beta a: it falls until (1+beta) g S = beta V and rises after.
    That stationary point is a minimum, so each piece peaks at an end: the candidates are s_cpa, the
    breakpoints below the budget and the budget itself. (Locally, overshooting s_cpa pays iff the
    marginal efficiency there exceeds beta / ((1 + beta) C); a piece's far end can pay regardless.)
    """
    if f.efficiency.size == 0:
        return 0.0
    m = int(np.searchsorted(f.spend[:-1], budget, side="left"))  # pieces starting below the budget
    ends_s = f.spend[1:m + 1].copy()
    ends_v = f.conversions[1:m + 1].copy()
    if ends_s[-1] > budget:                                       # only the last piece can cross it
        ends_s[-1], ends_v[-1] = budget, f(budget)
    s_c = min(s_cpa, budget)
    cand_s = np.append(ends_s, s_c)
    cand_v = np.append(ends_v, f(s_c))
    return float(cand_s[np.argmax(score(cand_v, cand_s, target_cpa, beta))])


def score_at_budget(f: Frontier, budget: float, target_cpa: float, beta: float = DEFAULT_BETA) -> float:
    """The bound ``solve_oracle`` gives at another ``budget`` (its ``max_score``), from a frontier it built."""
    s_opt = _score_optimal_spend(f, budget, target_cpa, beta, _cpa_limit(f, target_cpa))
    return score(f(s_opt), s_opt, target_cpa, beta)


def _cut_alpha(f: Frontier, s: float) -> float:
    """1 / efficiency of the first segment whose end reaches spend s (0 when s is 0)."""
    if s <= 0 or f.efficiency.size == 0:
        return 0.0
    j = min(int(np.searchsorted(f.spend[1:], s, side="left")), f.efficiency.size - 1)
    return float(1.0 / f.efficiency[j])


def solve_oracle(p_value, comp_top, tick, budget: float, target_cpa: float, *, n_ticks: int = 48,
                 exposure_probs=DEFAULT_EXPOSURE_PROBS, reserve_price: float = DEFAULT_RESERVE_PRICE,
                 beta: float = DEFAULT_BETA, frontier_spend: float | None = None) -> OracleSolution:
    """The hindsight LP bound of one advertiser over one period (see the module docstring).

    Args:
        p_value: (n_pv,) the advertiser's predicted conversion probabilities.
        comp_top: (n_pv, n_slots) competitors' highest bids per PV, sorted descending, 0 if absent.
        tick: (n_pv,) integer tick of each PV in [0, n_ticks).
        budget, target_cpa: the campaign (> 0).
        frontier_spend: the solution's ``frontier`` reaches at least this spend (raised to the
            budget, which the solution needs); None keeps the whole frontier. Every other field is
            the same either way; a prefix costs a fraction of the time (``efficient_frontier``).
    """
    budget = _positive("budget", budget)
    target_cpa = _positive("target_cpa", target_cpa)
    beta = _beta(beta)
    p, c = _market(p_value, comp_top)
    t, n_ticks = _ticks(tick, p.size, n_ticks)
    if frontier_spend is not None:
        if not (math.isfinite(float(frontier_spend)) and frontier_spend >= 0):
            raise ValueError(f"frontier_spend: must be a finite number >= 0, got {frontier_spend!r}")
        frontier_spend = max(budget, float(frontier_spend))
    f = _frontier(p, c, *_rules(exposure_probs, reserve_price, c.shape[1]), frontier_spend)

    s_cpa = _cpa_limit(f, target_cpa)
    spend_cpa = min(budget, s_cpa)
    s_opt = _score_optimal_spend(f, budget, target_cpa, beta, s_cpa)
    conv_opt = f(s_opt)
    alpha = _cut_alpha(f, s_opt)

    # The allocation at s_opt: every segment bought in full up to the cut, the cut one in part.
    used = np.clip(s_opt - f.spend[:-1], 0.0, np.diff(f.spend))   # (n_seg,) spend per segment
    seg_tick = t[f.segment_pv]
    tick_spend = np.bincount(seg_tick, weights=used, minlength=n_ticks)
    tick_conversions = np.bincount(seg_tick, weights=used * f.efficiency, minlength=n_ticks)
    remaining = budget - np.concatenate([[0.0], np.cumsum(tick_spend)[:-1]])
    return OracleSolution(
        max_conversions=f(spend_cpa),
        spend_cpa_feasible=spend_cpa,
        alpha_cpa_feasible=_cut_alpha(f, spend_cpa),
        max_score=score(conv_opt, s_opt, target_cpa, beta),
        spend=s_opt,
        conversions=conv_opt,
        alpha=alpha,
        tick_spend=tick_spend,
        tick_conversions=tick_conversions,
        tick_alpha=np.full(n_ticks, alpha),
        remaining_budget=remaining,
        frontier=f,
        budget=budget,
        target_cpa=target_cpa,
        beta=beta,
    )


# ------------------------------------------------------------------------------- bids and GSP


def expected_outcome(p_value, comp_top, bids, *, exposure_probs=DEFAULT_EXPOSURE_PROBS,
                     reserve_price: float = DEFAULT_RESERVE_PRICE, per_pv: bool = False):
    """Expected conversions and expected cost of the advertiser's bids against fixed competitors.

    The advertiser ranks below every competitor bidding at least as much (it loses ties), takes slot
    m+1 when m competitors rank above it, and pays the next competitor bid below it when shown; a
    slot whose price is <= the reserve is unsold. Negative bids count as 0.

    Returns ``(expected_conversions, expected_cost)``: totals (floats), or (n_pv,) arrays if per_pv.
    """
    p, c = _market(p_value, comp_top)
    e, r = _rules(exposure_probs, reserve_price, c.shape[1])
    b = np.asarray(bids, dtype=np.float64)
    if b.shape != p.shape:
        raise ValueError(f"bids: must have shape (n_pv,) = ({p.size},), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"bids: holds NaN or inf at PV {int(np.flatnonzero(~np.isfinite(b))[0])}")
    b = np.maximum(b, 0.0)
    k_slots = c.shape[1]
    above = (c >= b[:, None]).sum(axis=1)                  # competitors ranked above the advertiser
    price = c[np.arange(p.size), np.minimum(above, k_slots - 1)]
    sold = (above < k_slots) & (price > r)
    e_slot = e[np.minimum(above, k_slots - 1)]
    conv = np.where(sold, e_slot * p, 0.0)
    cost = np.where(sold, e_slot * price, 0.0)
    if per_pv:
        return conv, cost
    return float(conv.sum()), float(cost.sum())


def lagrangian_slots(p_value, comp_top, alpha: float, *, exposure_probs=DEFAULT_EXPOSURE_PROBS,
                     reserve_price: float = DEFAULT_RESERVE_PRICE) -> np.ndarray:
    """(n_pv,) int8 slot (0 = lose) maximising e_k * (alpha * p_value - c_k): the LP's choice at alpha.

    Ties go to the cheaper option, so at alpha = 1 / efficiency of a segment that segment is not bought.
    """
    p, c = _market(p_value, comp_top)
    e, r = _rules(exposure_probs, reserve_price, c.shape[1])
    a = float(alpha)
    if not (math.isfinite(a) and a >= 0):
        raise ValueError(f"alpha: must be a finite number >= 0, got {alpha!r}")
    cost, conv, exists = _slot_options(p, c, e, r)
    gain = np.where(exists, a * conv - cost, -np.inf)[:, ::-1]   # columns: slot K, ..., slot 1
    gain = np.concatenate([np.zeros((p.size, 1)), gain], axis=1)  # column 0: lose
    best = np.argmax(gain, axis=1)                                # first maximum = cheapest
    k_slots = c.shape[1]
    return np.where(best == 0, 0, k_slots + 1 - best).astype(np.int8)


def slot_bids(comp_top, slots, *, reserve_price: float = DEFAULT_RESERVE_PRICE) -> np.ndarray:
    """(n_pv,) bids that land the advertiser in ``slots`` (0 = lose) under GSP, losing ties.

    Slot k needs c_k < bid <= c_{k-1}: the midpoint for k >= 2, 2 * c_1 for slot 1.
    """
    c = _comp_top(comp_top)
    _, r = _rules(np.ones(c.shape[1]), reserve_price, c.shape[1])
    s = np.asarray(slots)
    k_slots = c.shape[1]
    if s.shape != (c.shape[0],) or (s.size and not np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"slots: must be integers of shape (n_pv,) = ({c.shape[0]},), got {s.dtype} {s.shape}")
    s = s.astype(np.int64)
    if s.size and (s.min() < 0 or s.max() > k_slots):
        raise ValueError(f"slots: must lie in [0, {k_slots}], got values in [{s.min()}, {s.max()}]")
    rows = np.arange(c.shape[0])
    k0 = np.maximum(s - 1, 0)
    ck = c[rows, k0]
    above = np.where(k0 > 0, c[rows, np.maximum(k0 - 1, 0)], np.inf)
    bad = (s > 0) & ~((ck > r) & (ck < above))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"slots: PV {i} cannot take slot {s[i]} (unsold at the reserve or tied competitors), comp_top {tuple(c[i])}")
    return np.where(s == 0, 0.0, np.where(s == 1, 2.0 * ck, 0.5 * (ck + above)))


def uniform_bid_steps(p, c, e, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The steps of ``bid = alpha * p_value`` under GSP, per PV and competitor: p (n_pv,), c (n_pv, K)
    the competitors' top bids, e (K,) net exposure, r the reserve -> ``at`` (n_pv, K), the multiplier
    c_k / p past which the bid outbids c_k (inf where p = 0), and ``dw``, ``dv`` (n_pv, K), the
    expected cost and conversions that step adds: from slot k+1 (or nothing) to slot k, a slot
    priced at or under the reserve being unsold. Summing the steps below alpha gives the expected
    cost and conversions of multiplier alpha."""
    sold = c > r                                                       # (n_pv, K) slot k sellable
    w_state = np.where(sold, e[None, :] * c, 0.0)
    v_state = np.where(sold, e[None, :] * p[:, None], 0.0)
    dw = w_state - np.concatenate([w_state[:, 1:], np.zeros((p.size, 1))], axis=1)
    dv = v_state - np.concatenate([v_state[:, 1:], np.zeros((p.size, 1))], axis=1)
    with np.errstate(divide="ignore"):
        at = np.where(p[:, None] > 0, c / np.where(p > 0, p, 1.0)[:, None], np.inf)
    return at, dw, dv


def best_uniform_alpha(p_value, comp_top, tick, budget: float, target_cpa: float, *, n_ticks: int = 48,
                       exposure_probs=DEFAULT_EXPOSURE_PROBS, reserve_price: float = DEFAULT_RESERVE_PRICE,
                       beta: float = DEFAULT_BETA) -> UniformAlphaSolution:
    """The exact best ``bid = alpha * p_value`` under GSP with expected spend <= budget.

    As alpha grows, PV i moves from slot k+1 to slot k when alpha * p_value passes c_k, so expected
    spend and conversions are non-decreasing step functions of alpha; all steps are enumerated.
    """
    budget = _positive("budget", budget)
    target_cpa = _positive("target_cpa", target_cpa)
    beta = _beta(beta)
    p, c = _market(p_value, comp_top)
    t, n_ticks = _ticks(tick, p.size, n_ticks)
    e, r = _rules(exposure_probs, reserve_price, c.shape[1])

    at, dw, dv = uniform_bid_steps(p, c, e, r)
    keep = (p[:, None] > 0) & ((dw != 0) | (dv != 0))
    at = at[keep]
    order = np.argsort(at)  # steps at one alpha are bought together (``ends``), so ties need no order
    at, s_cum, v_cum = at[order], np.cumsum(dw[keep][order]), np.cumsum(dv[keep][order])
    # A multiplier just above at[j] buys every step through the last one at the same alpha.
    ends = np.flatnonzero(np.append(at[1:] > at[:-1], True)) if at.size else np.zeros(0, np.int64)
    # Cumulative sums round: a set of steps that spends exactly the budget may sum a hair above it.
    ends = ends[s_cum[ends] <= budget * (1.0 + 1e-12)]
    alpha = 0.0
    if ends.size:
        sc = score(v_cum[ends], s_cum[ends], target_cpa, beta)
        j = int(np.argmax(sc))
        if sc[j] > 0:
            i = ends[j]
            # Bid from the middle of the interval (geometric), so rounding cannot cross a step.
            hi = at[i + 1] if i + 1 < at.size else 4.0 * at[i]
            alpha = float(at[i] * min(math.sqrt(hi / at[i]), 2.0))
    conv, cost = expected_outcome(p, c, alpha * p, exposure_probs=e, reserve_price=r, per_pv=True)
    tick_spend = np.bincount(t, weights=cost, minlength=n_ticks)
    tick_conversions = np.bincount(t, weights=conv, minlength=n_ticks)
    total_v, total_s = float(conv.sum()), float(cost.sum())
    return UniformAlphaSolution(
        alpha=alpha,
        score=score(total_v, total_s, target_cpa, beta),
        conversions=total_v,
        spend=total_s,
        tick_spend=tick_spend,
        tick_conversions=tick_conversions,
        remaining_budget=budget - np.concatenate([[0.0], np.cumsum(tick_spend)[:-1]]),
    )
