"""Offline replay evaluation: a hand-computed period, paired luck, budget rates, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from aigb.data.parquet import file_metadata, write_table_atomic
from aigb.data.schema import IMPRESSION_SCHEMA
from aigb.eval.evaluate import load_results
from aigb.eval.replay import ReplayDataError, load_replay_log, replay_evaluate, replay_periods, replay_rollout
from aigb.strategies.rules import FixedRate
from aigb.types import ConfigError, MarketConfig

MARKET = MarketConfig(n_ticks=3)
# Per tick: the logged least winning cost of each PV (the same for every advertiser).
LWC = [[3.0, 5.0, 1.0, 4.0], [3.0, 3.0, 3.0, 3.0, 3.0], [0.6, 0.6]]
# Per advertiser and tick: p_value of each PV (sigma 0, so a won PV converts iff p_value is 1).
P_VALUE = {0: [[1, 1, 0, 1], [1, 1, 1, 1, 0], [1, 1]], 1: [[1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1]]}
CAMPAIGN = {0: (1, 20.0, 4.0), 1: (2, 20.0, 4.0)}  # category, budget, target CPA


def write_log(directory, period: int = 7, p_value=P_VALUE, sigma: float = 0.0, lwc=LWC):
    rows = []
    for adv, ticks in p_value.items():
        cat, budget, cpa = CAMPAIGN.get(adv, (0, 1000.0, 4.0))
        for t, ps in enumerate(ticks):
            for i, p in enumerate(ps):
                rows.append({"period": period, "advertiser": adv, "category": cat, "budget": budget, "target_cpa": cpa,
                             "tick": t, "remaining_budget": budget, "pv_index": i, "p_value": p, "p_value_sigma": sigma * (p > 0),
                             "bid": 0.0, "won": False, "slot": 0, "cost": 0.0, "exposed": False, "conversion": False,
                             "least_winning_cost": lwc[t][i], "is_end": False})
    path = directory / "impressions" / f"period={period}" / "log.parquet"
    write_table_atomic(pa.Table.from_pylist(rows, schema=IMPRESSION_SCHEMA), path, file_metadata("impressions"))
    return directory


def test_replay_equals_the_hand_computed_period(tmp_path):
    """fixed:rate=1 bids alpha = CPA = 4 on p_value 1, 0 on p_value 0. By hand:

    advertiser 0, budget 20: tick 0 wins PVs 0 and 3 (4 >= 3, 4 >= 4; PV 1 costs 5, PV 2 has no
    bid), pays 3 + 4 = 7, 2 conversions, 13 left; tick 1 wins 4 PVs for 12, 1 left; tick 2 would pay
    1.2 > 1, drops ceil(2 x 0.2 / 1.2) = 1 PV, pays 0.6: 7 conversions for 19.6.
    advertiser 1: tick 0 wins PVs 0, 2, 3 for 8 (12 left); tick 1 would pay 15 > 12, drops
    ceil(5 x 3 / 15) = 1: 4 PVs for 12, nothing left; tick 2 below the minimum, no bids: 7 for 20.
    At budget rate 0.5 (budget 10): advertiser 0 pays 7 (3 left), then tick 1 drops
    ceil(4 x 9 / 12) = 3 of 4 (one PV for 3), nothing left: 3 conversions for 10; advertiser 1 pays
    8 (2 left), tick 1 drops ceil(5 x 13 / 15) = 5 of 5, tick 2 wins both for 1.2: 5 for 9.2.
    """
    write_log(tmp_path / "log")
    expected = {1.0: {0: (7, 19.6), 1: (7, 20.0)}, 0.5: {0: (3, 10.0), 1: (5, 9.2)}}
    for rate, by_adv in expected.items():
        out = tmp_path / f"out-{rate}"
        res = replay_evaluate(["fixed:rate=1"], tmp_path / "log", budget_rate=rate, market=MARKET, out_dir=out,
                              progress=False)
        rows = {r["advertiser"]: r for r in res.table.to_pylist()}
        assert sorted(rows) == [0, 1]  # every advertiser of the period
        for adv, (conv, spend) in by_adv.items():
            r = rows[adv]
            assert r["conversions"] == conv and r["spend"] == pytest.approx(spend)
            assert r["budget"] == CAMPAIGN[adv][1] * rate and r["target_cpa"] == 4.0 and r["category"] == CAMPAIGN[adv][0]
            assert r["score"] == conv  # CPA <= 4 everywhere: no penalty
            assert r["expected_score"] <= r["oracle_score"] + 1e-9
        # Advertiser 1's bound by hand at rate 1: each PV is one conversion at its price; the LP buys
        # the cheapest first, the two 0.6s and the 1 (2.2), then 17.8 / 3 of the six PVs at 3.
        if rate == 1.0:
            assert rows[1]["oracle_conversions"] == pytest.approx(2 + 1 + 5 + (20 - 0.6 * 2 - 1 - 15) / 3)
        stored, config = load_results(out)
        assert stored.num_rows == 2 and config["replay"]["budget_rate"] == rate
        assert config["replay"]["sources"]["7"][0]["file"] == "log.parquet"


def test_values_and_conversions_are_paired_and_drawn_around_p_value(tmp_path):
    g = np.random.default_rng(0)
    n = 4000
    p = {9: [list(np.full(n, 0.3))] * 3}  # budget 1000: every PV is won
    lwc = [list(g.uniform(0.001, 0.01, n))] * 3
    write_log(tmp_path / "log", p_value=p, sigma=0.1, lwc=lwc)
    log = load_replay_log(replay_periods(tmp_path / "log")[7], 9, 3)
    everything = replay_rollout(FixedRate(rate=1.0), "all", log, seed=3, market=MARKET)
    assert everything["expected_conversions"] == pytest.approx(0.3 * 3 * n)
    # E[clip(N(0.3, 0.1), 0, 1)] = 0.3 (the clip cuts 0.1 % of the mass): conversions ~ Binomial(3n, 0.3).
    assert abs(everything["conversions"] / (3 * n) - 0.3) < 4 * np.sqrt(0.21 / (3 * n))
    again = replay_rollout(FixedRate(rate=1.0), "again", log, seed=3, market=MARKET)
    assert again["conversions"] == everything["conversions"]
    other_seed = replay_rollout(FixedRate(rate=1.0), "seed 4", log, seed=4, market=MARKET)
    assert other_seed["conversions"] != everything["conversions"]


def test_missing_periods_and_advertisers_are_named(tmp_path):
    write_log(tmp_path / "log")
    with pytest.raises(ReplayDataError, match=r"log: field periods: period\(s\) \[8\] not in"):
        replay_evaluate(["fixed"], tmp_path / "log", periods=[8], market=MARKET, progress=False)
    with pytest.raises(ReplayDataError, match=r"field slots: advertiser\(s\) \[5\]"):
        replay_evaluate(["fixed"], tmp_path / "log", slots=[5], market=MARKET, progress=False)
    with pytest.raises(ReplayDataError, match="no impressions/ folder"):
        replay_evaluate(["fixed"], tmp_path, market=MARKET, progress=False)
    with pytest.raises(ConfigError, match="hindsight"):
        replay_evaluate(["oracle"], tmp_path / "log", market=MARKET, progress=False)


def test_replaying_training_periods_is_refused(tmp_path):
    from aigb.data.imported import build_imported_dataset
    from aigb.workflows.training import train

    # An imported dataset of period 7 (its log written as an import would, with a source).
    data = write_log(tmp_path / "data")
    log = next((data / "impressions").glob("period=7/*.parquet"))
    table = pa.parquet.read_table(log)
    write_table_atomic(table, log, file_metadata("impressions", source="period-7.csv", source_sha256="sha256:0", source_bytes=1))
    build_imported_dataset(data)
    run = train("bc", data, run_dir=tmp_path / "run", steps=2, batch_size=4, validation=None, progress=False,
                overrides={"hidden_dims": "[8]"})
    spec = f"bc:{run.run_dir / 'best.pt'}"
    write_log(tmp_path / "replay")
    with pytest.raises(ConfigError, match=r"replay period\(s\) \[7\] .* training data of bc:.*dataset.json, field periods"):
        replay_evaluate([spec], tmp_path / "replay", market=MARKET, progress=False)
    # Another period replays.
    write_log(tmp_path / "replay8", period=8)
    res = replay_evaluate([spec, "fixed"], tmp_path / "replay8", market=MARKET, progress=False)
    assert res.table.num_rows == 4 and all(e is None for e in res.table.column("error").to_pylist())
    assert json.loads((data / "dataset.json").read_text())["periods"] == [7]


def test_command_line_replays_each_budget_rate(tmp_path, capsys):
    from aigb.cli import main

    write_log(tmp_path / "log")
    code = main(["evaluate", "--replay", str(tmp_path / "log"), "--strategy", "fixed:rate=1", "--budget-rate", "0.5", "1",
                 "--n-ticks", "3", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "budget rate 0.5" in printed and "period 7: 4.00" in printed  # (3 + 5) / 2 conversions at rate 0.5
    for rate in (0.5, 1.0):
        _, config = load_results(tmp_path / "out" / f"budget-{rate * 100:g}")
        assert config["replay"]["budget_rate"] == rate
    assert main(["evaluate", "--strategy", "fixed", "--budget-rate", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "--budget-rate and --replay-periods need --replay DIR" in capsys.readouterr().err
