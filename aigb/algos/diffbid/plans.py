"""What DiffBid plans over: the day's dynamic state, the campaign context and the outcome asked for.

One source of truth. Every quantity here is a function of the v1 states that ``aigb.features``
builds, which the dataset stores (``TrajectoryDataset.obs``) and the environment hands a strategy
online (``Observation.features``); the plan a strategy in-paints at serving is therefore computed
by the same code, from the same numbers, as the plans the model was trained on
(tests/algos/test_diffbid.py plays a period online and compares).

Rows. Row t of a plan is the state **at the start of tick t, before bidding**: it summarises ticks
0..t-1 and this tick's traffic (its PV count), exactly like v1 state t. A day of T ticks has T + 1
rows: rows 0..T-1 are the states the strategy sees, row T is the state after the last tick, so the
plan ends in the day's outcome (budget left, final CPA). At tick t the realised prefix is rows 0..t
and the planner fills rows t+1..T.

The market view (``MarketPlan``, for v1 states) has seven channels, each roughly within [-1, 1]
once scaled by ``RobustScaler``, ratios in log space:

    budget_left      (B - spend so far) / B
    spend_rate       log(1 + spend of the previous tick / (B / T))       0 at row 0
    value_delivered  conversions so far * C / B                          1: the budget's worth at target
    log_cpa_ratio    log(realised CPA so far / C) clipped to [-2, 2]     0 before any spend
    log_price        log(last-3 mean least winning cost / (last-3 mean p_value * C)), clipped to
                     [-3, 3]: the bid ratio alpha / C that entered the third slot lately (in the
                     units of the action log(alpha / C)); 0 before any traffic
    win_rate         share of PVs won over the last three ticks
    pv               this tick's PV count (0 after the last tick); linear, so that the empty row
                     after the day is not an outlier; its scale is the training market's

The context (always known, never noised, never dropped) is log B, log C and the category one-hot.
The outcome conditions, per training campaign:

    return  R = rank of the campaign's score efficiency score * C / B among the training campaigns,
            in [0, 1] (a rank cannot saturate, unlike a sigmoid of the return);
    cpa     E = min(1, (C / realised CPA)^2), the score's own CPA penalty (``aigb.score``);
    util    U = spend / B.

They follow the dataset's task (``aigb.score.TASKS``, ``whole_trajectories``' "task"): in a
Max-Return dataset the score is the conversions, so R ranks conversions x C / B (the dataset's
``campaign_efficiency`` is already that) and E, the task's penalty, is 1 for every campaign.

``RawPlan`` is the fallback for any other feature set (e.g. the contract checker's synthetic
trajectories): the plan is the state itself, the context its first row, the outcome R alone.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from aigb.features import FEATURE_NAMES, FEATURE_VERSION
from aigb.score import DEFAULT_TASK, cpa_penalty, task_beta
from aigb.types import N_CATEGORIES, MarketConfig

__all__ = [
    "PLAN_VERSION", "MARKET_CHANNELS", "MarketPlan", "RawPlan", "make_plan_view", "RobustScaler",
    "efficiency_rank", "whole_trajectories",
]

PLAN_VERSION = "plan-v1"
"""Version of the plan features; checkpoints record it next to the feature version."""

MARKET_CHANNELS: tuple[str, ...] = (
    "budget_left", "spend_rate", "value_delivered", "log_cpa_ratio", "log_price", "win_rate", "pv",
)
_V1 = {name: i for i, name in enumerate(FEATURE_NAMES)}
_MIN_P_VALUE = 1e-7


def _column(states: np.ndarray, name: str) -> np.ndarray:
    return states[..., _V1[name]]


class MarketPlan:
    """The plan, context, tick information and outcomes of v1 states (see the module docstring)."""

    kind = "market"
    channels = MARKET_CHANNELS
    context_names: tuple[str, ...] = ("log_budget", "log_target_cpa") + tuple(f"category_{i}" for i in range(N_CATEGORIES))
    tick_info_names = ("time_left", "log_p_value_mean")
    outcome_names = ("return", "cpa", "util")

    def __init__(self, feature_dim: int, n_ticks: int) -> None:
        if feature_dim != len(FEATURE_NAMES):
            raise ValueError(f"plan {self.kind!r} reads v1 states of {len(FEATURE_NAMES)} features, got feature_dim {feature_dim}; "
                             "use plan='raw' for other feature sets")
        self.n_ticks = int(n_ticks)

    def check_feature_version(self, version: str) -> None:
        if version != FEATURE_VERSION:
            raise ValueError(f"plan {self.kind!r} reads {FEATURE_VERSION} states, the data has feature version {version!r}; "
                             "use plan='raw' for other feature sets")

    def plan(self, states: np.ndarray) -> np.ndarray:
        """v1 states of consecutive rows from row 0, (..., n, F) -> plan rows (..., n, 7) float32."""
        x = np.asarray(states, dtype=np.float64)
        budget, cpa = _column(x, "budget"), _column(x, "target_cpa")
        spend = _column(x, "spend")
        tick_spend = np.diff(spend, axis=-1, prepend=0.0)         # row r: spend of tick r - 1 (0 at row 0)
        lwc, p_value = _column(x, "last3_lwc_mean"), _column(x, "last3_p_value_mean")
        with np.errstate(divide="ignore", invalid="ignore"):
            price = np.where((lwc > 0) & (p_value > 0), lwc / (np.maximum(p_value, _MIN_P_VALUE) * cpa), 1.0)
            ratio = _column(x, "cpa_ratio")
            log_ratio = np.log(np.maximum(ratio, np.exp(-2.0)))
        columns = [
            _column(x, "budget_left"),
            np.log1p(np.maximum(tick_spend, 0.0) / (budget / self.n_ticks)),
            _column(x, "conversions") * cpa / budget,
            np.clip(log_ratio, -2.0, 2.0),
            np.clip(np.log(price), -3.0, 3.0),
            _column(x, "last3_win_rate"),
            _column(x, "cur_n_pv"),
        ]
        return np.stack(columns, axis=-1).astype(np.float32)

    def context(self, states: np.ndarray) -> np.ndarray:
        """The campaign, from any state row: (..., n, F) -> (..., 8) float32."""
        x = np.asarray(states, dtype=np.float64)[..., 0, :]
        onehot = x[..., _V1["category_0"]: _V1["category_0"] + N_CATEGORIES]
        return np.concatenate([np.log(x[..., [_V1["budget"], _V1["target_cpa"]]]), onehot], axis=-1).astype(np.float32)

    def tick_info(self, states: np.ndarray) -> np.ndarray:
        """What the inverse dynamics sees of each row's tick besides the plan: (..., n, F) -> (..., n, 2)."""
        x = np.asarray(states, dtype=np.float64)
        p_value = np.log(np.maximum(_column(x, "cur_p_value_mean"), _MIN_P_VALUE))
        return np.stack([_column(x, "time_left"), p_value], axis=-1).astype(np.float32)

    def can_act(self, states: np.ndarray) -> np.ndarray:
        """(..., n, F) -> (..., n) bool: the remaining budget lets the tick's bids count (the market
        zeroes the bids of an advertiser below ``min_remaining_budget``, whatever alpha it logs)."""
        x = np.asarray(states, dtype=np.float64)
        return _column(x, "budget_left") * _column(x, "budget") >= MarketConfig().min_remaining_budget

    def outcomes(self, terminal: np.ndarray, rank: np.ndarray, cpa_scale: float = 1.0,
                 task: str = DEFAULT_TASK) -> np.ndarray:
        """terminal (N, F) states after the day, rank (N,) efficiency ranks -> (N, 3) = (R, E, U);
        E is ``task``'s penalty against cpa_scale x C (1: the campaign's own target)."""
        x = np.asarray(terminal, dtype=np.float64)
        spend, conversions = _column(x, "spend"), _column(x, "conversions")
        budget, cpa = _column(x, "budget"), _column(x, "target_cpa")
        e = cpa_penalty(spend, conversions, cpa_scale * cpa, task_beta(task))
        u = np.clip(spend / budget, 0.0, 1.0)
        return np.stack([rank, e, u], axis=-1).astype(np.float32)


