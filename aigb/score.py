"""The benchmark's score: one definition for the simulator, the datasets and the evaluation.

    score = conversions * min(1, (C / realized_cpa) ** beta),  realized_cpa = cost / conversions

A campaign with no conversions scores 0; one with conversions at zero cost has CPA 0 and no penalty.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BETA", "realized_cpa", "cpa_penalty", "score"]

DEFAULT_BETA = 2.0


def realized_cpa(cost, conversions):
    """Cost per conversion; NaN where there are no conversions."""
    cost = np.asarray(cost, dtype=np.float64)
    conversions = np.asarray(conversions, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(conversions > 0, cost / np.where(conversions > 0, conversions, 1.0), np.nan)


def cpa_penalty(cost, conversions, target_cpa, beta: float = DEFAULT_BETA):
    """``min(1, (C / realized_cpa) ** beta)``; 1 where there are no conversions or no cost."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    cost = np.asarray(cost, dtype=np.float64)
    conversions = np.asarray(conversions, dtype=np.float64)
    target_cpa = np.asarray(target_cpa, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(cost > 0, target_cpa * conversions / np.where(cost > 0, cost, 1.0), np.inf)
    return np.minimum(1.0, np.where(conversions > 0, ratio, 1.0) ** beta)


def score(conversions, cost, target_cpa, beta: float = DEFAULT_BETA):
    """The CPA-penalised score; works on scalars and arrays (broadcasting)."""
    conversions = np.asarray(conversions, dtype=np.float64)
    out = conversions * cpa_penalty(cost, conversions, target_cpa, beta)
    return out if out.ndim else float(out)
