"""AuctionNet's public data as aigb training data: impression logs and rlData to trajectories.

Two sources, both imported by ``aigb import-csv`` (``aigb.data.csv_import``):

* **Impression logs** (one row per (PV, advertiser), 18 columns): ``log_tick_stats`` aggregates a
  period's rows per (advertiser, tick) into ``aigb.types.TICK_STAT_FIELDS``, the very statistics
  the simulator produces, so ``aigb.data.trajectories.trajectory_table`` builds the same v1
  trajectories (features, rewards, score-to-go) from a real log as from a simulated period.
  ``converter_rows`` builds from the same statistics what AuctionNet's converter
  (``TrainDataGenerator``) writes to rlData: the 16-feature state, the action (total bid / total
  pValue), the rewards and ``done`` (the last tick, or any tick whose first row says ``isEnd``).
* **rlData** (one row per (advertiser, tick), AuctionNet's 16-feature state): ``rldata_arrays``
  turns an imported rlData table into the arrays ``aigb.data.dataset.TrajectoryDataset`` samples
  from, under the feature set ``aigb.features.AUCTIONNET_FEATURE_VERSION``.

The behaviour multiplier of a tick is ``alpha = sum(bid) / sum(pValue)`` (AuctionNet's action).
A tick with no bid (a spent budget, a tick without PVs) has none; such ticks record the previous
tick's alpha (the controller's last choice, as our generator records the controller's alpha while
the market zeroes an exhausted advertiser's bids), and ticks before any bid the first one; an
advertiser that never bid records ``exp(ACTION_LOW) * CPA``, the lowest action.

Expected conversions and cost use AuctionNet's net slot exposure probabilities
(``MarketConfig().net_exposure_probs``: 1.0, 0.8, 0.48).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aigb.data.parquet import CorruptFileError
from aigb.features import AUCTIONNET_FEATURE_VERSION, FEATURE_VERSION, trajectory_auctionnet_features
from aigb.score import DEFAULT_TASK
from aigb.data.trajectories import score_to_go
from aigb.types import ACTION_HIGH, ACTION_LOW, TICK_STAT_FIELDS, Campaign, MarketConfig

__all__ = ["AUCTIONNET_TICKS", "LOG_COLUMNS", "PeriodLog", "log_tick_stats", "behaviour_alpha", "converter_rows",
           "rldata_arrays", "file_sha256", "LogColumnsError"]

AUCTIONNET_TICKS = 48
"""Ticks of an AuctionNet period (its converter hard-codes 48)."""

LOG_COLUMNS: dict[str, tuple[str, ...]] = {
    FEATURE_VERSION: ("period", "advertiser", "category", "budget", "target_cpa", "tick", "remaining_budget",
                      "p_value", "bid", "won", "slot", "cost", "exposed", "conversion", "least_winning_cost", "is_end"),
    AUCTIONNET_FEATURE_VERSION: ("period", "advertiser", "category", "budget", "target_cpa", "tick", "remaining_budget",
                                 "p_value", "bid", "won", "cost", "exposed", "conversion", "least_winning_cost", "is_end"),
}
"""Impression-log columns each feature set's trajectories are built from."""


