"""The competing advertisers: heterogeneous rule bidders, vectorised over advertisers.

Every bidder acts through one multiplier per tick, ``bid = alpha * p_value`` (the LP-optimal form,
../shared/DESIGN.md §1), and the controllers below compute ``alpha`` for all advertisers at once
from per-tick statistics, so 47 competitors cost about as much as one. The same controllers serve
the single-advertiser rule strategies (``aigb.strategies.rules``), which are this class with one row.

Kinds (``KINDS``):
* fixed: ``alpha = rate * C``;
* pid: our forecast pacing, ``alpha <- alpha * exp(gain * k * (planned - actual spend) / B)``,
  with the plan following the public day profile, and a CPA guard (a strategy; not in the
  default field);
* lp (OnlineLP): keeps a histogram of the cost per conversion needed to enter the auction
  (``least_winning_cost / p_value``) and sets alpha at the highest threshold whose forecast spend
  over the remaining traffic fits the remaining budget, capped at ``lp_cap * C``. With a day plan
  the remaining traffic is forecast from the day profile; without one (AuctionNet's OnlineLP,
  which reads hindsight cost tables of the rest of the day) every remaining tick counts the same,
  which under-forecasts the midday peak in the morning and spends the budget by the afternoon;
* anet_pid: AuctionNet's PID competitor. It starts from a fixed absolute alpha and, at every
  later tick, compares last tick's spend x ticks left with the remaining budget: under 0.7 it
  multiplies alpha by 1.2, over 1.1 by 0.7. It never looks at its CPA;
* feedback: a state-feedback bidder standing in for AuctionNet's shipped offline-RL policies (IQL,
  CQL, BC, BCQ, TD3_BC, MOPO, COMBO), whose state holds time, budget and market statistics but not
  the CPA. Its absolute alpha is ``S * m * (b / tau) ** k_b * price ** k_m``: ``m`` its
  aggressiveness, ``b / tau`` budget left over time left, ``price`` the last 3 ticks' market cost
  of a conversion (mean least winning cost / mean p_value) over ``S``. The spread of ``m`` puts a
  part of the field several times a typical CPA from the first tick: they lift the early-day
  prices and run out of budget within hours, as AuctionNet's field does.

``S`` (``alpha_scale``) is the market's typical CPA, a constant of the preset (the middle of its
CPA range), so the CPA-blind kinds bid on the market's scale, never on their own CPA.

The default field is AuctionNet's roster (``AUCTIONNET_ROSTER``): per category of 8, one PID, two
OnlineLP and five offline-RL policies at fixed positions, parameters drawn per period. Market v3
(``V3_FIELD``, chosen by ``market_population``) keeps the roster with parameters calibrated on
AuctionNet's own per-tick data. Each bidder
multiplies its alpha by per-tick log-normal noise of its own scale.

Held levels (``hold_share``, datasets only): a share of the advertisers, of any kind, stop
controlling at a random tick and bid one level ``alpha = r * C`` for the rest of the day, without
noise. Their days show what holding a level does after a closed-loop morning, the question a
level planner asks at every tick (``aigb.algos.diffbid``, ``level_days="held"``); the fixed-rate
bidders only show it from the first tick on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from aigb.types import ConfigError, MarketConfig

__all__ = ["PopulationConfig", "RuleBidders", "KINDS", "EXPLORE", "AUCTIONNET_ROSTER", "ratio_bins", "market_population", "V3_FIELD"]

KINDS = ("fixed", "pid", "lp", "anet_pid", "feedback")
FIXED, PID, LP, ANET_PID, FEEDBACK = range(len(KINDS))
ABSOLUTE_KINDS = (ANET_PID, FEEDBACK)  # alpha in units of the market scale S, blind to the own CPA
N_RATIO_BINS = 64
LOG_RATIO_RANGE = (-3.0, 2.5)  # log(alpha / C) covered by the OnlineLP histogram
LP_SAMPLE = 4096               # PVs per tick that feed the OnlineLP histogram and the market price
PID_RESPONSE = 5.0             # alpha moves by exp(gain * 5 * error), error as a share of budget
PRICE_WINDOW = 3               # ticks of market price the feedback bidders look back on
# AuctionNet's PID rule (simul_bidding_env PidBiddingStrategy): thresholds and factors.
ANET_LOW, ANET_HIGH, ANET_UP, ANET_DOWN = 0.7, 1.1, 1.2, 0.7

AUCTIONNET_ROSTER = ("anet_pid", "feedback", "feedback", "lp", "lp", "feedback", "feedback", "feedback")
"""Kinds by position within a category of 8, as AuctionNet's Controller lays out its agents: PID,
two offline-RL policies, two OnlineLP, three offline-RL policies."""


def ratio_bins() -> np.ndarray:
    """Upper edges of the OnlineLP histogram bins, in units of alpha / C.  # (N_RATIO_BINS,)"""
    return np.exp(np.linspace(*LOG_RATIO_RANGE, N_RATIO_BINS + 1)[1:])


