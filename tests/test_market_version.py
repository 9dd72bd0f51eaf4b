"""The market carries a version (v3 by default, v2 on request); data, checkpoints and results record
theirs, and mixing versions is refused with one line that names both."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from aigb.algos.checkpoint import load_algorithm, read_checkpoint, save_checkpoint
from aigb.algos.registry import CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm
from aigb.cli import build_parser, main
from aigb.data.dataset import TrajectoryDataset
from aigb.data.generate import DATASET_FILE, generate_dataset
from aigb.eval.evaluate import combine_results, evaluate, load_results
from aigb.workflows.training import train
from aigb.strategies.registry import strategy_factory
from aigb.types import MARKET_VERSION, MarketConfig, MarketVersionError

SMALL = MarketConfig(n_pv=3000, n_ticks=8, n_advertisers=8, preset="random")
V2 = replace(SMALL, version="v2")


def test_v3_is_the_default_and_every_record_names_its_version():
    assert MARKET_VERSION == "v3"
    assert MarketConfig().to_dict()["market_version"] == "v3"
    assert MarketConfig(version="v2").to_dict()["market_version"] == "v2"


@pytest.mark.parametrize("command", [["simulate"], ["generate", "--periods", "1", "--out", "x"],
                                     ["train", "bc", "--data", "x"], ["sweep", "bc", "--data", "x", "--grid", "lr=1", "--out", "x"],
                                     ["evaluate", "--strategy", "fixed", "--out", "x"], ["export-neurips2024", "fixed", "--out", "x"],
                                     ["diffbid", "tune-guidance", "diffbid:x.pt"]])
def test_every_command_that_makes_a_market_takes_its_version(command):
    parser = build_parser()
    assert parser.parse_args(command).market_version == "v3"
    assert parser.parse_args([*command, "--market-version", "v2"]).market_version == "v2"
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--market-version", "v1"])


def test_v2_is_reproduced_bit_for_bit(tmp_path, monkeypatch):
    """Rows of a v2 evaluation as the code wrote them while v2 was the default (pinned then)."""
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path / "cache"))
    market = MarketConfig(n_pv=4000, n_ticks=12, n_advertisers=8, version="v2")
    t = evaluate(["fixed", "pid", "onlinelp", "oracle"], periods=2, slots=[0, 5], market=market, progress=False).table
    assert t.column("spend").to_pylist() == [
        13.190530109086662, 110.71436467398755, 33.20073085464404, 123.97348847817689, 613.9421060830306,
        756.2284150356754, 815.9674284615695, 625.4362289138812, 52.904857970592936, 209.28774597460736,
        98.47139583317066, 194.4034119854202, 87.17270707928127, 197.48116562279523, 100.58280521023532, 223.35529157081316]
    assert t.column("conversions").to_pylist() == [0, 2, 0, 1, 2, 4, 2, 2, 1, 3, 0, 1, 2, 2, 0, 1]
    assert t.column("oracle_score").to_pylist() == [
        0.35924628945166637, 1.659705555700454, 0.7909257917416703, 1.7682728873238325, 0.3204763612960531,
        1.6095980998675987, 0.7678854323208675, 1.7632738452486156, 0.3465947052120155, 1.6414823896928716,
        0.780998340693933, 1.7646626723226535, 0.3401012994350796, 1.6428468065347426, 0.7810435351734683, 1.7623856746517759]
    # The default market plays another field on the same campaigns.
    v3 = evaluate(["fixed"], periods=2, slots=[0, 5], market=replace(market, version="v3"), progress=False).table
    assert v3.column("spend").to_pylist() != t.column("spend").to_pylist()[:4]


def test_a_dataset_of_a_version_not_simulated_is_refused(tmp_path):
    generate_dataset(tmp_path, 1, 0, market=SMALL, progress=False)
    assert TrajectoryDataset.load(tmp_path).market_version == "v3"
    info = json.loads((tmp_path / DATASET_FILE).read_text())
    info["config"]["market"]["market_version"] = "v1"
    (tmp_path / DATASET_FILE).write_text(json.dumps(info))
    with pytest.raises(MarketVersionError, match="dataset.json: market version v1 is not one this aigb simulates"):
        TrajectoryDataset.load(tmp_path)
    del info["config"]["market"]["market_version"]  # written before versions existed: v1
    (tmp_path / DATASET_FILE).write_text(json.dumps(info))
    with pytest.raises(MarketVersionError, match="market version v1 is not"):
        TrajectoryDataset.load(tmp_path)


def test_a_dataset_mixing_versions_is_refused(tmp_path):
    generate_dataset(tmp_path / "v2", 1, 0, market=V2, progress=False)
    generate_dataset(tmp_path / "v3", 1, 0, market=SMALL, progress=False)
    shutil.copyfile(tmp_path / "v3" / "trajectories" / "period=00000.parquet", tmp_path / "v2" / "trajectories" / "period=00001.parquet")
    with pytest.raises(MarketVersionError, match="holds data of market versions v2, v3"):
        TrajectoryDataset.load(tmp_path / "v2")


def test_training_for_another_version_than_the_datasets_is_refused_and_the_checkpoint_records_it(tmp_path, capsys):
    generate_dataset(tmp_path / "data", 1, 0, market=V2, progress=False)
    with pytest.raises(MarketVersionError, match=r"dataset .*data: market version v2 != v3 of the training market"):
        train("bc", tmp_path / "data", run_dir=tmp_path / "run3", steps=2, batch_size=8, validation=None, progress=False)
    assert main(["train", "bc", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run_cli"), "--steps", "2",
                 "--no-validation", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "market version v2 != v3 of the training market" in err and "--market-version v2" in err
    train("bc", tmp_path / "data", run_dir=tmp_path / "run2", steps=2, batch_size=8, validation=None, progress=False,
          market_version="v2")
    best = tmp_path / "run2" / "last.pt"
    assert read_checkpoint(best)["market_version"] == "v2"
    assert json.loads((tmp_path / "run2" / "train_args.json").read_text())["market_version"] == "v2"
    # Played in the market it was trained for it loads; in the default v3 market it is refused.
    strategy_factory(f"bc:{best}")(V2)
    with pytest.raises(MarketVersionError, match=r"checkpoint .*last\.pt: market version v2 != v3 of the evaluation market"):
        strategy_factory(f"bc:{best}")(SMALL)


def test_a_checkpoint_of_a_version_not_simulated_is_refused(tmp_path):
    data = SyntheticTrajectories(n_trajectories=8, n_ticks=6, feature_dim=4, seed=0)
    algo = make_algorithm("bc", data.feature_dim, CHECK_OVERRIDES["bc"], seed=0)
    algo.prepare(data, 0)
    path = save_checkpoint(tmp_path / "bc.pt", algo)
    load_algorithm(path)
    payload = torch.load(path, weights_only=True)
    assert payload["market_version"] == MARKET_VERSION   # synthetic data is from no market: served on the default
    payload["market_version"] = "v1"
    torch.save(payload, path)
    with pytest.raises(MarketVersionError, match=r"checkpoint .*bc\.pt: market version v1 is not one this aigb simulates"):
        load_algorithm(path)


def test_results_of_a_version_not_simulated_or_of_two_versions_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path / "cache"))
    evaluate(["fixed"], periods=1, slots=1, market=SMALL, out_dir=tmp_path / "r3", progress=False)
    evaluate(["pid"], periods=1, slots=1, market=V2, out_dir=tmp_path / "r2", progress=False)
    assert load_results(tmp_path / "r2")[1]["market"]["market_version"] == "v2"
    with pytest.raises(MarketVersionError, match="r2 was evaluated on market v2 and .*r3 on market v3; results of "
                                                 "different market versions do not combine"):
        combine_results([tmp_path / "r3", tmp_path / "r2"])
    assert main(["compare", str(tmp_path / "r3"), str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "market v2" in err and "market v3" in err
    config_path = tmp_path / "r3" / "config.json"
    config = json.loads(config_path.read_text())
    config["market"]["market_version"] = "v1"
    config_path.write_text(json.dumps(config))
    with pytest.raises(MarketVersionError, match="config.json: market version v1 is not one this aigb simulates"):
        load_results(tmp_path / "r3")
