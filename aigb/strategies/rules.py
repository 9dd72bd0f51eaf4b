"""Rule strategies for one advertiser: fixed rate, PID pacing and OnlineLP.

Each is the population's vectorised controller (``aigb.sim.population.RuleBidders``) with one row
and no noise, so a rule strategy evaluated in a slot bids exactly like the rule bidders it competes
with would, and the two can never drift apart.

* ``fixed``: ``alpha = rate * C``.
* ``pid``: multiplicative pacing toward the public day profile, with the CPA guard.
* ``onlinelp``: a histogram of the cost per conversion needed to enter the auction (least winning
  cost / p_value, in units of C) forecasts the remaining traffic; alpha is the highest threshold
  whose forecast spend fits the remaining budget, capped at ``cap * C``. Early in the day the
  period's own evidence is thin, so a **prior** histogram of a whole period is blended in. The
  prior is learned from training periods (``fit_lp_prior``): simulated with ``PRIOR_SEED`` over
  periods ``0..n-1``, disjoint from evaluation periods (``aigb.eval.evaluate.EVAL_FIRST_PERIOD``),
  and stored as a small ``.npz`` with its metadata. ``default_lp_prior`` fits it once per market
  into the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

import aigb
from aigb.data.parquet import OutputPathError, atomic_output, ensure_writable_dir
from aigb.seeding import rng
from aigb.sim.env import Observation
from aigb.sim.period import PeriodSim
from aigb.sim.population import LOG_RATIO_RANGE, N_RATIO_BINS, PopulationConfig, RuleBidders, market_population
from aigb.sim.traffic import day_profile
from aigb.strategies.base import AlphaStrategy
from aigb.types import ACTION_HIGH, ACTION_LOW, MARKET_VERSION, MARKET_VERSIONS, Campaign, ConfigError, MarketConfig

__all__ = ["FixedRate", "PIDPacing", "OnlineLP", "LPPrior", "fit_lp_prior", "default_lp_prior",
           "cache_dir", "PRIOR_SEED", "PRIOR_PERIODS", "ALPHA_BOUNDS"]

ALPHA_BOUNDS = (math.exp(ACTION_LOW), math.exp(ACTION_HIGH))
"""alpha / C of every rule strategy stays in the learned strategies' action range [0.05, 7.39]."""
PRIOR_SEED = 7_000_001
"""Root seed of the OnlineLP prior's training periods (a training seed, never used to evaluate)."""
PRIOR_PERIODS = 8
"""Training periods the default prior averages over."""
_KIND = {"fixed": 0, "pid": 1, "lp": 2}
_PRIOR_FORMAT = 1


def _check_range(name: str, value: float, low: float, high: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and low <= v <= high):
        raise ConfigError(f"{name}: must be a number in [{low:.3g}, {high:.3g}], got {value!r}")
    return v


class _RuleStrategy(AlphaStrategy):
    """One row of ``RuleBidders``, fed from the observation."""

    kind = "fixed"

    def __init__(self, *, rate: float = 1.0, gain: float = 0.0, cap: float = ALPHA_BOUNDS[1],
                 market_version: str = MARKET_VERSION):
        self.rate = _check_range("rate", rate, *ALPHA_BOUNDS)
        if market_version not in MARKET_VERSIONS:
            raise ConfigError(f"market_version: unknown market version {market_version!r}; choose one of {', '.join(MARKET_VERSIONS)}")
        # The public day profile the pacing plan follows is that of the market played (v2 and v3 differ).
        self.market_version = market_version
        self.gain = _check_range("gain", gain, 0.0, 50.0)
        self.cap = _check_range("cap", cap, *ALPHA_BOUNDS)
        self._bidders: RuleBidders | None = None
        self._campaign: Campaign | None = None

    def _lp_prior(self, campaign: Campaign) -> np.ndarray | None:
        return None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        self._campaign = campaign
        self._bidders = RuleBidders(
            kind=[_KIND[self.kind]], rate=[self.rate], gain=[self.gain], lp_cap=[self.cap], noise=[0.0],
            target_cpa=[campaign.target_cpa], budget=[campaign.budget], profile=day_profile(n_ticks, self.market_version),
            alpha_bounds=ALPHA_BOUNDS, lp_prior=self._lp_prior(campaign))
        # The controllers draw (zero-scaled) noise and histogram subsamples; a private stream keeps
        # them deterministic under the seed.
        self._rng = rng(seed, "rule_strategy", _KIND[self.kind])

    def _before_alpha(self, obs: Observation) -> None:
        """Hook to feed the controller what the last tick showed."""

    def alpha(self, obs: Observation) -> float:
        if self._bidders is None:
            raise RuntimeError(f"{self.name}: call reset(campaign, n_ticks, seed) before bid()")
        self._before_alpha(obs)
        spent = np.array([self._campaign.budget - obs.remaining_budget])
        conversions = np.array([float(obs.history["conversions"].sum())])
        return float(self._bidders.alphas(obs.tick, spent, conversions, self._rng)[0])


