"""The strategy contract: what bids.

A ``Strategy`` is reset once per campaign (one advertiser, one period) and then asked for bids once
per tick, Gymnasium style::

    strategy.reset(campaign, n_ticks, seed)
    while not done:
        obs, ... = env.step(strategy.bid(obs))

``bid`` returns one non-negative, finite bid per PV of the tick, shape ``(n_pv,)`` (``n_pv`` may be
0 in a tick without traffic). All randomness a strategy uses comes from ``seed`` through
``aigb.seeding.rng``, so the same seed gives the same bids, and ``reset`` forgets everything about
the previous campaign (``aigb.strategies.check.check_strategy`` tests both).

Two optional capabilities are declared as class attributes, so that the harness pays for them only
when a strategy asks:

* ``needs_pv_history``: the strategy reads ``Observation.pv_history`` (per-PV results of past
  ticks, e.g. least winning costs); the harness then builds ``BiddingEnv(keep_pv_history=True)``.
* ``hindsight``: the strategy is a benchmark that may see the period before playing it (the
  hindsight oracle). The harness calls ``prepare(episode)`` before ``reset``; honest strategies
  never receive an ``Episode``.

A learned strategy also says which task it was trained for (``trained_for``); ``check_task``
refuses to play it on the other one (``aigb.score.TASKS``: a policy selected for Target-CPA scores
is not a Max-Return policy, and the reverse).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aigb.seeding import seed_sequence
from aigb.types import Campaign, ConfigError, MarketConfig

if TYPE_CHECKING:   # annotations only: the strategy contract imports no simulator
    from aigb.sim.env import Observation
    from aigb.sim.population import PopulationConfig

__all__ = ["Strategy", "AlphaStrategy", "Episode", "StrategyFactory", "strategy_seed", "check_task"]


@dataclass(frozen=True)
class Episode:
    """Where a campaign is played: what a hindsight strategy needs to replay the period."""

    market: MarketConfig
    """The market's rules and size."""
    seed: int
    """Root seed of the market (traffic, population, outcomes)."""
    period: int
    """Period index under the seed."""
    advertiser: int
    """The advertiser slot the strategy controls."""
    population: PopulationConfig
    """How the competing rule bidders are drawn."""
    campaign: Campaign
    """The campaign of the slot (budget, target CPA, category)."""
    task: str = "cpa"
    """What the campaign is scored on (``aigb.score.TASKS``): a hindsight strategy solves for it."""


class Strategy(ABC):
    """Bids for one advertiser, one tick at a time."""

    name: str = "strategy"
    """Short name shown in result tables; registry-built strategies carry their spec string."""
    needs_pv_history: bool = False
    """True if ``bid`` reads ``Observation.pv_history`` (per-PV results of past ticks)."""
    hindsight: bool = False
    """True for benchmarks that see the period in advance (``prepare`` is then called)."""
    trained_for: tuple[str, str] | None = None
    """Learned strategies: ``(task, source)``, the task (``aigb.score.TASKS``) their checkpoint or
    exported folder was trained for, and that file or folder ("checkpoint PATH", "export DIR").
    None: a rule, or a checkpoint written before tasks were recorded; it plays either task."""

    def prepare(self, episode: Episode) -> None:
        """Hindsight strategies only: look at the period before ``reset``."""
        raise NotImplementedError(f"{type(self).__name__} is not a hindsight strategy")

    @abstractmethod
    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        """Start a new campaign of ``n_ticks`` ticks; forget all previous state."""

    @abstractmethod
    def bid(self, obs: Observation) -> np.ndarray:
        """Bids for the PVs of the current tick.  # (n_pv,) float64, finite, >= 0"""


def check_task(strategy: Strategy, task: str) -> None:
    """Refuse, in one line naming both tasks and the checkpoint, a strategy trained for another task
    than ``task``, the one it is about to be scored on."""
    trained = getattr(strategy, "trained_for", None)
    if trained is not None and trained[0] != task:
        raise ConfigError(f"task: {strategy.name} was trained for the {trained[0]} task ({trained[1]}), "
                          f"not {task}; evaluate it with --task {trained[0]}, or train it on {task} data")


class AlphaStrategy(Strategy):
    """A strategy that acts through one multiplier per tick: ``bid = alpha * p_value``.

    The LP dual of the budget- and CPA-constrained problem has this form (../shared/DESIGN.md §1),
    so rule and learned strategies only decide ``alpha``.
    """

    @abstractmethod
    def alpha(self, obs: Observation) -> float:
        """The bid multiplier for the current tick (>= 0)."""

    def bid(self, obs: Observation) -> np.ndarray:
        return float(self.alpha(obs)) * obs.p_value.astype(np.float64)


StrategyFactory = Callable[[MarketConfig], Strategy]
"""Builds a fresh strategy for a market (the market tells e.g. OnlineLP which prior to use)."""


def strategy_seed(seed: int, period: int, advertiser: int) -> int:
    """The seed a strategy gets for (market seed, period, advertiser): the same for every strategy
    compared on that campaign (paired), from its own named stream so it never aliases the market's."""
    return int(seed_sequence(seed, "strategy", period, advertiser).generate_state(1, dtype=np.uint32)[0])
