"""The hindsight oracle as a strategy: the "physical limit" row of the result table.

Before the period it replays the same (seed, period) with its slot played by a reference strategy
(``BiddingEnv(record_competitors=True)``), which records every PV's p_value and the competitors'
top bids. ``aigb.strategies.oracle`` then solves the period in hindsight and the strategy bids
from the solution. Traffic depends only on (seed, period, tick), so the PVs it then sees are the
ones it solved for; the competitors' bids are not quite (pacing bidders react to what the oracle
wins instead of the reference), which is why its realised score is close to, not equal to, the
bound ``aigb.eval`` reports per row.

Modes (``mode=``):
* ``uniform`` (default): the best single multiplier for ``bid = alpha * p_value`` under GSP against
  the recorded competitors (``best_uniform_alpha``), the LP form of ../shared/DESIGN.md §1;
* ``lp``: ``alpha * p_value`` with the LP's own multiplier (buys dearer GSP slots than the LP, so
  it tends to overspend; kept for comparison);
* ``slots``: per PV the LP's choice of slot at that multiplier, bid so as to land in it
  (``lagrangian_slots`` + ``slot_bids``): the closest to the LP allocation itself.

It solves for the episode's task (``Episode.task``): under "max-return" the score has no CPA term
(``aigb.score.task_beta``), so it plays the best multiplier for conversions within the budget.
"""

from __future__ import annotations

import numpy as np

from aigb.sim.env import BiddingEnv, Observation
from aigb.strategies.base import Episode, Strategy, StrategyFactory, strategy_seed
from aigb.strategies.oracle import best_uniform_alpha, lagrangian_slots, slot_bids, solve_oracle
from aigb.score import task_beta
from aigb.types import Campaign, ConfigError

__all__ = ["HindsightOracle", "ORACLE_MODES", "replay_competitors"]

ORACLE_MODES = ("uniform", "lp", "slots")


def replay_competitors(episode: Episode, reference: Strategy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``episode`` with ``reference`` in the slot; return per PV of the period
    ``(p_value (n,), comp_top (n, n_slots), tick (n,))``."""
    env = BiddingEnv(episode.market, episode.advertiser, seed=episode.seed, population=episode.population,
                     campaign=episode.campaign, keep_pv_history=reference.needs_pv_history, record_competitors=True)
    obs, _ = env.reset(period=episode.period)
    reference.reset(obs.campaign, episode.market.n_ticks, strategy_seed(episode.seed, episode.period, episode.advertiser))
    p_value, comp_top, tick = [], [], []
    done = False
    while not done:
        t = obs.tick
        obs, _, done, _, info = env.step(reference.bid(obs))
        p_value.append(info["p_value"].astype(np.float64))
        comp_top.append(info["competitor_top"])
        tick.append(np.full(info["p_value"].size, t, dtype=np.int64))
    return np.concatenate(p_value), np.concatenate(comp_top), np.concatenate(tick)


class HindsightOracle(Strategy):
    """Bids from the hindsight solution of a replay of the period (a benchmark, not a policy)."""

    hindsight = True

    def __init__(self, reference: StrategyFactory, reference_name: str, mode: str = "uniform"):
        if mode not in ORACLE_MODES:
            raise ConfigError(f"mode: unknown oracle mode {mode!r}; choose one of {', '.join(ORACLE_MODES)}")
        self.reference, self.mode = reference, mode
        self.name = f"oracle:mode={mode},reference={reference_name}"
        self._episode: Episode | None = None
        self._plan: dict | None = None

    def prepare(self, episode: Episode) -> None:
        ref = self.reference(episode.market)
        p, c, t = replay_competitors(episode, ref)
        m, camp = episode.market, episode.campaign
        rules = {"n_ticks": m.n_ticks, "exposure_probs": m.net_exposure_probs, "reserve_price": m.reserve_price,
                 "beta": task_beta(episode.task)}
        offsets = np.searchsorted(t, np.arange(m.n_ticks + 1))  # PVs arrive tick by tick
        plan = {"p_value": p, "offsets": offsets, "alpha": 0.0, "bids": None}
        if self.mode == "uniform":
            plan["alpha"] = best_uniform_alpha(p, c, t, camp.budget, camp.target_cpa, **rules).alpha
        else:
            solution = solve_oracle(p, c, t, camp.budget, camp.target_cpa, frontier_spend=camp.budget, **rules)
            plan["alpha"] = solution.alpha
            if self.mode == "slots":
                slots = lagrangian_slots(p, c, solution.alpha, exposure_probs=m.net_exposure_probs, reserve_price=m.reserve_price)
                plan["bids"] = slot_bids(c, slots, reserve_price=m.reserve_price)
        self._episode, self._plan, self._prepared_for = episode, plan, None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        if self._plan is None or self._episode.campaign != campaign or self._episode.market.n_ticks != n_ticks:
            raise RuntimeError(f"{self.name}: call prepare(episode) for this campaign before reset (it needs the period in hindsight)")
        self._prepared_for = campaign

    def bid(self, obs: Observation) -> np.ndarray:
        if self._prepared_for is None:
            raise RuntimeError(f"{self.name}: call prepare(episode) and reset() before bid()")
        plan = self._plan
        lo, hi = plan["offsets"][obs.tick], plan["offsets"][obs.tick + 1]
        # The replay must have seen exactly these PVs; anything else means another period.
        if hi - lo != obs.p_value.size or not np.array_equal(plan["p_value"][lo:hi], obs.p_value.astype(np.float64)):
            raise RuntimeError(f"{self.name}: tick {obs.tick} differs from the replayed period; prepare() was given another episode")
        if plan["bids"] is not None:
            return plan["bids"][lo:hi].copy()
        return plan["alpha"] * obs.p_value.astype(np.float64)
