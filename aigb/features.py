"""THE feature builder: one function for building trajectories from logs and for bidding online.

Feature set v1: the 16 features AuctionNet published, with its "last 3 ticks" defect fixed (the
window is the three ticks before the current one, not the first three of the day), plus what the
published state lacked: budget, target CPA, category, cumulative spend and conversions and the
realised CPA so far. Statistics come from ``aigb.types.TICK_STAT_FIELDS`` of the advertiser's own
past ticks, so the simulator, the dataset builder and the learned strategies share one input.
Datasets and checkpoints record ``FEATURE_VERSION``; loaders refuse a mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from aigb.types import N_CATEGORIES

__all__ = ["FEATURE_VERSION", "FEATURE_NAMES", "FEATURE_DIM", "build_features", "trajectory_features",
           "check_feature_version", "FeatureVersionError"]

FEATURE_VERSION = "v1"
WINDOW = 3
CPA_RATIO_CAP = 10.0

FEATURE_NAMES: tuple[str, ...] = (
    "time_left", "budget_left",
    "hist_bid_mean", "hist_lwc_mean", "hist_p_value_mean", "hist_conversion_rate", "hist_win_rate",
    "last3_bid_mean", "last3_lwc_mean", "last3_p_value_mean", "last3_conversion_rate", "last3_win_rate",
    "cur_p_value_mean", "cur_n_pv", "last3_n_pv", "hist_n_pv",
    "budget", "target_cpa", "spend", "conversions", "realized_cpa", "cpa_ratio",
) + tuple(f"category_{i}" for i in range(N_CATEGORIES))
FEATURE_DIM = len(FEATURE_NAMES)

_MEANS = ("bid_mean", "lwc_mean", "p_value_mean", "conversion_rate", "win_rate")


class FeatureVersionError(ValueError):
    """Data or a checkpoint built with another feature set."""


def check_feature_version(found: str, where: str) -> None:
    if found != FEATURE_VERSION:
        raise FeatureVersionError(
            f"{where} was built with feature version {found!r}, but this aigb builds {FEATURE_VERSION!r}; "
            "regenerate the data / retrain the model with this version")


def build_features(history: Mapping[str, np.ndarray], n_ticks: int, cur_n_pv, cur_p_value_mean,
                   budget, target_cpa, category) -> np.ndarray:
    """The state at the start of the current tick.

    Args:
        history: field -> (..., t) own statistics of the t ticks already played (t may be 0).
        n_ticks: ticks in the period.
        cur_n_pv, cur_p_value_mean: (...) PV count and mean p_value of the current tick.
        budget, target_cpa, category: (...) campaign.
    Returns:
        (..., FEATURE_DIM) float32.
    """
    t = np.asarray(history["cost"]).shape[-1]
    lead = np.broadcast_shapes(np.shape(budget), np.asarray(history["cost"]).shape[:-1])
    budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), lead)
    target_cpa = np.broadcast_to(np.asarray(target_cpa, dtype=np.float64), lead)

    def mean_over(field, ticks):
        x = np.asarray(history[field], dtype=np.float64)[..., ticks]
        return x.mean(axis=-1) if x.shape[-1] else np.zeros(lead)

    def sum_over(field, ticks):
        return np.asarray(history[field], dtype=np.float64)[..., ticks].sum(axis=-1)

    everything = slice(0, t)
    last = slice(max(0, t - WINDOW), t)
    spend = sum_over("cost", everything)
    conversions = sum_over("conversions", everything)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpa = np.where(conversions > 0, spend / np.maximum(conversions, 1e-12), 0.0)
        # Spend without conversions counts as the worst ratio; no spend as on target.
        ratio = np.where(conversions > 0, cpa / target_cpa, np.where(spend > 0, CPA_RATIO_CAP, 1.0))
    columns = [
        np.full(lead, (n_ticks - t) / n_ticks),
        (budget - spend) / budget,
        *[mean_over(f, everything) for f in _MEANS],
        *[mean_over(f, last) for f in _MEANS],
        np.broadcast_to(np.asarray(cur_p_value_mean, dtype=np.float64), lead),
        np.broadcast_to(np.asarray(cur_n_pv, dtype=np.float64), lead),
        mean_over("n_pv", last),
        sum_over("n_pv", everything),
        budget, target_cpa, spend, conversions, cpa, np.minimum(ratio, CPA_RATIO_CAP),
    ]
    onehot = np.asarray(category)[..., None] == np.arange(N_CATEGORIES)
    onehot = np.broadcast_to(onehot, lead + (N_CATEGORIES,))
    return np.concatenate([np.stack(columns, axis=-1), onehot], axis=-1).astype(np.float32)


def trajectory_features(history: Mapping[str, np.ndarray], budget, target_cpa, category) -> np.ndarray:
    """States of every tick of whole periods from their logs.

    history: field -> (..., n_ticks) statistics of complete periods. Returns (..., n_ticks, D): row t
    is exactly what ``build_features`` gives a strategy online at the start of tick t.
    """
    n_ticks = np.asarray(history["cost"]).shape[-1]
    states = [
        build_features({f: np.asarray(v)[..., :t] for f, v in history.items()}, n_ticks,
                       np.asarray(history["n_pv"])[..., t], np.asarray(history["p_value_mean"])[..., t],
                       budget, target_cpa, category)
        for t in range(n_ticks)
    ]
    return np.stack(states, axis=-2)


# ---------------------------------------------------------------------------------------------
# Feature sets: v1 (above) and AuctionNet's published 16-feature state

AUCTIONNET_FEATURE_VERSION = "auctionnet16"
"""AuctionNet's own 16-feature state, exactly as its converter (``TrainDataGenerator``) writes the
public rlData files: history means are means of per-tick means, "last 3" is the three ticks before
the current one (pandas ``rolling(3).shift(1)``), the PV count of the last 3 ticks is their sum.
No budget, CPA or category: a policy trained on it sees what AuctionNet's baselines saw."""