@dataclass(frozen=True)
class PopulationConfig:
    """How the rule bidders of a market are drawn (per period, from stream ``population``)."""

    roster: tuple[str, ...] = AUCTIONNET_ROSTER
    """Kinds by position in each block of ``len(roster)`` advertisers; empty: draw kinds by ``kind_shares``."""
    kind_shares: tuple[float, ...] = (0.2, 0.2, 0.2, 0.15, 0.25)
    """Shares of fixed, pid, lp, anet_pid and feedback bidders when ``roster`` is empty."""
    lp_day_plan_share: float = 0.0
    """Share of lp bidders that forecast the rest of the day from the day profile (the others count ticks)."""
    fixed_rate: tuple[float, float] = (0.7, 1.3)
    """Range of alpha / C of fixed-rate bidders."""
    pid_gain: tuple[float, float] = (0.5, 2.0)
    """Range of the forecast-pacing PID gain."""
    initial_rate: tuple[float, float] = (0.8, 1.2)
    """Range of the first tick's alpha / C of pid and lp bidders."""
    lp_cap: tuple[float, float] = (1.5, 1.5)
    """Range of OnlineLP's cap on alpha / C (1.5 in AuctionNet's baseline)."""
    anet_initial: tuple[float, float] = (0.12, 0.20)
    """Range of AuctionNet PID's first alpha / S (AuctionNet starts at 15 with a typical CPA near 95)."""
    aggressiveness: tuple[float, float] = (0.5, 5.0)
    """Range (log-uniform) of a feedback bidder's alpha / S on pace and at the reference price."""
    budget_gain: tuple[float, float] = (0.0, 1.0)
    """Range of a feedback bidder's exponent on budget left over time left."""
    market_gain: tuple[float, float] = (0.0, 0.5)
    """Range of a feedback bidder's exponent on the recent market price."""
    noise: tuple[float, float] = (0.0, 0.1)
    """Range of each bidder's per-tick log-normal alpha noise scale."""
    alpha_bounds: tuple[float, float] = (0.05, 5.0)
    """Bounds of alpha / C (CPA-aware kinds) and of alpha / S (CPA-blind kinds)."""
    hold_share: float = 0.0
    """Share of advertisers (any kind) that hold one level from a random tick on; 0: none."""
    hold_tick: tuple[float, float] = (4.0, 44.0)
    """Range (uniform, whole ticks) of the tick a holding advertiser's level starts at."""
    hold_rate: tuple[float, float] = (0.3, 2.5)
    """Range (log-uniform) of a held level's alpha / C."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "roster", tuple(str(k) for k in self.roster))
        unknown = [k for k in self.roster if k not in KINDS]
        if unknown:
            raise ConfigError(f"roster: unknown kinds {unknown}; choose from {', '.join(KINDS)}")
        shares = np.asarray(self.kind_shares, dtype=float)
        if shares.shape != (len(KINDS),) or (shares < 0).any() or shares.sum() <= 0:
            raise ConfigError(f"kind_shares: need {len(KINDS)} non-negative shares ({', '.join(KINDS)}), got {self.kind_shares}")
        for name in ("lp_day_plan_share", "hold_share"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"{name}: must lie in [0, 1], got {getattr(self, name)}")
        for f in fields(self):
            if f.name in ("roster", "kind_shares", "lp_day_plan_share", "hold_share"):
                continue
            lo, hi = getattr(self, f.name)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise ConfigError(f"{f.name}: need a range 0 <= low <= high, got {(lo, hi)}")
        if self.hold_rate[0] <= 0:
            raise ConfigError(f"hold_rate: the low end must be > 0 (log-uniform), got {self.hold_rate}")
        if self.aggressiveness[0] <= 0:
            raise ConfigError(f"aggressiveness: the low end must be > 0 (log-uniform), got {self.aggressiveness}")

    def to_dict(self) -> dict:
        """Plain JSON values; the hold fields only when ``hold_share`` > 0, so that the identity of
        a dataset generated before they existed is unchanged."""
        out = {f.name: (list(v) if isinstance(v, tuple) else v) for f in fields(self) for v in [getattr(self, f.name)]}
        if not self.hold_share:
            for name in ("hold_share", "hold_tick", "hold_rate"):
                del out[name]
        return out


# Behaviour policies for datasets: every kind drawn at random per advertiser, with wider ranges,
# deliberately poor (timid, CPA-blind) and aggressive bidders, so that offline learners see good
# and bad decisions in a market that holds the evaluation field's kinds.
EXPLORE = PopulationConfig(
    roster=(),
    kind_shares=(0.2, 0.2, 0.2, 0.15, 0.25),
    lp_day_plan_share=0.5,
    fixed_rate=(0.3, 2.5),
    pid_gain=(0.1, 3.0),
    initial_rate=(0.3, 2.5),
    lp_cap=(0.8, 3.0),
    anet_initial=(0.05, 0.5),
    aggressiveness=(0.3, 5.0),
    budget_gain=(0.0, 1.5),
    market_gain=(0.0, 1.0),
    noise=(0.0, 0.5),
    alpha_bounds=(0.05, 7.0),
)


# Market v3's competitor field, calibrated on AuctionNet's own per-tick data (one evaluation period
# of its simulator, all 48 advertisers; docs/market-calibration.md maps each value to its source).
# The roster and the PID / OnlineLP rules are v2's. The offline-RL stand-ins (feedback) start near
# the shipped policies' first alphas and follow budget pace only: the shipped IQL, CQL, BC, MOPO and
# COMBO open at alpha = 53-100 whatever their CPA (0.56-1.05 S), hold alpha / S ~ 0.9-1.2 through
# the day, and their log alpha regresses on log(budget left / time left) with slope 0.22 and not on
# the market price (slope -0.03); their tick-to-tick log changes have a standard deviation of 0.24.
V3_FIELD = PopulationConfig(
    anet_initial=(0.158, 0.158),   # AuctionNet's PID opens at alpha = 15 in every slot: 15 / 95
    aggressiveness=(0.75, 1.7),    # alpha / S at pace 1: median 1.13, log sd 0.24 (sample RL: 0.9-1.2 by window)
    budget_gain=(0.2, 0.6),        # exponent on budget left / time left (sample slope 0.22 + the pace spread)
    market_gain=(0.0, 0.0),        # no response to the market price (sample slope -0.03)
    noise=(0.0, 0.2),              # per-tick log-normal noise (sample tick-to-tick sd 0.24, heavy-tailed)
)


def market_population(config: MarketConfig) -> PopulationConfig:
    """The evaluation competitor field of ``config``'s market version."""
    return V3_FIELD if config.version == "v3" else PopulationConfig()


