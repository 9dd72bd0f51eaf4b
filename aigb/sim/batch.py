"""Many campaigns of one period at once: each campaign's market, advanced tick by tick together.

An evaluation plays each advertiser slot of a (seed, period) in turn, and the market around the
slot reacts to its bids (the competitors pace on their own spend), so every campaign is a market
of its own. Yet most of what a tick costs is the same for every campaign of the period: the
traffic (every advertiser's p_value for every PV), the exposure and conversion draws, the drawn
population. ``CampaignBatch`` makes those once per tick; for each campaign it then computes only
its own part: the population's multipliers from that campaign's budgets (one ``RuleBidders`` copy
per campaign), and the auction of its bids, in compiled loops (numba) that read the shared
p_values instead of building each campaign's (n_pv, n_adv) bid matrix.

Bit for bit. Every campaign's tick equals ``aigb.sim.period.PeriodSim.step`` with the campaign's
bids as the controlled column: the same named streams (a ``bidding`` and a ``budget_drop``
generator per campaign, each created at the state ``PeriodSim`` creates it), the same float
operations in the same order (bids as float64(p_value) * alpha; the top n_slots + 1 bids with
ties to the lower advertiser index, as ``rank_bids``; sums accumulated in PV order, as
``np.bincount`` and ``ndarray.sum(axis=0)`` accumulate them), and the budget cap's re-runs with the
same drop rule. ``tests/sim/test_batch.py`` checks it against ``PeriodSim`` and ``BiddingEnv``.

What differs: the statistics history holds the mean bid (``bid_mean``) of the controlled column
only (NaN for the population's columns, which nothing downstream reads), and a tick's outcome is
kept per campaign as top bids (``who``, ``value``) rather than as a bid matrix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import ndtr, ndtri

from aigb.seeding import rng
from aigb.sim.auction import advertiser_view, cascade_exposure, draw_tick
from aigb.sim.period import PeriodSim
from aigb.sim.population import FEEDBACK, LOG_RATIO_RANGE, LP, LP_SAMPLE, N_RATIO_BINS, PopulationConfig, RuleBidders
from aigb.types import TICK_STAT_FIELDS, MarketConfig

__all__ = ["CampaignBatch", "CampaignTick"]

_NO_DROPS = np.zeros((0, 0), dtype=np.bool_)


@numba.njit(cache=True, nogil=True)
def _rank_rows(p, alpha, zeroed, ctrl, x, rows, dropped, who, value):  # pragma: no cover - compiled
    """The top ``who.shape[1]`` bids of each PV row in ``rows``, ties to the lower advertiser.

    Advertiser j bids float64(p[i, j]) * alpha[j], the controlled one ``ctrl`` bids x[i]; zeroed
    advertisers and dropped (i, j) bid 0, and a bid of 0 never ranks (who -1, value 0), as in
    ``aigb.sim.auction.rank_bids``. Scanning j upwards and inserting only above a strictly smaller
    value keeps the lower index first among equal bids, as repeated argmax does.
    """
    n_adv = p.shape[1]
    k = who.shape[1]
    has_drops = dropped.shape[0] > 0
    # Zeroed advertisers bid 0 on every PV: a zero multiplier, and the controlled one's bids apart.
    eff = np.where(zeroed, 0.0, alpha)
    skip_ctrl = zeroed[ctrl]
    for r in range(rows.shape[0]):
        i = rows[r]
        for m in range(k):
            who[i, m] = -1
            value[i, m] = 0.0
        for j in range(n_adv):
            if j == ctrl:
                if skip_ctrl:
                    continue
                b = x[i]
            else:
                b = np.float64(p[i, j]) * eff[j]
            if has_drops and dropped[i, j]:
                continue
            if b > value[i, k - 1]:
                m = k - 1
                while m > 0 and b > value[i, m - 1]:
                    value[i, m] = value[i, m - 1]
                    who[i, m] = who[i, m - 1]
                    m -= 1
                value[i, m] = b
                who[i, m] = j


@numba.njit(cache=True, nogil=True)
def _candidates(p, a_min, a_max, k):  # pragma: no cover - compiled
    """Per PV, the advertisers that can reach the top ``k`` bids in any campaign of the batch (CSR).

    In every campaign, population advertiser j bids between p[i, j] * a_min[j] and p[i, j] *
    a_max[j] (the extremes of its multiplier over the campaigns where it is not the controlled
    one). Let T be the (k+1)-th largest lower bound of the PV. In any campaign, dropping the
    controlled advertiser's lower bound leaves k advertisers bidding at least T; so an advertiser
    whose upper bound is below T has k bids strictly above it and cannot rank in the top k. The
    others, ascending, are the candidates (an advertiser among the k+1 largest lower bounds always is).
    """
    n_pv, n_adv = p.shape
    start = np.zeros(n_pv + 1, dtype=np.int64)
    top = np.zeros(k + 1)
    thresh = np.zeros(n_pv)
    for i in range(n_pv):
        for m in range(k + 1):
            top[m] = 0.0
        for j in range(n_adv):
            v = np.float64(p[i, j]) * a_min[j]
            if v > top[k]:
                m = k
                while m > 0 and v > top[m - 1]:
                    top[m] = top[m - 1]
                    m -= 1
                top[m] = v
        thresh[i] = top[k]
        c = 0
        for j in range(n_adv):
            if np.float64(p[i, j]) * a_max[j] >= top[k]:
                c += 1
        start[i + 1] = start[i] + c
    cand = np.empty(start[n_pv], dtype=np.int64)
    for i in range(n_pv):
        q = start[i]
        for j in range(n_adv):
            if np.float64(p[i, j]) * a_max[j] >= thresh[i]:
                cand[q] = j
                q += 1
    return start, cand, thresh


@numba.njit(cache=True, nogil=True)
def _rank_candidates(p, alpha, zeroed, ctrl, x, rows, dropped, start, cand, who, value):  # pragma: no cover - compiled
    """``_rank_rows`` over the PV rows ``rows``, scanning only each PV's candidates (``_candidates``)
    and the controlled advertiser, merged in ascending advertiser order (which keeps the tie rule).
    Exact wherever the candidates' bound holds: always before a re-run's drops (``_rerank_rows``
    checks it after them)."""
    n_adv = p.shape[1]
    k = who.shape[1]
    has_drops = dropped.shape[0] > 0
    for r in range(rows.shape[0]):
        i = rows[r]
        for m in range(k):
            who[i, m] = -1
            value[i, m] = 0.0
        q, end = start[i], start[i + 1]
        ctrl_pending = not zeroed[ctrl]
        while True:
            j = cand[q] if q < end else n_adv
            if ctrl_pending and ctrl <= j:
                ctrl_pending = False
                b = x[i]
                jj = ctrl
            elif q >= end:
                break
            else:
                q += 1
                if j == ctrl or zeroed[j]:
                    continue
                b = np.float64(p[i, j]) * alpha[j]
                jj = j
            if has_drops and dropped[i, jj]:
                continue
            if b > value[i, k - 1]:
                m = k - 1
                while m > 0 and b > value[i, m - 1]:
                    value[i, m] = value[i, m - 1]
                    who[i, m] = who[i, m - 1]
                    m -= 1
                value[i, m] = b
                who[i, m] = jj


@numba.njit(cache=True, nogil=True)
def _auction_batch(p, alpha, zeroed, ctrl, x, start, cand, reserve, shown, who, value, winner, price, exposed, cost):  # pragma: no cover - compiled
    """The first pass of a tick for every campaign of the batch: ``_rank_candidates``, the slots
    (``_settle_rows``) and the exposed cost per advertiser (``_tick_cost``), PV by PV, so that a
    PV's p_values and candidates are read once for all campaigns.

    Shapes: alpha, zeroed (n_b, n_adv); ctrl (n_b,); x (n_b, n_pv); who, value (n_b, n_pv, 4);
    winner, price, exposed (n_b, n_pv, 3); cost (n_b, n_adv), zero on entry.
    """
    n_pv, n_adv = p.shape
    n_b = ctrl.shape[0]
    for i in range(n_pv):
        end = start[i + 1]
        for c in range(n_b):
            v0 = v1 = v2 = v3 = 0.0
            w0 = w1 = w2 = w3 = -1
            me = ctrl[c]
            q = start[i]
            ctrl_pending = not zeroed[c, me]
            while True:
                j = cand[q] if q < end else n_adv
                if ctrl_pending and me <= j:
                    ctrl_pending = False
                    b = x[c, i]
                    jj = me
                elif q >= end:
                    break
                else:
                    q += 1
                    if j == me or zeroed[c, j]:
                        continue
                    b = np.float64(p[i, j]) * alpha[c, j]
                    jj = j
                if b > v3:
                    if b > v2:
                        v3, w3 = v2, w2
                        if b > v1:
                            v2, w2 = v1, w1
                            if b > v0:
                                v1, w1 = v0, w0
                                v0, w0 = b, jj
                            else:
                                v1, w1 = b, jj
                        else:
                            v2, w2 = b, jj
                    else:
                        v3, w3 = b, jj
            who[c, i, 0], who[c, i, 1], who[c, i, 2], who[c, i, 3] = w0, w1, w2, w3
            value[c, i, 0], value[c, i, 1], value[c, i, 2], value[c, i, 3] = v0, v1, v2, v3
            for k in range(3):
                v = value[c, i, k + 1]
                if v > reserve:
                    a = who[c, i, k]
                    winner[c, i, k] = a
                    price[c, i, k] = v
                    exposed[c, i, k] = shown[i, k]
                    if shown[i, k]:
                        cost[c, a] += v
                else:
                    winner[c, i, k] = -1
                    price[c, i, k] = 0.0
                    exposed[c, i, k] = False


@numba.njit(cache=True, nogil=True)
def _lp_histograms(log_ratio, lwc, lo, scale, n_bins, counts, costs):  # pragma: no cover - compiled
    """OnlineLP histogram increments of each copy (``aigb.sim.population.RuleBidders.observe``):
    bin floor((log_ratio - lo) * scale) clipped to the bins, summed in (PV, bidder) order as
    ``np.bincount`` sums. log_ratio (n_copies, m, n_lp); lwc (n_copies, m); counts, costs
    (n_copies, n_lp, n_bins), zero on entry. Non-finite ratios are skipped."""
    n_c, m, n_lp = log_ratio.shape
    for c in range(n_c):
        for r in range(m):
            for j in range(n_lp):
                v = log_ratio[c, r, j]
                if not np.isfinite(v):
                    continue
                b = np.floor((v - lo) * scale)
                if b < 0.0:
                    b = 0.0
                elif b > n_bins - 1:
                    b = n_bins - 1
                bi = int(b)
                counts[c, j, bi] += 1.0
                costs[c, j, bi] += lwc[c, r]


@numba.njit(cache=True, nogil=True)
def _rerank_rows(p, alpha, zeroed, ctrl, x, rows, dropped, start, cand, thresh, who, value):  # pragma: no cover - compiled
    """``_rank_rows`` for a re-run's rows (bids dropped to 0), scanning the PV's candidates first.

    Every advertiser outside the candidates bids below the PV's threshold (``_candidates``); so
    when the candidates still hold ``k`` bids at or above it, the scan is exact. Otherwise (drops
    took too many of them) the row is ranked over every advertiser.
    """
    _rank_candidates(p, alpha, zeroed, ctrl, x, rows, dropped, start, cand, who, value)
    k = who.shape[1]
    one = np.empty(1, dtype=np.int64)
    for r in range(rows.shape[0]):
        i = rows[r]
        if value[i, k - 1] < thresh[i]:
            one[0] = i
            _rank_rows(p, alpha, zeroed, ctrl, x, one, dropped, who, value)


@numba.njit(cache=True, nogil=True)
def _top_bids(p, who, alpha, out):  # pragma: no cover - compiled
    """out[i, k] = float64(p[i, who[i, k]]) * alpha[who[i, k]] where who[i, k] >= 0 (0 stays elsewhere)."""
    for i in range(who.shape[0]):
        for k in range(who.shape[1]):
            j = who[i, k]
            if j >= 0:
                out[i, k] = np.float64(p[i, j]) * alpha[j]


@numba.njit(cache=True, nogil=True)
def _won_rows(winner, advertiser):  # pragma: no cover - compiled
    """PVs where ``advertiser`` holds a slot, ascending (``np.flatnonzero((winner == a).any(axis=1))``)."""
    out = np.empty(winner.shape[0], dtype=np.int64)
    n = 0
    for i in range(winner.shape[0]):
        for k in range(winner.shape[1]):
            if winner[i, k] == advertiser:
                out[n] = i
                n += 1
                break
    return out[:n]


@numba.njit(cache=True, nogil=True)
def _settle_rows(value, who, rows, reserve, shown, winner, price, exposed):  # pragma: no cover - compiled
    """Slots of each PV row: slot k is sold iff the (k+1)-th bid beats the reserve; its price is that bid."""
    n_slots = winner.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(n_slots):
            v = value[i, k + 1]
            if v > reserve:
                winner[i, k] = who[i, k]
                price[i, k] = v
                exposed[i, k] = shown[i, k]
            else:
                winner[i, k] = -1
                price[i, k] = 0.0
                exposed[i, k] = False


@numba.njit(cache=True, nogil=True)
def _tick_cost(winner, price, exposed, n_adv):  # pragma: no cover - compiled
    """Exposed cost per advertiser, accumulated in (PV, slot) order as ``np.bincount`` does."""
    cost = np.zeros(n_adv)
    for i in range(winner.shape[0]):
        for k in range(winner.shape[1]):
            if exposed[i, k]:
                cost[winner[i, k]] += price[i, k]
    return cost


@numba.njit(cache=True, nogil=True)
def _tick_sums(winner, price, exposed, conversion, p, e_net, n_adv):  # pragma: no cover - compiled
    """Per-advertiser sums of ``aigb.sim.auction.tick_stats``, in its accumulation order.

    Rows: n_won, conversions, n_exposed, exposed_p_value, expected_conversions, expected_cost.
    """
    out = np.zeros((6, n_adv))
    for i in range(winner.shape[0]):
        for k in range(winner.shape[1]):
            a = winner[i, k]
            if a < 0:
                continue
            pw = np.float64(p[i, a])
            out[0, a] += 1.0
            if conversion[i, k]:
                out[1, a] += 1.0
            if exposed[i, k]:
                out[2, a] += 1.0
                out[3, a] += pw
            out[4, a] += e_net[k] * pw
            out[5, a] += e_net[k] * price[i, k]
    return out


@dataclass
class CampaignTick:
    """One campaign's tick, as ``BiddingEnv.step`` reports it to the harness."""

    stats: dict[str, np.ndarray]   # field of TICK_STAT_FIELDS -> (n_adv,) (bid_mean: controlled column only)
    bids: np.ndarray               # (n_pv,) float64 the controlled advertiser's effective bids
    winner: np.ndarray             # (n_pv, n_slots) int64
    price: np.ndarray              # (n_pv, n_slots) float64
    exposed: np.ndarray            # (n_pv, n_slots) bool
    conversion: np.ndarray         # (n_pv, n_slots) bool
    least_winning_cost: np.ndarray  # (n_pv,) float64

    def view(self, advertiser: int, config: MarketConfig) -> dict[str, np.ndarray]:
        """Per-PV results of ``advertiser`` (``aigb.sim.auction.advertiser_view``)."""
        return advertiser_view(self, advertiser, config)


