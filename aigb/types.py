"""The vocabulary of aigb: campaigns, the market configuration and per-tick statistics.

Money is float64 throughout; per-PV predictions (``p_value``, ``p_value_sigma``) are float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["MAX_PV", "MAX_TICKS", "MAX_ADVERTISERS", "MAX_SLOTS", "MARKET_VERSION", "MARKET_VERSIONS", "MarketVersionError", "check_market_version",
           "recorded_market_version",
           "N_CATEGORIES", "Campaign", "MarketConfig", "TICK_STAT_FIELDS", "PRESETS", "ConfigError", "DATASET_MARKET"]

PRESETS = ("sparse", "dense", "random")
N_CATEGORIES = 6  # advertiser categories of the reference market


MARKET_VERSION = "v3"
"""The default market version: its competitor field and day profile. v3 is calibrated on AuctionNet's
own per-tick data (docs/market-calibration.md). Datasets, checkpoints and results record the version
they were made on; training, evaluating or combining across versions is refused
(``check_market_version``)."""

MARKET_VERSIONS = ("v2", "v3")
"""Versions this code can simulate (``MarketConfig.version``). v2: AuctionNet's exposure cascade
(slot 3 shown with net probability 0.48), AuctionNet's roster of competitor kinds (PID, OnlineLP
without a day plan, CPA-blind state-feedback bidders), the reference day profile; v3: the same rules
and roster with a field and day profile calibrated on AuctionNet's data. v1 (before the cascade) is
no longer simulated."""


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the problem."""


class MarketVersionError(ValueError):
    """Data, a checkpoint or results of a market version this code does not simulate, or of another
    version than the market they are to be used in."""


def recorded_market_version(found, where: str) -> str:
    """The market version a record names (None: written before versions existed, i.e. v1), refused
    unless this code simulates it."""
    found = "v1" if found is None else str(found)
    if found not in MARKET_VERSIONS:
        raise MarketVersionError(f"{where}: market version {found} is not one this aigb simulates "
                                 f"({', '.join(MARKET_VERSIONS)}); regenerate the data / retrain / re-evaluate on one of them")
    return found


def check_market_version(found, where: str, expected: str = MARKET_VERSION, what: str = "default market") -> str:
    """Refuse ``found`` (as ``recorded_market_version`` reads it) unless it is ``expected``; returns it.

    ``what`` names where ``expected`` comes from ("training market", "evaluation market", ...)."""
    found = "v1" if found is None else str(found)
    if found != expected:
        other = f", or ask for market {found} (--market-version {found})," if found in MARKET_VERSIONS else ""
        raise MarketVersionError(f"{where}: market version {found} != {expected} of the {what}; regenerate the data / "
                                 f"retrain / re-evaluate on market {expected}{other} instead of mixing versions")
    return found