class DemandPlan(MarketPlan):
    """The market plan plus the campaign's demand of each tick: log1p(n_pv x mean p_value x C /
    (B / T)), the money a bid of alpha = C on every PV of the tick would offer, against an even
    day's pace. Known before the tick's bids (its PVs and their p_values are observed first), it
    tells the planner how heavy this campaign's own traffic is, which the market-wide PV count
    does not."""

    kind = "demand"
    channels = MARKET_CHANNELS + ("log_demand",)

    def plan(self, states: np.ndarray) -> np.ndarray:
        x = np.asarray(states, dtype=np.float64)
        money = _column(x, "cur_n_pv") * _column(x, "cur_p_value_mean") * _column(x, "target_cpa")
        demand = np.log1p(np.maximum(money, 0.0) / (_column(x, "budget") / self.n_ticks))
        return np.concatenate([super().plan(states), demand[..., None].astype(np.float32)], axis=-1)


class RawPlan:
    """Any feature set: the plan is the state itself, the context its first row, the outcome R."""

    kind = "raw"
    tick_info_names = ("time_left",)
    outcome_names = ("return",)

    def __init__(self, feature_dim: int, n_ticks: int) -> None:
        self.n_ticks = int(n_ticks)
        self.channels = tuple(f"state_{i}" for i in range(feature_dim))
        self.context_names = tuple(f"first_state_{i}" for i in range(feature_dim))

    def check_feature_version(self, version: str) -> None:
        pass

    def plan(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float32)

    def context(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float32)[..., 0, :]

    def tick_info(self, states: np.ndarray) -> np.ndarray:
        n = np.shape(states)[-2]
        time_left = (self.n_ticks - np.arange(n, dtype=np.float64)) / self.n_ticks      # (n,)
        return np.broadcast_to(time_left[:, None], np.shape(states)[:-1] + (1,)).astype(np.float32)

    def can_act(self, states: np.ndarray) -> np.ndarray:
        return np.ones(np.shape(states)[:-1], dtype=bool)

    def outcomes(self, terminal: np.ndarray, rank: np.ndarray, cpa_scale: float = 1.0,
                 task: str = DEFAULT_TASK) -> np.ndarray:
        return np.asarray(rank, dtype=np.float32)[:, None]


