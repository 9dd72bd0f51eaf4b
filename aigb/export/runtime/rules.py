"""aigb's rule strategies (fixed rate, PID pacing, OnlineLP) for one advertiser, numpy only.

The controller of ``aigb.sim.population.RuleBidders`` restricted to one row of the kinds a rule
strategy uses, with the same arithmetic on the same one-element arrays, and the same named random
stream (``rule_stream``) for its zero-scaled noise and the histogram's PV subsample, so that it
draws the numbers aigb's ``FixedRate``, ``PIDPacing`` and ``OnlineLP`` draw:

* fixed:    alpha = rate * C.
* pid:      alpha <- alpha * exp(gain * k * (planned - actual spend) / B), the plan following the
            day profile; CPA guard: alpha is scaled by max(C / CPA so far, 0.5) when CPA runs above C.
* onlinelp: a histogram of least_winning_cost / (pValue * C) forecasts the rest of the day (its
            own evidence blended with a prior period by the share of traffic still to come);
            alpha is the highest ratio whose forecast cost fits the remaining budget, capped.

All parameters (kinds, rates, the day profile, bins, the prior row) come from the export's
``params.json``. This file is copied into exported folders: numpy and the standard library only.
"""

from __future__ import annotations

import zlib

import numpy as np

FIXED, PID, LP = "fixed", "pid", "lp"


def rule_stream(seed: int, name: str, *indices: int) -> np.random.Generator:
    """aigb's named stream ``rng(seed, name, *indices)``: PCG64 from SeedSequence(seed, spawn_key=(crc32(name), ...))."""
    key = (zlib.crc32(name.encode("utf-8")),) + tuple(int(i) for i in indices)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=int(seed), spawn_key=key)))


class RuleController:
    """alpha for one campaign, tick by tick: ``alpha(tick, spent, conversions)`` before the tick,
    ``observe(p_value, least_winning_cost)`` with each past tick's PVs (OnlineLP)."""

    def __init__(self, params: dict, budget: float, target_cpa: float, lp_prior, seed: int) -> None:
        self.kind = params["kind"]
        self.rate = np.array([float(params["rate"])])
        self.gain = np.array([float(params["gain"])])
        self.lp_cap = np.array([float(params["cap"])])
        self.noise = np.zeros(1)
        self.target_cpa = np.array([float(target_cpa)])
        self.budget = np.array([float(budget)])
        self.profile = np.asarray(params["profile"], dtype=np.float64)
        self.alpha_bounds = tuple(float(b) for b in params["alpha_bounds"])
        self.n_bins = int(params["n_bins"])
        self.log_ratio_range = tuple(float(x) for x in params["log_ratio_range"])
        self.lp_sample = int(params["lp_sample"])
        self.pid_response = float(params["pid_response"])
        self.unit = self.target_cpa.copy()
        self.relative_alpha = self.rate.copy()
        self.hist = np.zeros((1, self.n_bins, 2))
        self.lp_prior = None if lp_prior is None else np.asarray(lp_prior, dtype=np.float64).reshape(1, self.n_bins, 2).copy()
        self.rng = rule_stream(seed, "rule_strategy", int(params["stream_index"]))

    def ratio_bins(self) -> np.ndarray:
        """Upper edges of the histogram bins in units of alpha / C.  # (n_bins,)"""
        return np.exp(np.linspace(*self.log_ratio_range, self.n_bins + 1)[1:])

    def alpha(self, tick: int, spent: np.ndarray, conversions: np.ndarray) -> float:
        """The bid multiplier (already times C) for ``tick``; spent, conversions: (1,) so far."""
        n_ticks = self.profile.size
        planned = self.profile[:tick].sum()   # share of the day's traffic already past
        rel = self.relative_alpha
        remaining = self.budget - spent
        if tick > 0:
            if self.kind == PID:
                error = (planned * self.budget - spent) / self.budget
                rel = rel * np.exp(self.gain * self.pid_response * error)
            elif self.kind == LP:
                rel = self._lp_threshold(np.asarray([planned]), remaining)
        with np.errstate(divide="ignore", invalid="ignore"):
            cpa_ratio = np.where(conversions > 0, self.target_cpa * conversions / np.maximum(spent, 1e-12), np.inf)
        if self.kind in (PID, LP):
            rel = np.where(cpa_ratio < 1.0, rel * np.maximum(cpa_ratio, 0.5), rel)
        rel = np.clip(rel, *self.alpha_bounds)
        if self.kind != FIXED:
            self.relative_alpha = rel
        noisy = rel * np.exp(self.noise * self.rng.standard_normal(rel.size))
        return float((np.clip(noisy, *self.alpha_bounds) * self.unit)[0])

    def _lp_threshold(self, planned: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        planned = np.asarray(planned, dtype=np.float64)[..., None, None]
        rest = np.maximum(1.0 - planned, 0.0)
        seen = self.hist * (rest / np.maximum(planned, 1e-9))
        if self.lp_prior is not None:
            # The prior describes a whole period; the period's own evidence counts as it accrues.
            seen = planned * seen + (1.0 - planned) * rest * self.lp_prior
        cum_cost = np.cumsum(seen[:, :, 1], axis=1)
        n_fit = (cum_cost <= remaining[:, None]).sum(axis=1)
        edges = self.ratio_bins()
        threshold = edges[np.clip(n_fit - 1, 0, self.n_bins - 1)]
        threshold = np.where(n_fit == 0, edges[0], threshold)
        return np.minimum(threshold, self.lp_cap)

    def observe(self, p_value, least_winning_cost) -> None:
        """Feed one past tick's PVs (pValue (n,), least winning cost (n,)) to the OnlineLP histogram."""
        if self.kind != LP:
            return
        p_value = np.asarray(p_value, dtype=np.float64).reshape(-1, 1)
        least_winning_cost = np.asarray(least_winning_cost, dtype=np.float64).reshape(-1)
        n_pv = p_value.shape[0]
        if n_pv == 0:
            return
        rows = self.rng.choice(n_pv, size=self.lp_sample, replace=False) if n_pv > self.lp_sample else np.arange(n_pv)
        weight = n_pv / rows.size
        p = p_value[rows]                                     # (m, 1)
        lwc = least_winning_cost[rows][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where lwc and pValue are 0
            log_ratio = np.log(lwc / (p * self.target_cpa))
        ok = np.isfinite(log_ratio)
        lo, hi = self.log_ratio_range
        b = np.clip(np.floor((np.where(ok, log_ratio, 0.0) - lo) * (self.n_bins / (hi - lo))), 0, self.n_bins - 1).astype(np.int64)
        flat = b[ok]
        cost = np.broadcast_to(lwc, p.shape)[ok]
        self.hist[0, :, 0] += np.bincount(flat, minlength=self.n_bins) * weight
        self.hist[0, :, 1] += np.bincount(flat, weights=cost, minlength=self.n_bins) * weight
