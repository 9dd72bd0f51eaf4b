"""Imported AuctionNet data: converter parity with AuctionNet's rlData, datasets that train, errors.

The real files under tests/data/auctionnet/ are a cut of one period written by AuctionNet's own
simulator and converter (see its README): the parity test compares our 16-feature states,
actions, rewards and ``done`` built from advertiser 0's impression log with the rlData rows
AuctionNet's converter made from the whole log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aigb.data.auctionnet import LogColumnsError, converter_rows, log_tick_stats
from aigb.data.csv_import import import_csv
from aigb.data.dataset import TrajectoryDataset, dataset_info
from aigb.data.imported import MixedSourcesError, build_imported_dataset
from aigb.data.parquet import file_metadata, write_table_atomic
from aigb.features import (AUCTIONNET_FEATURE_VERSION, FEATURE_VERSION, FeatureVersionError, auctionnet_features,
                           auctionnet_state_from_history)
from aigb.score import score

DATA = Path(__file__).parent / "auctionnet"
LOG = DATA / "period-0_advertiser-0_ticks-0-3.csv.zst"
RLDATA = DATA / "period-0-rlData_advertiser-0_ticks-0-3.csv"
N = 4  # ticks in the extract


@pytest.fixture(scope="module")
def imported_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("log")
    report = import_csv([LOG], out)
    return out, report


@pytest.fixture(scope="module")
def imported_rldata(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl")
    import_csv([RLDATA], out)
    return out


def _rldata_rows() -> list[dict]:
    """The rlData rows as AuctionNet wrote them, parsed as float64 by the csv module."""
    with open(RLDATA, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["state"] = [float(x) for x in r["state"].strip("()").split(",")]
    return sorted(rows, key=lambda r: float(r["timeStepIndex"]))


def _log_rows() -> list[dict]:
    with pa.input_stream(str(LOG), compression="zstd") as fh:
        text = fh.read().decode()
    return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


def test_converter_parity_with_auctionnet_rldata(imported_log):
    out, _ = imported_log
    log = log_tick_stats(sorted((out / "impressions").glob("period=0/*.parquet")), feature_set=AUCTIONNET_FEATURE_VERSION)
    ours = converter_rows(log)
    theirs = _rldata_rows()
    assert len(theirs) == N
    state = np.array([r["state"] for r in theirs])                          # (4, 16) float64 from text
    np.testing.assert_allclose(ours["state"][0, :N], state, rtol=2e-6, atol=1e-12)
    # Volumes are counts: exact.
    np.testing.assert_array_equal(ours["state"][0, :N, 13:], state[:, 13:])
    np.testing.assert_allclose(ours["action"][0, :N], [float(r["action"]) for r in theirs], rtol=1e-5)
    np.testing.assert_array_equal(ours["reward"][0, :N], [float(r["reward"]) for r in theirs])
    np.testing.assert_allclose(ours["reward_continuous"][0, :N], [float(r["reward_continuous"]) for r in theirs], rtol=1e-6)
    assert ours["done"][0, :N].tolist() == [r["done"] == "1" for r in theirs]


def test_done_follows_is_end_on_every_later_tick(tmp_path):
    # Advertiser 1's rows say isEnd from tick 2 on (budget spent): done there and after, as
    # AuctionNet's converter marks it; advertiser 0 is done on the last tick only.
    rows = []
    for tick in range(5):
        for adv in range(2):
            for pv in range(3):
                rows.append({"period": 3, "advertiser": adv, "category": adv, "budget": 100.0, "target_cpa": 10.0,
                             "tick": tick, "remaining_budget": 100.0 - tick, "pv_index": pv, "p_value": 0.01,
                             "p_value_sigma": 0.001, "bid": 0.1, "won": False, "slot": 0, "cost": 0.0, "exposed": False,
                             "conversion": False, "least_winning_cost": 0.2, "is_end": adv == 1 and tick >= 2})
    from aigb.data.schema import IMPRESSION_SCHEMA

    path = tmp_path / "p.parquet"
    write_table_atomic(pa.Table.from_pylist(rows, schema=IMPRESSION_SCHEMA), path, file_metadata("impressions"))
    done = converter_rows(log_tick_stats([path], n_ticks=5))["done"]
    assert done.tolist() == [[False, False, False, False, True], [False, False, True, True, True]]


def test_imported_log_is_a_dataset(imported_log):
    out, report = imported_log
    info = json.loads((out / "dataset.json").read_text())
    assert info["imported"] is True and info["seed"] is None and info["config"] is None
    assert info["format"] == "auctionnet-impressions" and info["feature_version"] == FEATURE_VERSION
    assert info["periods"] == [0]
    assert info["sources"] == [{"file": LOG.name, "bytes": LOG.stat().st_size,
                                "sha256": "sha256:" + hashlib.sha256(LOG.read_bytes()).hexdigest()}]
    assert report.dataset.built == (0,)
    data = TrajectoryDataset.load(out)
    assert data.n_trajectories == 1 and data.feature_version == FEATURE_VERSION
    # Per-tick spend and conversions, counted from the CSV text independently of the importer.
    rows = _log_rows()
    spend = [sum(r["cost"] for r in rows if r["timeStepIndex"] == t and r["isExposed"] == 1) for t in range(N)]
    conv = [sum(r["conversionAction"] for r in rows if r["timeStepIndex"] == t and r["isExposed"] == 1) for t in range(N)]
    c = data.columns
    np.testing.assert_allclose(c["cost"][0, :N], spend, rtol=1e-12)
    np.testing.assert_array_equal(c["conversions"][0, :N], conv)
    assert c["budget"][0] == 2900.0 and c["target_cpa"][0] == 100.0
    # The score-to-go at tick 0 is the campaign's score over the ticks the log holds.
    assert c["score_to_go"][0, 0] == pytest.approx(score(sum(conv), sum(spend), 100.0))
    summary = dataset_info(out)
    assert summary["imported"] and summary["campaigns"] == 1 and summary["impression_rows"] == len(rows)
    # A second build finds the period up to date.
    assert build_imported_dataset(out).built == ()


def test_rldata_dataset_under_auctionnet16(imported_rldata):
    data = TrajectoryDataset.load(imported_rldata)
    assert data.feature_version == AUCTIONNET_FEATURE_VERSION and data.feature_dim == 16
    theirs = _rldata_rows()
    np.testing.assert_allclose(data.obs[0], np.array([r["state"] for r in theirs], dtype=np.float32))
    # Cost per tick is the fall of the remaining budget, the last tick's the period total less the
    # rest (to float32 precision of the stored state: 2900 x 2^-24 ~ 2e-4).
    budget_left = np.array([r["state"][1] for r in theirs]) * 2900.0
    np.testing.assert_allclose(data.columns["cost"][0, :-1], budget_left[:-1] - budget_left[1:], atol=5e-4)
    assert data.columns["cost"][0].sum() == pytest.approx(float(theirs[0]["realAllCost"]))
    assert dataset_info(imported_rldata)["feature_version"] == AUCTIONNET_FEATURE_VERSION


@pytest.mark.parametrize("which", ["log", "rldata"])
def test_imported_data_trains_and_serves_its_features(which, imported_log, imported_rldata, tmp_path):
    from aigb.workflows.training import train
    from aigb.strategies.learned import load_strategy

    data_dir = imported_log[0] if which == "log" else imported_rldata
    result = train("bc", data_dir, run_dir=tmp_path / "run", steps=3, batch_size=8, validation=None, progress=False,
                   overrides={"hidden_dims": "[16, 16]"})
    expected = FEATURE_VERSION if which == "log" else AUCTIONNET_FEATURE_VERSION
    strategy = load_strategy("bc", str(result.run_dir / "best.pt"))
    assert strategy.feature_set == expected
    other = AUCTIONNET_FEATURE_VERSION if which == "log" else FEATURE_VERSION
    with pytest.raises(FeatureVersionError, match=f"{expected}.*{other}"):
        load_strategy("bc", str(result.run_dir / "best.pt"), feature_set=other)


def test_mixed_sources_are_refused(imported_log, tmp_path):
    out = tmp_path / "mixed"
    import_csv([LOG], out)
    with pytest.raises(MixedSourcesError, match=r"rlData_advertiser-0_ticks-0-3.csv: field kind: .* holds impression logs"):
        import_csv([RLDATA], out)
    assert not (out / "trajectories" / "period-0-rlData_advertiser-0_ticks-0-3.parquet").exists()  # refused before writing
    with pytest.raises(MixedSourcesError, match=r"rlData_advertiser-0_ticks-0-3.csv: field kind"):
        import_csv([LOG, RLDATA], tmp_path / "both")
    # A folder mixed by hand (without the import's check) is refused when it is built or loaded.
    import_csv([RLDATA], out, build_dataset=False)
    with pytest.raises(MixedSourcesError, match=r"mixes an impression log .*ticks-0-3.parquet.* and rlData"):
        build_imported_dataset(out)


def test_log_without_the_columns_a_feature_set_needs(tmp_path, imported_log):
    src = next((imported_log[0] / "impressions").glob("period=0/*.parquet"))
    table = pq.read_table(src).drop(["least_winning_cost"])
    path = tmp_path / "no_lwc.parquet"
    pq.write_table(table, path)
    with pytest.raises(LogColumnsError, match=r"no_lwc.parquet: lacks column\(s\) \['least_winning_cost'\]"):
        log_tick_stats([path], feature_set=AUCTIONNET_FEATURE_VERSION)


def test_serving_rebuilds_auctionnet16_from_the_competition_history():
    """The competition's history arguments and our tick statistics give the same 16 features."""
    g = np.random.default_rng(3)
    n_ticks, budget = 6, 500.0
    hist = {k: [] for k in ("pvi", "bid", "res", "imp", "lwc")}
    stats = {k: [] for k in ("bid_mean", "lwc_mean", "p_value_mean", "conversion_rate", "win_rate", "n_pv", "cost")}
    spent = 0.0
    for t in range(n_ticks):
        n = int(g.integers(1, 40))
        p, bid, lwc = g.random(n) * 1e-3, g.random(n), g.random(n)
        won = bid >= lwc
        cost = np.where(won, lwc, 0.0)
        conv = won & (g.random(n) < 0.3)
        state = auctionnet_state_from_history(t, p, hist["pvi"], hist["bid"], hist["res"], hist["imp"], hist["lwc"],
                                              budget, budget - spent, n_ticks)
        ours = auctionnet_features({k: np.asarray(v) for k, v in stats.items()}, n_ticks, n, p.mean(), budget)
        np.testing.assert_allclose(state, ours, rtol=1e-6)
        assert state[0] == pytest.approx((n_ticks - t) / n_ticks)
        hist["pvi"].append(np.stack([p, p / 10], axis=1))
        hist["bid"].append(bid)
        hist["res"].append(np.stack([won, won, cost], axis=1).astype(float))
        hist["imp"].append(np.stack([won, conv], axis=1).astype(float))
        hist["lwc"].append(lwc)
        for k, v in (("bid_mean", bid.mean()), ("lwc_mean", lwc.mean()), ("p_value_mean", p.mean()),
                     ("conversion_rate", conv.mean()), ("win_rate", won.mean()), ("n_pv", n), ("cost", cost.sum())):
            stats[k].append(v)
        spent += cost.sum()
    # Mid-day, by hand: last3 is the three ticks before the current one, its PV count their sum.
    assert state[14] == sum(stats["n_pv"][-4:-1]) and state[15] == sum(stats["n_pv"][:-1])
    assert state[3] == pytest.approx(np.mean(stats["bid_mean"][-4:-1]))


