"""Per-tick traces of an evaluation beyond ``results.parquet``: bid multipliers and plans.

``aigb.eval.rollout.rollout`` adds two optional fields (``TRACE_FIELDS``) to each completed row:

* ``tick_alpha`` (n_ticks,): the effective bid multiplier of each tick, ``sum(bids) / sum(p_value)``
  over the tick's PVs as the market saw them (money per expected conversion; 0 once the budget has
  run out, NaN in a tick without traffic). The report divides it by the target CPA.
* ``plans``: only for a strategy that plans its delivery and has a non-empty ``plans`` attribute
  after the episode: ``(tick, planned_remaining_budget)`` pairs, the array being the planned
  remaining budget in money at the start of each tick, (n_ticks + 1,) or (n_ticks,); rows before
  ``tick`` are the realised prefix. A strategy whose ``plans`` hold richer objects instead offers
  ``planned_remaining_budget(i)`` for its i-th plan, made at tick i (``DiffBidStrategy``); one that
  cannot say (a plan without a budget channel raises ``ValueError``) contributes no plans.

``write_traces(rows, out_dir)`` stores them next to the results, keyed like them by (strategy,
seed, period, advertiser):

    ticks.parquet   one row per campaign row: strategy, seed, period, advertiser, tick_alpha (list)
    plans.parquet   one row per (campaign row, plan, tick): ..., plan_tick, tick, planned_remaining_budget

``aigb.eval.evaluate`` calls it with the rows it writes; readers treat both files as optional.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from aigb.data.parquet import file_metadata, write_table_atomic

__all__ = ["TRACE_FIELDS", "TICKS_FILE", "PLANS_FILE", "TICKS_SCHEMA", "PLANS_SCHEMA", "tick_traces", "write_traces"]

TRACE_FIELDS = ("tick_alpha", "plans")
TICKS_FILE, PLANS_FILE = "ticks.parquet", "plans.parquet"

_KEY = [("strategy", pa.string()), ("seed", pa.int64()), ("period", pa.int64()), ("advertiser", pa.int64())]
TICKS_SCHEMA = pa.schema(_KEY + [("tick_alpha", pa.list_(pa.float64()))])
PLANS_SCHEMA = pa.schema(_KEY + [("plan_tick", pa.int64()), ("tick", pa.int64()),
                                 ("planned_remaining_budget", pa.float64())])


def tick_traces(strategy, history: Mapping[str, np.ndarray], advertiser: int) -> dict:
    """The trace fields of one finished campaign (see the module docstring)."""
    bid_mean = np.asarray(history["bid_mean"][:, advertiser], dtype=np.float64)       # (n_ticks,)
    pv_mean = np.asarray(history["p_value_mean"][:, advertiser], dtype=np.float64)    # (n_ticks,)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(pv_mean > 0, bid_mean / pv_mean, np.nan)
    out = {"tick_alpha": alpha.tolist()}
    plans = getattr(strategy, "plans", None)
    if plans:
        budget_of = getattr(strategy, "planned_remaining_budget", None)
        try:
            pairs = [(t, budget_of(t)) for t in range(len(plans))] if callable(budget_of) else list(plans)
        except ValueError:
            return out
        out["plans"] = [(int(t), np.asarray(p, dtype=np.float64).tolist()) for t, p in pairs]
    return out


def write_traces(rows: Sequence[Mapping], out_dir) -> list[Path]:
    """Write ``ticks.parquet`` (rows with ``tick_alpha``) and ``plans.parquet`` (rows with plans)
    into ``out_dir``; a file with nothing to hold is not written, and one an earlier evaluation left
    there is removed, so the traces always belong to the results beside them. Returns the paths written."""
    ticks = {name: [] for name in TICKS_SCHEMA.names}
    plans = {name: [] for name in PLANS_SCHEMA.names}
    for row in rows:
        key = {k: row[k] for k, _ in _KEY}
        if row.get("tick_alpha") is not None:
            for k, v in key.items():
                ticks[k].append(v)
            ticks["tick_alpha"].append(list(row["tick_alpha"]))
        for plan_tick, planned in row.get("plans") or ():
            for t, value in enumerate(planned):
                for k, v in key.items():
                    plans[k].append(v)
                plans["plan_tick"].append(int(plan_tick))
                plans["tick"].append(t)
                plans["planned_remaining_budget"].append(float(value))
    out_dir = Path(out_dir)
    written = []
    for name, columns, schema in ((TICKS_FILE, ticks, TICKS_SCHEMA), (PLANS_FILE, plans, PLANS_SCHEMA)):
        path = out_dir / name
        if columns["strategy"]:
            write_table_atomic(pa.table(columns, schema=schema), path, file_metadata("evaluation-traces"))
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    return written
