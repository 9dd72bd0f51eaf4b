"""One advertiser's view of the market, for any strategy.

``BiddingEnv`` (Gymnasium-style reset/step, per-PV bids) and ``AlphaBiddingEnv`` (a true
``gymnasium.Env``: fixed-size feature observation, one scalar action per tick).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from aigb.features import FEATURE_DIM, build_features
from aigb.sim.auction import advertiser_view, rank_bids
from aigb.sim.period import PeriodSim
from aigb.sim.population import PopulationConfig, market_population
from aigb.types import ACTION_HIGH, ACTION_LOW, TICK_STAT_FIELDS, Campaign, ConfigError, MarketConfig

__all__ = ["BiddingEnv", "AlphaBiddingEnv", "Observation", "InvalidBids", "validate_bids", "make_observation"]


class InvalidBids(ValueError):
    """A strategy returned bids the market cannot take."""


def validate_bids(bids, n_pv: int, who: str = "strategy") -> np.ndarray:
    """Bids as float64 (n_pv,); a wrong shape, NaN, infinite or negative bids raise ``InvalidBids``.

    The one rule for a strategy's bids (``aigb.strategies.base``): finite and >= 0. The evaluation
    (through ``BiddingEnv.step``) and ``check_strategy`` both apply it, so a strategy that passes
    the checker never fails the evaluation on its bids' values and vice versa.
    """
    arr = np.asarray(bids, dtype=np.float64)
    if arr.shape != (n_pv,):
        raise InvalidBids(f"{who}: bids must have shape ({n_pv},) (one per PV of the tick), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidBids(f"{who}: {int(bad.sum())} bids are NaN or infinite (first at PV {int(np.flatnonzero(bad)[0])})")
    negative = arr < 0
    if negative.any():
        raise InvalidBids(f"{who}: {int(negative.sum())} bids are negative (first at PV {int(np.flatnonzero(negative)[0])}); "
                          "bid 0 for no bid")
    return arr


@dataclass
class Observation:
    """What the controlled advertiser sees at the start of a tick."""

    tick: int
    n_ticks: int
    campaign: Campaign
    remaining_budget: float
    p_value: np.ndarray        # (n_pv,) float32 this tick's PVs
    p_value_sigma: np.ndarray  # (n_pv,) float32
    history: dict[str, np.ndarray]  # field of TICK_STAT_FIELDS -> (tick,) own statistics so far
    features: np.ndarray       # (FEATURE_DIM,) float32 the v1 state
    pv_history: list[dict[str, np.ndarray]] | None = None  # per past tick, per-PV arrays (if kept)


def make_observation(config: MarketConfig, campaign: Campaign, tick: int, history: dict[str, np.ndarray],
                     inputs: tuple[np.ndarray, np.ndarray] | None, remaining_budget: float,
                     pv_history: list[dict[str, np.ndarray]] | None) -> Observation:
    """What ``campaign``'s advertiser sees at the start of ``tick``.

    history: field -> (n_ticks, n_adv) statistics of the market so far; inputs: the tick's
    (p_value, p_value_sigma), (n_pv, n_adv), or None after the last tick.
    """
    a = campaign.advertiser
    own = {f: history[f][:tick, a].copy() for f in TICK_STAT_FIELDS}
    if inputs is None:
        p = s = np.zeros(0, dtype=np.float32)
    else:
        p, s = inputs[0][:, a], inputs[1][:, a]
    c = campaign
    features = build_features(own, config.n_ticks, p.size, float(p.mean(dtype=np.float64)) if p.size else 0.0,
                              c.budget, c.target_cpa, c.category)
    return Observation(tick, config.n_ticks, c, remaining_budget, p, s, own, features,
                       None if pv_history is None else list(pv_history))


class BiddingEnv:
    """One advertiser slot bids per PV against the rule-bidder population.

    Observation: ``Observation`` (this tick's PVs, own history, v1 features).
    Action: bids, (n_pv,) array for the tick's PVs, finite and >= 0; a negative, NaN or infinite
        bid or a wrong shape raises ``InvalidBids`` (``validate_bids``).
    Reward: conversions won in the tick; ``info`` carries cost, exposed p_value (the dense reward),
        expected conversions and the per-PV results (and, with ``record_competitors``, the other
        advertisers' top bids per PV and the own p_value, for the hindsight oracle).
    Episode end: terminated after the last tick of the period (an exhausted budget keeps playing
        with zero bids, as in AuctionNet); never truncated.
    """

    def __init__(self, config: MarketConfig = MarketConfig(), advertiser: int = 0, *, seed: int = 0,
                 population: PopulationConfig | None = None, campaign: Campaign | None = None,
                 keep_pv_history: bool = False, record_competitors: bool = False):
        if not 0 <= advertiser < config.n_advertisers:
            raise ConfigError(f"advertiser: must be in [0, {config.n_advertisers}), got {advertiser}")
        # None: the competitor field of the market's version (``market_population``).
        population = population if population is not None else market_population(config)
        self.config, self.advertiser, self.population = config, int(advertiser), population
        self.seed, self.campaign_override = int(seed), campaign
        self.keep_pv_history = keep_pv_history
        self.record_competitors = record_competitors
        self.sim: PeriodSim | None = None

    @property
    def campaign(self) -> Campaign:
        return self.sim.campaigns[self.advertiser]

    def reset(self, *, seed: int | None = None, period: int = 0) -> tuple[Observation, dict]:
        if seed is not None:
            self.seed = int(seed)
        sim = PeriodSim(self.config, self.seed, period, population=self.population)
        if self.campaign_override is not None:
            c = self.campaign_override
            campaigns = list(sim.campaigns)
            campaigns[self.advertiser] = Campaign(self.advertiser, c.category, c.budget, c.target_cpa)
            sim = PeriodSim(self.config, self.seed, period, campaigns=tuple(campaigns), population=self.population)
        self.sim = sim
        self._pv_history = [] if self.keep_pv_history else None
        return self._observe(), {"period": period, "seed": self.seed}

    def _observe(self) -> Observation:
        sim = self.sim
        inputs = None if sim.done else sim.tick_inputs()
        return make_observation(self.config, self.campaign, sim.tick, sim.history, inputs,
                                float(sim.remaining_budget[self.advertiser]), self._pv_history)

    def step(self, bids) -> tuple[Observation, float, bool, bool, dict]:
        if self.sim is None or self.sim.done:
            raise RuntimeError("call reset() before step(), and again after the period ends")
        p_value, _ = self.sim.tick_inputs()
        bids = validate_bids(bids, p_value.shape[0])
        record = self.sim.step({self.advertiser: bids})
        a = self.advertiser
        view = advertiser_view(record.outcome, a, self.config)
        if self._pv_history is not None:
            self._pv_history.append({
                # Copies: a column view would keep the whole (n_pv, n_adv) tick matrix alive.
                "p_value": record.p_value[:, a].copy(), "p_value_sigma": record.p_value_sigma[:, a].copy(),
                "bid": record.outcome.bids[:, a].copy(), "least_winning_cost": record.outcome.least_winning_cost, **view})
        stats = {f: float(v[a]) for f, v in record.stats.items()}
        info = {"tick": record.tick, "stats": stats, "pv": view}
        if self.record_competitors:
            # What the hindsight oracle needs: the other advertisers' top bids as they stood.
            others = record.outcome.bids.copy()
            others[:, a] = 0.0
            info["competitor_top"] = rank_bids(others, self.config.n_slots)[1]  # (n_pv, n_slots)
            info["p_value"] = record.p_value[:, a].copy()
        return self._observe(), stats["conversions"], self.sim.done, False, info


class AlphaBiddingEnv(gym.Env):
    """The market through one scalar per tick.

    Observation: Box(FEATURE_DIM,) float32, the v1 features (``aigb.features``), unnormalised.
    Action: Box(1,) in [ACTION_LOW, ACTION_HIGH], a = log(alpha / target_cpa); bids = alpha * p_value.
    Reward: conversions in the tick.
    Episode end: terminated after the period's last tick.
    ``reset(seed=...)`` fixes the market seed; each reset without a seed plays the next period.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: MarketConfig = MarketConfig(), advertiser: int = 0, *,
                 population: PopulationConfig | None = None):
        self.inner = BiddingEnv(config, advertiser, population=population)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (FEATURE_DIM,), np.float32)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, (1,), np.float32)
        self._period = 0
        self._obs: Observation | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._period = 0
        period = int((options or {}).get("period", self._period))
        self._period = period + 1
        self._obs, info = self.inner.reset(seed=seed, period=period)
        return self._obs.features, info

    def step(self, action):
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], ACTION_LOW, ACTION_HIGH))
        alpha = np.exp(a) * self._obs.campaign.target_cpa
        obs, reward, terminated, truncated, info = self.inner.step(alpha * self._obs.p_value.astype(np.float64))
        self._obs = obs
        return obs.features, float(reward), terminated, truncated, {"tick": info["tick"], "alpha": alpha, **info["stats"]}
