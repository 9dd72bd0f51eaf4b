"""The competing advertisers: heterogeneous rule bidders, vectorised over advertisers.

Every bidder acts through one multiplier per tick, ``bid = alpha * p_value`` (the LP-optimal form,
../shared/DESIGN.md §1), and the controllers below compute ``alpha`` for all advertisers at once
from per-tick statistics, so 47 competitors cost about as much as one. The same controllers serve
the single-advertiser rule strategies (``aigb.strategies.rules``), which are this class with one row.

Kinds:
* fixed: ``alpha = rate * C``;
* pid: multiplicative pacing, ``alpha <- alpha * exp(gain * k * (planned - actual spend) / B)``,
  with the plan following the public day profile, and a CPA guard;
* lp (OnlineLP-style): keeps a histogram of the cost per conversion needed to enter the auction
  (``least_winning_cost / p_value``) and sets alpha at the highest threshold whose forecast spend over
  the remaining traffic fits the remaining budget, capped at ``lp_cap * C``.
Each bidder multiplies its alpha by per-tick log-normal noise of its own scale.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from aigb.types import ConfigError

__all__ = ["PopulationConfig", "RuleBidders", "KINDS", "EXPLORE", "ratio_bins"]

KINDS = ("fixed", "pid", "lp")
N_RATIO_BINS = 64
LOG_RATIO_RANGE = (-3.0, 2.5)  # log(alpha / C) covered by the OnlineLP histogram
LP_SAMPLE = 4096               # PVs per tick that feed the OnlineLP histogram
PID_RESPONSE = 5.0             # alpha moves by exp(gain * 5 * error), error as a share of budget


def ratio_bins() -> np.ndarray:
    """Upper edges of the OnlineLP histogram bins, in units of alpha / C.  # (N_RATIO_BINS,)"""
    return np.exp(np.linspace(*LOG_RATIO_RANGE, N_RATIO_BINS + 1)[1:])


@dataclass(frozen=True)
class PopulationConfig:
    """How the rule bidders of a market are drawn (per period, from stream ``population``)."""

    kind_shares: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Shares of fixed, pid and lp bidders."""
    fixed_rate: tuple[float, float] = (0.7, 1.3)
    """Range of alpha / C of fixed-rate bidders."""
    pid_gain: tuple[float, float] = (0.5, 2.0)
    """Range of the PID pacing gain."""
    initial_rate: tuple[float, float] = (0.8, 1.2)
    """Range of the first tick's alpha / C of pid and lp bidders."""
    lp_cap: tuple[float, float] = (1.5, 1.5)
    """Range of OnlineLP's cap on alpha / C (1.5 in AuctionNet's baseline)."""
    noise: tuple[float, float] = (0.0, 0.15)
    """Range of each bidder's per-tick log-normal alpha noise scale."""
    alpha_bounds: tuple[float, float] = (0.05, 5.0)
    """Bounds of alpha / C for every bidder."""

    def __post_init__(self) -> None:
        shares = np.asarray(self.kind_shares, dtype=float)
        if shares.shape != (3,) or (shares < 0).any() or shares.sum() <= 0:
            raise ConfigError(f"kind_shares: need three non-negative shares (fixed, pid, lp), got {self.kind_shares}")
        for f in fields(self):
            if f.name == "kind_shares":
                continue
            lo, hi = getattr(self, f.name)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise ConfigError(f"{f.name}: need a range 0 <= low <= high, got {(lo, hi)}")


# Behaviour policies for datasets: wider ranges, deliberately poor (timid, CPA-blind) and
# aggressive bidders, so that offline learners see good and bad decisions.
EXPLORE = PopulationConfig(
    kind_shares=(0.3, 0.4, 0.3),
    fixed_rate=(0.3, 2.5),
    pid_gain=(0.1, 3.0),
    initial_rate=(0.3, 2.5),
    lp_cap=(0.8, 3.0),
    noise=(0.0, 0.5),
    alpha_bounds=(0.05, 7.0),
)