class RuleBidders:
    """Vectorised rule bidders for a set of advertisers (rows).

    ``alphas(tick, ...)`` before the tick, ``observe(...)`` after it. All parameters are arrays over
    the rows, so one call serves the whole population. ``rate`` is the fixed alpha / C (fixed), the
    first alpha / C (pid, lp), the first alpha / S (anet_pid) or the aggressiveness m (feedback);
    ``gain`` is the pacing gain (pid) or the budget exponent k_b (feedback).
    """

    def __init__(self, kind, rate, gain, lp_cap, noise, target_cpa, budget, profile, alpha_bounds,
                 lp_prior: np.ndarray | None = None, *, market_gain=None, lp_day_plan=None,
                 alpha_scale: float | None = None, hold_tick=None, hold_rate=None):
        self.kind = np.asarray(kind, dtype=np.int64)        # (n,) index into KINDS
        self.rate = np.asarray(rate, dtype=np.float64)      # (n,)
        self.gain = np.asarray(gain, dtype=np.float64)      # (n,)
        self.lp_cap = np.asarray(lp_cap, dtype=np.float64)  # (n,)
        self.noise = np.asarray(noise, dtype=np.float64)    # (n,)
        self.target_cpa = np.asarray(target_cpa, dtype=np.float64)
        self.budget = np.asarray(budget, dtype=np.float64)
        self.profile = np.asarray(profile, dtype=np.float64)  # (n_ticks,) expected traffic share
        self.alpha_bounds = alpha_bounds
        n = self.kind.size
        self.market_gain = np.zeros(n) if market_gain is None else np.asarray(market_gain, dtype=np.float64)
        self.lp_day_plan = np.ones(n, bool) if lp_day_plan is None else np.asarray(lp_day_plan, dtype=bool)
        self.absolute = np.isin(self.kind, ABSOLUTE_KINDS)  # (n,)
        if self.absolute.any() and alpha_scale is None:
            raise ConfigError("alpha_scale: CPA-blind kinds (anet_pid, feedback) need the market's CPA scale")
        self.alpha_scale = None if alpha_scale is None else float(alpha_scale)
        # The unit each row's alpha is expressed in: its own CPA, or the market scale S.
        self.unit = np.where(self.absolute, self.alpha_scale or 1.0, self.target_cpa)  # (n,)
        self.relative_alpha = self.rate.copy()  # (n,) current alpha / unit
        self.hist = np.zeros((n, N_RATIO_BINS, 2))  # per bin: PV count, cost to enter
        # A prior histogram (a forecast of a whole period learned from other data) is blended with
        # what the period has shown so far, weighted by the traffic share still to come.
        self.lp_prior = None if lp_prior is None else np.broadcast_to(lp_prior, (n, N_RATIO_BINS, 2)).copy()
        self.prices = np.full((n, PRICE_WINDOW), np.nan)  # recent market cost of a conversion / unit
        self._last_spent = np.zeros(n)
        # Held levels: from tick hold_tick on, alpha = hold_rate * C without noise (no hold: never).
        self.hold_tick = np.full(n, np.iinfo(np.int64).max) if hold_tick is None else np.asarray(hold_tick, dtype=np.int64)
        self.hold_rate = np.ones(n) if hold_rate is None else np.asarray(hold_rate, dtype=np.float64)

    @classmethod
    def draw(cls, config: PopulationConfig, target_cpa, budget, profile, g: np.random.Generator,
             alpha_scale: float | None = None) -> "RuleBidders":
        n = len(target_cpa)
        if config.roster:
            kind = np.array([KINDS.index(config.roster[i % len(config.roster)]) for i in range(n)])
        else:
            shares = np.asarray(config.kind_shares, dtype=float)
            kind = g.choice(len(KINDS), size=n, p=shares / shares.sum())
        # Every parameter is drawn for every row, so a row's draws do not depend on the others' kinds.
        fixed_rate = g.uniform(*config.fixed_rate, n)
        initial = g.uniform(*config.initial_rate, n)
        anet = g.uniform(*config.anet_initial, n)
        aggressive = np.exp(g.uniform(*np.log(config.aggressiveness), n))
        pid_gain = g.uniform(*config.pid_gain, n)
        budget_gain = g.uniform(*config.budget_gain, n)
        market_gain = g.uniform(*config.market_gain, n)
        lp_cap = g.uniform(*config.lp_cap, n)
        noise = g.uniform(*config.noise, n)
        day_plan = g.random(n) < config.lp_day_plan_share
        rate = np.select([kind == FIXED, kind == ANET_PID, kind == FEEDBACK], [fixed_rate, anet, aggressive], initial)
        gain = np.where(kind == FEEDBACK, budget_gain, pid_gain)
        hold_tick = hold_rate = None
        if config.hold_share > 0:   # drawn last and only then: populations without holds draw as before
            holds = g.random(n) < config.hold_share
            lo, hi = config.hold_tick
            tick = g.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1, n)
            hold_tick = np.where(holds, tick, np.iinfo(np.int64).max)
            hold_rate = np.exp(g.uniform(*np.log(config.hold_rate), n))
        return cls(kind, rate, gain, lp_cap, noise, target_cpa, budget, profile, config.alpha_bounds,
                   market_gain=market_gain, lp_day_plan=day_plan, alpha_scale=alpha_scale,
                   hold_tick=hold_tick, hold_rate=hold_rate)

    def alphas(self, tick: int, spent: np.ndarray, conversions: np.ndarray, g: np.random.Generator) -> np.ndarray:
        """Bid multipliers for ``tick`` (absolute, i.e. already times C or S).  # (n,)"""
        n_ticks = self.profile.size
        planned = self.profile[:tick].sum()  # share of the day's traffic already past
        rel = self.relative_alpha
        remaining = self.budget - spent
        if tick > 0:
            pid = self.kind == PID
            if pid.any():
                error = (planned * self.budget - spent) / self.budget
                rel = np.where(pid, rel * np.exp(self.gain * PID_RESPONSE * error), rel)
            lp = self.kind == LP
            if lp.any():
                past = np.where(self.lp_day_plan, planned, tick / n_ticks)
                rel = np.where(lp, self._lp_threshold(past, remaining), rel)
            anet = self.kind == ANET_PID
            if anet.any():
                last_cost = spent - self._last_spent
                with np.errstate(divide="ignore", invalid="ignore"):
                    pace = np.where(remaining > 0, last_cost * (n_ticks - tick) / np.maximum(remaining, 1e-12), np.inf)
                step = np.where(pace < ANET_LOW, ANET_UP, np.where(pace > ANET_HIGH, ANET_DOWN, 1.0))
                rel = np.where(anet, rel * step, rel)
        feedback = self.kind == FEEDBACK
        if feedback.any():
            rel = np.where(feedback, self._feedback(tick, n_ticks, remaining), rel)
        # CPA guard for our adaptive kinds: never aim above the CPA the campaign has achieved so far.
        with np.errstate(divide="ignore", invalid="ignore"):
            cpa_ratio = np.where(conversions > 0, self.target_cpa * conversions / np.maximum(spent, 1e-12), np.inf)
        guarded = (self.kind == PID) | (self.kind == LP)
        rel = np.where(guarded & (cpa_ratio < 1.0), rel * np.maximum(cpa_ratio, 0.5), rel)
        rel = np.clip(rel, *self.alpha_bounds)
        self.relative_alpha = np.where(self.kind == FIXED, self.relative_alpha, rel)
        self._last_spent = np.array(spent, dtype=np.float64)
        noisy = rel * np.exp(self.noise * g.standard_normal(rel.size))
        out = np.clip(noisy, *self.alpha_bounds) * self.unit
        held = tick >= self.hold_tick
        return np.where(held, self.hold_rate * self.target_cpa, out) if held.any() else out

    def _feedback(self, tick: int, n_ticks: int, remaining: np.ndarray) -> np.ndarray:
        time_left = (n_ticks - tick) / n_ticks
        pace = np.clip(np.maximum(remaining, 0.0) / self.budget / time_left, 0.05, 20.0)
        seen = np.isfinite(self.prices)
        n_seen = seen.sum(axis=1)
        price = np.where(n_seen > 0, np.where(seen, self.prices, 0.0).sum(axis=1) / np.maximum(n_seen, 1), 1.0)
        price = np.clip(price, 0.05, 20.0)
        return self.rate * pace ** self.gain * price ** self.market_gain

    def _lp_threshold(self, planned: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        # Forecast the remaining period's (count, cost) per ratio bin, then take the highest
        # threshold whose cumulative forecast cost fits the remaining budget.
        planned = np.asarray(planned, dtype=np.float64)[..., None, None]
        rest = np.maximum(1.0 - planned, 0.0)
        seen = self.hist * (rest / np.maximum(planned, 1e-9))
        if self.lp_prior is not None:
            # The prior describes a whole period; trust the period's own evidence as it accrues.
            seen = planned * seen + (1.0 - planned) * rest * self.lp_prior
        cum_cost = np.cumsum(seen[:, :, 1], axis=1)  # (n, bins)
        fits = cum_cost <= remaining[:, None]
        n_fit = fits.sum(axis=1)  # bins are ordered, so cumulative cost is monotone
        edges = ratio_bins()
        threshold = edges[np.clip(n_fit - 1, 0, N_RATIO_BINS - 1)]
        threshold = np.where(n_fit == 0, edges[0], threshold)
        return np.minimum(threshold, self.lp_cap)

    def observe(self, p_value: np.ndarray, least_winning_cost: np.ndarray, g: np.random.Generator) -> None:
        """Feed one tick's PVs to the OnlineLP histograms and the feedback bidders' price memory.

        p_value: (n_pv, n) predictions of the rows' advertisers; least_winning_cost: (n_pv,).
        """
        lp = np.flatnonzero(self.kind == LP)
        fb = np.flatnonzero(self.kind == FEEDBACK)
        n_pv = p_value.shape[0]
        if (lp.size == 0 and fb.size == 0) or n_pv == 0:
            return
        rows = g.choice(n_pv, size=LP_SAMPLE, replace=False) if n_pv > LP_SAMPLE else np.arange(n_pv)
        if fb.size:
            # The market's cost of a conversion: what entering the auction costs per unit of p_value.
            p_mean = p_value[rows][:, fb].astype(np.float64).mean(axis=0)  # (n_fb,)
            with np.errstate(divide="ignore", invalid="ignore"):
                price = least_winning_cost[rows].mean() / p_mean / self.unit[fb]
            self.prices[fb] = np.roll(self.prices[fb], -1, axis=1)
            self.prices[fb, -1] = np.where(np.isfinite(price), price, np.nan)
        if lp.size == 0:
            return
        weight = n_pv / rows.size
        p = p_value[rows][:, lp].astype(np.float64)  # (m, n_lp)
        lwc = least_winning_cost[rows][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where lwc and p_value are 0
            log_ratio = np.log(lwc / (p * self.target_cpa[lp]))
        ok = np.isfinite(log_ratio)
        # Bins are uniform in log(ratio): the bin index is arithmetic, as np.searchsorted would give.
        lo, hi = LOG_RATIO_RANGE
        b = np.clip(np.floor((np.where(ok, log_ratio, 0.0) - lo) * (N_RATIO_BINS / (hi - lo))), 0, N_RATIO_BINS - 1).astype(np.int64)
        flat = (np.arange(lp.size)[None, :] * N_RATIO_BINS + b)[ok]
        cost = np.broadcast_to(lwc, p.shape)[ok]
        size = lp.size * N_RATIO_BINS
        self.hist[lp, :, 0] += np.bincount(flat, minlength=size).reshape(lp.size, N_RATIO_BINS) * weight
        self.hist[lp, :, 1] += np.bincount(flat, weights=cost, minlength=size).reshape(lp.size, N_RATIO_BINS) * weight