PLAYER = '''
import numpy as np

class PlayerBiddingStrategy:
    def __init__(self, budget=100, name="Player", cpa=2, category=1):
        self.budget, self.cpa, self.category, self.name = budget, cpa, category, name
        self.remaining_budget = budget

    def reset(self):
        self.remaining_budget = self.budget

    def bidding(self, timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
                historyAuctionResult, historyImpressionResult, historyLeastWinningCost):
        # The history the replay hands over must add up to the budget the harness tracks.
        spent = sum(float(np.sum(r[:, 2] * i[:, 0])) for r, i in zip(historyAuctionResult, historyImpressionResult))
        assert abs(self.budget - spent - self.remaining_budget) < 1e-6 * self.budget
        assert all(np.all(r[:, 0] == (b >= l) * (b > 0)) for r, b, l in zip(historyAuctionResult, historyBid, historyLeastWinningCost))
        return self.cpa * pValues
'''


def test_import_train_replay_end_to_end(imported_log, tmp_path):
    """The real extract: rules and a competition class replay; a policy trained on it is refused."""
    from aigb.eval.replay import replay_evaluate
    from aigb.workflows.training import train
    from aigb.types import ConfigError

    out, _ = imported_log
    player = tmp_path / "player.py"
    player.write_text(PLAYER)
    specs = ["fixed", "pid", f"neurips2024:{player}:PlayerBiddingStrategy"]
    res = replay_evaluate(specs, out, budget_rate=1.5, out_dir=tmp_path / "replay", progress=False)
    rows = res.table.to_pylist()
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    assert all(r["advertiser"] == 0 and r["budget"] == 2900.0 * 1.5 and r["target_cpa"] == 100.0 for r in rows)
    # fixed (alpha = CPA) and the player (bid = cpa x pValue) bid alike: the same PVs, the same luck.
    assert rows[0]["spend"] == rows[2]["spend"] and rows[0]["conversions"] == rows[2]["conversions"]
    run = train("bc", out, run_dir=tmp_path / "run", steps=2, batch_size=8, validation=None, progress=False,
                overrides={"hidden_dims": "[8]"})
    with pytest.raises(ConfigError, match=r"replay period\(s\) \[0\]"):
        replay_evaluate([f"bc:{run.run_dir / 'best.pt'}"], out, progress=False)