class RuleBidders:
    """Vectorised rule bidders for a set of advertisers (rows).

    ``alphas(tick, ...)`` before the tick, ``observe(...)`` after it. All parameters are arrays over
    the rows, so one call serves the whole population.
    """

    def __init__(self, kind, rate, gain, lp_cap, noise, target_cpa, budget, profile, alpha_bounds,
                 lp_prior: np.ndarray | None = None):
        self.kind = np.asarray(kind, dtype=np.int64)        # (n,) index into KINDS
        self.rate = np.asarray(rate, dtype=np.float64)      # (n,) fixed alpha / C, or initial alpha / C
        self.gain = np.asarray(gain, dtype=np.float64)      # (n,)
        self.lp_cap = np.asarray(lp_cap, dtype=np.float64)  # (n,)
        self.noise = np.asarray(noise, dtype=np.float64)    # (n,)
        self.target_cpa = np.asarray(target_cpa, dtype=np.float64)
        self.budget = np.asarray(budget, dtype=np.float64)
        self.profile = np.asarray(profile, dtype=np.float64)  # (n_ticks,) expected traffic share
        self.alpha_bounds = alpha_bounds
        n = self.kind.size
        self.relative_alpha = self.rate.copy()  # (n,) current alpha / C
        self.hist = np.zeros((n, N_RATIO_BINS, 2))  # per bin: PV count, cost to enter
        # A prior histogram (a forecast of a whole period learned from other data) is blended with
        # what the period has shown so far, weighted by the traffic share still to come.
        self.lp_prior = None if lp_prior is None else np.broadcast_to(lp_prior, (n, N_RATIO_BINS, 2)).copy()

    @classmethod
    def draw(cls, config: PopulationConfig, target_cpa, budget, profile, g: np.random.Generator) -> "RuleBidders":
        n = len(target_cpa)
        shares = np.asarray(config.kind_shares, dtype=float)
        kind = g.choice(3, size=n, p=shares / shares.sum())
        fixed_rate = g.uniform(*config.fixed_rate, n)
        initial = g.uniform(*config.initial_rate, n)
        rate = np.where(kind == 0, fixed_rate, initial)
        return cls(kind, rate, g.uniform(*config.pid_gain, n), g.uniform(*config.lp_cap, n),
                   g.uniform(*config.noise, n), target_cpa, budget, profile, config.alpha_bounds)

    def alphas(self, tick: int, spent: np.ndarray, conversions: np.ndarray, g: np.random.Generator) -> np.ndarray:
        """Bid multipliers for ``tick`` (absolute, i.e. already times C).  # (n,)"""
        planned = self.profile[:tick].sum()  # share of the day's traffic already past
        rel = self.relative_alpha
        if tick > 0:
            pid = self.kind == 1
            if pid.any():
                error = (planned * self.budget - spent) / self.budget
                rel = np.where(pid, rel * np.exp(self.gain * PID_RESPONSE * error), rel)
            lp = self.kind == 2
            if lp.any():
                rel = np.where(lp, self._lp_threshold(planned, self.budget - spent), rel)
        # CPA guard for the adaptive kinds: never aim above the CPA the campaign has achieved so far.
        with np.errstate(divide="ignore", invalid="ignore"):
            cpa_ratio = np.where(conversions > 0, self.target_cpa * conversions / np.maximum(spent, 1e-12), np.inf)
        adaptive = self.kind != 0
        rel = np.where(adaptive & (cpa_ratio < 1.0), rel * np.maximum(cpa_ratio, 0.5), rel)
        rel = np.clip(rel, *self.alpha_bounds)
        self.relative_alpha = np.where(self.kind == 0, self.relative_alpha, rel)
        noisy = rel * np.exp(self.noise * g.standard_normal(rel.size))
        return np.clip(noisy, *self.alpha_bounds) * self.target_cpa

    def _lp_threshold(self, planned: float, remaining: np.ndarray) -> np.ndarray:
        # Forecast the remaining period's (count, cost) per ratio bin, then take the highest
        # threshold whose cumulative forecast cost fits the remaining budget.
        rest = max(1.0 - planned, 0.0)
        seen = self.hist * (rest / max(planned, 1e-9))
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
        """Feed one tick's PVs to the OnlineLP histograms.

        p_value: (n_pv, n) predictions of the rows' advertisers; least_winning_cost: (n_pv,).
        """
        lp = np.flatnonzero(self.kind == 2)
        n_pv = p_value.shape[0]
        if lp.size == 0 or n_pv == 0:
            return
        rows = g.choice(n_pv, size=LP_SAMPLE, replace=False) if n_pv > LP_SAMPLE else np.arange(n_pv)
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
