"""``check_strategy``: does a strategy keep the contract of ``aigb.strategies.base.Strategy``?

It plays a tiny market and checks, naming the strategy, the campaign and the tick of any failure:

* the factory returns a ``Strategy`` with a non-empty ``name``;
* every tick's bids pass ``aigb.sim.env.validate_bids`` (shape ``(n_pv,)``, including ticks
  without PVs, finite and >= 0): the rule the evaluation applies;
* determinism: two fresh instances given the same campaign and seed bid identically;
* reset: an instance that has played another campaign first bids exactly like a fresh one;
* a market whose ticks are mostly empty (a handful of PVs per period) is played without error.

Run it over every registered implementation (tests/strategies/test_registry.py does).
"""

from __future__ import annotations

import numpy as np

from aigb.sim.env import BiddingEnv, InvalidBids, validate_bids
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import Episode, Strategy, StrategyFactory, strategy_seed
from aigb.types import MarketConfig

__all__ = ["check_strategy", "StrategyCheckError", "CHECK_MARKET", "SPARSE_TICK_MARKET", "play_bids"]

CHECK_MARKET = MarketConfig(n_pv=4000, n_ticks=12, n_advertisers=12)
"""Small enough to play a campaign in well under a second, large enough for every slot to trade."""
SPARSE_TICK_MARKET = MarketConfig(n_pv=20, n_ticks=48, n_advertisers=6)
"""20 PVs over 48 ticks: most ticks carry no PV at all."""


class StrategyCheckError(AssertionError):
    """A strategy broke its contract; the message says which check, campaign and tick."""


def play_bids(strategy: Strategy, market: MarketConfig, seed: int, period: int, advertiser: int,
              population: PopulationConfig | None = None) -> list[np.ndarray]:
    """Play one campaign and return the bids of every tick, checked strictly (no clipping)."""
    population = market_population(market) if population is None else population
    env = BiddingEnv(market, advertiser, seed=seed, population=population,
                     keep_pv_history=strategy.needs_pv_history)
    obs, _ = env.reset(period=period)
    where = f"{strategy.name!r} (seed {seed}, period {period}, advertiser {advertiser})"
    if strategy.hindsight:
        strategy.prepare(Episode(market, seed, period, advertiser, population, obs.campaign))
    strategy.reset(obs.campaign, market.n_ticks, strategy_seed(seed, period, advertiser))
    out, done = [], False
    while not done:
        try:
            bids = validate_bids(strategy.bid(obs), obs.p_value.size, who=f"{where}: tick {obs.tick}")
        except InvalidBids as err:
            raise StrategyCheckError(str(err)) from None
        out.append(bids.copy())
        obs, _, done, _, _ = env.step(bids)
    return out


def _first_difference(a: list[np.ndarray], b: list[np.ndarray]) -> int | None:
    for t, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape or not np.array_equal(x, y):
            return t
    return None if len(a) == len(b) else min(len(a), len(b))


def check_strategy(factory: StrategyFactory, *, market: MarketConfig = CHECK_MARKET, seed: int = 0) -> dict[str, int]:
    """Run the checks; raise ``StrategyCheckError`` on the first failure, else return what was played."""
    def fresh() -> Strategy:
        s = factory(market)
        if not isinstance(s, Strategy):
            raise StrategyCheckError(f"factory returned {type(s).__name__}, not an aigb.strategies.base.Strategy")
        if not isinstance(s.name, str) or not s.name:
            raise StrategyCheckError(f"{type(s).__name__}: name must be a non-empty string, got {s.name!r}")
        return s

    a = (seed, 0, 0)                             # (seed, period, advertiser): two different campaigns
    b = (seed, 1, market.n_advertisers - 1)
    first = fresh()
    bids_a = play_bids(first, market, *a)
    bids_b_after_a = play_bids(first, market, *b)
    second = fresh()
    again_a = play_bids(second, market, *a)
    t = _first_difference(bids_a, again_a)
    if t is not None:
        raise StrategyCheckError(f"{first.name!r}: not deterministic: two fresh instances with the same seed bid differently at tick {t}")
    third = fresh()
    bids_b = play_bids(third, market, *b)
    t = _first_difference(bids_b, bids_b_after_a)
    if t is not None:
        raise StrategyCheckError(f"{first.name!r}: reset() keeps state: after another campaign it bids differently from a fresh instance at tick {t}")
    a_after_b = play_bids(third, market, *a)
    t = _first_difference(bids_a, a_after_b)
    if t is not None:
        raise StrategyCheckError(f"{first.name!r}: reset() keeps state: after another campaign it bids differently from a fresh instance at tick {t}")
    sparse = SPARSE_TICK_MARKET
    empty_ticks = play_bids(factory(sparse), sparse, seed, 0, 0)
    return {"campaigns": 5, "ticks": 5 * market.n_ticks + sparse.n_ticks,
            "empty_ticks": sum(1 for x in empty_ticks if x.size == 0)}
