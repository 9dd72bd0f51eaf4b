"""The Parquet schemas of aigb's tables, defined once, and a vectorised validator for each.

Three tables:

* ``IMPRESSION_SCHEMA``: one row per (period, tick, pv, advertiser), AuctionNet's 18-column
  per-impression log in snake_case. Our simulator writes it and ``aigb.data.csv_import`` converts
  the public CSV logs into it (``IMPRESSION_CSV_COLUMNS`` maps the CSV names).
* ``trajectory_schema(n_features)``: our per-tick trajectory table, one row per (period,
  advertiser, tick), built from ``aigb.types.TICK_STAT_FIELDS`` plus state, action and rewards.
* ``AUCTIONNET_TRAJECTORY_SCHEMA``: the public AuctionNet trajectory CSVs as they are (16-feature
  state and their action = total bid / total p_value), kept apart so nobody mistakes their
  features for ours.

Each validator returns the offending row positions with a reason per row, so an importer can name
the line of a bad row and a writer can refuse a bad table. Validators never raise on bad data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aigb.types import TICK_STAT_FIELDS

__all__ = [
    "SCHEMA_VERSION",
    "IMPRESSION_SCHEMA",
    "IMPRESSION_CSV_COLUMNS",
    "IMPRESSION_DICTIONARY_COLUMNS",
    "AUCTIONNET_STATE_DIM",
    "AUCTIONNET_TRAJECTORY_SCHEMA",
    "AUCTIONNET_TRAJECTORY_CSV_COLUMNS",
    "trajectory_schema",
    "Violations",
    "validate_impressions",
    "validate_trajectories",
    "validate_auctionnet_trajectories",
]

SCHEMA_VERSION = 1
"""Bumped whenever a column of any table changes name, type or meaning."""

AUCTIONNET_STATE_DIM = 16
"""Features in the state of the public AuctionNet trajectories."""

# Tolerance of the GSP check cost <= bid: prices are copied bids, so only float noise remains.
_COST_TOLERANCE = 1e-9


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def _state_type(n_features: int) -> pa.DataType:
    return pa.list_(pa.float32(), n_features)


# (csv name, field): the order is the column order of the Parquet table.
_IMPRESSION_COLUMNS: tuple[tuple[str, pa.Field], ...] = (
    ("deliveryPeriodIndex", _field("period", pa.int32(), "delivery period (day) index")),
    ("advertiserNumber", _field("advertiser", pa.int16(), "advertiser slot in the market")),
    ("advertiserCategoryIndex", _field("category", pa.int8(), "industry category of the advertiser")),
    ("budget", _field("budget", pa.float64(), "budget of the period")),
    ("CPAConstraint", _field("target_cpa", pa.float64(), "target cost per conversion")),
    ("timeStepIndex", _field("tick", pa.int16(), "decision tick in the period (0-based)")),
    ("remainingBudget", _field("remaining_budget", pa.float64(), "budget left before the tick")),
    ("pvIndex", _field("pv_index", pa.int32(), "impression opportunity index in the period")),
    ("pValue", _field("p_value", pa.float32(), "predicted conversion probability if shown")),
    ("pValueSigma", _field("p_value_sigma", pa.float32(), "uncertainty of p_value")),
    ("bid", _field("bid", pa.float64(), "the advertiser's bid")),
    ("xi", _field("won", pa.bool_(), "the advertiser won a slot")),
    ("adSlot", _field("slot", pa.int8(), "slot won, 1..3; 0 = no slot")),
    ("cost", _field("cost", pa.float64(), "price of the slot (GSP: next highest bid)")),
    ("isExposed", _field("exposed", pa.bool_(), "the ad was shown")),
    ("conversionAction", _field("conversion", pa.bool_(), "the user converted")),
    ("leastWinningCost", _field("least_winning_cost", pa.float64(), "4th highest bid: the price to enter slot 3")),
    ("isEnd", _field("is_end", pa.bool_(), "the advertiser's period has ended (budget exhausted or last tick)")),
)

IMPRESSION_SCHEMA: pa.Schema = pa.schema([f for _, f in _IMPRESSION_COLUMNS])
IMPRESSION_DICTIONARY_COLUMNS: list[str] = ["period", "advertiser", "category", "budget", "target_cpa", "tick",
                                            "remaining_budget", "slot"]
"""Columns of the impression log with few distinct values per row group: dictionary-encoding only
these (not the per-PV floats, where it never pays) writes a 24M-row log with ~60 % less CPU and
a ~20 % smaller file."""
IMPRESSION_CSV_COLUMNS: dict[str, str] = {csv: f.name for csv, f in _IMPRESSION_COLUMNS}
"""AuctionNet CSV column name -> our column name, in table order."""

_AUCTIONNET_TRAJECTORY_COLUMNS: tuple[tuple[str, pa.Field], ...] = (
    ("deliveryPeriodIndex", _field("period", pa.int32(), "delivery period (day) index")),
    ("advertiserNumber", _field("advertiser", pa.int16(), "advertiser slot in the market")),
    ("advertiserCategoryIndex", _field("category", pa.int8(), "industry category of the advertiser")),
    ("budget", _field("budget", pa.float64(), "budget of the period")),
    ("CPAConstraint", _field("target_cpa", pa.float64(), "target cost per conversion")),
    ("realAllCost", _field("real_all_cost", pa.float64(), "exposed cost over the whole period")),
    ("realAllConversion", _field("real_all_conversion", pa.float64(), "conversions over the whole period")),
    ("timeStepIndex", _field("tick", pa.int16(), "decision tick in the period (0-based)")),
    ("state", _field("state", _state_type(AUCTIONNET_STATE_DIM), "AuctionNet's 16 published features")),
    ("action", _field("action", pa.float64(), "total bid / total p_value of the tick")),
    ("reward", _field("reward", pa.float64(), "conversions of exposed PVs in the tick")),
    ("reward_continuous", _field("reward_continuous", pa.float64(), "sum of p_value of exposed PVs in the tick")),
    ("done", _field("done", pa.bool_(), "last tick of the advertiser's period")),
    ("next_state", _field("next_state", _state_type(AUCTIONNET_STATE_DIM), "state of the next tick; null when done", nullable=True)),
)

AUCTIONNET_TRAJECTORY_SCHEMA: pa.Schema = pa.schema([f for _, f in _AUCTIONNET_TRAJECTORY_COLUMNS])
AUCTIONNET_TRAJECTORY_CSV_COLUMNS: dict[str, str] = {csv: f.name for csv, f in _AUCTIONNET_TRAJECTORY_COLUMNS}
"""AuctionNet trajectory CSV column name -> our column name, in table order."""

_CAMPAIGN_FIELDS: tuple[pa.Field, ...] = (
    _field("period", pa.int32(), "delivery period (day) index"),
    _field("advertiser", pa.int16(), "advertiser slot in the market"),
    _field("category", pa.int8(), "industry category of the advertiser"),
    _field("budget", pa.float64(), "budget of the period"),
    _field("target_cpa", pa.float64(), "target cost per conversion"),
    _field("tick", pa.int16(), "decision tick in the period (0-based)"),
)


def trajectory_schema(n_features: int) -> pa.Schema:
    """Our per-tick trajectory table for states of ``n_features`` features.

    Columns: campaign and tick, the per-tick statistics of ``aigb.types.TICK_STAT_FIELDS``
    (``n_pv`` int32, the rest float64), ``state``/``next_state`` (float32 vectors, network inputs),
    ``alpha``, ``action = log(alpha / target_cpa)``, the sparse and dense rewards, the CPA-penalised
    ``score_to_go`` and ``done``. ``next_state`` is null on a row that is done.
    """
    n_features = int(n_features)
    if n_features < 1:
        raise ValueError(f"n_features: must be >= 1, got {n_features}")
    stats = [
        _field(name, pa.int32() if name == "n_pv" else pa.float64(), f"tick statistic {name} (aigb.types.TICK_STAT_FIELDS)")
        for name in TICK_STAT_FIELDS
    ]
    tail = [
        _field("state", _state_type(n_features), "features observed before the tick's bids"),
        _field("next_state", _state_type(n_features), "state of the next tick; null when done", nullable=True),
        _field("alpha", pa.float64(), "bid multiplier of the tick: bid = alpha * p_value"),
        _field("action", pa.float32(), "CPA-relative action log(alpha / target_cpa)"),
        _field("reward_sparse", pa.float64(), "conversions in the tick"),
        _field("reward_dense", pa.float64(), "sum of p_value of exposed PVs in the tick"),
        _field("score_to_go", pa.float64(), "CPA-penalised score of the rest of the period from this tick"),
        _field("done", pa.bool_(), "last tick of the advertiser's period"),
    ]
    return pa.schema([*_CAMPAIGN_FIELDS, *stats, *tail], metadata={"n_features": str(n_features)})


# ---------------------------------------------------------------------------------------------
# Validators


@dataclass(frozen=True)
class Violations:
    """Rows of one batch that break a table's rules."""

    rows: np.ndarray
    """Positions of the offending rows in the batch, sorted, int64 # (n_bad,)."""
    reasons: tuple[str, ...]
    """One reason per offending row; several problems of one row are joined by '; '."""

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return len(self.rows) > 0

    def first(self) -> tuple[int, str]:
        """The first offending row and its reason (there must be one)."""
        return int(self.rows[0]), self.reasons[0]


