"""Advertiser profiles: the reference table, the dense preset and random profiles.

The "sparse" preset reproduces AuctionNet's final-round table (../shared/DESIGN.md §2, the facts in
``market_reference.json``): 6 categories x 8 advertisers, budgets 2,000-4,850, target CPA 60-130.
"dense" keeps the category layout with budgets 450-11,850 and target CPA 6-12 and is paired with a
10x larger p_value scale (``MarketConfig.base_p_value``), which gives ~10x more conversions.
"random" draws budgets and CPAs from the sparse ranges for every period.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from aigb.seeding import rng
from aigb.types import N_CATEGORIES, Campaign, ConfigError, MarketConfig

__all__ = ["reference", "campaigns_for", "N_CATEGORIES", "SPARSE_RANGES", "DENSE_RANGES"]

SPARSE_RANGES = {"budget": (2000.0, 4850.0), "target_cpa": (60.0, 130.0)}
DENSE_RANGES = {"budget": (450.0, 11850.0), "target_cpa": (6.0, 12.0)}


@lru_cache(maxsize=1)
def reference() -> dict:
    """The reference market facts (tick volume profile, p_value structure, advertiser table)."""
    text = resources.files("aigb.sim").joinpath("market_reference.json").read_text()
    return json.loads(text)


def _categories(n_advertisers: int) -> np.ndarray:
    # Advertisers fill categories in blocks of 8 as in the reference table (0-7 -> 0, 8-15 -> 1, ...).
    per = max(1, -(-n_advertisers // N_CATEGORIES))
    return np.minimum(np.arange(n_advertisers) // per, N_CATEGORIES - 1)


def _table_from_ranges(n: int, ranges: dict, generator: np.random.Generator, budget_step: float, cpa_step: float):
    lo_b, hi_b = ranges["budget"]
    lo_c, hi_c = ranges["target_cpa"]
    budget = np.round(generator.uniform(lo_b, hi_b, n) / budget_step) * budget_step
    cpa = np.round(generator.uniform(lo_c, hi_c, n) / cpa_step) * cpa_step
    return np.clip(budget, lo_b, hi_b), np.clip(cpa, lo_c, hi_c)


def campaigns_for(config: MarketConfig, seed: int = 0, period: int = 0) -> tuple[Campaign, ...]:
    """The advertiser table of one period under ``config.preset``.

    sparse: the reference table (first ``n_advertisers`` rows, cycled if more are asked for).
    dense: a fixed table (independent of seed and period) drawn once from the dense ranges.
    random: budgets and CPAs drawn per (seed, period) from the sparse ranges.
    """
    n = config.n_advertisers
    categories = _categories(n)
    if config.preset == "sparse":
        table = reference()["advertisers"]
        rows = [table[i % len(table)] for i in range(n)]
        budgets = np.array([r["budget"] for r in rows], dtype=np.float64)
        cpas = np.array([r["target_cpa"] for r in rows], dtype=np.float64)
        if n == len(table):
            categories = np.array([r["category"] for r in rows])
    elif config.preset == "dense":
        # A fixed stream: the dense preset is one table, like the sparse one.
        budgets, cpas = _table_from_ranges(n, DENSE_RANGES, rng(0, "dense_preset"), 50.0, 0.5)
    elif config.preset == "random":
        budgets, cpas = _table_from_ranges(n, SPARSE_RANGES, rng(seed, "campaigns", period), 50.0, 10.0)
    else:  # MarketConfig validates presets; this guards direct misuse.
        raise ConfigError(f"preset: unknown preset {config.preset!r}")
    return tuple(
        Campaign(advertiser=i, category=int(categories[i]), budget=float(budgets[i]), target_cpa=float(cpas[i]))
        for i in range(n)
    )
