"""Parquet schemas, validators and atomic, self-describing Parquet files."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import aigb
import aigb.data.parquet as aparquet
from aigb.data.parquet import (
    AtomicParquetWriter,
    SchemaVersionError,
    check_schema_version,
    file_metadata,
    read_metadata,
    read_table,
    write_table_atomic,
)
from aigb.data.schema import (
    AUCTIONNET_STATE_DIM,
    AUCTIONNET_TRAJECTORY_SCHEMA,
    IMPRESSION_CSV_COLUMNS,
    IMPRESSION_SCHEMA,
    SCHEMA_VERSION,
    trajectory_schema,
    validate_auctionnet_trajectories,
    validate_impressions,
    validate_trajectories,
)


def impressions(n: int = 12) -> pa.Table:
    """A valid impression table: advertiser i wins slot 1 of pv i (exposed on even pvs)."""
    i = np.arange(n)
    p_value = (1 + i) * 1e-4
    bid = 80.0 * p_value
    won = np.ones(n, dtype=bool)
    exposed = i % 2 == 0
    return pa.table(
        {
            "period": np.full(n, 7, dtype=np.int32),
            "advertiser": (i % 48).astype(np.int16),
            "category": (i % 6).astype(np.int8),
            "budget": np.full(n, 3000.0),
            "target_cpa": np.full(n, 80.0),
            "tick": (i // 4).astype(np.int16),
            "remaining_budget": 3000.0 - i,
            "pv_index": i.astype(np.int32),
            "p_value": p_value.astype(np.float32),
            "p_value_sigma": (0.15 * p_value).astype(np.float32),
            "bid": bid,
            "won": won,
            "slot": np.ones(n, dtype=np.int8),
            "cost": np.where(exposed, 0.5 * bid, 0.0),
            "exposed": exposed,
            "conversion": i % 4 == 0,
            "least_winning_cost": 0.25 * bid,
            "is_end": np.zeros(n, dtype=bool),
        },
        schema=IMPRESSION_SCHEMA,
    )


def replaced(table: pa.Table, **columns) -> pa.Table:
    for name, values in columns.items():
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, table.schema.field(idx), pa.array(values, type=table.schema.field(idx).type))
    return table


def trajectories(n_features: int = 3, n: int = 4) -> pa.Table:
    """A valid trajectory table: one advertiser, ``n`` ticks, the last one done."""
    schema = trajectory_schema(n_features)
    data = {}
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            data[f.name] = [[0.5] * n_features for _ in range(n)]
        elif pa.types.is_boolean(f.type):
            data[f.name] = [False] * n
        else:
            data[f.name] = [1] * n
    data["tick"] = list(range(n))
    data["win_rate"] = [0.1] * n
    data["done"] = [False] * (n - 1) + [True]
    data["next_state"] = data["next_state"][:-1] + [None]
    return pa.table(data, schema=schema)


# ---------------------------------------------------------------------------------------------
# Schemas


def test_impression_schema_follows_the_auctionnet_columns():
    assert list(IMPRESSION_CSV_COLUMNS) == [
        "deliveryPeriodIndex", "advertiserNumber", "advertiserCategoryIndex", "budget", "CPAConstraint",
        "timeStepIndex", "remainingBudget", "pvIndex", "pValue", "pValueSigma", "bid", "xi", "adSlot",
        "cost", "isExposed", "conversionAction", "leastWinningCost", "isEnd",
    ]
    assert IMPRESSION_SCHEMA.names == list(IMPRESSION_CSV_COLUMNS.values())
    assert IMPRESSION_SCHEMA.field("p_value").type == pa.float32()
    assert IMPRESSION_SCHEMA.field("won").type == pa.bool_()
    assert IMPRESSION_SCHEMA.field("slot").type == pa.int8()
    assert IMPRESSION_SCHEMA.field("cost").type == pa.float64()
    assert all(not f.nullable for f in IMPRESSION_SCHEMA)


def test_trajectory_files_of_the_schema_load_and_others_are_refused(tmp_path):
    """What the trajectory schema promises the reader: ``next_state`` may be null (the reader takes
    the state itself), and the width of ``state`` is the feature version's."""
    from aigb.data.dataset import TrajectoryDataset
    from aigb.data.generate import generate_dataset, period_path
    from aigb.features import FEATURE_DIM
    from aigb.types import MarketConfig

    generate_dataset(tmp_path, 1, 2, market=MarketConfig(n_pv=2000, n_ticks=6, n_advertisers=3), progress=False)
    path = period_path(tmp_path, "trajectories", 0)
    table, meta = pq.read_table(path), pq.read_schema(path).metadata
    assert table.schema.equals(trajectory_schema(FEATURE_DIM), check_metadata=False)
    last = pa.array(table.column("tick").to_numpy() == 5)
    nulled = table.set_column(table.schema.get_field_index("next_state"), "next_state",
                              pc.if_else(last, pa.scalar(None, table.schema.field("next_state").type),
                                                 table.column("next_state")))
    pq.write_table(nulled.replace_schema_metadata(meta), path)
    data = TrajectoryDataset.load(tmp_path)
    np.testing.assert_array_equal(data.terminal, data.obs[:, -1])
    narrow = table.set_column(table.schema.get_field_index("state"), pa.field("state", pa.list_(pa.float32(), 4)),
                              pa.array([row[:4] for row in table.column("state").to_pylist()], pa.list_(pa.float32(), 4)))
    pq.write_table(narrow.replace_schema_metadata(meta), path)
    (tmp_path / "stats.json").unlink()
    with pytest.raises(ValueError, match=f"states have 4 features, feature version .* has {FEATURE_DIM}"):
        TrajectoryDataset.load(tmp_path)


