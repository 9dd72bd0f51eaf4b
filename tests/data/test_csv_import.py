"""Streaming import of AuctionNet CSV files: values, types, line numbers, quarantine, atomicity."""

from __future__ import annotations

import csv
import gzip
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aigb.data.csv_import import CsvImportError, import_csv
from aigb.data.parquet import read_metadata
from aigb.data.schema import (
    AUCTIONNET_STATE_DIM,
    AUCTIONNET_TRAJECTORY_CSV_COLUMNS,
    AUCTIONNET_TRAJECTORY_SCHEMA,
    IMPRESSION_CSV_COLUMNS,
    IMPRESSION_SCHEMA,
)

IMPRESSION_HEADER = ",".join(IMPRESSION_CSV_COLUMNS)
TRAJECTORY_HEADER = list(AUCTIONNET_TRAJECTORY_CSV_COLUMNS)


def impression_line(pv: int, adv: int, period: int = 7, n_adv: int = 4) -> str:
    """A valid CSV line: advertiser pv % n_adv wins slot 1, exposed on even PVs, converts every 4th."""
    p_value = 1e-4 * (adv + 1) + 1e-6 * pv
    bid = 60.0 * p_value
    won = adv == pv % n_adv
    exposed = won and pv % 2 == 0
    conversion = exposed and pv % 4 == 0
    cost = 0.5 * bid if exposed else 0.0
    fields = [period, adv, adv % 2, 2000.0 + 100 * adv, 60.0 + adv, pv // 3, 1900.0 - pv, pv, p_value, 0.15 * p_value,
              bid, int(won), int(won), cost, int(exposed), int(conversion), 0.02, 0]
    return ",".join(str(f) for f in fields)


def impression_lines(n_pv: int, n_adv: int = 4, period: int = 7) -> list[str]:
    return [impression_line(pv, adv, period, n_adv) for pv in range(n_pv) for adv in range(n_adv)]


