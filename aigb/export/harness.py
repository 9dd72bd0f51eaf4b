"""A minimal competition harness, and the same period played through aigb's environment.

``play_competition`` drives an object of the NeurIPS 2024 competition's interface the way that
competition's evaluation loop is described (../shared/DESIGN.md §3): the player gets its
campaign as attributes and a ``reset()``; at every tick it is asked for bids with the tick's
pValues and the histories of all past ticks, unless its ``remaining_budget`` is below the
market's minimum (then it bids nothing and is not asked); after the auction the harness charges
the cost of the exposed PVs to ``remaining_budget`` and appends the tick to the histories:

    historyPValueInfo       (n, 2)  pValue, pValueSigma
    historyBid              (n,)    the bids as they went to the auction
    historyAuctionResult    (n, 3)  won (0/1), slot (1..3, 0 = none), cost (the slot's price)
    historyImpressionResult (n, 2)  exposed (0/1), conversion (0/1)
    historyLeastWinningCost (n,)

The auction itself, the competitors and the luck are aigb's (``PeriodSim``): the harness only
replaces how the player is asked and how its results are handed back, and reads them from the
auction's slot table itself rather than through the environment, so the environment's adapter
(``aigb.strategies.neurips2024``) and this loop check each other.

``play_env`` plays an aigb ``Strategy`` in ``BiddingEnv`` and records the same things, so a
strategy and its export can be compared bid for bid over a whole period.

Both score Target-CPA (``aigb.score``'s default task): the competition is a Target-CPA one, so an
export is played and scored as such whatever task its strategy was evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aigb.score import score
from aigb.sim.env import BiddingEnv
from aigb.sim.period import PeriodSim, campaign_outcomes
from aigb.sim.population import PopulationConfig
from aigb.strategies.base import Strategy
from aigb.types import Campaign, MarketConfig

__all__ = ["PeriodPlay", "play_competition", "play_env", "HISTORY_NAMES"]

HISTORY_NAMES = ("historyPValueInfo", "historyBid", "historyAuctionResult", "historyImpressionResult",
                 "historyLeastWinningCost")


@dataclass
class PeriodPlay:
    """One campaign's period: what was bid and what it earned."""

    budget: float
    target_cpa: float
    category: int
    bids: list = field(default_factory=list)
    """Per tick, (n,) the bids as they went to the auction (0 where not asked or capped)."""
    asked: list = field(default_factory=list)
    """Per tick, whether the strategy was asked (its budget was above the market's minimum)."""
    spend: float = 0.0
    conversions: float = 0.0
    score: float = 0.0
    remaining_budget: float = 0.0
    """After the period, as the harness (or the environment) kept it."""
    inputs: dict | None = None
    """With ``record=True`` (``play_competition``): per tick pValues, pValueSigmas, the remaining
    budget the player saw, the bids it returned, and the tick's history rows (``HISTORY_NAMES``)."""

    def max_bid_difference(self, other: "PeriodPlay") -> float:
        """Largest |bid difference| over the period's PVs (inf if the ticks do not line up)."""
        if len(self.bids) != len(other.bids) or any(a.shape != b.shape for a, b in zip(self.bids, other.bids)):
            return float("inf")
        return max((float(np.max(np.abs(a - b))) for a, b in zip(self.bids, other.bids) if a.size), default=0.0)


def _player_results(outcome, advertiser: int):
    """The player's per-PV results from the auction's slot table: won, slot, cost, exposed, conversion."""
    pv, slot = np.nonzero(outcome.winner == advertiser)     # one slot at most per PV
    n = outcome.winner.shape[0]
    won, slot_no = np.zeros(n), np.zeros(n)
    cost, exposed, conversion = np.zeros(n), np.zeros(n), np.zeros(n)
    won[pv] = 1.0
    slot_no[pv] = slot + 1.0
    cost[pv] = outcome.price[pv, slot]
    exposed[pv] = outcome.exposed[pv, slot]
    conversion[pv] = outcome.conversion[pv, slot]
    return np.stack([won, slot_no, cost], axis=1), np.stack([exposed, conversion], axis=1)


def _period(market, seed, period, advertiser, population, campaign: Campaign | None) -> PeriodSim:
    """The period's market, with ``campaign``'s budget, CPA and category in the slot if given (as ``BiddingEnv``)."""
    sim = PeriodSim(market, seed, period, population=population)
    if campaign is None:
        return sim
    campaigns = list(sim.campaigns)
    campaigns[advertiser] = Campaign(advertiser, campaign.category, campaign.budget, campaign.target_cpa)
    return PeriodSim(market, seed, period, campaigns=tuple(campaigns), population=population)