AUCTIONNET_FEATURE_NAMES: tuple[str, ...] = (
    "time_left", "budget_left", "hist_bid_mean", "last3_bid_mean", "hist_lwc_mean", "hist_p_value_mean",
    "hist_conversion_rate", "hist_win_rate", "last3_lwc_mean", "last3_p_value_mean", "last3_conversion_rate",
    "last3_win_rate", "cur_p_value_mean", "cur_n_pv", "last3_n_pv_sum", "hist_n_pv_sum",
)

FEATURE_SETS: dict[str, tuple[str, ...]] = {FEATURE_VERSION: FEATURE_NAMES, AUCTIONNET_FEATURE_VERSION: AUCTIONNET_FEATURE_NAMES}
"""Feature set name -> its feature names. Datasets and checkpoints record the name (``feature_version``)."""

__all__ += ["AUCTIONNET_FEATURE_VERSION", "AUCTIONNET_FEATURE_NAMES", "FEATURE_SETS", "check_feature_set",
            "auctionnet_features", "trajectory_auctionnet_features", "features_for", "auctionnet_state_from_history"]


def check_feature_set(found: str, where: str, expected: str | None = None) -> str:
    """``found`` if it is a known feature set (and ``expected``, when given); else
    ``FeatureVersionError`` naming ``where`` and both sets."""
    if found not in FEATURE_SETS:
        raise FeatureVersionError(f"{where}: unknown feature set {found!r}; this aigb builds {', '.join(FEATURE_SETS)}")
    if expected is not None and found != expected:
        raise FeatureVersionError(f"{where}: built with feature set {found!r}, but {expected!r} is expected; "
                                  "train and serve with the same feature set")
    return found


def auctionnet_features(history: Mapping[str, np.ndarray], n_ticks: int, cur_n_pv, cur_p_value_mean, budget) -> np.ndarray:
    """AuctionNet's 16-feature state at the start of the current tick from own tick statistics.

    Args:
        history: field of ``aigb.types.TICK_STAT_FIELDS`` -> (..., t) statistics of the t ticks played.
        n_ticks: ticks in the period (AuctionNet: 48).
        cur_n_pv, cur_p_value_mean: (...) the current tick's PV count and mean p_value.
        budget: (...) the campaign's budget.
    Returns:
        (..., 16) float32, ``AUCTIONNET_FEATURE_NAMES``.
    """
    cost = np.asarray(history["cost"], dtype=np.float64)
    t = cost.shape[-1]
    lead = np.broadcast_shapes(np.shape(budget), cost.shape[:-1])
    budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), lead)

    def mean_over(field, ticks):
        x = np.asarray(history[field], dtype=np.float64)[..., ticks]
        return x.mean(axis=-1) if x.shape[-1] else np.zeros(lead)

    def sum_over(field, ticks):
        return np.broadcast_to(np.asarray(history[field], dtype=np.float64)[..., ticks].sum(axis=-1), lead)

    everything, last = slice(0, t), slice(max(0, t - WINDOW), t)
    with np.errstate(divide="ignore", invalid="ignore"):
        budget_left = np.where(budget > 0, (budget - cost.sum(axis=-1)) / budget, 0.0)
    columns = [
        np.full(lead, (n_ticks - t) / n_ticks), budget_left,
        mean_over("bid_mean", everything), mean_over("bid_mean", last),
        mean_over("lwc_mean", everything), mean_over("p_value_mean", everything),
        mean_over("conversion_rate", everything), mean_over("win_rate", everything),
        mean_over("lwc_mean", last), mean_over("p_value_mean", last),
        mean_over("conversion_rate", last), mean_over("win_rate", last),
        np.broadcast_to(np.asarray(cur_p_value_mean, dtype=np.float64), lead),
        np.broadcast_to(np.asarray(cur_n_pv, dtype=np.float64), lead),
        sum_over("n_pv", last), sum_over("n_pv", everything),
    ]
    return np.stack(columns, axis=-1).astype(np.float32)