class LogColumnsError(ValueError):
    """An impression log lacks columns a feature set needs; the message names the file and columns."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            h.update(data)
    return "sha256:" + h.hexdigest()


@dataclass
class PeriodLog:
    """One period of an impression log, aggregated per (tick, advertiser)."""

    period: int
    campaigns: tuple[Campaign, ...]
    """One per advertiser found, in advertiser order."""
    stats: dict[str, np.ndarray]
    """Field of ``TICK_STAT_FIELDS`` -> (n_ticks, n_adv)."""
    bid_sum: np.ndarray
    """(n_ticks, n_adv) sum of bids."""
    p_value_sum: np.ndarray
    """(n_ticks, n_adv) sum of pValues."""
    is_end: np.ndarray
    """(n_ticks, n_adv) bool: the tick's rows say the advertiser's period has ended."""
    rows: int
    """Rows read."""


def log_tick_stats(paths: Sequence[str | Path], *, n_ticks: int = AUCTIONNET_TICKS,
                   feature_set: str = FEATURE_VERSION, market: MarketConfig = MarketConfig()) -> PeriodLog:
    """Aggregate the impression-log files of one period per (tick, advertiser), a row group at a time.

    The period has ``n_ticks`` ticks, or more if the log holds later ticks (``PeriodLog.n_ticks``).
    Raises ``LogColumnsError`` for a file lacking a column ``feature_set`` needs, ``ValueError``
    naming the file and field for rows of several periods, negative ticks or a campaign
    (category, budget, CPA) that changes within the period.
    """
    need = LOG_COLUMNS[feature_set]
    probs = np.asarray(market.net_exposure_probs, dtype=np.float64)
    sums: dict[str, np.ndarray] = {}
    campaign: dict[int, tuple[int, float, float]] = {}
    remaining: dict[tuple[int, int], float] = {}
    period = None
    n_rows = 0
    size = 0  # advertisers covered by the accumulators

    def grow(n_adv: int, n_t: int) -> None:
        nonlocal size, n_ticks
        n_adv, n_t = max(n_adv, size), max(n_t, n_ticks)
        if n_adv == size and n_t == n_ticks:
            return
        for name, arr in list(sums.items()):
            out = np.full((n_t, n_adv), np.nan if name == "remaining_budget" else 0.0)
            out[:n_ticks, :size] = arr
            sums[name] = out
        size, n_ticks = n_adv, n_t

    names = ("n_pv", "bid", "p_value", "lwc", "won", "exposed", "cost", "conversions", "exposed_p_value",
             "expected_conversions", "expected_cost")
    for name in names:
        sums[name] = np.zeros((n_ticks, 0))
    sums["is_end"] = np.zeros((n_ticks, 0))
    sums["remaining_budget"] = np.full((n_ticks, 0), np.nan)
    for path in paths:
        path = Path(path)
        try:
            have = pq.read_schema(path).names
        except (OSError, pa.ArrowException) as err:
            raise CorruptFileError(f"{path}: cannot be read as Parquet ({err})") from None
        missing = [c for c in need if c not in have]
        if missing:
            raise LogColumnsError(f"{path}: lacks column(s) {missing} that feature set {feature_set!r} needs")
        columns = [c for c in need if c != "slot"] + (["slot"] if "slot" in have else [])
        try:
            # A row group at a time (flat memory on 24M-row periods), page checksums verified.
            batches = pq.ParquetFile(path, page_checksum_verification=True).iter_batches(batch_size=1 << 18, columns=columns)
        except (OSError, pa.ArrowException) as err:
            raise CorruptFileError(f"{path}: cannot be read as Parquet ({err}); delete it and import again") from None
        for batch in _checked(batches, path):
            col = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in columns}
            if not batch.num_rows:
                continue
            n_rows += batch.num_rows
            periods = np.unique(col["period"])
            if period is None:
                period = int(periods[0])
            if periods.size > 1 or int(periods[0]) != period:
                raise ValueError(f"{path}: field period: rows of periods {sorted({period, *periods.tolist()})} in one "
                                 "period's files")
            tick = col["tick"].astype(np.int64)
            if tick.min() < 0:
                raise ValueError(f"{path}: field timeStepIndex: negative tick {tick.min()}")
            adv = col["advertiser"].astype(np.int64)
            grow(int(adv.max()) + 1, int(tick.max()) + 1)
            key = tick * size + adv
            m = n_ticks * size

            def add(name, weights=None):
                sums[name] += np.bincount(key, weights=weights, minlength=m).reshape(n_ticks, size)

            won = col["won"].astype(bool)
            exposed = col["exposed"].astype(bool)
            p = col["p_value"].astype(np.float64)
            cost = col["cost"].astype(np.float64)
            add("n_pv")
            add("bid", col["bid"].astype(np.float64))
            add("p_value", p)
            add("lwc", col["least_winning_cost"].astype(np.float64))
            add("won", won.astype(np.float64))
            add("exposed", exposed.astype(np.float64))
            add("cost", np.where(exposed, cost, 0.0))
            add("conversions", (col["conversion"].astype(bool) & exposed).astype(np.float64))
            add("exposed_p_value", np.where(exposed, p, 0.0))
            slot = col["slot"].astype(np.int64) if "slot" in col else np.where(won, 1, 0)
            e = np.where(won, probs[np.clip(slot - 1, 0, probs.size - 1)], 0.0)
            add("expected_conversions", e * p)
            add("expected_cost", e * cost)
            add("is_end", col["is_end"].astype(np.float64))
            rb = sums["remaining_budget"].reshape(-1)
            rb[key] = col["remaining_budget"].astype(np.float64)  # the same on every row of (tick, advertiser)
            for a, c, b, k in _campaigns_of(adv, col):
                old = campaign.setdefault(a, (c, b, k))
                if old != (c, b, k):
                    raise ValueError(f"{path}: fields advertiserCategoryIndex/budget/CPAConstraint of advertiser {a} "
                                     f"change within period {period}: {old} vs {(c, b, k)}")
    if period is None:
        raise ValueError(f"{', '.join(map(str, paths))}: no impression rows")
    advertisers = sorted(campaign)
    idx = np.asarray(advertisers, dtype=np.int64)
    s = {k: v[:, idx] for k, v in sums.items()}
    n = s["n_pv"]
    with np.errstate(divide="ignore", invalid="ignore"):
        def mean(x):
            return np.where(n > 0, x / np.maximum(n, 1), 0.0)
        rb = s["remaining_budget"]
        # A tick without rows of an advertiser: its budget before the tick is the last one less the spend.
        for t in range(n_ticks):
            gap = np.isnan(rb[t])
            if gap.any():
                before = rb[t - 1] - s["cost"][t - 1] if t else np.array([campaign[a][1] for a in advertisers])
                rb[t, gap] = before[gap]
        stats = {
            "n_pv": n, "bid_mean": mean(s["bid"]), "p_value_mean": mean(s["p_value"]), "lwc_mean": mean(s["lwc"]),
            "win_rate": mean(s["won"]), "conversion_rate": mean(s["conversions"]), "n_won": s["won"],
            "n_exposed": s["exposed"], "cost": s["cost"], "conversions": s["conversions"],
            "exposed_p_value": s["exposed_p_value"], "expected_conversions": s["expected_conversions"],
            "expected_cost": s["expected_cost"], "remaining_budget": rb,
        }
    assert set(stats) == set(TICK_STAT_FIELDS)
    campaigns = tuple(Campaign(a, *campaign[a]) for a in advertisers)
    return PeriodLog(period, campaigns, stats, s["bid"], s["p_value"], s["is_end"] > 0, n_rows)


def _checked(batches, path: Path):
    """``batches``, a damaged page raising ``CorruptFileError`` naming ``path``."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as err:
            raise CorruptFileError(f"{path}: damaged ({err}); delete it and import again") from None
        yield batch


