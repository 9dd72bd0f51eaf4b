"""Per-tick trajectories of one simulated period: the table offline learners train on.

One row per (period, advertiser, tick), rows ordered by advertiser then tick so that each campaign
is a contiguous block of ``n_ticks`` rows. Columns (``aigb.data.schema.trajectory_schema``):

* the campaign (period, advertiser, category, budget, target_cpa) and the tick;
* every per-tick statistic of ``aigb.types.TICK_STAT_FIELDS``, as the simulator produced it;
* ``state``: the features at the start of the tick, from ``aigb.features.trajectory_features``,
  the very function online strategies call through ``build_features``; ``next_state``: the next
  tick's state, and on the last tick the state after the period (``build_features`` on the full
  history, no PVs left), which is what a strategy would observe after the period ends;
* ``alpha``: the behaviour policy's multiplier of the tick (bid = alpha * p_value) and
  ``action = log(alpha / target_cpa)`` clipped to [ACTION_LOW, ACTION_HIGH]. An advertiser whose
  budget is exhausted still records the alpha its controller chose, although the market zeroed
  its bids;
* ``reward_sparse`` (conversions), ``reward_dense`` (sum of p_value of exposed PVs);
* ``score_to_go[t] = sum_{s >= t} conversions[s] * cpa_penalty(total cost, total conversions, C)``:
  the CPA penalty of the campaign's final outcome spread over its remaining conversions, so
  ``score_to_go[0]`` is the campaign's score (``aigb.score.score``) and it decreases to the last
  tick's conversions times the penalty; in a Max-Return dataset (``task="max-return"``) the penalty
  is 1 (``aigb.score.task_beta``) and ``score_to_go`` counts the conversions still to come;
* ``done``: the last tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from aigb.data.schema import trajectory_schema, validate_trajectories
from aigb.features import FEATURE_DIM, build_features, trajectory_features
from aigb.score import DEFAULT_TASK, cpa_penalty, task_beta
from aigb.types import ACTION_HIGH, ACTION_LOW, TICK_STAT_FIELDS, Campaign

__all__ = ["TRAJECTORY_SCHEMA", "trajectory_columns", "trajectory_table", "score_to_go"]

TRAJECTORY_SCHEMA: pa.Schema = trajectory_schema(FEATURE_DIM)
"""The schema of the trajectory files this aigb writes (states of ``FEATURE_DIM`` features)."""


def score_to_go(cost: np.ndarray, conversions: np.ndarray, target_cpa: np.ndarray, task: str = DEFAULT_TASK) -> np.ndarray:
    """The task's score of the rest of each period from every tick (CPA-penalised for Target-CPA).

    cost, conversions: (..., n_ticks) per-tick values; target_cpa: (...). Returns (..., n_ticks)
    float64 whose tick-0 value equals ``aigb.score.score`` of the whole period under ``task``.
    """
    cost = np.asarray(cost, dtype=np.float64)
    conversions = np.asarray(conversions, dtype=np.float64)
    penalty = cpa_penalty(cost.sum(axis=-1), conversions.sum(axis=-1), target_cpa, task_beta(task))  # (...)
    to_go = np.flip(np.cumsum(np.flip(conversions, axis=-1), axis=-1), axis=-1)
    return to_go * np.asarray(penalty)[..., None]


def trajectory_columns(period: int, campaigns: Sequence[Campaign], history: Mapping[str, np.ndarray],
                       alpha: np.ndarray, task: str = DEFAULT_TASK) -> dict[str, np.ndarray]:
    """The trajectory table of one period as numpy columns, one row per (advertiser, tick).

    Args:
        period: the period index.
        campaigns: the period's campaigns, one per advertiser, in advertiser order.
        history: field of ``TICK_STAT_FIELDS`` -> (n_ticks, n_adv), as ``PeriodSim.history``.
        alpha: (n_ticks, n_adv) the multipliers the behaviour policies bid with (``TickRecord.alpha``).
        task: what ``score_to_go`` scores, "cpa" or "max-return" (``aigb.score.TASKS``).
    Returns:
        column -> (n_adv * n_ticks,) arrays; ``state`` and ``next_state`` are (n_rows, FEATURE_DIM).
    """
    missing = [f for f in TICK_STAT_FIELDS if f not in history]
    if missing:
        raise ValueError(f"history: missing tick statistics {missing}")
    alpha = np.asarray(alpha, dtype=np.float64)
    n_ticks, n_adv = alpha.shape
    if len(campaigns) != n_adv:
        raise ValueError(f"campaigns: expected {n_adv} (one per advertiser of alpha), got {len(campaigns)}")
    for f in TICK_STAT_FIELDS:
        if np.shape(history[f]) != (n_ticks, n_adv):
            raise ValueError(f"history[{f!r}]: expected shape {(n_ticks, n_adv)}, got {np.shape(history[f])}")
    if not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
        raise ValueError("alpha: every multiplier must be finite and > 0 (controlled advertisers have no behaviour alpha)")

    # (n_adv, n_ticks) layout: a campaign's ticks are contiguous, like the rows of the table.
    per_adv = {f: np.asarray(history[f], dtype=np.float64).T for f in TICK_STAT_FIELDS}
    budget = np.array([c.budget for c in campaigns], dtype=np.float64)        # (n_adv,)
    target_cpa = np.array([c.target_cpa for c in campaigns], dtype=np.float64)  # (n_adv,)
    category = np.array([c.category for c in campaigns], dtype=np.int64)       # (n_adv,)

    state = trajectory_features(per_adv, budget, target_cpa, category)  # (n_adv, n_ticks, D)
    # After the last tick: the whole history and an empty tick, exactly what BiddingEnv observes
    # once the period is over.
    terminal = build_features(per_adv, n_ticks, 0, 0.0, budget, target_cpa, category)  # (n_adv, D)
    next_state = np.concatenate([state[:, 1:], terminal[:, None]], axis=1)

    alpha_rows = alpha.T  # (n_adv, n_ticks)
    action = np.clip(np.log(alpha_rows / target_cpa[:, None]), ACTION_LOW, ACTION_HIGH)
    n_rows = n_adv * n_ticks

    def campaign_col(values, dtype):
        return np.repeat(np.asarray(values), n_ticks).astype(dtype)

    columns: dict[str, np.ndarray] = {
        "period": np.full(n_rows, period, dtype=np.int32),
        "advertiser": campaign_col([c.advertiser for c in campaigns], np.int16),
        "category": campaign_col(category, np.int8),
        "budget": campaign_col(budget, np.float64),
        "target_cpa": campaign_col(target_cpa, np.float64),
        "tick": np.tile(np.arange(n_ticks), n_adv).astype(np.int16),
    }
    for f in TICK_STAT_FIELDS:
        columns[f] = per_adv[f].reshape(-1).astype(np.int32 if f == "n_pv" else np.float64)
    columns.update({
        "state": state.reshape(n_rows, -1),
        "next_state": next_state.reshape(n_rows, -1),
        "alpha": alpha_rows.reshape(-1),
        "action": action.reshape(-1).astype(np.float32),
        "reward_sparse": per_adv["conversions"].reshape(-1),
        "reward_dense": per_adv["exposed_p_value"].reshape(-1),
        "score_to_go": score_to_go(per_adv["cost"], per_adv["conversions"], target_cpa, task).reshape(-1),
        "done": np.tile(np.arange(n_ticks) == n_ticks - 1, n_adv),
    })
    return columns


def _vectors(values: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=np.float32)  # (n_rows, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def trajectory_table(period: int, campaigns: Sequence[Campaign], history: Mapping[str, np.ndarray],
                     alpha: np.ndarray, task: str = DEFAULT_TASK) -> pa.Table:
    """``trajectory_columns`` as a validated table of ``TRAJECTORY_SCHEMA``.

    Raises ValueError naming the first bad row if the table breaks the schema's rules (a simulator
    bug must not reach a dataset).
    """
    columns = trajectory_columns(period, campaigns, history, alpha, task)
    arrays = []
    for field in TRAJECTORY_SCHEMA:
        value = columns[field.name]
        if field.name in ("state", "next_state"):
            arrays.append(_vectors(value))
        else:
            arrays.append(pa.array(value, type=field.type))
    table = pa.Table.from_arrays(arrays, schema=TRAJECTORY_SCHEMA)
    bad = validate_trajectories(table)
    if bad:
        row, reason = bad.first()
        raise ValueError(f"trajectories of period {period}: {len(bad)} invalid row(s); first row {row}: {reason}")
    return table