def test_a_generated_period_written_as_auctionnet_csv_imports_to_its_own_trajectories(tmp_path):
    """Our simulator's log, exported in AuctionNet's CSV form (every value a float) and imported,
    gives the trajectories ``aigb generate`` wrote for that period: states, rewards, score-to-go."""
    import pyarrow.csv as pacsv

    from aigb.data.generate import generate_dataset, period_path
    from aigb.data.schema import IMPRESSION_CSV_COLUMNS
    from aigb.types import MarketConfig

    native = tmp_path / "native"
    generate_dataset(native, 1, 11, market=MarketConfig(n_pv=3000, preset="random"), impressions=True, progress=False)
    log = pq.read_table(period_path(native, "impressions", 0))
    names = list(IMPRESSION_CSV_COLUMNS)
    csv_path = tmp_path / "period-0.csv"
    pacsv.write_csv(pa.table([log.column(ours).cast(pa.float64()) for ours in IMPRESSION_CSV_COLUMNS.values()], names=names),
                    csv_path)
    import_csv([csv_path], tmp_path / "imported")
    a = TrajectoryDataset.load(native).trajectories()
    b = TrajectoryDataset.load(tmp_path / "imported").trajectories()
    for key in ("obs", "next_obs", "reward_sparse", "reward_dense", "score_to_go", "cost", "conversions", "remaining_budget",
                "n_pv", "budget", "target_cpa", "category", "advertiser"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-9, err_msg=key)
    # The behaviour multiplier: AuctionNet's total bid / total pValue equals the controller's alpha
    # wherever the market did not zero bids (an exhausted budget, a budget-cap re-run).
    same = np.isclose(b["alpha"], a["alpha"], rtol=1e-6)
    assert same.mean() > 0.95


