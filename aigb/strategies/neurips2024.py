"""Adapter for strategies written for the NeurIPS 2024 auto-bidding competition (AuctionNet).

Competition code is an object with attributes ``budget``, ``cpa``, ``category`` and
``remaining_budget``, a ``reset()`` and::

    bidding(timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
            historyAuctionResult, historyImpressionResult, historyLeastWinningCost) -> bids

``CompetitionStrategy`` plays such an object in aigb's harness the way the competition's harness
does: it sets the campaign's attributes and calls ``reset()`` per campaign, passes the histories as
lists with one array per past tick (layouts in ../shared/DESIGN.md §3), decrements
``remaining_budget`` by each tick's paid cost, and bids 0 without asking the object once the
remaining budget is below the market's minimum (the competition harness does the same). A negative
bid from competition code is taken as no bid (0): in the auction it is below the reserve and wins
nothing; aigb's own strategies must bid >= 0 (``aigb.sim.env.validate_bids``).

Trust boundary: a ``neurips2024:file.py:ClassName`` or ``neurips2024:module:ClassName`` spec
imports that file or module, running its top-level code inside the aigb process as soon as the spec
is checked (``aigb evaluate`` checks every spec before the first rollout) and again in each worker
process, with the user's permissions. Name only code you would run with ``python file.py``.

History layouts, per past tick t (n = that tick's PVs):
* ``historyPValueInfo[t]``       (n, 2) float64: pValue, pValueSigma
* ``historyBid[t]``              (n,)   float64: the bids that went to the auction
* ``historyAuctionResult[t]``    (n, 3) float64: won (0/1), slot (1..3, 0 = none), cost = the
  slot's GSP price, paid only if exposed (the impression log's ``cost`` column)
* ``historyImpressionResult[t]`` (n, 2) float64: exposed (0/1), conversion (0/1)
* ``historyLeastWinningCost[t]`` (n,)   float64

The competition's camelCase names live only in this file.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from aigb.sim.env import Observation, validate_bids
from aigb.score import TASKS
from aigb.strategies.base import Strategy
from aigb.types import Campaign, ConfigError, MarketConfig

__all__ = ["CompetitionStrategy", "load_competition_class", "COMPETITION_ATTRIBUTES"]

COMPETITION_ATTRIBUTES = ("budget", "cpa", "category", "remaining_budget")


class CompetitionStrategy(Strategy):
    """Plays an object of the competition's interface (see the module docstring)."""

    needs_pv_history = True

    def __init__(self, bidder, name: str | None = None, min_remaining_budget: float = MarketConfig().min_remaining_budget):
        missing = [m for m in ("bidding", "reset") if not callable(getattr(bidder, m, None))]
        if missing:
            raise ConfigError(f"bidder: {type(bidder).__name__} lacks the competition method(s) {', '.join(missing)}")
        self.bidder = bidder
        self.name = name or f"neurips2024:{type(bidder).__name__}"
        # An aigb export names the task its policy was trained for (``PlayerBiddingStrategy.task``).
        task = getattr(bidder, "task", None)
        if isinstance(task, str) and task in TASKS:
            self.trained_for = (task, f"export {getattr(bidder, 'folder', type(bidder).__name__)}")
        self.min_remaining_budget = float(min_remaining_budget)
        self._history: dict[str, list] | None = None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        b = self.bidder
        b.budget, b.cpa, b.category = float(campaign.budget), float(campaign.target_cpa), int(campaign.category)
        b.remaining_budget = float(campaign.budget)
        b.reset()
        # Competition strategies set remaining_budget = budget in reset(); enforce it for those
        # that forget, since the harness owns the budget bookkeeping.
        b.remaining_budget = float(campaign.budget)
        self._history = {k: [] for k in ("pvalue", "bid", "auction", "impression", "lwc")}
        self.n_ticks = int(n_ticks)

    def _append(self, past: dict[str, np.ndarray]) -> None:
        h = self._history
        h["pvalue"].append(np.stack([past["p_value"], past["p_value_sigma"]], axis=1).astype(np.float64))
        h["bid"].append(np.asarray(past["bid"], dtype=np.float64).copy())
        h["auction"].append(np.stack([past["won"], past["slot"], past["price"]], axis=1).astype(np.float64))
        h["impression"].append(np.stack([past["exposed"], past["conversion"]], axis=1).astype(np.float64))
        h["lwc"].append(np.asarray(past["least_winning_cost"], dtype=np.float64).copy())
        # The competition harness decrements the budget by the cost actually paid (exposed PVs).
        self.bidder.remaining_budget -= float(np.sum(past["cost"]))

    def bid(self, obs: Observation) -> np.ndarray:
        if self._history is None:
            raise RuntimeError(f"{self.name}: call reset(campaign, n_ticks, seed) before bid()")
        if obs.pv_history is None:
            raise RuntimeError(f"{self.name}: needs Observation.pv_history; play it in BiddingEnv(keep_pv_history=True)")
        while len(self._history["bid"]) < min(obs.tick, len(obs.pv_history)):
            self._append(obs.pv_history[len(self._history["bid"])])
        n_pv = obs.p_value.size
        if self.bidder.remaining_budget < self.min_remaining_budget:
            return np.zeros(n_pv)
        h = self._history
        bids = self.bidder.bidding(obs.tick, obs.p_value.astype(np.float64), obs.p_value_sigma.astype(np.float64),
                                   h["pvalue"], h["bid"], h["auction"], h["impression"], h["lwc"])
        # Negative competition bids mean "no bid" (module docstring); NaN and wrong shapes stay errors.
        bids = np.asarray(bids, dtype=np.float64)
        return validate_bids(np.where(bids < 0, 0.0, bids), n_pv, who=f"{self.name} at tick {obs.tick}")


def load_competition_class(target: str):
    """The class named by ``module.path:ClassName`` or ``path/to/file.py:ClassName``."""
    module_name, sep, class_name = target.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"neurips2024: expected 'module.path:ClassName' or 'file.py:ClassName', got {target!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ConfigError(f"neurips2024: no file {path}")
        spec = importlib.util.spec_from_file_location(f"aigb_competition_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(f"neurips2024: cannot import {module_name!r} ({err})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"neurips2024: {module_name} has no attribute {class_name!r}")
    return cls
