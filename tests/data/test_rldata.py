"""Reading AuctionNet's per-tick trajectory files (rlData) into calibration tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from aigb.data.rldata import AUCTIONNET_EVAL_KINDS, read_rldata
from aigb.sim.calibration import period_statistics

SAMPLE = Path(__file__).parent / "auctionnet_period-0-rlData.csv.zst"
HEADER = ("deliveryPeriodIndex,advertiserNumber,advertiserCategoryIndex,budget,CPAConstraint,realAllCost,"
          "realAllConversion,timeStepIndex,state,action,reward,reward_continuous,done,next_state")


def _state(time_left, budget_left, hist_lwc, p_value, n_pv):
    s = [time_left, budget_left, 0.0, 0.0, hist_lwc] + [0.0] * 7 + [p_value, n_pv, 0.0, 0.0]
    return '"(' + ", ".join(str(x) for x in s) + ')"'


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def _tiny(tmp_path: Path) -> Path:
    # Advertiser 7: budget 100, CPA 50, 60 spent in all (20, 30, 10); market least winning cost of
    # ticks 0 and 1: 0.3 and 0.2 (history means 0.3 then 0.25). Advertiser 9 spends nothing.
    rows = []
    for adv, left, total in ((7, (1.0, 0.8, 0.5), 60.0), (9, (1.0, 1.0, 1.0), 0.0)):
        for t, (b, h) in enumerate(zip(left, (0.0, 0.3, 0.25))):
            rows.append(f"3.0,{adv}.0,1.0,100.0,50.0,{total},2.0,{t}.0,{_state(1 - t / 3, b, h, 1e-3 * (t + 1), 10 * (t + 1))},"
                        f"{40.0 + t},{1.0 if adv == 7 and t == 1 else 0.0},0.0,0,")
    return _write(tmp_path / "rl.csv", rows[::-1])  # out of order on purpose


def test_a_tiny_file_decodes_per_tick_spend_and_prices(tmp_path):
    (t,) = read_rldata(_tiny(tmp_path), player=9)
    np.testing.assert_allclose(t.cost, [[20.0, 30.0, 10.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(t.lwc_mean, [0.3, 0.2, np.nan])
    np.testing.assert_allclose(t.remaining[0], [100.0, 80.0, 50.0])
    np.testing.assert_allclose(t.alpha[1], [40.0, 41.0, 42.0])
    np.testing.assert_allclose(t.n_pv, [10, 20, 30])
    np.testing.assert_allclose(t.p_value_mean[0], [1e-3, 2e-3, 3e-3])
    assert t.conversions.sum() == 1.0 and list(t.player) == [False, True]
    s = period_statistics(t)
    assert s["total_spend"] == pytest.approx(60.0)
    assert s["share_above_target_cpa"] == pytest.approx(0.5)  # 60 for 1 conversion against CPA 50


def test_a_compressed_file_reads_as_the_plain_one(tmp_path):
    plain = _tiny(tmp_path)
    packed = tmp_path / "rl.csv.gz"
    with pa.CompressedOutputStream(str(packed), "gzip") as out:
        out.write(plain.read_bytes())
    a, b = read_rldata(plain)[0], read_rldata(packed)[0]
    np.testing.assert_array_equal(a.cost, b.cost)


def test_bad_files_are_named_with_the_problem(tmp_path):
    rows = _tiny(tmp_path).read_text().splitlines()
    bad = _write(tmp_path / "short.csv", [re.sub(r'"\(([^,]+), ', '"(', rows[1], count=1)] + rows[2:])
    with pytest.raises(ValueError, match=r"short\.csv: row 2: state has 15 numbers"):
        read_rldata(bad)
    missing = _write(tmp_path / "missing.csv", rows[2:])
    with pytest.raises(ValueError, match=r"missing\.csv: period 3 does not hold every tick"):
        read_rldata(missing)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_rldata(tmp_path / "nope.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"other\.csv: not an rlData CSV"):
        read_rldata(tmp_path / "other.csv")


def test_the_auctionnet_sample_decodes_consistently():
    (t,) = read_rldata(SAMPLE, kinds=AUCTIONNET_EVAL_KINDS, player=0)
    assert t.alpha.shape == (48, 48) and t.n_pv.sum() == 499_980
    # The player's published result: 2,899.99 of its 2,900 budget for 30 conversions.
    assert t.cost[0].sum() == pytest.approx(2899.988, abs=1e-3) and t.conversions[0].sum() == 30
    # The decoded tick prices reproduce the files' own last-3-tick means (state column 8).
    table = pacsv.read_csv(pa.CompressedInputStream(pa.OSFile(str(SAMPLE)), "zstd"))
    adv, tick = table.column("advertiserNumber").to_numpy(), table.column("timeStepIndex").to_numpy()
    states = table.column("state").to_pylist()
    last3 = np.array([float(states[np.flatnonzero((adv == 5) & (tick == k))[0]].strip("()").split(",")[8]) for k in range(3, 47)])
    decoded = np.array([t.lwc_mean[k - 3:k].mean() for k in range(3, 47)])
    np.testing.assert_allclose(decoded, last3, rtol=1e-9)
