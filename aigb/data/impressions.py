"""The per-impression log of a simulated period (AuctionNet's 18 columns, ``IMPRESSION_SCHEMA``).

One row per (PV, advertiser) per tick; a default period holds ~24M rows, so the log is built tick
by tick from ``TickRecord`` with array operations only and streamed to Parquet. Within a tick rows
are ordered by advertiser, then PV: an advertiser's rows of a tick are contiguous, which keeps the
campaign columns in long runs (they compress to almost nothing) and makes per-advertiser reads
cheap.

Column meanings where the market leaves a choice:
* ``bid``: the effective bid the auction ranked (0 where the advertiser's budget was too low or a
  budget-cap re-run dropped the PV), so ``cost <= bid`` holds row by row;
* ``cost``: the GSP price of the slot won (0 without a slot). It is paid only when ``exposed``, so
  an advertiser's spend is the sum of ``cost`` over exposed rows;
* ``remaining_budget``: before the tick; ``is_end``: the advertiser's period is over after this
  tick, because it is the last tick or because the remaining budget after the tick is below
  ``MarketConfig.min_remaining_budget`` (from then on the market lets it bid nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from aigb.data.schema import IMPRESSION_SCHEMA
from aigb.sim.period import TickRecord
from aigb.types import Campaign, MarketConfig

__all__ = ["impression_columns", "impression_batch"]


def impression_columns(record: TickRecord, period: int, campaigns: Sequence[Campaign], config: MarketConfig,
                       pv_offset: int) -> dict[str, np.ndarray]:
    """One tick's log as numpy columns, rows ordered by (advertiser, pv).

    Args:
        record: the tick as ``PeriodSim.step`` returned it.
        period: the period index.
        campaigns: the period's campaigns in advertiser order.
        config: the market (slots, last tick, budget threshold).
        pv_offset: PVs of the period's earlier ticks; the tick's PV i has ``pv_index = pv_offset + i``.
    """
    outcome = record.outcome
    n_pv, n_adv = outcome.bids.shape
    if len(campaigns) != n_adv:
        raise ValueError(f"campaigns: expected {n_adv} (one per advertiser of the tick), got {len(campaigns)}")
    if pv_offset < 0:
        raise ValueError(f"pv_offset: must be >= 0, got {pv_offset}")

    # Scatter the per-(PV, slot) results onto the (PV, advertiser) grid. A PV's sold slots have
    # distinct winners, so each grid cell receives at most one slot.
    sold = outcome.winner >= 0                                # (n_pv, n_slots)
    pv_of, slot_of = np.nonzero(sold)                         # (n_sold,)
    adv_of = outcome.winner[pv_of, slot_of]
    slot = np.zeros((n_pv, n_adv), dtype=np.int8)
    cost = np.zeros((n_pv, n_adv), dtype=np.float64)
    exposed = np.zeros((n_pv, n_adv), dtype=bool)
    conversion = np.zeros((n_pv, n_adv), dtype=bool)
    slot[pv_of, adv_of] = slot_of + 1
    cost[pv_of, adv_of] = outcome.price[pv_of, slot_of]
    exposed[pv_of, adv_of] = outcome.exposed[pv_of, slot_of]
    conversion[pv_of, adv_of] = outcome.conversion[pv_of, slot_of]

    remaining = np.asarray(record.stats["remaining_budget"], dtype=np.float64)  # (n_adv,) before the tick
    after = remaining - outcome.cost
    is_end = np.full(n_adv, record.tick == config.n_ticks - 1) | (after < config.min_remaining_budget)

    def per_adv(values, dtype):
        return np.repeat(np.asarray(values), n_pv).astype(dtype, copy=False)

    def grid(values):  # (n_pv, n_adv) -> advertiser-major rows
        return np.ascontiguousarray(np.asarray(values).T).reshape(-1)

    return {
        "period": np.full(n_pv * n_adv, period, dtype=np.int32),
        "advertiser": per_adv([c.advertiser for c in campaigns], np.int16),
        "category": per_adv([c.category for c in campaigns], np.int8),
        "budget": per_adv([c.budget for c in campaigns], np.float64),
        "target_cpa": per_adv([c.target_cpa for c in campaigns], np.float64),
        "tick": np.full(n_pv * n_adv, record.tick, dtype=np.int16),
        "remaining_budget": per_adv(remaining, np.float64),
        "pv_index": np.tile(np.arange(pv_offset, pv_offset + n_pv, dtype=np.int32), n_adv),
        "p_value": grid(record.p_value),
        "p_value_sigma": grid(record.p_value_sigma),
        "bid": grid(outcome.bids),
        "won": grid(slot > 0),
        "slot": grid(slot),
        "cost": grid(cost),
        "exposed": grid(exposed),
        "conversion": grid(conversion),
        "least_winning_cost": np.tile(outcome.least_winning_cost, n_adv),
        "is_end": per_adv(is_end, bool),
    }


def impression_batch(record: TickRecord, period: int, campaigns: Sequence[Campaign], config: MarketConfig,
                     pv_offset: int) -> pa.RecordBatch:
    """``impression_columns`` as a RecordBatch of ``IMPRESSION_SCHEMA``."""
    columns = impression_columns(record, period, campaigns, config, pv_offset)
    return pa.RecordBatch.from_arrays([pa.array(columns[f.name], type=f.type) for f in IMPRESSION_SCHEMA],
                                      schema=IMPRESSION_SCHEMA)
