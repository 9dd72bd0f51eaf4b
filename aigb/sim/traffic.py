"""Traffic: how many PVs arrive in each tick and what each advertiser predicts for them.

Facts reproduced (../shared/DESIGN.md §2, ``market_reference.json``):
* tick volume follows the reference day profile; each window of 4 ticks is scaled by U(0.6, 1.4)
  and the profile renormalised to the period's PV count;
* ``p_value`` is drawn independently per (PV, advertiser) as N(m, r_t m) clipped to [0, 1], where
  m = base x category curve x advertiser curve (piecewise constant over 8-tick windows, i.e. six
  windows per day), r ~ N(0.5, 0.1) per advertiser and r_t ~ N(r, 0.2 r) per tick;
* ``p_value_sigma = R * p_value`` with R ~ |N(s_a, s_a / 2)| capped at 0.3, s_a ~ |N(0.15, 0.06)|;
* per advertiser and period, the conversion noise is truncated to [-2 u1, +2 u2] standard
  deviations, u ~ U(0, 1).

The period constants come from stream ``("market", period)`` and each tick's PVs from
``("traffic", period, tick)``, so a tick can be generated alone, lazily, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from aigb.seeding import rng
from aigb.sim.market import N_CATEGORIES, reference
from aigb.types import MARKET_VERSION, Campaign, MarketConfig

__all__ = ["PeriodTraffic", "period_traffic", "tick_p_values", "day_profile"]

N_CURVE_WINDOWS = 6  # 8-tick windows of the 48-tick day
VOLUME_WINDOW = 4


def day_profile(n_ticks: int, version: str = MARKET_VERSION) -> np.ndarray:
    """The share of the day's PVs per tick, resampled to ``n_ticks`` ticks.  # (n_ticks,)

    Market v2 uses the reference profile; v3 the profile of AuctionNet's own evaluation period
    (``tick_volume_share_v3``), which holds fewer PVs in the early morning and late evening.
    """
    key = "tick_volume_share_v3" if version == "v3" else "tick_volume_share"
    share = np.asarray(reference()[key], dtype=np.float64)
    if n_ticks != share.size:
        # Integrate the reference profile over each new tick's span of the day.
        edges = np.linspace(0.0, share.size, n_ticks + 1)
        cum = np.concatenate([[0.0], np.cumsum(share)])
        share = np.diff(np.interp(edges, np.arange(share.size + 1), cum))
    return share / share.sum()


@dataclass(frozen=True)
class PeriodTraffic:
    """Constants of one period's traffic."""

    n_pv: np.ndarray          # (n_ticks,) PVs per tick, summing to the config's n_pv
    mean: np.ndarray          # (n_ticks, n_adv) mean p_value m
    spread: np.ndarray        # (n_ticks, n_adv) relative spread r_t
    sigma_scale: np.ndarray   # (n_adv,) s_a of p_value_sigma
    trunc_low: np.ndarray     # (n_adv,) lower truncation of the conversion noise, in sigmas (<= 0)
    trunc_high: np.ndarray    # (n_adv,) upper truncation (>= 0)

    @property
    def offsets(self) -> np.ndarray:
        """Index of each tick's first PV within the period.  # (n_ticks + 1,)"""
        return np.concatenate([[0], np.cumsum(self.n_pv)])


def _split_counts(total: int, share: np.ndarray) -> np.ndarray:
    # Largest-remainder rounding keeps the period total exact.
    raw = share * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


def period_traffic(config: MarketConfig, campaigns: tuple[Campaign, ...], seed: int, period: int) -> PeriodTraffic:
    """Draw the traffic constants of ``period``."""
    g = rng(seed, "market", period)
    n_ticks, n_adv = config.n_ticks, len(campaigns)
    facts = reference()["p_value"]

    share = day_profile(n_ticks, config.version)
    n_windows = -(-n_ticks // VOLUME_WINDOW)
    scale = np.repeat(g.uniform(0.6, 1.4, n_windows), VOLUME_WINDOW)[:n_ticks]
    share = share * scale
    n_pv = _split_counts(config.n_pv, share / share.sum())

    window = np.arange(n_ticks) * N_CURVE_WINDOWS // n_ticks  # (n_ticks,)
    category = np.array([c.category for c in campaigns]) % N_CATEGORIES
    category_curve = g.uniform(0.3, 1.7, (N_CATEGORIES, N_CURVE_WINDOWS))
    advertiser_curve = g.uniform(0.5, 1.5, (n_adv, N_CURVE_WINDOWS))
    # The first advertiser of each category takes the category curve alone.
    first = np.unique(category, return_index=True)[1]
    advertiser_curve[first] = 1.0
    curve = category_curve[category] * advertiser_curve  # (n_adv, windows)
    mean = config.base_p_value * curve[:, window].T  # (n_ticks, n_adv)
    assert abs(facts["base_mean"] - 5e-4) < 1e-12  # the reference scale the sparse preset uses

    r = np.abs(g.normal(0.5, 0.1, n_adv))
    spread = np.abs(g.normal(r, 0.2 * r, (n_ticks, n_adv)))
    sigma_scale = np.abs(g.normal(0.15, 0.06, n_adv))
    trunc_low = -2.0 * g.uniform(0.0, 1.0, n_adv)
    trunc_high = 2.0 * g.uniform(0.0, 1.0, n_adv)
    return PeriodTraffic(n_pv, mean, spread, sigma_scale, trunc_low, trunc_high)


@lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    """Standard normal quantiles at the midpoints of 65,536 equal-probability cells.  # (65536,)"""
    return ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def standard_normal_f32(g: np.random.Generator, shape) -> np.ndarray:
    """Standard normal draws by inverse-CDF lookup on 16-bit uniforms.

    The traffic needs ~48M normals per period; ziggurat sampling costs ~0.5 s for them on one
    core, a quantile table 0.1 s. The table resolves the distribution to 1/65,536 in probability
    (tails to +-4.3 sigma), far finer than the [0, 1] clipping of p_value needs.
    """
    return _normal_quantiles()[g.integers(0, 65536, shape, dtype=np.uint16)]


def tick_p_values(traffic: PeriodTraffic, seed: int, period: int, tick: int) -> tuple[np.ndarray, np.ndarray]:
    """``(p_value, p_value_sigma)`` of one tick's PVs, each (n_pv_tick, n_adv) float32."""
    g = rng(seed, "traffic", period, tick)
    n, n_adv = int(traffic.n_pv[tick]), traffic.mean.shape[1]
    m = traffic.mean[tick].astype(np.float32)
    r = traffic.spread[tick].astype(np.float32)
    p_value = standard_normal_f32(g, (n, n_adv))
    p_value *= r * m
    p_value += m
    np.clip(p_value, 0.0, 1.0, out=p_value)
    s = traffic.sigma_scale.astype(np.float32)
    ratio = standard_normal_f32(g, (n, n_adv))
    ratio *= s / 2
    ratio += s
    np.abs(ratio, out=ratio)
    np.minimum(ratio, np.float32(0.3), out=ratio)
    ratio *= p_value
    return p_value, ratio
