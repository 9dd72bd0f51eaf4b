"""One delivery period of the whole market: the thin stateful shell around the pure tick.

``PeriodSim`` owns the period's traffic constants, the rule-bidder population and the budgets. Each
``step`` generates the tick's PVs lazily, asks the population for its bids, lets controlled
advertisers (the strategies under study) replace their column, and applies ``step_market``.
Random streams (``aigb.seeding``): traffic ("market", p), ("traffic", p, t); population
("population", p); bidding noise ("bidding", p, t); exposure and conversion ("outcome", p, t);
budget-cap drops ("budget_drop", p, t). None depends on what the strategies bid, so every strategy
evaluated on a seed sees the same traffic and the same luck per (PV, slot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from aigb.score import DEFAULT_TASK, realized_cpa, score, task_beta
from aigb.seeding import rng
from aigb.sim.auction import TickOutcome, draw_tick, step_market, tick_stats
from aigb.sim.market import campaigns_for
from aigb.sim.population import PopulationConfig, RuleBidders, market_population
from aigb.sim.traffic import day_profile, period_traffic, tick_p_values
from aigb.types import TICK_STAT_FIELDS, Campaign, MarketConfig

__all__ = ["PeriodSim", "TickRecord", "campaign_outcomes"]


@dataclass(frozen=True)
class TickRecord:
    """Everything about one tick, for logs and strategies."""

    tick: int
    p_value: np.ndarray        # (n_pv, n_adv) float32
    p_value_sigma: np.ndarray  # (n_pv, n_adv) float32
    outcome: TickOutcome
    stats: dict[str, np.ndarray]  # field -> (n_adv,)
    alpha: np.ndarray          # (n_adv,) multiplier the population computed (controlled rows: NaN)


class PeriodSim:
    """The market of one period; ``step()`` once per tick until ``done``."""

    def __init__(self, config: MarketConfig, seed: int, period: int, *,
                 campaigns: tuple[Campaign, ...] | None = None,
                 population: PopulationConfig | None = None,
                 bidders: RuleBidders | None = None):
        self.config, self.seed, self.period = config, int(seed), int(period)
        self.campaigns = campaigns if campaigns is not None else campaigns_for(config, seed, period)
        if len(self.campaigns) != config.n_advertisers:
            raise ValueError(f"campaigns: expected {config.n_advertisers} (n_advertisers), got {len(self.campaigns)}")
        self.budget = np.array([c.budget for c in self.campaigns], dtype=np.float64)
        self.target_cpa = np.array([c.target_cpa for c in self.campaigns], dtype=np.float64)
        self.traffic = period_traffic(config, self.campaigns, seed, period)
        if population is None:  # the competitor field of the market's version
            population = market_population(config)
        self.bidders = bidders if bidders is not None else RuleBidders.draw(
            population, self.target_cpa, self.budget, day_profile(config.n_ticks, config.version), rng(seed, "population", period),
            alpha_scale=config.alpha_scale)
        n_adv = config.n_advertisers
        self.spent = np.zeros(n_adv)
        self.conversions = np.zeros(n_adv)
        self.tick = 0
        self.history = {f: np.zeros((config.n_ticks, n_adv)) for f in TICK_STAT_FIELDS}
        self._inputs: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def done(self) -> bool:
        return self.tick >= self.config.n_ticks

    @property
    def remaining_budget(self) -> np.ndarray:
        return self.budget - self.spent

    def tick_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(p_value, p_value_sigma)`` of the current tick, each (n_pv, n_adv) float32."""
        if self.done:
            raise RuntimeError("the period is over: all ticks have been played")
        if self._inputs is None:
            self._inputs = tick_p_values(self.traffic, self.seed, self.period, self.tick)
        return self._inputs

    def step(self, controlled: Mapping[int, np.ndarray] | None = None) -> TickRecord:
        """Play the current tick; ``controlled`` maps advertiser -> bids (n_pv,) that replace the population's."""
        p_value, sigma = self.tick_inputs()
        t, (s, p) = self.tick, (self.seed, self.period)
        g_bid = rng(s, "bidding", p, t)
        alpha = self.bidders.alphas(t, self.spent, self.conversions, g_bid)
        bids = p_value * alpha  # (n_pv, n_adv) float64 by promotion of the float64 alphas
        alpha = alpha.copy()
        for a, b in (controlled or {}).items():
            bids[:, a] = b
            alpha[a] = np.nan
        remaining = self.remaining_budget
        draws = draw_tick(rng(s, "outcome", p, t), p_value.shape[0], self.config.n_slots)
        outcome = step_market(bids, remaining, p_value, sigma, self.traffic.trunc_low, self.traffic.trunc_high,
                              draws, self.config, rng(s, "budget_drop", p, t))
        stats = tick_stats(outcome, p_value, remaining, self.config)
        self.bidders.observe(p_value, outcome.least_winning_cost, g_bid)
        for f in TICK_STAT_FIELDS:
            self.history[f][t] = stats[f]
        self.spent += outcome.cost
        self.conversions += stats["conversions"]
        self.tick += 1
        self._inputs = None
        return TickRecord(t, p_value, sigma, outcome, stats, alpha)

    def run(self, on_tick: Callable[[TickRecord], None] | None = None) -> dict[str, np.ndarray]:
        """Play the remaining ticks with the population alone; returns ``campaign_outcomes``."""
        while not self.done:
            record = self.step()
            if on_tick is not None:
                on_tick(record)
        return campaign_outcomes(self.history, self.campaigns)


def campaign_outcomes(history: Mapping[str, np.ndarray], campaigns, task: str = DEFAULT_TASK) -> dict[str, np.ndarray]:
    """Per-campaign results of a period from its tick statistics (field -> (n_ticks, n_adv)).

    Returns (n_adv,) arrays: spend, conversions, realized_cpa, score, expected_conversions,
    expected_score (the score of expected conversions and expected cost, lower variance),
    budget_utilisation, last_spend_tick (-1 if it never spent). ``score`` and ``expected_score``
    are the task's (``aigb.score.task_beta``): under "max-return" they are the conversions.
    """
    beta = task_beta(task)
    budget = np.array([c.budget for c in campaigns], dtype=np.float64)
    cpa = np.array([c.target_cpa for c in campaigns], dtype=np.float64)
    cost = history["cost"]
    spend = cost.sum(axis=0)
    conversions = history["conversions"].sum(axis=0)
    exp_conv = history["expected_conversions"].sum(axis=0)
    exp_cost = history["expected_cost"].sum(axis=0)
    spent_any = cost > 0
    last = np.where(spent_any.any(axis=0), cost.shape[0] - 1 - np.argmax(spent_any[::-1], axis=0), -1)
    return {
        "spend": spend,
        "conversions": conversions,
        "realized_cpa": realized_cpa(spend, conversions),
        "score": np.asarray(score(conversions, spend, cpa, beta)),
        "expected_conversions": exp_conv,
        "expected_score": np.asarray(score(exp_conv, exp_cost, cpa, beta)),
        "budget_utilisation": spend / budget,
        "last_spend_tick": last,
    }