def _require(ok: bool, field_name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {problem}")


@dataclass(frozen=True)
class Campaign:
    """One advertiser's delivery period: what the auto-bidder is asked to do."""

    advertiser: int
    """Index of the advertiser slot in the market (0..n_advertisers-1)."""
    category: int
    """Industry category (0..5); advertisers of one category share a p_value curve."""
    budget: float
    """Hard spend limit for the period (> 0)."""
    target_cpa: float
    """Target cost per conversion C (> 0); the score penalises realised CPA above it."""

    def __post_init__(self) -> None:
        _require(int(self.advertiser) >= 0, "advertiser", f"must be >= 0, got {self.advertiser}")
        _require(0 <= int(self.category) < N_CATEGORIES, "category", f"must be in 0..{N_CATEGORIES - 1}, got {self.category}")
        _require(math.isfinite(self.budget) and self.budget > 0, "budget", f"must be a finite number > 0, got {self.budget}")
        _require(math.isfinite(self.target_cpa) and self.target_cpa > 0, "target_cpa", f"must be a finite number > 0, got {self.target_cpa}")


MAX_PV = 2**31 - 1
"""Most PVs per period: the log's pvIndex column is int32."""
MAX_TICKS = 2**15 - 1
"""Most ticks per period: timeStepIndex is int16."""
MAX_ADVERTISERS = 2**15 - 1
"""Most advertisers: advertiserNumber is int16."""
MAX_SLOTS = 2**7 - 1
"""Most ad slots: adSlot is int8."""


@dataclass(frozen=True)
class MarketConfig:
    """The auction market of one delivery period (AuctionNet's rules, ../shared/DESIGN.md §2)."""

    n_pv: int = 500_000
    """Impression opportunities (PVs) per period, split over ticks by the day profile."""
    n_ticks: int = 48
    """Decision ticks per period."""
    n_advertisers: int = 48
    """Competing advertisers; the default table has 6 categories x 8."""
    preset: str = "sparse"
    """Advertiser profiles: 'sparse' (AuctionNet final round), 'dense' (~10x conversions) or 'random'."""
    n_slots: int = 3
    """Ad slots sold per PV by the GSP auction."""
    exposure_probs: tuple[float, ...] = (1.0, 0.8, 0.6)
    """Probability of slot k's own exposure draw (non-increasing); a hidden slot also hides every
    slot below it (AuctionNet's cascade), so slot k is shown with ``net_exposure_probs[k]``."""
    reserve_price: float = 1e-4
    """GSP reserve price; a slot whose price would be exactly the reserve is left unsold."""
    min_remaining_budget: float = 0.1
    """An advertiser whose remaining budget is below this bids 0."""
    p_value_base: float | None = None
    """Mean conversion probability scale; None takes the preset's (5e-4 sparse, 5e-3 dense)."""
    version: str = MARKET_VERSION
    """Market version: its competitor field and day types ('v2', or 'v3' calibrated on AuctionNet's data)."""

    def __post_init__(self) -> None:
        for name in ("n_pv", "n_ticks", "n_advertisers", "n_slots"):
            value = getattr(self, name)
            _require(isinstance(value, (int, np.integer)) and not isinstance(value, bool), name, f"must be an integer, got {value!r}")
        # Upper limits: what the log's columns hold (aigb.data.schema), checked before any work.
        for name, high, column in (("n_pv", MAX_PV, "pvIndex is int32"), ("n_ticks", MAX_TICKS, "timeStepIndex is int16"),
                                   ("n_advertisers", MAX_ADVERTISERS, "advertiserNumber is int16"),
                                   ("n_slots", MAX_SLOTS, "adSlot is int8")):
            value = int(getattr(self, name))
            _require(1 <= value <= high, name, f"must lie in [1, {high:,}] ({column}), got {value:,}")
        _require(self.preset in PRESETS, "preset", f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        probs = tuple(float(p) for p in self.exposure_probs)
        _require(len(probs) == self.n_slots, "exposure_probs", f"needs one probability per slot ({self.n_slots}), got {len(probs)}")
        _require(all(0.0 <= p <= 1.0 for p in probs), "exposure_probs", f"must lie in [0, 1], got {probs}")
        _require(all(a >= b for a, b in zip(probs, probs[1:])), "exposure_probs", f"must be non-increasing (cascade), got {probs}")
        object.__setattr__(self, "exposure_probs", probs)
        _require(math.isfinite(self.reserve_price) and self.reserve_price >= 0, "reserve_price", f"must be >= 0, got {self.reserve_price}")
        _require(math.isfinite(self.min_remaining_budget) and self.min_remaining_budget >= 0, "min_remaining_budget", f"must be >= 0, got {self.min_remaining_budget}")
        if self.p_value_base is not None:
            _require(0 < self.p_value_base < 1, "p_value_base", f"must lie in (0, 1), got {self.p_value_base}")
        _require(self.version in MARKET_VERSIONS, "version", f"unknown market version {self.version!r}; choose one of {', '.join(MARKET_VERSIONS)}")

    @property
    def net_exposure_probs(self) -> tuple[float, ...]:
        """Probability that slot k is shown: the running product of ``exposure_probs`` (1.0, 0.8, 0.48)."""
        return tuple(float(x) for x in np.cumprod(self.exposure_probs))

    @property
    def alpha_scale(self) -> float:
        """The market's typical target CPA: the middle of the preset's CPA range (95 sparse, 9 dense).

        CPA-blind competitors (``aigb.sim.population``) bid on this scale, a constant of the preset
        that no single campaign moves."""
        return 9.0 if self.preset == "dense" else 95.0

    @property
    def base_p_value(self) -> float:
        if self.p_value_base is not None:
            return float(self.p_value_base)
        return 5e-3 if self.preset == "dense" else 5e-4

    def to_dict(self) -> dict:
        """The fields, ``version`` written as ``market_version``, so every record of a market names its rules' version."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}, "market_version": self.version}


# Per-(tick, advertiser) statistics every layer speaks: the simulator produces them, the feature
# module and the trajectory table consume them. Means are over the tick's PVs.
DATASET_MARKET = MarketConfig(preset="random")
"""The training datasets' default market: the sparse regime with per-period random budgets and target CPAs."""

TICK_STAT_FIELDS: tuple[str, ...] = (
    "n_pv",                # PVs offered in the tick
    "bid_mean",            # mean bid
    "p_value_mean",        # mean predicted conversion probability
    "lwc_mean",            # mean least winning cost (4th highest bid)
    "win_rate",            # share of PVs won (a slot allocated)
    "conversion_rate",     # conversions / n_pv
    "n_won",               # PVs won
    "n_exposed",           # PVs won and shown
    "cost",                # money spent (exposed PVs only)
    "conversions",         # realised conversions
    "exposed_p_value",     # sum of p_value over exposed PVs (the dense reward)
    "expected_conversions",  # sum over won PVs of exposure_prob[slot] * p_value
    "expected_cost",       # sum over won PVs of exposure_prob[slot] * price
    "remaining_budget",    # remaining budget before the tick
)

# Strategies act through alpha (bid = alpha * p_value); learned ones through the CPA-relative
# action a = log(alpha / target_cpa), bounded so that outliers (published datasets hold alphas of
# several hundred) cannot reach the market: alpha in [0.05 C, 7.4 C].
ACTION_LOW, ACTION_HIGH = -3.0, 2.0
__all__ += ["ACTION_LOW", "ACTION_HIGH"]
