"""Self-describing checkpoints: round trips, weights-only loading and refusals."""

import json

import numpy as np
import pytest
import torch

from aigb.algos.base import ACTION_BOUNDS
from aigb.algos.checkpoint import (
    CHECKPOINT_FORMAT, FeatureVersionMismatch, atomic_torch_save, load_algorithm, load_policy, read_checkpoint,
    save_checkpoint,
)
from aigb.algos.registry import ALGORITHMS, CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm
from aigb.seeding import rng


@pytest.fixture(scope="module")
def data():
    return SyntheticTrajectories(n_trajectories=32, n_ticks=12, feature_dim=5, seed=0, feature_version="feat-v3")


def _trained(name, data, steps=3):
    algo = make_algorithm(name, data.feature_dim, CHECK_OVERRIDES[name], seed=0)
    algo.prepare(data, 0)
    gen = rng(0, "ckpt")
    for _ in range(steps):
        algo.update(algo.sample_batch(data, algo.config.batch_size, gen))
    return algo


def _actions(policy, data):
    out = []
    for i in range(3):
        traj = data.trajectory(i)
        for t in (0, 3, 11):
            out.append(policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t]))
    return out


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_round_trip_reproduces_actions_and_describes_itself(name, data, tmp_path):
    algo = _trained(name, data)
    path = save_checkpoint(tmp_path / "m.pt", algo, dataset_fingerprint=data.fingerprint, with_optimizers=False)
    payload = torch.load(path, weights_only=True)      # loads without unpickling any code
    assert payload["format"] == CHECKPOINT_FORMAT and payload["algo"] == name
    assert json.loads(payload["config"])["batch_size"] == algo.config.batch_size
    assert payload["feature_version"] == "feat-v3" and payload["feature_dim"] == data.feature_dim
    assert payload["action_bounds"] == ACTION_BOUNDS.to_dict()
    assert json.loads(payload["dataset_fingerprint"]) == data.fingerprint
    np.testing.assert_array_equal(payload["algorithm"]["normalizer"]["state_mean"].numpy(), data.state_mean)
    assert "optimizers" not in payload["algorithm"]
    assert _actions(load_policy(path, expected_feature_version="feat-v3"), data) == _actions(algo.policy(), data)


def test_full_checkpoint_restores_optimisers_and_training_continues_identically(data, tmp_path):
    algo = _trained("cql", data)
    path = save_checkpoint(tmp_path / "last.pt", algo)
    restored = load_algorithm(path)
    assert restored.n_updates == algo.n_updates == 3
    batch = algo.sample_batch(data, algo.config.batch_size, rng(5, "next"))
    assert algo.update(batch) == restored.update(batch)
    for (k, v), w in zip(algo.nets.state_dict().items(), restored.nets.state_dict().values()):
        assert torch.equal(v, w), k


def test_feature_version_mismatch_is_refused_naming_both_versions_and_the_file(data, tmp_path):
    path = save_checkpoint(tmp_path / "iql.pt", _trained("iql", data, steps=1))
    with pytest.raises(FeatureVersionMismatch) as err:
        load_policy(path, expected_feature_version="feat-v4")
    message = str(err.value)
    assert "'feat-v3'" in message and "'feat-v4'" in message and str(path) in message


def test_untrained_algorithm_cannot_be_saved_without_a_feature_version(data, tmp_path):
    algo = make_algorithm("bc", data.feature_dim, CHECK_OVERRIDES["bc"])
    with pytest.raises(ValueError, match="feature_version is unset"):
        save_checkpoint(tmp_path / "x.pt", algo)


def test_foreign_and_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as an aigb checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    atomic_torch_save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an aigb algorithm checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_checkpoint_with_other_action_bounds_is_refused(data, tmp_path):
    path = save_checkpoint(tmp_path / "bc.pt", _trained("bc", data, steps=1))
    payload = torch.load(path, weights_only=True)
    payload["action_bounds"] = {**payload["action_bounds"], "high": 3.0}
    atomic_torch_save(payload, path)
    with pytest.raises(ValueError, match="action bounds"):
        load_policy(path)


def test_atomic_save_leaves_no_temporary_file(tmp_path):
    atomic_torch_save({"a": torch.ones(1)}, tmp_path / "sub" / "f.pt")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.pt"]