def write_lines(path, header: str, lines: list[str]):
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def files_under(directory) -> list[str]:
    """The import's own outputs (the dataset built from them, dataset.json and
    trajectories/period=*.parquet, is tested in tests/data/test_imported.py; imported/ holds the
    resume records)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() and p.name != "dataset.json" and p.parent.name != "imported"
                  and not (p.parent.name == "trajectories" and p.name.startswith("period=")))


def test_impression_import_values_and_types(tmp_path):
    src = write_lines(tmp_path / "period-7.csv", IMPRESSION_HEADER, impression_lines(6))
    out = tmp_path / "out"
    report = import_csv([src], out)
    target = out / "impressions" / "period=7" / "period-7.parquet"
    assert report.outputs == (target,)
    assert report.rows_written == 24 and report.rows_skipped == 0
    assert report.files[0].kind == "impressions" and report.files[0].quarantine is None
    assert files_under(out) == ["impressions/period=7/period-7.parquet"]
    table = pq.read_table(target)
    assert table.schema.equals(IMPRESSION_SCHEMA)
    rows = table.to_pylist()
    expected = list(csv.reader(impression_lines(6)))
    for row, fields in zip(rows, expected):
        assert row["period"] == 7 and row["advertiser"] == int(fields[1]) and row["category"] == int(fields[2])
        assert row["budget"] == float(fields[3]) and row["target_cpa"] == float(fields[4])
        assert row["tick"] == int(fields[5]) and row["remaining_budget"] == float(fields[6])
        assert row["pv_index"] == int(fields[7])
        assert row["p_value"] == pytest.approx(float(fields[8]), rel=1e-6)  # float32
        assert row["bid"] == float(fields[10]) and row["cost"] == float(fields[13])
        assert row["won"] is (fields[11] == "1") and row["slot"] == int(fields[12])
        assert row["exposed"] is (fields[14] == "1") and row["conversion"] is (fields[15] == "1")
        assert row["least_winning_cost"] == 0.02 and row["is_end"] is False
    assert sum(r["won"] for r in rows) == 6 and sum(r["exposed"] for r in rows) == 3
    meta = read_metadata(target)
    assert meta["kind"] == "impressions" and meta["source"] == "period-7.csv" and meta["period"] == 7


def test_file_with_several_periods_writes_one_file_per_period(tmp_path):
    lines = impression_lines(3, period=8) + impression_lines(2, period=7) + impression_lines(1, period=8)
    src = tmp_path / "mixed.csv.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:  # compressed input, detected by the suffix
        f.write("\n".join([IMPRESSION_HEADER, *lines]) + "\n")
    out = tmp_path / "out"
    report = import_csv(src, out)
    assert files_under(out) == ["impressions/period=7/mixed.parquet", "impressions/period=8/mixed.parquet"]
    assert pq.read_table(out / "impressions/period=8/mixed.parquet")["pv_index"].to_pylist() == [0] * 4 + [1] * 4 + [2] * 4 + [0] * 4
    assert pq.read_table(out / "impressions/period=7/mixed.parquet").num_rows == 8
    assert report.rows_written == 24


def state_text(values) -> str:
    return "(" + ", ".join(repr(float(v)) for v in values) + ")"


def test_trajectory_import_parses_tuple_strings(tmp_path):
    base = np.arange(AUCTIONNET_STATE_DIM) / 16.0
    rows = [
        # period, advertiser, category, budget, CPA, cost, conversions, tick, state, action, reward, reward_c, done, next_state
        [7, 3, 1, 2500.0, 90.0, 1800.5, 21, 0, state_text(base), 1.25, 1, 0.02, 0, state_text(base + 1)],
        [7, 3, 1, 2500.0, 90.0, 1800.5, 21, 1, state_text(base + 1), 0.75, 0, 0.01, 0,
         "(" + ", ".join(f"np.float64({float(v)!r})" for v in base + 2) + ")"],  # numpy >= 2 repr
        [7, 3, 1, 2500.0, 90.0, 1800.5, 21, 47, state_text(base + 2), 1.0, 2, 0.03, 1, ""],
        [7, 4, 1, 3000.0, 80.0, 10.0, 1.0, "47.0", state_text(base), 1.0, 0, 0.0, "True", "None"],  # pandas styles
        [7, 5, 1, 3000.0, 80.0, 10.0, 1.0, 47, "[" + ", ".join(map(str, base)) + "]", 1.0, 0, 0.0, 1, "nan"],
    ]
    src = tmp_path / "period-7-rlData.csv"
    with open(src, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRAJECTORY_HEADER)
        writer.writerows(rows)
    out = tmp_path / "out"
    report = import_csv(src, out)
    target = out / "trajectories" / "period-7-rlData.parquet"
    assert report.outputs == (target,) and report.files[0].kind == "auctionnet_trajectories"
    table = pq.read_table(target)
    assert table.schema.equals(AUCTIONNET_TRAJECTORY_SCHEMA)
    assert table.schema.field("state").type == pa.list_(pa.float32(), 16)
    state = np.array(table["state"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(state, np.stack([base, base + 1, base + 2, base, base]).astype(np.float32))
    next_state = table["next_state"].to_pylist()
    np.testing.assert_array_equal(np.array(next_state[:2], dtype=np.float32), np.stack([base + 1, base + 2]).astype(np.float32))
    assert next_state[2:] == [None, None, None]
    assert table["done"].to_pylist() == [False, False, True, True, True]
    assert table["tick"].to_pylist() == [0, 1, 47, 47, 47]
    assert table["real_all_conversion"].to_pylist() == [21.0, 21.0, 21.0, 1.0, 1.0]
    assert table["action"].to_pylist() == [1.25, 0.75, 1.0, 1.0, 1.0]
    assert read_metadata(target)["kind"] == "auctionnet_trajectories"


def trajectory_line(tick: int, done: bool, next_state: str) -> str:
    state = state_text(np.full(AUCTIONNET_STATE_DIM, 0.5))
    return f'7,0,0,100.0,10.0,5.0,1,{tick},"{state}",1.0,0,0.0,{int(done)},"{next_state}"'


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("7,1,0,2000.0", "expected 18 fields, found 4"),
        (impression_line(1, 0).replace(",60.0,", ",sixty,", 1), "CPAConstraint='sixty' is not a number"),
        (impression_line(1, 0).replace(",60.0,", ",,", 1), "missing CPAConstraint"),
        (impression_line(1, 1).rsplit(",", 1)[0] + ",2", "isEnd='2' must be 0 or 1"),
        ("7,1.5," + impression_line(1, 1).split(",", 2)[2], "advertiserNumber='1.5' is not an integer"),
        ("7,40000," + impression_line(1, 1).split(",", 2)[2], "advertiserNumber='40000' outside [-32768, 32767]"),
        (impression_line(1, 1).replace(",0.02,", ",nan,", 1), "least_winning_cost is not finite"),
        (impression_line(1, 1)[: -len("0.02,0")] + "0.02,0,extra", "expected 18 fields, found 19"),
    ],
)
def test_bad_impression_row_raises_with_file_and_line(tmp_path, bad_line, reason):
    lines = impression_lines(4)
    lines.insert(5, bad_line)  # line 7 of the file (header = line 1)
    src = write_lines(tmp_path / "p.csv", IMPRESSION_HEADER, lines)
    out = tmp_path / "out"
    with pytest.raises(CsvImportError) as err:
        import_csv([src], out)
    assert f"p.csv: line 7: {reason}" in str(err.value)
    assert files_under(out) == []  # nothing under a final name, no temporary file either


def test_validation_failures_and_bad_encoding_name_their_line(tmp_path):
    over = impression_line(0, 0).split(",")
    over[13] = str(float(over[10]) * 2)  # cost above the bid
    src = write_lines(tmp_path / "p.csv", IMPRESSION_HEADER, [impression_line(0, 1), ",".join(over)])
    with pytest.raises(CsvImportError, match=r"p\.csv: line 3: cost=.* exceeds bid"):
        import_csv(src, tmp_path / "out")
    raw = (IMPRESSION_HEADER + "\n" + impression_line(0, 1) + "\n").encode() + b"7,\xff\xfe,0\n"
    (tmp_path / "enc.csv").write_bytes(raw)
    with pytest.raises(CsvImportError, match=r"enc\.csv: line 3: not valid UTF-8"):
        import_csv(tmp_path / "enc.csv", tmp_path / "out")
    traj = tmp_path / "t.csv"
    write_lines(traj, ",".join(TRAJECTORY_HEADER), [trajectory_line(0, False, "(1.0, 2.0)")])
    with pytest.raises(CsvImportError, match=r"t\.csv: line 2: next_state has 2 values, expected 16"):
        import_csv(traj, tmp_path / "out")
    write_lines(traj, ",".join(TRAJECTORY_HEADER), [trajectory_line(0, False, "None")])
    with pytest.raises(CsvImportError, match=r"t\.csv: line 2: next_state missing on a row that is not done"):
        import_csv(traj, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def build_messy_file(path):
    """~1,200 valid rows with bad lines of every kind spread over many 4 KB pieces.

    Returns (expected bad lines {line: reason fragment}, pv_index of valid rows in order, raw lines)."""
    good = impression_lines(300)  # 1,200 rows, ~100 bytes each
    bad_kinds = [
        ("7,1,0", "expected 18 fields, found 3"),
        (impression_line(5, 2).replace(",0.02,", ",0.0x2,", 1), "leastWinningCost='0.0x2' is not a number"),
        (impression_line(5, 0).replace(",60.0,", ",-60.0,", 1), "target_cpa=-60 must be > 0"),
        ('7,"1,0', "unbalanced quote"),
        (impression_line(5, 2) + ",1", "expected 18 fields, found 19"),
    ]
    text_lines, expected, good_pv = [IMPRESSION_HEADER], {}, []
    rng = np.random.default_rng(3)
    bad_at = set(rng.choice(np.arange(10, len(good)), size=40, replace=False).tolist())
    blank_at = 600
    for i, line in enumerate(good):
        if i in bad_at:
            bad, reason = bad_kinds[len(expected) % len(bad_kinds)]
            text_lines.append(bad)
            expected[len(text_lines)] = reason
        if i == blank_at:
            text_lines.append("")
        if i == blank_at + 100:
            # Rejected rows right before rows that fail later, conversion or validation.
            for bad, reason in (bad_kinds[0], bad_kinds[0], bad_kinds[1], bad_kinds[0], bad_kinds[2]):
                text_lines.append(bad)
                expected[len(text_lines)] = reason
        text_lines.append(line)
        good_pv.append(int(line.split(",")[7]))
    data = ("\n".join(text_lines) + "\n").encode()
    # One undecodable line in the middle of the file.
    at = len(text_lines) // 2
    data_lines = data.split(b"\n")
    data_lines.insert(at, b"7,\xff,0")
    expected = {(k + 1 if k > at else k): v for k, v in expected.items()}
    expected[at + 1] = "not valid UTF-8"
    path.write_bytes(b"\n".join(data_lines))
    return expected, good_pv, data_lines


def test_skip_bad_quarantines_every_bad_line_across_pieces(tmp_path):
    src = tmp_path / "messy.csv"
    expected, good_pv, data_lines = build_messy_file(src)
    out = tmp_path / "out"
    report = import_csv(src, out, skip_bad=True, block_size=4096)  # ~30 pieces
    file_report = report.files[0]
    assert file_report.rows_skipped == len(expected) == 46
    assert file_report.blank_lines == 1
    assert report.rows_written == len(good_pv) == 1200
    table = pq.read_table(out / "impressions" / "period=7" / "messy.parquet")
    assert table["pv_index"].to_pylist() == good_pv
    with open(file_report.quarantine, newline="", encoding="utf-8") as f:
        quarantined = list(csv.DictReader(f))
    assert [int(q["line"]) for q in quarantined] == sorted(expected)
    for q in quarantined:
        line = int(q["line"])
        assert expected[line] in q["reason"]
        original = data_lines[line - 1].decode("utf-8", "backslashreplace")
        assert q["raw"] == original, line

    with pytest.raises(CsvImportError, match=rf"messy\.csv: line {min(expected)}: "):
        import_csv(src, tmp_path / "strict", block_size=4096)
    assert files_under(tmp_path / "strict") == []


def test_line_numbers_do_not_depend_on_block_size(tmp_path):
    src = tmp_path / "messy.csv"
    build_messy_file(src)
    quarantines = []
    for block_size in (4096, 10_000, 1 << 20):
        report = import_csv(src, tmp_path / f"out{block_size}", skip_bad=True, block_size=block_size)
        quarantines.append(report.files[0].quarantine.read_text())
    assert quarantines[0] == quarantines[1] == quarantines[2]


def test_unknown_header_names_missing_and_unexpected_columns(tmp_path):
    header = IMPRESSION_HEADER.replace("pValue,", "pvalue,") + ",extra"
    src = write_lines(tmp_path / "odd.csv", header, [])
    with pytest.raises(CsvImportError, match=r"odd\.csv: unknown CSV header.*missing columns \['pValue'\], unexpected columns \['pvalue', 'extra'\]"):
        import_csv(src, tmp_path / "out")
    dup = write_lines(tmp_path / "dup.csv", IMPRESSION_HEADER + ",bid", [])
    with pytest.raises(CsvImportError, match=r"dup\.csv: header repeats columns \['bid'\]"):
        import_csv(dup, tmp_path / "out")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CsvImportError, match=r"empty\.csv: empty file"):
        import_csv(tmp_path / "empty.csv", tmp_path / "out")


def test_header_only_files(tmp_path):
    imp = write_lines(tmp_path / "imp.csv", IMPRESSION_HEADER, [])
    traj = write_lines(tmp_path / "traj.csv", ",".join(TRAJECTORY_HEADER), [])
    report = import_csv([imp, traj], tmp_path / "out", build_dataset=False)  # a plain conversion may mix kinds
    assert report.rows_written == 0
    assert report.files[0].outputs == ()  # no period known, so no impression file
    assert pq.read_table(report.files[1].outputs[0]).num_rows == 0


def test_rerun_replaces_outputs_and_clears_stale_ones(tmp_path):
    src = tmp_path / "p.csv"
    lines = impression_lines(3, period=7) + impression_lines(2, period=9) + ["7,1"]
    write_lines(src, IMPRESSION_HEADER, lines)
    out = tmp_path / "out"
    first = import_csv(src, out, skip_bad=True)
    assert first.rows_skipped == 1
    assert files_under(out) == ["impressions/period=7/p.parquet", "impressions/period=9/p.parquet", "quarantine/p.bad.csv"]
    again = import_csv(src, out, skip_bad=True)
    assert again.rows_written == first.rows_written
    assert pq.read_table(out / "impressions/period=7/p.parquet").equals(pq.read_table(first.outputs[0]))
    # The file is fixed and loses period 9: the old quarantine and the period-9 output go too.
    write_lines(src, IMPRESSION_HEADER, impression_lines(4, period=7))
    fixed = import_csv(src, out)
    assert fixed.rows_written == 16 and fixed.rows_skipped == 0
    assert files_under(out) == ["impressions/period=7/p.parquet"]
    assert pq.read_table(out / "impressions/period=7/p.parquet").num_rows == 16


def test_inputs_are_checked_before_anything_is_written(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = write_lines(tmp_path / "a" / "x.csv", IMPRESSION_HEADER, impression_lines(1))
    two = write_lines(tmp_path / "b" / "x.csv", IMPRESSION_HEADER, impression_lines(1))
    with pytest.raises(CsvImportError, match="same output name 'x'"):
        import_csv([one, two], tmp_path / "out")
    with pytest.raises(CsvImportError, match="not found: .*missing.csv"):
        import_csv([one, tmp_path / "missing.csv"], tmp_path / "out")
    with pytest.raises(CsvImportError, match="no CSV files"):
        import_csv([], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failing_file_keeps_earlier_files_complete(tmp_path):
    ok = write_lines(tmp_path / "ok.csv", IMPRESSION_HEADER, impression_lines(2))
    broken = write_lines(tmp_path / "broken.csv", IMPRESSION_HEADER, impression_lines(2) + ["1,2,3"])
    out = tmp_path / "out"
    with pytest.raises(CsvImportError, match=r"broken\.csv: line 10"):
        import_csv([ok, broken], out)
    assert files_under(out) == ["impressions/period=7/ok.parquet"]
    assert pq.read_table(out / "impressions/period=7/ok.parquet").num_rows == 8
    assert math.isclose(pq.read_table(out / "impressions/period=7/ok.parquet")["budget"][1].as_py(), 2100.0)


def test_report_summary_is_readable(tmp_path):
    src = write_lines(tmp_path / "p.csv", IMPRESSION_HEADER, impression_lines(2))
    report = import_csv(src, tmp_path / "out")
    assert report.summary().startswith("1 file(s): 8 rows written, 0 skipped, 1 Parquet file(s)")


def test_quoted_value_over_line_ends_is_refused(tmp_path):
    # Even quote count, so not masked as a stray quote, yet the second quote opens a value that
    # runs into the next lines: line numbers could not be trusted, so the piece is refused.
    lines = impression_lines(3)
    lines.insert(2, '7,x"y,"z')
    src = write_lines(tmp_path / "q.csv", IMPRESSION_HEADER, lines)
    with pytest.raises(CsvImportError, match=r"q\.csv: lines 2-14: a quoted value runs over several lines"):
        import_csv(src, tmp_path / "out", skip_bad=True)
    assert files_under(tmp_path / "out") == []


def test_another_file_with_the_same_name_does_not_replace_an_import(tmp_path):
    first, second = tmp_path / "a" / "period-7.csv", tmp_path / "b" / "period-7.csv"
    for path, n_pv in ((first, 4), (second, 6)):
        path.parent.mkdir()
        write_lines(path, IMPRESSION_HEADER, impression_lines(n_pv))
    out = tmp_path / "out"
    (target,) = import_csv(first, out).outputs
    assert read_metadata(target)["source_path"] == str(first.resolve())
    with pytest.raises(CsvImportError, match=f"{second}: {target} holds the import of another file with the same name, {first.resolve()}"):
        import_csv(second, out)
    assert pq.read_table(target).num_rows == 4 * 4
    assert import_csv(first, out).outputs == (target,)  # the same file again replaces its own outputs


def test_fast_path_equals_the_exact_path(tmp_path):
    lines = impression_lines(3000)
    src = write_lines(tmp_path / "p.csv", IMPRESSION_HEADER, lines)
    fast = import_csv([src], tmp_path / "fast", block_size=16384, build_dataset=False)
    exact = import_csv([src], tmp_path / "exact", block_size=16384, build_dataset=False, use_threads=False)
    a, b = pq.read_table(fast.outputs[0]), pq.read_table(exact.outputs[0])
    assert a.num_rows == len(lines) and a.equals(b)
    # A bad line among clean pieces is still named by its line, with the fast path on.
    bad = lines[:]
    bad[2500] = bad[2500].replace(",0.02,", ",oops,")
    src = write_lines(tmp_path / "bad.csv", IMPRESSION_HEADER, bad)
    with pytest.raises(CsvImportError, match=r"bad.csv: line 2502: leastWinningCost='oops' is not a number"):
        import_csv([src], tmp_path / "bad", block_size=16384)


def test_a_killed_import_resumes_at_the_file_it_was_in(tmp_path):
    """SIGKILL while the second of two files imports: the first is skipped on the re-run, the
    second has no output yet and is imported in full."""
    import os
    import signal
    import subprocess
    import sys
    import time

    first = write_lines(tmp_path / "first.csv", IMPRESSION_HEADER, impression_lines(50))
    second = write_lines(tmp_path / "second.csv", IMPRESSION_HEADER, impression_lines(6000, period=8))
    out = tmp_path / "out"
    # The exact path on 4 KB pieces takes seconds for the second file: time to kill it there.
    code = ("import sys; from aigb.data.csv_import import import_csv; "
            "import_csv(sys.argv[1:3], sys.argv[3], block_size=4096, use_threads=False, build_dataset=False)")
    child = subprocess.Popen([sys.executable, "-c", code, str(first), str(second), str(out)],
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    record = out / "imported" / "first.json"
    deadline = time.monotonic() + 60
    while not record.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert record.exists(), "the child ended before the first file was recorded"
    assert not (out / "imported" / "second.json").exists()
    assert not (out / "impressions" / "period=8" / "second.parquet").exists()  # atomic: nothing half-written
    report = import_csv([first, second], out, build_dataset=False)
    assert [f.skipped for f in report.files] == [True, False]
    assert report.files[1].rows_written == 6000 * 4
    whole = import_csv([first, second], tmp_path / "whole", build_dataset=False)
    for a, b in zip(report.outputs, whole.outputs):
        assert pq.read_table(a).equals(pq.read_table(b))
    # Touching a file (a new modification time) imports it again.
    os.utime(first, ns=(time.time_ns(), time.time_ns()))
    assert [f.skipped for f in import_csv([first, second], out, build_dataset=False).files] == [False, True]
