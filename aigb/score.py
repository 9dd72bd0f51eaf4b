"""The benchmark's score: one definition for the simulator, the datasets and the evaluation.

    score = conversions * min(1, (C / realized_cpa) ** beta),  realized_cpa = cost / conversions

A campaign with no conversions scores 0; one with conversions at zero cost has CPA 0 and no penalty.

Tasks (the AIGB paper's two families, Guo et al. KDD 2024, section 5): ``"cpa"`` (Target-CPA, the
benchmark and the default everywhere) scores with the CPA penalty above; ``"max-return"`` has a
budget only, so its score is the conversions: beta = 0 makes the penalty exactly 1. ``task_beta``
is the one place that maps a task to its score; the oracle bound, the datasets' rewards and the
evaluation all go through it.
"""

from __future__ import annotations

import numpy as np

from aigb.types import ConfigError

__all__ = ["DEFAULT_BETA", "TASKS", "DEFAULT_TASK", "check_task", "task_beta", "realized_cpa", "cpa_penalty", "score"]

DEFAULT_BETA = 2.0
TASKS: tuple[str, ...] = ("cpa", "max-return")
"""Target-CPA (budget and CPA, the benchmark) and Max-Return (budget only)."""
DEFAULT_TASK = "cpa"
_TASK_BETA = {"cpa": DEFAULT_BETA, "max-return": 0.0}


def check_task(task, field: str = "task") -> str:
    """``task`` if it is one of ``TASKS``; otherwise a ConfigError naming ``field`` and the choices."""
    if task not in TASKS:
        raise ConfigError(f"{field}: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def task_beta(task) -> float:
    """The score's CPA exponent under ``task``: ``DEFAULT_BETA`` for Target-CPA, 0 for Max-Return
    (no CPA term, the score is the conversions)."""
    return _TASK_BETA[check_task(task)]


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