def trajectory_auctionnet_features(history: Mapping[str, np.ndarray], budget) -> np.ndarray:
    """``auctionnet_features`` of every tick of whole periods: history field -> (..., n_ticks);
    returns (..., n_ticks, 16)."""
    n_ticks = np.asarray(history["cost"]).shape[-1]
    return np.stack([
        auctionnet_features({f: np.asarray(v)[..., :t] for f, v in history.items()}, n_ticks,
                            np.asarray(history["n_pv"])[..., t], np.asarray(history["p_value_mean"])[..., t], budget)
        for t in range(n_ticks)], axis=-2)


def features_for(feature_set: str, history: Mapping[str, np.ndarray], n_ticks: int, cur_n_pv, cur_p_value_mean,
                 budget, target_cpa, category) -> np.ndarray:
    """The state of ``feature_set`` at the start of the current tick (see ``build_features``)."""
    if feature_set == FEATURE_VERSION:
        return build_features(history, n_ticks, cur_n_pv, cur_p_value_mean, budget, target_cpa, category)
    if feature_set == AUCTIONNET_FEATURE_VERSION:
        return auctionnet_features(history, n_ticks, cur_n_pv, cur_p_value_mean, budget)
    check_feature_set(feature_set, "feature_set")
    raise AssertionError("unreachable")


def auctionnet_state_from_history(time_step_index: int, p_values, history_p_value_info, history_bid,
                                  history_auction_result, history_impression_result, history_least_winning_cost,
                                  budget: float, remaining_budget: float, n_ticks: int = 48) -> np.ndarray:
    """AuctionNet's 16-feature state from the competition's ``bidding`` arguments (per past tick:
    ``historyPValueInfo[t]`` (n_pv, 2), ``historyBid[t]`` (n_pv,), ``historyAuctionResult[t]``
    (n_pv, 3) = (won, slot, cost), ``historyImpressionResult[t]`` (n_pv, 2) = (exposed, conversion),
    ``historyLeastWinningCost[t]`` (n_pv,)) and the harness's ``remaining_budget``. Equals
    ``auctionnet_features`` of the same ticks; returns (16,) float32."""
    t = int(time_step_index)
    if not len(history_bid) == len(history_p_value_info) == len(history_auction_result) == len(history_impression_result) \
            == len(history_least_winning_cost) == t:
        raise ValueError(f"history: expected {t} past ticks in every history argument at timeStepIndex {t}")

    def per_tick(arrays, col=None):
        out = []
        for a in arrays:
            a = np.asarray(a, dtype=np.float64)
            a = a if col is None else a.reshape(len(a), -1)[:, col]
            out.append(a.mean() if a.size else 0.0)
        return np.asarray(out, dtype=np.float64)

    cost = np.zeros(t)
    if t:  # only the spend so far matters (budget_left): the harness's remaining budget carries it
        cost[-1] = float(budget) - float(remaining_budget)
    history = {
        "bid_mean": per_tick(history_bid), "lwc_mean": per_tick(history_least_winning_cost),
        "p_value_mean": per_tick(history_p_value_info, 0), "conversion_rate": per_tick(history_impression_result, 1),
        "win_rate": per_tick(history_auction_result, 0),
        "n_pv": np.asarray([len(np.asarray(b)) for b in history_bid], dtype=np.float64),
        "cost": cost,
    }
    p = np.asarray(p_values, dtype=np.float64)
    return auctionnet_features(history, n_ticks, p.size, p.mean() if p.size else 0.0, budget)
