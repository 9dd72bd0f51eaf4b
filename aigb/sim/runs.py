"""Library functions behind ``aigb simulate``: run periods of the population, tidy rows out."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from aigb.sim.period import PeriodSim
from aigb.sim.population import PopulationConfig
from aigb.types import MarketConfig

__all__ = ["simulate_periods", "OUTCOME_COLUMNS"]

OUTCOME_COLUMNS = ("period", "advertiser", "category", "budget", "target_cpa", "spend", "conversions",
                   "realized_cpa", "score", "expected_conversions", "expected_score", "budget_utilisation",
                   "last_spend_tick")


def simulate_periods(config: MarketConfig, periods: int, seed: int, *, first_period: int = 0,
                     population: PopulationConfig | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``periods`` periods of the rule-bidder population (None: the market version's field); one
    row per (period, advertiser)."""
    if periods < 1:
        raise ValueError(f"periods: must be >= 1, got {periods}")
    columns: dict[str, list] = {c: [] for c in OUTCOME_COLUMNS}
    bar = tqdm(total=periods * config.n_ticks, desc="simulate", unit="tick", disable=not progress)
    for period in range(first_period, first_period + periods):
        sim = PeriodSim(config, seed, period, population=population)
        out = sim.run(on_tick=lambda _: bar.update(1))
        n = config.n_advertisers
        columns["period"].append(np.full(n, period))
        columns["advertiser"].append(np.arange(n))
        columns["category"].append(np.array([c.category for c in sim.campaigns]))
        columns["budget"].append(sim.budget)
        columns["target_cpa"].append(sim.target_cpa)
        for k, v in out.items():
            columns[k].append(v)
    bar.close()
    return {k: np.concatenate(v) for k, v in columns.items()}