def test_an_auctionnet_trajectory_file_with_the_published_header_imports(tmp_path):
    """The header below is the public AuctionNet rlData file's, written out here rather than taken
    from aigb's column table, so a wrong name in that table fails."""
    from aigb.data.csv_import import import_csv

    header = ("deliveryPeriodIndex,advertiserNumber,advertiserCategoryIndex,budget,CPAConstraint,realAllCost,"
              "realAllConversion,timeStepIndex,state,action,reward,reward_continuous,done,next_state")
    state = "(" + ", ".join(str(i / 100) for i in range(AUCTIONNET_STATE_DIM)) + ")"
    src = tmp_path / "rl.csv"
    src.write_text(f"{header}\n7,3,1,2500.0,90.0,1800.5,21,46,\"{state}\",1.25,2,0.03,0,\"{state}\"\n")
    table = pq.read_table(import_csv(src, tmp_path / "out").outputs[0])
    row = table.to_pylist()[0]
    assert (row["period"], row["advertiser"], row["category"], row["tick"]) == (7, 3, 1, 46)
    assert (row["budget"], row["target_cpa"], row["real_all_cost"], row["real_all_conversion"]) == (2500.0, 90.0, 1800.5, 21.0)
    assert (row["action"], row["reward"], row["reward_continuous"], row["done"]) == (1.25, 2.0, pytest.approx(0.03), False)
    np.testing.assert_allclose(row["state"], np.arange(AUCTIONNET_STATE_DIM) / 100, rtol=1e-6)
    assert table.schema.equals(AUCTIONNET_TRAJECTORY_SCHEMA, check_metadata=False)


# ---------------------------------------------------------------------------------------------
# Integrity and write failures


def test_page_checksums_catch_a_flipped_byte_the_decoder_would_miss(tmp_path):
    values = np.random.default_rng(0).normal(size=200_000)  # incompressible: a flip changes values silently
    path = write_table_atomic(pa.table({"x": values}), tmp_path / "x.parquet", file_metadata("test"))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
    path.write_bytes(bytes(data))
    assert not np.array_equal(pq.read_table(path).column("x").to_numpy(), values)  # read unchecked: wrong numbers
    with pytest.raises(aparquet.CorruptFileError, match=f"{path}: damaged file.*checksum"):
        read_table(path)


def test_write_failures_name_the_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "sub" / "t.parquet"
    with pytest.raises(aparquet.OutputPathError, match=f"{target}: cannot write"):
        write_table_atomic(pa.table({"x": [1]}), target)
    with pytest.raises(aparquet.OutputPathError, match="file.txt: cannot write here .it is a file"):
        aparquet.ensure_writable_dir(tmp_path / "file.txt")
    assert aparquet.ensure_writable_dir(tmp_path / "new" / "dir").is_dir()
    assert list((tmp_path / "new" / "dir").iterdir()) == []  # the probe file is gone


# ---------------------------------------------------------------------------------------------
# Validators


def test_valid_tables_pass():
    assert not validate_impressions(impressions())
    assert not validate_trajectories(trajectories())


