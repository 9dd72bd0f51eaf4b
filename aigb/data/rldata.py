"""Read AuctionNet's per-tick trajectory files ("rlData" CSV) into calibration tables.

AuctionNet's converter writes one row per (period, advertiser, tick) with the columns
deliveryPeriodIndex, advertiserNumber, advertiserCategoryIndex, budget, CPAConstraint,
realAllCost, realAllConversion, timeStepIndex, state, action, reward, reward_continuous, done,
next_state. ``state`` is a 16-number tuple written as a string, in the published order: time left,
budget left (share), all-history means of bid, least winning cost, p_value, conversion, win rate,
the same over the last 3 ticks, the current tick's mean p_value and PV count, the last 3 ticks' PV
count and the cumulative PV count. History means are means of the per-tick means, so a tick's own
mean follows from two consecutive states: ``x_t = (t + 1) H_{t+1} - t H_t``. The last tick's
least winning cost is in no state and stays unknown (NaN).

Files may be plain or compressed CSV (``.zst``, ``.gz``, ``.bz2``: pyarrow's codecs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from aigb.sim.calibration import TickTable

__all__ = ["read_rldata", "RLDATA_COLUMNS", "AUCTIONNET_EVAL_KINDS"]

RLDATA_COLUMNS = ("deliveryPeriodIndex", "advertiserNumber", "budget", "CPAConstraint", "realAllCost",
                  "timeStepIndex", "state", "action", "reward")
STATE_DIM = 16
S_BUDGET_LEFT, S_HIST_LWC, S_CUR_PVALUE, S_CUR_PV_NUM = 1, 4, 12, 13
_CODECS = {".zst": "zstd", ".gz": "gzip", ".bz2": "bz2"}

# AuctionNet's evaluation controller (its repository's roster): kind by position in a category of 8,
# categories 0, 2, 4 and 1, 3, 5. Slots whose model file the public repository lacks (TD3_BC, BCQ)
# and the OnlineLp agents without cost tables are played by stand-ins, not by the named method.
_EVEN = ("pid", "rl", "stand-in", "stand-in", "stand-in", "rl", "rl", "rl")
_ODD = ("pid", "stand-in", "rl", "stand-in", "stand-in", "stand-in", "rl", "rl")
AUCTIONNET_EVAL_KINDS = tuple((_EVEN if (a // 8) % 2 == 0 else _ODD)[a % 8] for a in range(48))
"""Kind group per advertiser of AuctionNet's evaluation roster (public repository snapshot)."""


def _open(path: Path):
    codec = _CODECS.get(path.suffix)
    stream = pa.OSFile(str(path))
    return pa.CompressedInputStream(stream, codec) if codec else stream


def _parse_states(col: pa.ChunkedArray, path: Path, rows: np.ndarray) -> np.ndarray:
    out = np.full((len(col), STATE_DIM), np.nan)
    for i, text in enumerate(col.to_pylist()):
        if text is None:
            raise ValueError(f"{path}: row {rows[i] + 2}: state is empty")
        parts = text.strip().strip("()[]").split(",")
        if len(parts) != STATE_DIM:
            raise ValueError(f"{path}: row {rows[i] + 2}: state has {len(parts)} numbers, expected {STATE_DIM}")
        try:
            out[i] = [float(x) for x in parts]
        except ValueError:
            raise ValueError(f"{path}: row {rows[i] + 2}: state {text[:60]!r} is not a tuple of numbers") from None
    return out


def read_rldata(path: str | Path, *, kinds: tuple[str, ...] | None = None, player: int | None = None,
                min_remaining_budget: float = 0.1) -> list[TickTable]:
    """One ``TickTable`` per delivery period of an rlData CSV file, in period order.

    kinds: kind group per advertiser number (e.g. ``AUCTIONNET_EVAL_KINDS``), else unknown;
    player: the advertiser number of the strategy under study, left out of competitor statistics.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with _open(path) as stream:
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(
                include_columns=list(RLDATA_COLUMNS), column_types={"state": pa.string()}))
    except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
        raise ValueError(f"{path}: not an rlData CSV file with columns {', '.join(RLDATA_COLUMNS)} ({e})") from None
    num = {c: table.column(c).to_numpy().astype(np.float64) for c in RLDATA_COLUMNS if c != "state"}
    for c, v in num.items():
        if not np.isfinite(v).all():
            raise ValueError(f"{path}: column {c} has a missing or non-numeric value in row {int(np.argmin(np.isfinite(v))) + 2}")
    order = np.lexsort((num["timeStepIndex"], num["advertiserNumber"], num["deliveryPeriodIndex"]))
    states = _parse_states(table.column("state").take(pa.array(order)), path, order)
    num = {c: v[order] for c, v in num.items()}
    tables = []
    for period in np.unique(num["deliveryPeriodIndex"]):
        sel = num["deliveryPeriodIndex"] == period
        advs = np.unique(num["advertiserNumber"][sel])
        ticks = np.unique(num["timeStepIndex"][sel])
        n_adv, n_ticks = advs.size, ticks.size
        if sel.sum() != n_adv * n_ticks or not np.array_equal(ticks, np.arange(n_ticks)):
            raise ValueError(f"{path}: period {period:g} does not hold every tick 0..{n_ticks - 1} of each of its "
                             f"{n_adv} advertisers once ({int(sel.sum())} rows)")
        g = {c: v[sel].reshape(n_adv, n_ticks) for c, v in num.items()}
        s = states[sel].reshape(n_adv, n_ticks, STATE_DIM)
        budget = g["budget"][:, 0]
        remaining = s[:, :, S_BUDGET_LEFT] * budget[:, None]
        spent_before = budget[:, None] - remaining
        # Each tick's spend: the next tick's spent-before less this one's; the last tick closes on the total.
        spent_after = np.concatenate([spent_before[:, 1:], g["realAllCost"][:, :1]], axis=1)
        cost = np.maximum(spent_after - spent_before, 0.0)
        t = np.arange(n_ticks, dtype=np.float64)
        hist = s[0, :, S_HIST_LWC]  # market-wide: the same on every advertiser's rows
        lwc = np.full(n_ticks, np.nan)
        lwc[:-1] = (t[1:]) * hist[1:] - t[:-1] * hist[:-1]
        kind = tuple(kinds[int(a)] if kinds is not None and int(a) < len(kinds) else "" for a in advs)
        tables.append(TickTable(
            budget=budget, target_cpa=g["CPAConstraint"][:, 0], kind=kind,
            player=(advs == player) if player is not None else np.zeros(n_adv, bool),
            alpha=g["action"], remaining=remaining, cost=cost, conversions=g["reward"],
            p_value_mean=s[:, :, S_CUR_PVALUE], n_pv=s[0, :, S_CUR_PV_NUM], lwc_mean=lwc,
            min_remaining_budget=min_remaining_budget))
    return tables