class CampaignBatch:
    """The campaigns of one (seed, period), one controlled advertiser each, stepped together.

    ``step(bids)`` plays the current tick of every live campaign: ``bids[b]`` (n_pv,) float64,
    finite and >= 0 (validated by the caller, as ``BiddingEnv.step`` validates), replaces the
    population's bids of campaign b's advertiser. A campaign can leave the batch (``drop``) when its
    strategy fails; the others are unaffected.
    """

    def __init__(self, config: MarketConfig, seed: int, period: int, advertisers: Sequence[int], *,
                 population: PopulationConfig | None = None, record_competitors: bool = False):
        self.config, self.seed, self.period = config, int(seed), int(period)
        self.record_competitors = bool(record_competitors)
        # What the hindsight bound needs, kept compactly: the ticks' p_values (shared by every
        # campaign) and, per campaign and tick, who the other advertisers' top bids were and the
        # multipliers they bid with; ``competitor_top`` rebuilds the bids from them exactly.
        self._p_ticks: list[np.ndarray] = []
        self._others: list[list[tuple[np.ndarray, np.ndarray]]] = []
        ref = PeriodSim(config, seed, period, population=population)
        self.campaigns, self.traffic = ref.campaigns, ref.traffic
        self.budget = ref.budget
        self.advertisers = np.asarray(list(advertisers), dtype=np.int64)
        for a in self.advertisers:
            if not 0 <= a < config.n_advertisers:
                raise ValueError(f"advertiser: must be in [0, {config.n_advertisers}), got {a}")
        n_b, n_adv = self.advertisers.size, config.n_advertisers
        self.bidders = [copy.deepcopy(ref.bidders) for _ in range(n_b)]
        for bidders in self.bidders:   # they pace on the campaigns' budgets, as PeriodSim's do
            bidders.budget = self.budget
        self.spent = np.zeros((n_b, n_adv))
        self.conversions = np.zeros((n_b, n_adv))
        self.history = [{f: np.zeros((config.n_ticks, n_adv)) for f in TICK_STAT_FIELDS} for _ in range(n_b)]
        for h in self.history:
            h["bid_mean"][:] = np.nan
        self.live = np.ones(n_b, dtype=bool)
        self._others = [[] for _ in range(n_b)]
        self.tick = 0
        self._inputs: tuple[np.ndarray, np.ndarray] | None = None
        e = np.asarray(config.exposure_probs, dtype=np.float64)
        self._exposure_probs = e
        self._e_net = np.asarray(config.net_exposure_probs, dtype=np.float64)
        self._fa, self._fb = ndtr(self.traffic.trunc_low), ndtr(self.traffic.trunc_high)

    @property
    def done(self) -> bool:
        return self.tick >= self.config.n_ticks

    def remaining_budget(self, b: int) -> np.ndarray:
        """Budget left of every advertiser in campaign b's market.  # (n_adv,)"""
        return self.budget - self.spent[b]

    def tick_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(p_value, p_value_sigma)`` of the current tick, (n_pv, n_adv) float32, shared by all campaigns."""
        if self.done:
            raise RuntimeError("the period is over: all ticks have been played")
        if self._inputs is None:
            from aigb.sim.traffic import tick_p_values
            self._inputs = tick_p_values(self.traffic, self.seed, self.period, self.tick)
        return self._inputs

    def own_p_value(self, advertiser: int) -> np.ndarray:
        """The advertiser's p_value of every PV played so far, tick after tick (needs
        ``record_competitors``).  # (n_pv,) float32"""
        return np.concatenate([p[:, advertiser] for p in self._p_ticks])

    def competitor_top(self, b: int) -> np.ndarray:
        """The other advertisers' top n_slots bids per PV in campaign b's market, every tick played
        (needs ``record_competitors``), as ``rank_bids`` of the tick's bids without the campaign's
        own column gives them: float64(p_value) x the bidder's multiplier, 0 past the last bidder.
        # (n_pv, n_slots) float64"""
        ticks = list(zip(self._p_ticks, self._others[b]))
        out = np.zeros((sum(p.shape[0] for p, _ in ticks), self.config.n_slots))
        start = 0
        for p, (who, alpha) in ticks:
            _top_bids(p, who, alpha, out[start:start + p.shape[0]])
            start += p.shape[0]
        return out

    def drop(self, b: int) -> None:
        """Campaign b leaves the batch (its strategy failed); its state stays as it was."""
        self.live[b] = False

    def step(self, bids: dict[int, np.ndarray]) -> dict[int, CampaignTick]:
        """Play the current tick of every live campaign; ``bids`` maps campaign index -> (n_pv,) bids."""
        if self.done:
            raise RuntimeError("the period is over: all ticks have been played")
        p, sigma = self.tick_inputs()
        t, (s, per), cfg = self.tick, (self.seed, self.period), self.config
        n_pv, n_adv = p.shape
        live = [int(b) for b in np.flatnonzero(self.live)]
        draws = draw_tick(rng(s, "outcome", per, t), n_pv, cfg.n_slots)
        shared = _SharedTick(p, sigma, draws, cascade_exposure(draws.exposure_u, self._exposure_probs),
                             self._fa, self._fb)
        # The population's multipliers in each campaign's market (each from its own bidding stream,
        # all at the state PeriodSim.step creates), then who can reach the top bids in any of them.
        g_bid, alpha, remaining = {}, {}, {}
        for b in live:
            g_bid[b] = rng(s, "bidding", per, t)
            remaining[b] = self.budget - self.spent[b]
            alpha[b] = self.bidders[b].alphas(t, self.spent[b], self.conversions[b], g_bid[b])
        start, cand, thresh = self._candidates(p, live, alpha, remaining)
        shared.start, shared.cand, shared.thresh = start, cand, thresh
        first = self._first_pass(p, live, bids, alpha, remaining, shared, start, cand)
        p_mean = p.sum(axis=0, dtype=np.float64) / max(n_pv, 1)
        denom = max(n_pv, 1)
        out, results = {}, {}
        for b in live:
            res = self._campaign_tick(b, first[b], alpha[b], remaining[b], shared)
            results[b] = res
            sums = _tick_sums(res.winner, res.price, res.exposed, res.conversion, p, self._e_net, n_adv)
            a = int(self.advertisers[b])
            bid_mean = np.full(n_adv, np.nan)
            # ndarray.sum(axis=0) of a C-ordered (n_pv, n_adv) matrix adds its rows in order: a running sum.
            bid_mean[a] = (np.cumsum(res.bids)[-1] if n_pv else 0.0) / denom
            n_won, conv = sums[0], sums[1]
            stats = {
                "n_pv": np.full(n_adv, n_pv, dtype=np.float64),
                "bid_mean": bid_mean,
                "p_value_mean": p_mean,
                "lwc_mean": np.full(n_adv, res.least_winning_cost.sum() / denom),
                "win_rate": n_won / denom,
                "conversion_rate": conv / denom,
                "n_won": n_won,
                "n_exposed": sums[2],
                "cost": res.cost,
                "conversions": conv,
                "exposed_p_value": sums[3],
                "expected_conversions": sums[4],
                "expected_cost": sums[5],
                "remaining_budget": remaining[b].copy(),
            }
            h = self.history[b]
            for f in TICK_STAT_FIELDS:
                h[f][t] = stats[f]
            self.spent[b] += res.cost
            self.conversions[b] += conv
            if self.record_competitors:
                self._others[b].append((_competitor_who(res.who, a), alpha[b]))
            out[b] = CampaignTick(stats, res.bids, res.winner, res.price, res.exposed, res.conversion,
                                  res.least_winning_cost)
        if self.record_competitors:
            self._p_ticks.append(p)
        if live:
            lwc = np.stack([results[b].least_winning_cost for b in live]) if n_pv else np.zeros((len(live), 0))
            observe_many([self.bidders[b] for b in live], p, lwc, g_bid[live[0]])
        self.tick += 1
        self._inputs = None
        return out

    def _candidates(self, p, live, alpha, remaining) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_candidates`` for this tick: each advertiser's multiplier range over the live campaigns
        where it bids as the population (0 where its budget is spent)."""
        n_adv = p.shape[1]
        eff = np.stack([np.where(remaining[b] < self.config.min_remaining_budget, 0.0, alpha[b]) for b in live])
        own = np.zeros(eff.shape, dtype=bool)
        own[np.arange(len(live)), self.advertisers[live]] = True
        a_min = np.where(own, np.inf, eff).min(axis=0)
        a_max = np.where(own, -np.inf, eff).max(axis=0)
        never = own.all(axis=0)  # controlled in every live campaign: its population bid is never used
        a_min[never], a_max[never] = 0.0, 0.0
        return _candidates(p, a_min, a_max, self.config.n_slots + 1)

    def _first_pass(self, p, live, bids, alpha, remaining, shared, start, cand) -> dict[int, "_CampaignResult"]:
        """Every live campaign's auction before any budget re-run (``_auction_batch``)."""
        cfg = self.config
        n_pv, n_adv = p.shape
        n_b, k = len(live), cfg.n_slots + 1
        ctrl = self.advertisers[live]
        x = np.empty((n_b, n_pv))
        for c, b in enumerate(live):
            x[c] = bids[b]
        alphas = np.stack([alpha[b] for b in live])
        zeroed = np.stack([remaining[b] < cfg.min_remaining_budget for b in live])
        who = np.empty((n_b, n_pv, k), dtype=np.int64)
        value = np.empty((n_b, n_pv, k))
        winner = np.empty((n_b, n_pv, k - 1), dtype=np.int64)
        price = np.empty((n_b, n_pv, k - 1))
        exposed = np.empty((n_b, n_pv, k - 1), dtype=bool)
        cost = np.zeros((n_b, n_adv))
        if k == 4:
            _auction_batch(p, alphas, zeroed, ctrl, x, start, cand, cfg.reserve_price, shared.shown,
                           who, value, winner, price, exposed, cost)
        else:   # another slot count: the same pass, one campaign at a time
            rows = np.arange(n_pv)
            for c in range(n_b):
                _rank_candidates(p, alphas[c], zeroed[c], int(ctrl[c]), x[c], rows, _NO_DROPS, start, cand, who[c], value[c])
                _settle_rows(value[c], who[c], rows, cfg.reserve_price, shared.shown, winner[c], price[c], exposed[c])
                cost[c] = _tick_cost(winner[c], price[c], exposed[c], n_adv)
        return {b: _CampaignResult(who[c], value[c], winner[c], price[c], exposed[c], None, None, cost[c], x[c])
                for c, b in enumerate(live)}

    def _campaign_tick(self, b: int, res: "_CampaignResult", alpha: np.ndarray, remaining: np.ndarray,
                       sh: "_SharedTick") -> "_CampaignResult":
        """``aigb.sim.auction.step_market`` for campaign b, from its first pass: conversions and the
        budget cap's re-runs."""
        cfg, p = self.config, sh.p
        n_pv, n_adv = p.shape
        ctrl = int(self.advertisers[b])
        zeroed = remaining < cfg.min_remaining_budget
        who, value, winner, price, exposed, cost, x = res.who, res.value, res.winner, res.price, res.exposed, res.cost, res.bids
        conversion = sh.conversions(winner, exposed, np.arange(n_pv))
        dropped = _NO_DROPS
        drop_rng = None
        while True:
            over = np.flatnonzero(cost > remaining)
            if over.size == 0:
                break
            if drop_rng is None:
                drop_rng = rng(self.seed, "budget_drop", self.period, self.tick)
                dropped = np.zeros((n_pv, n_adv), dtype=bool)
            changed = np.zeros(n_pv, dtype=bool)
            for a in over:  # ascending advertiser index: the documented drop order
                won_pv = _won_rows(winner, a)
                n_drop = int(np.ceil(won_pv.size * (cost[a] - remaining[a]) / cost[a]))
                gone = drop_rng.choice(won_pv, size=min(n_drop, won_pv.size), replace=False)
                dropped[gone, a] = True
                changed[gone] = True
            # A re-run changes only the rows whose bids changed (aigb.sim.auction.step_market).
            rows = np.flatnonzero(changed)
            _rerank_rows(p, alpha, zeroed, ctrl, x, rows, dropped, sh.start, sh.cand, sh.thresh, who, value)
            _settle_rows(value, who, rows, cfg.reserve_price, sh.shown, winner, price, exposed)
            conversion[rows] = sh.conversions(winner[rows], exposed[rows], rows)
            cost = _tick_cost(winner, price, exposed, n_adv)
        eff = np.zeros(n_pv) if zeroed[ctrl] else x.copy()
        if dropped.size:
            eff[dropped[:, ctrl]] = 0.0
        return _CampaignResult(who, value, winner, price, exposed, conversion, value[:, cfg.n_slots].copy(), cost, eff)