def test_validate_impressions_flags_each_rule():
    t = impressions(12)
    p_value = t["p_value"].to_numpy().copy()
    p_value[1] = 1.5
    sigma = t["p_value_sigma"].to_numpy().copy()
    sigma[10] = -0.1
    slot = t["slot"].to_numpy().copy()
    slot[2] = 4
    cost = t["cost"].to_numpy().copy()
    bid = t["bid"].to_numpy().copy()
    cost[3] = bid[3] * 1.5
    cost[11] = bid[11] + 1e-12  # float noise is tolerated
    won = t["won"].to_numpy(zero_copy_only=False).copy()
    won[4] = False  # row 4 is exposed
    exposed = t["exposed"].to_numpy(zero_copy_only=False).copy()
    exposed[8] = False  # row 8 converts
    cost[8] = 0.0
    budget = t["budget"].to_numpy().copy()
    budget[5] = 0.0
    target_cpa = t["target_cpa"].to_numpy().copy()
    target_cpa[6] = -1.0
    tick = t["tick"].to_numpy().copy()
    tick[7] = -1
    bid[9] = math.nan
    bad = replaced(t, p_value=p_value, p_value_sigma=sigma, slot=slot, cost=cost, bid=bid, won=won,
                   exposed=exposed, budget=budget, target_cpa=target_cpa, tick=tick)
    found = validate_impressions(bad)
    reasons = dict(zip(found.rows.tolist(), found.reasons))
    assert sorted(reasons) == list(range(1, 11))
    assert "p_value=1.5 outside [0, 1]" in reasons[1]
    assert "slot=4 outside [0, 3]" in reasons[2]
    assert "exceeds bid" in reasons[3]
    assert "exposed without won" in reasons[4]
    assert "budget=0 must be > 0" in reasons[5]
    assert "target_cpa=-1 must be > 0" in reasons[6]
    assert "tick=-1 must be >= 0" in reasons[7]
    assert "conversion without exposed" in reasons[8]
    assert "bid is not finite" in reasons[9]
    assert "p_value_sigma=-0.1 outside [0, 1]" in reasons[10]


def test_validate_reports_table_positions_across_batches():
    t = impressions(12)
    p_value = t["p_value"].to_numpy().copy()
    p_value[[2, 9]] = 2.0
    t = replaced(t, p_value=p_value)
    chunked = pa.Table.from_batches(t.to_batches(max_chunksize=5))
    assert chunked["p_value"].num_chunks == 3
    assert validate_impressions(chunked).rows.tolist() == [2, 9]
    assert validate_impressions(t.to_batches()[0].slice(5)).rows.tolist() == [4]


def test_validate_trajectories_flags_state_and_rates():
    t = trajectories(n_features=3, n=4)
    states = t["state"].to_pylist()
    states[1][2] = math.nan
    next_states = t["next_state"].to_pylist()
    next_states[0] = None  # missing on a row that is not done
    win_rate = [0.1, 0.1, 1.5, 0.1]
    bad = replaced(t, state=states, next_state=next_states, win_rate=win_rate)
    found = validate_trajectories(bad)
    reasons = dict(zip(found.rows.tolist(), found.reasons))
    assert sorted(reasons) == [0, 1, 2]
    assert "next_state missing on a row that is not done" in reasons[0]
    assert "state has non-finite values at positions [2]" in reasons[1]
    assert "win_rate=1.5 outside [0, 1]" in reasons[2]


def test_validate_auctionnet_trajectories():
    n = 3
    state = [[0.1] * AUCTIONNET_STATE_DIM] * n
    t = pa.table(
        {
            "period": [7] * n, "advertiser": [0] * n, "category": [0] * n, "budget": [100.0, 100.0, -1.0],
            "target_cpa": [10.0] * n, "real_all_cost": [50.0] * n, "real_all_conversion": [3.0] * n,
            "tick": [0, 1, 2], "state": state, "action": [1.0] * n, "reward": [0.0, -1.0, 1.0],
            "reward_continuous": [0.1] * n, "done": [False, False, True], "next_state": [state[0], state[0], None],
        },
        schema=AUCTIONNET_TRAJECTORY_SCHEMA,
    )
    found = validate_auctionnet_trajectories(t)
    assert found.rows.tolist() == [1, 2]
    assert "reward=-1 must be >= 0" in found.reasons[0]
    assert "budget=-1 must be > 0" in found.reasons[1]


