"""Reading datasets: whole trajectories, batch sampling, normalisation statistics, info."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from aigb.data import commands
from aigb.data.dataset import STATS_FILE, TrajectoryDataset, dataset_info
from aigb.data.generate import DATASET_FILE, generate_dataset, period_path
from aigb.data.parquet import read_metadata, write_table_atomic, file_metadata
from aigb.features import FEATURE_DIM, FEATURE_VERSION, FeatureVersionError
from aigb.score import score
from aigb.types import MarketConfig

SMALL = MarketConfig(n_pv=5000, preset="random")
SEED = 5


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    generate_dataset(out, 3, SEED, market=SMALL, progress=False)
    return out


@pytest.fixture(scope="module")
def dataset(directory):
    return TrajectoryDataset.load(directory)


def test_load_gives_whole_trajectories(dataset, directory):
    assert dataset.feature_dim == FEATURE_DIM and dataset.feature_version == FEATURE_VERSION
    assert dataset.n_trajectories == 3 * 48 and dataset.n_ticks == 48 and len(dataset) == 3 * 48 * 48
    tr = dataset.trajectories()
    assert tr["obs"].shape == (144, 48, FEATURE_DIM) and tr["obs"].dtype == np.float32
    assert tr["next_obs"].shape == (144, 48, FEATURE_DIM)
    assert tr["action"].shape == tr["score_to_go"].shape == tr["done"].shape == (144, 48)
    assert tr["period"].shape == (144,) and sorted(set(tr["period"].tolist())) == [0, 1, 2]
    # Same values as the file, row for row.
    table = pq.read_table(period_path(directory, "trajectories", 2))
    rows = np.flatnonzero(table.column("advertiser").to_numpy() == 7)
    i = int(np.flatnonzero((tr["period"] == 2) & (tr["advertiser"] == 7))[0])
    state = table.column("state").combine_chunks().values.to_numpy().reshape(-1, FEATURE_DIM)[rows]
    np.testing.assert_array_equal(tr["obs"][i], state)
    np.testing.assert_array_equal(tr["alpha"][i], table.column("alpha").to_numpy()[rows])
    nxt = table.column("next_state").combine_chunks().values.to_numpy().reshape(-1, FEATURE_DIM)[rows]
    np.testing.assert_array_equal(tr["next_obs"][i], nxt)
    assert tr["done"][:, -1].all() and not tr["done"][:, :-1].any()


def test_sample_transitions(dataset):
    batch = dataset.sample_transitions(512, np.random.default_rng(0))
    shapes = {k: v.shape for k, v in batch.items()}
    assert shapes == {"obs": (512, FEATURE_DIM), "action": (512,), "reward": (512,), "next_obs": (512, FEATURE_DIM),
                      "done": (512,), "score_to_go": (512,), "reward_sparse": (512,)}
    assert all(v.dtype == np.float32 for v in batch.values())
    assert set(np.unique(batch["done"]).tolist()) <= {0.0, 1.0}
    # Every sample is a real (trajectory, tick) of the data with its own next state.
    tr = dataset.trajectories()
    obs = tr["obs"].reshape(-1, FEATURE_DIM)
    key = {row.tobytes(): n for n, row in enumerate(obs)}
    for k in range(64):
        n = key[batch["obs"][k].tobytes()]
        i, t = divmod(n, 48)
        np.testing.assert_array_equal(batch["next_obs"][k], tr["next_obs"][i, t])
        assert batch["done"][k] == float(t == 47)
        assert batch["action"][k] == tr["action"][i, t]
        assert batch["reward_sparse"][k] == np.float32(tr["reward_sparse"][i, t])
        # The penalised reward is the step of the score-to-go: the campaign's rewards sum to its score.
        stg_next = tr["score_to_go"][i, t + 1] if t < 47 else 0.0
        assert batch["reward"][k] == np.float32(tr["score_to_go"][i, t] - stg_next)
    penalised = tr["score_to_go"][:, 0]
    np.testing.assert_allclose(np.diff(-np.concatenate([tr["score_to_go"], np.zeros((len(penalised), 1))], axis=1), axis=1).sum(axis=1), penalised)
    # Same generator state, same batch.
    again = dataset.sample_transitions(512, np.random.default_rng(0))
    assert all(np.array_equal(batch[k], again[k]) for k in batch)


def test_campaign_efficiency_is_score_over_what_the_budget_buys_at_target_cpa(dataset):
    tr = dataset.trajectories()
    expected = tr["score_to_go"][:, 0] / (tr["budget"] / tr["target_cpa"])
    np.testing.assert_allclose(dataset.campaign_efficiency, expected, rtol=1e-12)
    assert dataset.campaign_efficiency.shape == (dataset.n_trajectories,)


def test_sample_transitions_among_given_trajectories(dataset):
    chosen = np.array([3, 50, 141])
    batch = dataset.sample_transitions(400, np.random.default_rng(2), trajectories=chosen)
    obs = dataset.trajectories()["obs"]
    allowed = {row.tobytes() for row in obs[chosen].reshape(-1, FEATURE_DIM)}
    assert all(row.tobytes() in allowed for row in batch["obs"])
    # All three campaigns and many ticks are drawn.
    assert len({row.tobytes() for row in batch["obs"]}) > 60
    for bad, match in (([], "non-empty"), ([0, 144], r"\[0, 144\)"), ([-1], "indices")):
        with pytest.raises(ValueError, match=f"trajectories: .*{match}"):
            dataset.sample_transitions(8, np.random.default_rng(0), trajectories=np.array(bad, dtype=np.int64))


def test_sample_windows_shapes_and_left_padding(dataset):
    k_len = 20
    w = dataset.sample_windows(256, k_len, np.random.default_rng(1))
    assert w["obs"].shape == (256, k_len, FEATURE_DIM)
    for name in ("action", "rtg", "reward", "timestep", "mask"):
        assert w[name].shape == (256, k_len)
    assert w["timestep"].dtype == np.int64 and w["mask"].dtype == np.float32 and w["obs"].dtype == np.float32
    mask = w["mask"].astype(bool)
    # Padding only on the left, and padded positions are zeros.
    assert (np.diff(w["mask"], axis=1) >= 0).all() and mask[:, -1].all()
    assert (w["obs"][~mask] == 0).all() and (w["rtg"][~mask] == 0).all() and (w["timestep"][~mask] == 0).all()
    assert (~mask).any() and mask.all(axis=1).any()
    # Real steps are consecutive ticks of one trajectory.
    tr = dataset.trajectories()
    for b in range(32):
        ts = w["timestep"][b][mask[b]]
        assert (np.diff(ts) == 1).all()
        candidates = np.flatnonzero((tr["obs"][:, ts[0]] == w["obs"][b, np.argmax(mask[b])]).all(axis=1))
        i = candidates[0]
        np.testing.assert_array_equal(w["obs"][b][mask[b]], tr["obs"][i, ts])
        np.testing.assert_array_equal(w["rtg"][b][mask[b]], tr["score_to_go"][i, ts].astype(np.float32))
        np.testing.assert_array_equal(w["action"][b][mask[b]], tr["action"][i, ts])


def test_windows_longer_than_the_period_are_padded(dataset):
    w = dataset.sample_windows(8, 60, np.random.default_rng(2))
    assert w["obs"].shape == (8, 60, FEATURE_DIM)
    assert (w["mask"][:, :12] == 0).all() and (w["mask"].sum(axis=1) <= 48).all()


def test_normalisation_statistics_are_stored_and_reused(directory, dataset):
    stats_path = directory / STATS_FILE
    stored = json.loads(stats_path.read_text())
    obs = dataset.trajectories()["obs"].reshape(-1, FEATURE_DIM).astype(np.float64)
    np.testing.assert_allclose(dataset.state_mean, obs.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dataset.state_std, obs.std(axis=0), rtol=1e-5, atol=1e-7)
    tr = dataset.trajectories()
    final = score(tr["conversions"].sum(1), tr["cost"].sum(1), tr["target_cpa"])
    assert dataset.reward_scale == pytest.approx(final.mean()) and dataset.reward_scale > 0
    assert dataset.return_quantiles[0.5] == pytest.approx(np.quantile(final, 0.5))
    levels = sorted(dataset.return_quantiles)
    assert all(dataset.return_quantiles[a] <= dataset.return_quantiles[b] for a, b in zip(levels, levels[1:]))
    # A second load reads the stored file instead of recomputing it.
    mtime = os.stat(stats_path).st_mtime_ns
    again = TrajectoryDataset.load(directory)
    assert os.stat(stats_path).st_mtime_ns == mtime
    np.testing.assert_array_equal(again.state_mean, dataset.state_mean)
    assert stored["files"] and stored["feature_version"] == FEATURE_VERSION


def test_statistics_are_recomputed_when_the_data_changes(directory, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    before = TrajectoryDataset.load(copy)
    generate_dataset(copy, 1, SEED, market=SMALL, first_period=3, progress=False)
    after = TrajectoryDataset.load(copy)
    assert after.n_trajectories == before.n_trajectories + 48
    assert json.loads((copy / STATS_FILE).read_text())["n_trajectories"] == after.n_trajectories
    assert not np.array_equal(after.state_mean, before.state_mean)


def test_split_by_period(dataset):
    train, val = dataset.split(validation_fraction=0.34, seed=0)
    assert set(train.periods.tolist()) | set(val.periods.tolist()) == {0, 1, 2}
    assert not set(train.periods.tolist()) & set(val.periods.tolist())
    assert val.n_trajectories == 48 and train.n_trajectories == 96
    np.testing.assert_array_equal(train.state_mean, dataset.state_mean)
    assert val.reward_scale == dataset.reward_scale
    again, _ = dataset.split(validation_fraction=0.34, seed=0)
    np.testing.assert_array_equal(again.periods, train.periods)
    with pytest.raises(ValueError, match="validation_fraction"):
        dataset.split(validation_fraction=1.0)
    with pytest.raises(ValueError, match="periods"):
        dataset.select_periods([9])


def test_feature_version_mismatch_is_refused(directory, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(directory, copy)
    path = period_path(copy, "trajectories", 1)
    meta = read_metadata(path)
    write_table_atomic(pq.read_table(path), path, file_metadata("trajectories", meta["config"], meta["seed"],
                                                               period=1, feature_version="v0"))
    (copy / DATASET_FILE).unlink()
    with pytest.raises(FeatureVersionError, match="v0"):
        TrajectoryDataset.load(copy)
    # dataset.json alone also names the version.
    copy2 = tmp_path / "old2"
    shutil.copytree(directory, copy2)
    info = json.loads((copy2 / DATASET_FILE).read_text())
    (copy2 / DATASET_FILE).write_text(json.dumps({**info, "feature_version": "v0"}))
    with pytest.raises(FeatureVersionError):
        TrajectoryDataset.load(copy2)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="trajectories"):
        TrajectoryDataset.load(tmp_path)


def test_dataset_info(directory, dataset):
    info = dataset_info(directory)
    assert info["periods"] == 3 and info["campaigns"] == 144 and info["trajectory_rows"] == 3 * 48 * 48
    assert info["impression_rows"] == 0 and info["feature_version"] == FEATURE_VERSION and info["feature_version_ok"]
    assert info["seed"] == SEED and info["config"]["market"]["n_pv"] == 5000
    assert info["trajectory_bytes"] == sum(p.stat().st_size for p in (directory / "trajectories").glob("*.parquet"))
    final = dataset.trajectories()["score_to_go"][:, 0]
    assert info["score"]["mean"] == pytest.approx(final.mean())
    assert info["score"]["quantiles"]["0.5"] == pytest.approx(np.quantile(final, 0.5))


def _parser():
    parser = argparse.ArgumentParser(prog="aigb")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_generate_and_info(tmp_path, capsys):
    out = tmp_path / "cli"
    args = _parser().parse_args(["generate", "--periods", "1", "--out", str(out), "--n-pv", "3000", "--seed", "2",
                                 "--quiet"])
    assert args.func(args) == 0
    assert "generated 1 period(s)" in capsys.readouterr().out
    assert read_metadata(period_path(out, "trajectories", 0))["config"]["market"]["n_pv"] == 3000

    args = _parser().parse_args(["dataset", "info", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "periods          1 (0..0), seed 2, market v3, preset random, 3,000 PVs" in text
    assert "campaigns        48" in text and "trajectory rows  2,304" in text and "behaviour score  mean" in text

    args = _parser().parse_args(["dataset", "info", str(out), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["campaigns"] == 48

    # Another seed into the same directory: a clear error and exit code 2.
    args = _parser().parse_args(["generate", "--periods", "1", "--out", str(out), "--n-pv", "3000", "--seed", "3",
                                 "--quiet"])
    assert args.func(args) == 2
    assert "seed" in capsys.readouterr().err
    args = _parser().parse_args(["dataset", "info", str(tmp_path / "nothing")])
    assert args.func(args) == 2