@dataclass
class _CampaignResult:
    who: np.ndarray
    value: np.ndarray
    winner: np.ndarray
    price: np.ndarray
    exposed: np.ndarray
    conversion: np.ndarray
    least_winning_cost: np.ndarray
    cost: np.ndarray
    bids: np.ndarray


class _SharedTick:
    """A tick's inputs common to all campaigns, and the conversions of (PV, slot, winner) triples.

    A shown slot converts by its winner's truncated-normal draw (``aigb.sim.auction._allocate``):
    the same (PV, slot, advertiser) converts the same way in every campaign, and campaigns mostly
    seat the same few advertisers, so each triple is computed once per tick and looked up after.
    """

    def __init__(self, p, sigma, draws, shown, fa, fb):
        self.p, self.sigma, self.draws, self.shown, self.fa, self.fb = p, sigma, draws, shown, fa, fb
        self.start = self.cand = self.thresh = None   # the tick's candidates (CampaignBatch._candidates)
        n_pv, n_adv = p.shape
        self._known = np.full((n_pv, shown.shape[1], n_adv), -1, dtype=np.int8)  # -1 unknown, 0 / 1

    def conversions(self, winner: np.ndarray, exposed: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Whether each (row, slot) converts; ``winner``/``exposed`` are the rows ``rows`` of a tick."""
        conversion = np.empty(exposed.shape, dtype=bool)
        r, k = _lookup_conversions(winner, exposed, rows, self._known, conversion)
        if r.size:
            a, pv = winner[r, k], rows[r]
            fa, fb = self.fa[a], self.fb[a]
            z = ndtri(fa + self.draws.noise_u[pv, k] * (fb - fa))
            true_p = np.clip(self.p[pv, a].astype(np.float64) + self.sigma[pv, a].astype(np.float64) * z, 0.0, 1.0)
            converts = self.draws.convert_u[pv, k] < true_p
            conversion[r, k] = converts
            self._known[pv, k, a] = converts
        return conversion


@numba.njit(cache=True, nogil=True)
def _lookup_conversions(winner, exposed, rows, known, conversion):  # pragma: no cover - compiled
    """Fill ``conversion`` from the known triples; return the (row, slot) pairs still unknown."""
    n_rows, n_slots = winner.shape
    miss_r = np.empty(n_rows * n_slots, dtype=np.int64)
    miss_k = np.empty(n_rows * n_slots, dtype=np.int64)
    n = 0
    for r in range(n_rows):
        for k in range(n_slots):
            conversion[r, k] = False
            if exposed[r, k]:
                c = known[rows[r], k, winner[r, k]]
                if c < 0:
                    miss_r[n] = r
                    miss_k[n] = k
                    n += 1
                else:
                    conversion[r, k] = c == 1
    return miss_r[:n], miss_k[:n]


@numba.njit(cache=True, nogil=True)
def _competitor_who(who, advertiser):  # pragma: no cover - compiled
    """Per PV, who bid the other advertisers' top n_slots bids: the top n_slots + 1 bidders without
    ``advertiser`` (-1 past the last bidder).  # (n_pv, n_slots) int16"""
    n_pv, k = who.shape
    out = np.full((n_pv, k - 1), -1, dtype=np.int16)
    for i in range(n_pv):
        m = 0
        for r in range(k):
            if who[i, r] == advertiser:
                continue
            if m < k - 1:
                out[i, m] = who[i, r]
                m += 1
    return out


def observe_many(bidders: list[RuleBidders], p_value: np.ndarray, least_winning_costs: np.ndarray,
                 g: np.random.Generator) -> None:
    """``RuleBidders.observe`` of several copies of one population on one tick's shared PVs.

    The copies are the markets of one period's campaigns: the same bidders and p_values, each copy
    with its own least winning costs (least_winning_costs: (n_copies, n_pv)). ``g`` is the tick's
    ``bidding`` generator after ``alphas``, at the same state in every copy, so every copy samples
    the same PVs; what differs (the costs) is computed for all copies at once. Each copy ends as
    its own ``observe`` call would leave it, bit for bit.
    """
    first = bidders[0]
    lp = np.flatnonzero(first.kind == LP)
    fb = np.flatnonzero(first.kind == FEEDBACK)
    n_pv = p_value.shape[0]
    if (lp.size == 0 and fb.size == 0) or n_pv == 0:
        return
    rows = g.choice(n_pv, size=LP_SAMPLE, replace=False) if n_pv > LP_SAMPLE else np.arange(n_pv)
    lwc = np.ascontiguousarray(least_winning_costs[:, rows])  # (n_copies, m)
    if fb.size:
        p_mean = p_value[rows][:, fb].astype(np.float64).mean(axis=0)  # (n_fb,)
        for c, bidder in enumerate(bidders):
            with np.errstate(divide="ignore", invalid="ignore"):
                price = lwc[c].mean() / p_mean / bidder.unit[fb]
            bidder.prices[fb] = np.roll(bidder.prices[fb], -1, axis=1)
            bidder.prices[fb, -1] = np.where(np.isfinite(price), price, np.nan)
    if lp.size == 0:
        return
    weight = n_pv / rows.size
    denominator = p_value[rows][:, lp].astype(np.float64) * first.target_cpa[lp]  # (m, n_lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(lwc[:, :, None] / denominator[None])  # (n_copies, m, n_lp)
    lo, hi = LOG_RATIO_RANGE
    counts = np.zeros((len(bidders), lp.size, N_RATIO_BINS))
    costs = np.zeros((len(bidders), lp.size, N_RATIO_BINS))
    _lp_histograms(log_ratio, lwc, lo, N_RATIO_BINS / (hi - lo), N_RATIO_BINS, counts, costs)
    for c, bidder in enumerate(bidders):
        bidder.hist[lp, :, 0] += counts[c] * weight
        bidder.hist[lp, :, 1] += costs[c] * weight