def _campaigns_of(adv: np.ndarray, col: dict) -> list[tuple[int, int, float, float]]:
    """(advertiser, category, budget, CPA) of each distinct campaign row in a batch: each
    advertiser's first row, and any row that differs from it (a campaign changing mid-period)."""
    _, first = np.unique(adv, return_index=True)
    keys = np.stack([col["category"].astype(np.float64), col["budget"].astype(np.float64),
                     col["target_cpa"].astype(np.float64)], axis=1)                        # (n, 3)
    ref = np.zeros((int(adv.max()) + 1, 3))
    ref[adv[first]] = keys[first]
    odd = np.flatnonzero((keys != ref[adv]).any(axis=1))
    rows = np.concatenate([first, odd[:1]])
    return [(int(adv[i]), int(keys[i, 0]), float(keys[i, 1]), float(keys[i, 2])) for i in rows]


def behaviour_alpha(log: PeriodLog) -> np.ndarray:
    """(n_ticks, n_adv) the behaviour multiplier per tick (see the module docstring), > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where((log.bid_sum > 0) & (log.p_value_sum > 0), log.bid_sum / log.p_value_sum, np.nan)
    cpa = np.array([c.target_cpa for c in log.campaigns])
    for a in range(alpha.shape[1]):
        col = alpha[:, a]
        ok = np.flatnonzero(np.isfinite(col))
        if ok.size == 0:
            col[:] = np.exp(ACTION_LOW) * cpa[a]
            continue
        # Forward-fill, and the first known value before it.
        idx = np.maximum.accumulate(np.where(np.isfinite(col), np.arange(col.size), -1))
        col[:] = np.where(idx >= 0, col[np.maximum(idx, 0)], col[ok[0]])
    return alpha


def converter_rows(log: PeriodLog) -> dict[str, np.ndarray]:
    """What AuctionNet's converter writes to rlData for this period, rows by (advertiser, tick):
    ``state`` (n_adv, n_ticks, 16) float32, ``action``, ``reward`` (exposed conversions),
    ``reward_continuous`` (pValue of exposed PVs), ``done`` (n_adv, n_ticks) and the period totals
    ``real_all_cost``, ``real_all_conversion`` (n_adv,)."""
    per_adv = {f: v.T for f, v in log.stats.items()}
    budget = np.array([c.budget for c in log.campaigns])
    n_ticks = log.stats["cost"].shape[0]
    state = trajectory_auctionnet_features(per_adv, budget)  # (n_adv, n_ticks, 16)
    # AuctionNet takes budget_left from the log's remaining budget before the tick.
    state[..., 1] = (per_adv["remaining_budget"] / budget[:, None]).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        action = log.bid_sum.T / log.p_value_sum.T
    done = log.is_end.T | (np.arange(n_ticks) == n_ticks - 1)[None, :]
    return {"state": state, "action": action, "reward": per_adv["conversions"], "reward_continuous": per_adv["exposed_p_value"],
            "done": done, "real_all_cost": per_adv["cost"].sum(axis=1), "real_all_conversion": per_adv["conversions"].sum(axis=1)}


def rldata_arrays(table: pa.Table, where: str, task: str = DEFAULT_TASK) -> list[tuple[int, dict[str, np.ndarray]]]:
    """An imported rlData table (``AUCTIONNET_TRAJECTORY_SCHEMA``) as (period, arrays) pairs in the
    layout ``aigb.data.dataset.TrajectoryDataset`` loads: ``state`` (N, T, 16), ``terminal`` (N, 16),
    per-tick (N, T) ``alpha``, ``action``, ``reward_sparse``, ``reward_dense``, ``score_to_go``,
    ``cost``, ``conversions``, ``remaining_budget``, ``n_pv`` and per-campaign (N,) columns.

    Per-tick cost is the fall of the remaining budget (``budget_left`` of the next state, a float32
    of the imported state: ~2e-4 on a budget of a few thousand), the last
    tick's the period total ``realAllCost`` less the rest; ``score_to_go`` is the Target-CPA score of
    the remaining ticks' conversions under the period's final CPA penalty (``realAllCost``,
    ``realAllConversion``). The state after the last tick is not in rlData; ``terminal`` repeats
    the last state (only a value learner's bootstrap at the final tick reads it, and ``done`` stops it).
    """
    cols = {n: table.column(n).to_numpy() for n in ("period", "advertiser", "category", "budget", "target_cpa",
                                                     "tick", "action", "reward", "reward_continuous",
                                                     "real_all_cost", "real_all_conversion")}
    state_col = table.column("state").combine_chunks()
    k = state_col.type.list_size
    states = np.asarray(state_col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, k)
    out = []
    for period in np.unique(cols["period"]).tolist():
        sel = np.flatnonzero(cols["period"] == period)
        order = sel[np.lexsort((cols["tick"][sel], cols["advertiser"][sel]))]
        adv = cols["advertiser"][order]
        n_adv = np.unique(adv).size
        n_ticks = order.size // n_adv
        if order.size % n_adv or not np.array_equal(cols["tick"][order], np.tile(np.arange(n_ticks), n_adv)):
            raise ValueError(f"{where}: field timeStepIndex: period {period} needs exactly one row per tick "
                             f"0..{n_ticks - 1} for each of its {n_adv} advertisers")

        def grid(name):
            return cols[name][order].astype(np.float64).reshape(n_adv, n_ticks)

        state = states[order].reshape(n_adv, n_ticks, k)
        budget, cpa = grid("budget")[:, 0], grid("target_cpa")[:, 0]
        remaining = state[..., 1].astype(np.float64) * budget[:, None]                    # before each tick
        total_cost = grid("real_all_cost")[:, 0]
        cost = np.empty((n_adv, n_ticks))
        cost[:, :-1] = remaining[:, :-1] - remaining[:, 1:]
        cost[:, -1] = total_cost - cost[:, :-1].sum(axis=1)
        cost = np.maximum(cost, 0.0)
        conversions = grid("reward")
        raw = grid("action")
        alpha = np.where(np.isfinite(raw) & (raw > 0), raw, np.nan)
        for a in range(n_adv):
            col = alpha[a]
            ok = np.flatnonzero(np.isfinite(col))
            if ok.size == 0:
                col[:] = np.exp(ACTION_LOW) * cpa[a]
                continue
            idx = np.maximum.accumulate(np.where(np.isfinite(col), np.arange(n_ticks), -1))
            col[:] = np.where(idx >= 0, col[np.maximum(idx, 0)], col[ok[0]])
        # score_to_go from the per-tick conversions and the period's recorded totals.
        stg = score_to_go(np.column_stack([np.zeros((n_adv, n_ticks - 1)), total_cost]), conversions, cpa, task)
        out.append((int(period), {
            "state": state, "terminal": state[:, -1].copy(),
            "alpha": alpha, "action": np.clip(np.log(alpha / cpa[:, None]), ACTION_LOW, ACTION_HIGH).astype(np.float32),
            "reward_sparse": conversions, "reward_dense": grid("reward_continuous"), "score_to_go": stg,
            "cost": cost, "conversions": conversions, "remaining_budget": remaining, "n_pv": state[..., 13].astype(np.float64),
            "period": np.full(n_adv, period, dtype=np.int64), "advertiser": adv.reshape(n_adv, n_ticks)[:, 0].astype(np.int64),
            "category": grid("category")[:, 0].astype(np.int64), "budget": budget, "target_cpa": cpa,
        }))
    return out
