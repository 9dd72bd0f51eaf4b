"""The market carries a version; data, checkpoints and results of another version are refused,
with an error that names both versions."""

from __future__ import annotations

import json

import pytest
import torch

from aigb.algos.checkpoint import load_algorithm, save_checkpoint
from aigb.algos.registry import CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm
from aigb.data.dataset import TrajectoryDataset
from aigb.data.generate import DATASET_FILE, generate_dataset
from aigb.eval.evaluate import evaluate, load_results
from aigb.types import MARKET_VERSION, MarketConfig, MarketVersionError

SMALL = MarketConfig(n_pv=3000, n_ticks=8, n_advertisers=8, preset="random")


def test_every_record_of_a_market_names_its_version():
    assert MARKET_VERSION == "v2"
    assert MarketConfig().to_dict()["market_version"] == "v2"


def test_a_dataset_of_another_market_version_is_refused(tmp_path):
    generate_dataset(tmp_path, 1, 0, market=SMALL, progress=False)
    TrajectoryDataset.load(tmp_path)  # the current version loads
    info = json.loads((tmp_path / DATASET_FILE).read_text())
    info["config"]["market"]["market_version"] = "v1"
    (tmp_path / DATASET_FILE).write_text(json.dumps(info))
    with pytest.raises(MarketVersionError, match="market version v1 != v2"):
        TrajectoryDataset.load(tmp_path)
    del info["config"]["market"]["market_version"]  # written before versions existed: v1
    (tmp_path / DATASET_FILE).write_text(json.dumps(info))
    with pytest.raises(MarketVersionError, match="v1 != v2"):
        TrajectoryDataset.load(tmp_path)


def test_a_checkpoint_of_another_market_version_is_refused(tmp_path):
    data = SyntheticTrajectories(n_trajectories=8, n_ticks=6, feature_dim=4, seed=0)
    algo = make_algorithm("bc", data.feature_dim, CHECK_OVERRIDES["bc"], seed=0)
    algo.prepare(data, 0)
    path = save_checkpoint(tmp_path / "bc.pt", algo)
    load_algorithm(path)
    payload = torch.load(path, weights_only=True)
    assert payload["market_version"] == MARKET_VERSION
    payload["market_version"] = "v1"
    torch.save(payload, path)
    with pytest.raises(MarketVersionError, match=r"checkpoint .*bc\.pt: market version v1 != v2"):
        load_algorithm(path)


def test_results_of_another_market_version_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path / "cache"))
    evaluate(["fixed"], periods=1, slots=1, market=SMALL, out_dir=tmp_path / "r", progress=False)
    load_results(tmp_path / "r")
    config_path = tmp_path / "r" / "config.json"
    config = json.loads(config_path.read_text())
    config["market"]["market_version"] = "v1"
    config_path.write_text(json.dumps(config))
    with pytest.raises(MarketVersionError, match="config.json: market version v1 != v2"):
        load_results(tmp_path / "r")