def play_competition(player, market: MarketConfig, seed: int, period: int, advertiser: int, *,
                     population: PopulationConfig | None = None, campaign: Campaign | None = None,
                     record: bool = False) -> PeriodPlay:
    """Play one period with ``player`` (the competition's interface) in ``advertiser``'s slot
    (``campaign``: another budget, CPA and category for the slot)."""
    sim = _period(market, seed, period, advertiser, population, campaign)
    campaign = sim.campaigns[advertiser]
    player.budget, player.cpa, player.category = float(campaign.budget), float(campaign.target_cpa), int(campaign.category)
    player.remaining_budget = float(campaign.budget)
    player.reset()
    player.remaining_budget = float(campaign.budget)
    histories = {name: [] for name in HISTORY_NAMES}
    play = PeriodPlay(float(campaign.budget), float(campaign.target_cpa), int(campaign.category))
    inputs = {k: [] for k in ("pValues", "pValueSigmas", "remaining_budget", "returned", *HISTORY_NAMES)} if record else None
    for tick in range(market.n_ticks):
        p_all, sigma_all = sim.tick_inputs()
        p_value = p_all[:, advertiser].astype(np.float64)
        sigma = sigma_all[:, advertiser].astype(np.float64)
        asked = player.remaining_budget >= market.min_remaining_budget
        if asked:
            returned = np.asarray(player.bidding(tick, p_value, sigma, *(histories[n] for n in HISTORY_NAMES)), dtype=np.float64)
            if returned.shape != p_value.shape or not np.all(np.isfinite(returned)):
                raise ValueError(f"player: tick {tick}: bids must be {p_value.shape} finite numbers, got {returned.shape}")
        else:
            returned = np.zeros_like(p_value)
        if record:
            for k, v in (("pValues", p_value), ("pValueSigmas", sigma), ("remaining_budget", player.remaining_budget),
                         ("returned", returned if asked else None)):
                inputs[k].append(v)
        # A negative bid is no bid: below the reserve, it wins nothing.
        outcome = sim.step({advertiser: np.maximum(returned, 0.0)}).outcome
        auction, impression = _player_results(outcome, advertiser)
        paid = auction[:, 2] * impression[:, 0]
        player.remaining_budget -= float(paid.sum())
        rows = {"historyPValueInfo": np.stack([p_value, sigma], axis=1), "historyBid": outcome.bids[:, advertiser].copy(),
                "historyAuctionResult": auction, "historyImpressionResult": impression,
                "historyLeastWinningCost": outcome.least_winning_cost.copy()}
        for name in HISTORY_NAMES:
            histories[name].append(rows[name])
            if record:
                inputs[name].append(rows[name])
        play.bids.append(rows["historyBid"])
        play.asked.append(bool(asked))
        play.spend += float(paid.sum())
        play.conversions += float(impression[:, 1].sum())
    play.score = float(score(play.conversions, play.spend, campaign.target_cpa))
    play.remaining_budget = float(player.remaining_budget)
    play.inputs = inputs
    return play


def play_env(strategy: Strategy, market: MarketConfig, seed: int, period: int, advertiser: int, *,
             strategy_seed: int = 0, population: PopulationConfig | None = None,
             campaign: Campaign | None = None) -> PeriodPlay:
    """Play one period with an aigb ``strategy`` in ``BiddingEnv`` (reset with ``strategy_seed``)."""
    env = BiddingEnv(market, advertiser, seed=seed, population=population, campaign=campaign, keep_pv_history=True)
    obs, _ = env.reset(period=period)
    c = obs.campaign
    strategy.reset(c, market.n_ticks, strategy_seed)
    play = PeriodPlay(float(c.budget), float(c.target_cpa), int(c.category))
    done = False
    while not done:
        play.asked.append(obs.remaining_budget >= market.min_remaining_budget)
        obs, _, done, _, _ = env.step(strategy.bid(obs))
    play.bids = [tick["bid"] for tick in obs.pv_history]   # the final observation holds every tick
    sim, a = env.sim, advertiser
    out = campaign_outcomes(sim.history, sim.campaigns)
    play.spend, play.conversions, play.score = float(out["spend"][a]), float(out["conversions"][a]), float(out["score"][a])
    play.remaining_budget = float(sim.remaining_budget[a])
    return play