class _Checks:
    """Collects (mask, describe) pairs and builds ``Violations``; reasons are formatted only for
    offending rows, so a clean batch costs a handful of vectorised comparisons."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.n = batch.num_rows
        self._problems: list[tuple[np.ndarray, Callable[[int], str]]] = []

    def add(self, mask: np.ndarray, describe: Callable[[int], str]) -> None:
        if mask.any():
            self._problems.append((mask, describe))

    def values(self, name: str) -> np.ndarray:
        """Column as a numpy array: numbers as float64 (null -> NaN), booleans as bool (null -> False)."""
        col = self.batch.column(name)
        if pa.types.is_boolean(col.type):
            return pc.fill_null(col, False).to_numpy(zero_copy_only=False)
        return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)

    def vectors(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-size list column as (values (n, k) float64 with NaN for null rows, null mask (n,))."""
        col = self.batch.column(name)
        k = col.type.list_size
        null = col.is_null().to_numpy(zero_copy_only=False)
        # .values ignores the array's offset and keeps the slots of null rows, so every row owns
        # exactly k values (flatten() would drop the null rows' slots).
        flat = col.values.slice(col.offset * k, len(col) * k)
        out = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), k)
        out[null] = np.nan
        return out, null

    def required(self, schema: pa.Schema) -> None:
        for f in schema:
            if not f.nullable and f.name in self.batch.schema.names:
                col = self.batch.column(f.name)
                if col.null_count:
                    self.add(col.is_null().to_numpy(zero_copy_only=False), lambda i, n=f.name: f"missing {n}")

    def finite(self, *names: str) -> None:
        for name in names:
            v = self.values(name)
            # Null rows are reported by required(); report only present non-finite values here.
            present = self.batch.column(name).is_valid().to_numpy(zero_copy_only=False)
            self.add(~np.isfinite(v) & present, lambda i, n=name, v=v: f"{n} is not finite ({v[i]})")

    def at_least(self, name: str, low: float, strict: bool = False) -> None:
        v = self.values(name)
        bad = (v <= low) if strict else (v < low)
        op = ">" if strict else ">="
        self.add(bad, lambda i, v=v: f"{name}={v[i]:g} must be {op} {low:g}")

    def within(self, name: str, low: float, high: float) -> None:
        v = self.values(name)
        self.add((v < low) | (v > high), lambda i, v=v: f"{name}={v[i]:g} outside [{low:g}, {high:g}]")

    def implies(self, a: str, b: str) -> None:
        va, vb = self.values(a), self.values(b)
        self.add(va & ~vb, lambda i: f"{a} without {b}")

    def state(self, name: str, done: np.ndarray | None) -> None:
        vec, null = self.vectors(name)
        bad = ~np.isfinite(vec).all(axis=1) & ~null
        self.add(bad, lambda i, vec=vec: f"{name} has non-finite values at positions {np.flatnonzero(~np.isfinite(vec[i])).tolist()}")
        if done is not None:
            # The next state of a tick that is not the last one must exist.
            self.add(null & ~done, lambda i: f"{name} missing on a row that is not done")

    def result(self) -> Violations:
        if not self._problems:
            return Violations(np.empty(0, dtype=np.int64), ())
        per_row: dict[int, list[str]] = {}
        for mask, describe in self._problems:
            for i in np.flatnonzero(mask).tolist():
                per_row.setdefault(i, []).append(describe(i))
        rows = np.array(sorted(per_row), dtype=np.int64)
        return Violations(rows, tuple("; ".join(per_row[i]) for i in rows.tolist()))