class FixedRate(_RuleStrategy):
    """``alpha = rate * target_cpa`` every tick: truthful bidding at a fixed CPA ratio."""

    kind = "fixed"

    def __init__(self, rate: float = 1.0, *, market_version: str = MARKET_VERSION):
        super().__init__(rate=rate, market_version=market_version)
        self.name = f"fixed:rate={self.rate:g}"


class PIDPacing(_RuleStrategy):
    """Multiplicative pacing: ``alpha <- alpha * exp(gain * 5 * (planned - actual spend) / B)``.

    The plan spends the budget in proportion to the public day profile; the CPA guard lowers alpha
    when the realised CPA runs above target.
    """

    kind = "pid"

    def __init__(self, gain: float = 1.0, rate: float = 1.0, *, market_version: str = MARKET_VERSION):
        super().__init__(rate=rate, gain=gain, market_version=market_version)
        self.name = f"pid:gain={self.gain:g},rate={self.rate:g}"


class OnlineLP(_RuleStrategy):
    """Greedy threshold on forecast traffic sorted by cost per conversion, capped at ``cap * C``."""

    kind = "lp"
    needs_pv_history = True

    def __init__(self, prior: "LPPrior | None" = None, *, cap: float = 1.5, rate: float = 1.0, n_pv: int | None = None,
                 market_version: str = MARKET_VERSION):
        super().__init__(rate=rate, cap=cap, market_version=market_version)
        if prior is not None and n_pv is None:
            raise ConfigError("n_pv: OnlineLP with a prior needs the market's PVs per period to scale it")
        self.prior, self.n_pv = prior, n_pv
        self.name = f"onlinelp:cap={self.cap:g}" + ("" if prior is not None else ",prior=none")

    def _lp_prior(self, campaign: Campaign) -> np.ndarray | None:
        return None if self.prior is None else self.prior.for_campaign(campaign, self.n_pv)

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        super().reset(campaign, n_ticks, seed)
        self._fed = 0

    def _before_alpha(self, obs: Observation) -> None:
        if obs.pv_history is None:
            raise RuntimeError(f"{self.name}: needs Observation.pv_history; play it in BiddingEnv(keep_pv_history=True)")
        # Feed every past tick exactly once (the harness may skip no tick, but be robust to it).
        while self._fed < min(obs.tick, len(obs.pv_history)):
            past = obs.pv_history[self._fed]
            self._bidders.observe(past["p_value"][:, None], past["least_winning_cost"], self._rng)
            self._fed += 1


# ----------------------------------------------------------------------------------- the prior


@dataclass(frozen=True, eq=False)
class LPPrior:
    """A whole period's forecast for OnlineLP: per advertiser slot and ratio bin, PVs and entry cost."""

    per_pv: np.ndarray
    """(n_adv, N_RATIO_BINS, 2) float64 (PV count, least winning cost sum) per PV of the period."""
    target_cpa: np.ndarray
    """(n_adv,) float64 mean target CPA each row's ratios were measured against."""
    category: np.ndarray
    """(n_adv,) int64 category of each row (rows of unseen advertisers fall back to their category)."""
    metadata: dict
    """How the prior was made: market, population, seed, periods, aigb version."""

    def __post_init__(self) -> None:
        n = self.per_pv.shape[0]
        if self.per_pv.shape != (n, N_RATIO_BINS, 2) or n == 0:
            raise ConfigError(f"per_pv: must have shape (n_adv, {N_RATIO_BINS}, 2), got {self.per_pv.shape}")
        if not np.all(np.isfinite(self.per_pv)) or np.any(self.per_pv < 0):
            raise ConfigError("per_pv: must be finite and >= 0")
        if self.target_cpa.shape != (n,) or self.category.shape != (n,):
            raise ConfigError(f"target_cpa, category: need one entry per row ({n})")

    def for_campaign(self, campaign: Campaign, n_pv: int) -> np.ndarray:
        """The prior of ``campaign`` in a period of ``n_pv`` PVs.  # (N_RATIO_BINS, 2)"""
        a = campaign.advertiser
        if a < self.per_pv.shape[0]:
            row, cpa = self.per_pv[a], float(self.target_cpa[a])
        else:
            same = self.category == campaign.category
            same = same if same.any() else np.ones_like(same)
            row, cpa = self.per_pv[same].mean(axis=0), float(self.target_cpa[same].mean())
        # Ratios are least_winning_cost / (p_value * C): a campaign with another C sees the same
        # competitors' prices shifted by log(C_fit / C) on the log-ratio axis.
        width = (LOG_RATIO_RANGE[1] - LOG_RATIO_RANGE[0]) / N_RATIO_BINS
        shift = int(np.clip(round(math.log(cpa / campaign.target_cpa) / width), 1 - N_RATIO_BINS, N_RATIO_BINS - 1))
        out = np.zeros_like(row)
        # Mass pushed past either end stays in the end bin (the online histogram clamps likewise).
        if shift >= 0:
            out[shift:] = row[:N_RATIO_BINS - shift]
            out[-1] += row[N_RATIO_BINS - shift:].sum(axis=0)
        else:
            out[:shift] = row[-shift:]
            out[0] += row[:-shift].sum(axis=0)
        return out * float(n_pv)

    def save(self, path) -> Path:
        """Write the prior as ``.npz`` (atomically: a temporary file renamed into place)."""
        path = Path(path)
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, per_pv=self.per_pv, target_cpa=self.target_cpa, category=self.category,
                     metadata=np.array(json.dumps(self.metadata, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path) -> "LPPrior":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"prior: no OnlineLP prior file at {path}")
        mtime = path.stat().st_mtime_ns
        return _load_prior(str(path.resolve()), mtime)


