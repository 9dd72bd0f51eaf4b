"""The bid levels of logged days, which teach a level planner what holding a level does: which
days are open-loop, from which tick a day holds its level, the level of every (day, tick), and the
per-tick support of the levels the data hold (numpy only)."""

from __future__ import annotations

import numpy as np

from aigb.algos.diffbid.config import OPEN_LOOP_AUTOCORR, SUPPORT_LEVELS

__all__ = ["open_loop_days", "held_from", "level_support", "remaining_levels"]


def open_loop_days(action: np.ndarray, active_ticks: np.ndarray, min_ticks: int = 12) -> np.ndarray:
    """(N,) bool: days whose actions over their active ticks (``action`` (N, T), ``active_ticks``
    (N,)) look open-loop, i.e. a level plus independent noise: lag-1 autocorrelation of the
    deviations from the day's mean < ``OPEN_LOOP_AUTOCORR``, over at least ``min_ticks`` ticks (a
    constant day counts as open-loop)."""
    action = np.asarray(action, dtype=np.float64)
    k = np.asarray(active_ticks, dtype=np.int64)
    live = np.arange(action.shape[1])[None] < k[:, None]
    mean = np.where(live, action, 0.0).sum(axis=1) / np.maximum(k, 1)
    d = np.where(live, action - mean[:, None], 0.0)
    num = (d[:, 1:] * d[:, :-1]).sum(axis=1)
    den = (d * d).sum(axis=1)
    autocorr = np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)
    return (autocorr < OPEN_LOOP_AUTOCORR) & (k >= min_ticks)


def held_from(action: np.ndarray, active_ticks: np.ndarray, open_loop: np.ndarray, min_ticks: int = 2) -> np.ndarray:
    """(N,) int: the first tick from which each day's logged actions say what holding a level
    does: 0 for an open-loop day (``open_loop`` (N,) bool); otherwise the start s of the run of
    actions exactly equal to the last active one (a_s = ... = a_{k-1}, k = active ticks) when it
    covers at least ``min_ticks`` ticks; T (no tick) when it does not."""
    action = np.asarray(action, dtype=np.float64)
    n, t_max = action.shape
    k = np.clip(np.asarray(active_ticks, dtype=np.int64), 1, t_max)
    ticks = np.arange(t_max)
    last = action[np.arange(n), k - 1][:, None]
    differs = (action != last) & (ticks[None] < k[:, None])                             # (N, T)
    start = np.where(differs.any(axis=1), t_max - np.argmax(differs[:, ::-1], axis=1), 0)   # after the last differing tick
    held = (k - start) >= min_ticks
    return np.where(np.asarray(open_loop, dtype=bool), 0, np.where(held, start, t_max)).astype(np.int64)


def level_support(level: np.ndarray, active_ticks: np.ndarray, days: np.ndarray | None = None) -> np.ndarray:
    """(len(SUPPORT_LEVELS), T): per tick t, the SUPPORT_LEVELS quantiles of ``level[:, t]`` over the
    days (``days`` (N,) bool, or (N, T) bool per day and tick; None: all) still bidding at t
    (t < active ticks); a tick with no such day takes the previous tick's column (the first:
    every day's)."""
    level = np.asarray(level, dtype=np.float64)
    active_ticks = np.asarray(active_ticks)
    n, t_max = level.shape
    chosen = np.ones((n, t_max), dtype=bool) if days is None or not np.any(days) else np.asarray(days, dtype=bool)
    if chosen.ndim == 1:
        chosen = np.repeat(chosen[:, None], t_max, axis=1)
    out = np.empty((SUPPORT_LEVELS.size, t_max))
    for t in range(t_max):
        live = chosen[:, t] & (active_ticks > t)
        if live.any():
            out[:, t] = np.quantile(level[live, t], SUPPORT_LEVELS)
        else:
            first = chosen[:, 0] if chosen[:, 0].any() else np.ones(n, dtype=bool)
            out[:, t] = out[:, t - 1] if t else np.quantile(level[first, 0], SUPPORT_LEVELS)
    return out


def remaining_levels(action: np.ndarray, active_ticks: np.ndarray) -> np.ndarray:
    """The bid level of every (campaign, tick): the mean of a_t .. a_{k-1}, k the campaign's active
    ticks (``action`` (N, T), ``active_ticks`` (N,) >= 1) -> (N, T) float64; ticks from k on (no
    bid acts any more) take a_{k-1}, the level the day ended on."""
    action = np.asarray(action, dtype=np.float64)
    n, t_max = action.shape
    k = np.clip(np.asarray(active_ticks, dtype=np.int64), 1, t_max)
    ticks = np.arange(t_max)
    live = np.where(ticks[None] < k[:, None], action, 0.0)
    tail = np.cumsum(live[:, ::-1], axis=1)[:, ::-1]                                   # sum over s >= t of live a_s
    count = np.maximum(k[:, None] - ticks[None], 1)
    last = action[np.arange(n), k - 1][:, None]
    return np.where(ticks[None] < k[:, None], tail / count, last)