def test_a_campaign_changing_within_a_period_is_named(tmp_path):
    from aigb.data.schema import IMPRESSION_SCHEMA

    rows = [{"period": 3, "advertiser": 0, "category": 0, "budget": 100.0 if t < 2 else 120.0, "target_cpa": 10.0, "tick": t,
             "remaining_budget": 100.0, "pv_index": 0, "p_value": 0.01, "p_value_sigma": 0.001, "bid": 0.1, "won": False,
             "slot": 0, "cost": 0.0, "exposed": False, "conversion": False, "least_winning_cost": 0.2, "is_end": False}
            for t in range(4)]
    path = tmp_path / "p.parquet"
    write_table_atomic(pa.Table.from_pylist(rows, schema=IMPRESSION_SCHEMA), path, file_metadata("impressions"))
    with pytest.raises(ValueError, match=r"p.parquet: fields advertiserCategoryIndex/budget/CPAConstraint of advertiser 0 "
                                         r"change within period 3: \(0, 100.0, 10.0\) vs \(0, 120.0, 10.0\)"):
        log_tick_stats([path], n_ticks=4)


def test_a_policy_trained_on_rldata_exports_and_bids_as_aigb_serves_it(imported_rldata, tmp_path):
    """The exported runtime rebuilds AuctionNet's 16 features from the competition's history
    arguments, bit for bit as aigb's serving does from its tick statistics."""
    from aigb.workflows.training import train
    from aigb.export.exporter import export_neurips2024, load_exported_class
    from aigb.export.harness import play_competition, play_env
    from aigb.strategies.registry import make_strategy
    from aigb.types import MarketConfig

    run = train("bc", imported_rldata, run_dir=tmp_path / "run", steps=30, batch_size=8, validation=None, progress=False,
                overrides={"hidden_dims": "[16, 16]"})
    market = MarketConfig(n_pv=20_000, n_advertisers=8)
    spec = f"bc:{run.run_dir / 'best.pt'}"
    report = export_neurips2024(spec, tmp_path / "export", market=market)
    assert report.max_bid_difference == 0.0
    assert json.loads((tmp_path / "export" / "params.json").read_text())["feature_version"] == AUCTIONNET_FEATURE_VERSION
    player = load_exported_class(tmp_path / "export")()
    harness = play_competition(player, market, 5, 1_000_003, 3)
    env = play_env(make_strategy(spec, market), market, 5, 1_000_003, 3)
    assert env.max_bid_difference(harness) == 0.0
    assert len({round(a, 9) for a in player.alphas}) > 2, "a constant bid multiplier would test little"