@lru_cache(maxsize=8)
def _load_prior(path: str, mtime_ns: int) -> LPPrior:
    # mtime in the key: a refitted file is reloaded, an unchanged one is read once per process.
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            prior = LPPrior(z["per_pv"].astype(np.float64), z["target_cpa"].astype(np.float64),
                            z["category"].astype(np.int64), meta)
    except (KeyError, ValueError, OSError) as err:
        raise ConfigError(f"prior: {path} is not an OnlineLP prior file ({err})") from None
    if meta.get("format") != _PRIOR_FORMAT:
        raise ConfigError(f"prior: {path} has format {meta.get('format')!r}, this aigb reads {_PRIOR_FORMAT}; refit it")
    return prior


def fit_lp_prior(market: MarketConfig, *, seed: int = PRIOR_SEED, periods: int = PRIOR_PERIODS,
                 population: PopulationConfig | None = None) -> LPPrior:
    """Learn the OnlineLP prior from ``periods`` simulated training periods (0..periods-1 of ``seed``).

    Every advertiser's (p_value, least winning cost) pairs are binned exactly as the online
    histogram bins them (``RuleBidders.observe``, which subsamples each tick), summed over the
    period and averaged over periods, per PV of the period.
    """
    if int(periods) < 1:
        raise ConfigError(f"periods: must be >= 1, got {periods}")
    population = market_population(market) if population is None else population
    n = market.n_advertisers
    total = np.zeros((n, N_RATIO_BINS, 2))
    cpa_sum = np.zeros(n)
    category = None
    for p in range(int(periods)):
        sim = PeriodSim(market, seed, p, population=population)
        recorder = RuleBidders(kind=np.full(n, _KIND["lp"]), rate=np.ones(n), gain=np.zeros(n), lp_cap=np.ones(n),
                               noise=np.zeros(n), target_cpa=sim.target_cpa, budget=sim.budget,
                               profile=day_profile(market.n_ticks, market.version), alpha_bounds=ALPHA_BOUNDS)
        g = rng(seed, "lp_prior", p)
        sim.run(on_tick=lambda rec: recorder.observe(rec.p_value, rec.outcome.least_winning_cost, g))
        total += recorder.hist
        cpa_sum += sim.target_cpa
        category = np.array([c.category for c in sim.campaigns], dtype=np.int64)
    meta = {"format": _PRIOR_FORMAT, "aigb_version": aigb.__version__, "market": market.to_dict(),
            "population": _population_dict(population), "seed": int(seed), "periods": int(periods),
            "log_ratio_range": list(LOG_RATIO_RANGE), "n_bins": N_RATIO_BINS}
    # Through JSON once, so the prior in memory carries exactly the metadata a saved one loads with.
    meta = json.loads(json.dumps(meta))
    return LPPrior(total / (periods * market.n_pv), cpa_sum / periods, category, meta)


def _population_dict(population: PopulationConfig) -> dict:
    return population.to_dict()



def cache_dir() -> Path:
    """Where aigb caches derived files: $AIGB_CACHE_DIR, else $XDG_CACHE_HOME/aigb, else ~/.cache/aigb."""
    if os.environ.get("AIGB_CACHE_DIR"):
        return Path(os.environ["AIGB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aigb"


def default_lp_prior(market: MarketConfig, population: PopulationConfig | None = None) -> tuple[LPPrior, Path]:
    """The default prior of ``market``: fitted on first use and cached (keyed by what shapes it)."""
    population = market_population(market) if population is None else population
    key = {"format": _PRIOR_FORMAT, "market": market.to_dict(), "population": _population_dict(population),
           "seed": PRIOR_SEED, "periods": PRIOR_PERIODS, "log_ratio_range": list(LOG_RATIO_RANGE), "n_bins": N_RATIO_BINS}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"onlinelp-prior-{digest}.npz"
    if not path.is_file():
        try:  # checked before the fit, which simulates PRIOR_PERIODS periods
            ensure_writable_dir(path.parent)
        except OutputPathError as err:
            raise OutputPathError(f"OnlineLP prior cache: {err}; set AIGB_CACHE_DIR to a writable directory, or use "
                                  "onlinelp:prior=PATH (a saved prior) or onlinelp:prior=none") from None
        fit_lp_prior(market, population=population).save(path)
    return LPPrior.load(path), path