def test_validator_reports_nulls_and_missing_columns():
    t = trajectories()
    with pytest.raises(ValueError, match="lacks columns"):
        validate_impressions(t)
    alpha = pa.array([1.0, None, 1.0, 1.0])
    t = t.set_column(t.schema.get_field_index("alpha"), pa.field("alpha", pa.float64()), alpha)
    found = validate_trajectories(t)
    assert found.rows.tolist() == [1] and "missing alpha" in found.reasons[0]


# ---------------------------------------------------------------------------------------------
# Files


def test_write_table_atomic_round_trip(tmp_path):
    table = impressions()
    config = {"n_pv": np.int64(500_000), "preset": "sparse", "exposure_probs": (1.0, 0.8, 0.6)}
    path = write_table_atomic(table, tmp_path / "logs" / "p7.parquet", file_metadata("impressions", config, seed=7, source="sim"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["p7.parquet"]  # no temporary file left
    back = pq.read_table(path)
    assert back.schema.equals(IMPRESSION_SCHEMA)
    assert back.equals(table)
    meta = read_metadata(path)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["aigb_version"] == aigb.__version__
    assert meta["kind"] == "impressions"
    assert meta["config"] == {"n_pv": 500_000, "preset": "sparse", "exposure_probs": [1.0, 0.8, 0.6]}
    assert meta["seed"] == 7 and meta["source"] == "sim" and meta["created_at"]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert read_table(path, kind="impressions").equals(table)


def test_file_metadata_rejects_bad_values():
    with pytest.raises(ValueError, match="kind"):
        file_metadata("")
    with pytest.raises(ValueError, match="seed"):
        file_metadata("impressions", seed=-1)
    with pytest.raises(ValueError, match="config"):
        file_metadata("impressions", {"rng": object()})
    with pytest.raises(ValueError, match="reserved"):
        file_metadata("impressions", created_at="yesterday")


def test_streaming_writer_makes_full_row_groups(tmp_path):
    table = pa.concat_tables([impressions(30)] * 9)  # 270 rows
    path = tmp_path / "s.parquet"
    with AtomicParquetWriter(path, IMPRESSION_SCHEMA, file_metadata("impressions"), row_group_size=100) as writer:
        for batch in table.to_batches(max_chunksize=30):
            writer.write_batch(batch)
            assert not path.exists()  # nothing visible before the writer closes
    assert writer.rows_written == 270
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 100, 70]
    assert pq.read_table(path).equals(table)
    assert read_metadata(path)["kind"] == "impressions"


def test_streaming_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "s.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicParquetWriter(path, IMPRESSION_SCHEMA, row_group_size=10) as writer:
            writer.write_batch(impressions(25).to_batches()[0])  # two row groups already on disk
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_writes_keep_the_previous_file(tmp_path, monkeypatch):
    path = write_table_atomic(impressions(4), tmp_path / "s.parquet")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="does not match"):
        with AtomicParquetWriter(path, IMPRESSION_SCHEMA) as writer:
            writer.write_batch(impressions(3).drop_columns(["cost"]))

    def half_write(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(aparquet.pq, "write_table", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_table_atomic(impressions(8), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]


def test_writer_must_be_used_as_context_manager(tmp_path):
    writer = AtomicParquetWriter(tmp_path / "s.parquet", IMPRESSION_SCHEMA)
    with pytest.raises(RuntimeError, match="context manager"):
        writer.write_batch(impressions(2).to_batches()[0])


def test_schema_version_mismatch_names_the_file(tmp_path):
    meta = file_metadata("impressions")
    meta[b"aigb.schema_version"] = b"999"
    path = write_table_atomic(impressions(3), tmp_path / "old.parquet", meta)
    with pytest.raises(SchemaVersionError, match=r"old\.parquet.*schema version 999"):
        check_schema_version(path)
    with pytest.raises(SchemaVersionError, match="old.parquet"):
        read_table(path)

    plain = tmp_path / "plain.parquet"
    pq.write_table(impressions(3), plain)
    with pytest.raises(SchemaVersionError, match=r"plain\.parquet: not an aigb Parquet file"):
        check_schema_version(plain)

    good = write_table_atomic(impressions(3), tmp_path / "good.parquet", file_metadata("impressions"))
    assert check_schema_version(good)["kind"] == "impressions"
    with pytest.raises(SchemaVersionError, match="expected 'trajectories'"):
        check_schema_version(good, kind="trajectories")