def _per_batch(data: pa.RecordBatch | pa.Table, schema: pa.Schema, check: Callable[[_Checks], None]) -> Violations:
    """Run ``check`` over a RecordBatch, or over a Table batch by batch with global row positions."""
    missing = [name for name in schema.names if name not in data.schema.names]
    if missing:
        raise ValueError(f"table lacks columns {missing}; expected the columns of {schema.names}")
    batches: Iterator[pa.RecordBatch] = iter(data.to_batches()) if isinstance(data, pa.Table) else iter([data])
    rows, reasons, offset = [], [], 0
    for batch in batches:
        checks = _Checks(batch)
        checks.required(schema)
        check(checks)
        found = checks.result()
        rows.append(found.rows + offset)
        reasons.extend(found.reasons)
        offset += batch.num_rows
    return Violations(np.concatenate(rows) if rows else np.empty(0, dtype=np.int64), tuple(reasons))


def validate_impressions(data: pa.RecordBatch | pa.Table, n_slots: int = 3) -> Violations:
    """Rows of an impression log that break the market's rules.

    p_value and p_value_sigma in [0, 1]; slot in 0..n_slots; cost >= 0 and cost <= bid (GSP never
    charges more than the bid); exposed implies won; conversion implies exposed; budget > 0,
    target_cpa > 0; tick, period, advertiser, category, pv_index >= 0; money and probabilities
    finite; no missing values.
    """

    def check(c: _Checks) -> None:
        c.finite("budget", "target_cpa", "remaining_budget", "p_value", "p_value_sigma", "bid", "cost", "least_winning_cost")
        c.within("p_value", 0.0, 1.0)
        c.within("p_value_sigma", 0.0, 1.0)
        c.within("slot", 0, n_slots)
        c.at_least("cost", 0.0)
        cost, bid = c.values("cost"), c.values("bid")
        c.add(cost > bid + _COST_TOLERANCE, lambda i: f"cost={cost[i]:g} exceeds bid={bid[i]:g}")
        c.implies("exposed", "won")
        c.implies("conversion", "exposed")
        c.at_least("budget", 0.0, strict=True)
        c.at_least("target_cpa", 0.0, strict=True)
        for name in ("tick", "period", "advertiser", "category", "pv_index"):
            c.at_least(name, 0)

    return _per_batch(data, IMPRESSION_SCHEMA, check)