PLAN_VIEWS = {"market": MarketPlan, "demand": DemandPlan, "raw": RawPlan}


def make_plan_view(kind: str, feature_dim: int, n_ticks: int):
    if kind not in PLAN_VIEWS:
        raise ValueError(f"plan: unknown plan view {kind!r}; choose one of {', '.join(PLAN_VIEWS)}")
    return PLAN_VIEWS[kind](feature_dim, n_ticks)


def efficiency_rank(efficiency: np.ndarray) -> np.ndarray:
    """(N,) efficiencies -> (N,) ranks in [0, 1]: lowest 0, highest 1, ties share their mean rank."""
    e = np.asarray(efficiency, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or not np.isfinite(e).all():
        raise ValueError(f"campaign_efficiency: must be a non-empty 1-D array of finite numbers, got shape {e.shape}")
    if e.size == 1:
        return np.full(1, 0.5)
    s = np.sort(e)
    mean_rank = 0.5 * (np.searchsorted(s, e, side="left") + np.searchsorted(s, e, side="right") - 1)
    return mean_rank / (e.size - 1)


def whole_trajectories(dataset: Any) -> dict[str, np.ndarray]:
    """obs (N, T, F), terminal (N, F), action (N, T), campaign efficiency (N,) and the task of a dataset.

    ``aigb.data.TrajectoryDataset`` gives them through ``trajectories()``; an in-memory dataset
    with ``obs`` and ``action`` arrays (the contract checker's) works too, its last state standing
    in for the state after the day.
    """
    if hasattr(dataset, "trajectories") and callable(dataset.trajectories):
        tr = dataset.trajectories()
        obs, terminal, action = tr["obs"], tr["terminal"], tr["action"]
    elif hasattr(dataset, "obs") and hasattr(dataset, "action"):
        obs, action = dataset.obs, dataset.action
        terminal = getattr(dataset, "terminal", None)
        terminal = obs[:, -1] if terminal is None else terminal
    else:
        raise ValueError("dataset: DiffBid needs whole trajectories (a trajectories() method, or obs and action arrays)")
    if not hasattr(dataset, "campaign_efficiency"):
        raise ValueError("dataset: DiffBid needs campaign_efficiency (score x C / B per campaign) for its return condition")
    obs = np.asarray(obs, dtype=np.float32)
    return {"obs": obs, "terminal": np.asarray(terminal, dtype=np.float32),
            "action": np.asarray(action, dtype=np.float32), "efficiency": np.asarray(dataset.campaign_efficiency, dtype=np.float64),
            "task": getattr(dataset, "task", DEFAULT_TASK)}


class RobustScaler:
    """Per-channel affine map to about [-1, 1] from the 1st and 99th percentiles of training data.

    ``unit = (x - center) / half`` with center the mid-point and half the half-range of the
    percentiles (1 for a channel without spread), so outliers stay finite and a heavy tail does
    not squeeze the bulk, unlike min-max; the statistics travel in the checkpoint.
    """

    LOW, HIGH = 0.01, 0.99

    def __init__(self, center, half) -> None:
        self.center = np.asarray(center, dtype=np.float32).reshape(-1)
        half = np.asarray(half, dtype=np.float32).reshape(-1)
        if self.center.shape != half.shape or not (np.isfinite(self.center).all() and np.isfinite(half).all()):
            raise ValueError("RobustScaler: center and half must be finite vectors of one shape")
        self.half = np.where(half > 1e-6, half, 1.0).astype(np.float32)

    @classmethod
    def fit(cls, x: np.ndarray) -> "RobustScaler":
        """x (..., K) -> a scaler of K channels."""
        flat = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        lo, hi = np.quantile(flat, cls.LOW, axis=0), np.quantile(flat, cls.HIGH, axis=0)
        return cls(0.5 * (lo + hi), 0.5 * (hi - lo))

    @classmethod
    def identity(cls, k: int) -> "RobustScaler":
        return cls(np.zeros(k), np.ones(k))

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def to_unit(self, x):
        """Works on numpy arrays and torch tensors (..., K)."""
        center, half = self._like(x)
        return (x - center) / half

    def from_unit(self, u):
        center, half = self._like(u)
        return u * half + center

    def _like(self, x):
        if isinstance(x, np.ndarray):
            return self.center, self.half
        import torch

        return (torch.as_tensor(self.center, device=x.device, dtype=x.dtype),
                torch.as_tensor(self.half, device=x.device, dtype=x.dtype))

    def state_dict(self) -> dict:
        import torch

        return {"center": torch.from_numpy(self.center.copy()), "half": torch.from_numpy(self.half.copy())}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "RobustScaler":
        return cls(np.asarray(state["center"]), np.asarray(state["half"]))
