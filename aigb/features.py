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