def validate_auctionnet_trajectories(data: pa.RecordBatch | pa.Table) -> Violations:
    """Rows of an AuctionNet trajectory table that break its rules.

    budget > 0, target_cpa > 0, tick and ids >= 0, totals and rewards >= 0, numbers finite, state
    present and finite, next_state finite where present and present on every row that is not done.
    """

    def check(c: _Checks) -> None:
        c.finite("budget", "target_cpa", "real_all_cost", "real_all_conversion", "action", "reward", "reward_continuous")
        c.at_least("budget", 0.0, strict=True)
        c.at_least("target_cpa", 0.0, strict=True)
        for name in ("tick", "period", "advertiser", "category", "real_all_cost", "real_all_conversion", "reward", "reward_continuous"):
            c.at_least(name, 0)
        c.state("state", None)
        c.state("next_state", c.values("done"))

    return _per_batch(data, AUCTIONNET_TRAJECTORY_SCHEMA, check)


def validate_trajectories(data: pa.RecordBatch | pa.Table) -> Violations:
    """Rows of our trajectory table that break its rules.

    budget > 0, target_cpa > 0, tick and ids >= 0, n_pv >= 0, win_rate in [0, 1], cost, alpha and
    counts >= 0, every float finite, state finite, next_state finite where present and present on
    every row that is not done.
    """
    n_features = data.schema.field("state").type.list_size if "state" in data.schema.names else 1
    schema = trajectory_schema(n_features)

    def check(c: _Checks) -> None:
        floats = [f.name for f in schema if pa.types.is_floating(f.type)]
        c.finite(*floats)
        c.at_least("budget", 0.0, strict=True)
        c.at_least("target_cpa", 0.0, strict=True)
        for name in ("tick", "period", "advertiser", "category", "n_pv", "n_won", "n_exposed", "cost", "conversions", "alpha"):
            c.at_least(name, 0)
        c.within("win_rate", 0.0, 1.0)
        c.state("state", None)
        c.state("next_state", c.values("done"))

    return _per_batch(data, schema, check)
