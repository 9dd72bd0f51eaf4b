"""The registry, configs and the contract checker over every registered algorithm."""

import numpy as np
import pytest
import torch

from aigb.algos.base import A_HIGH, A_LOW, ACTION_BOUNDS, ActionBounds
from aigb.algos.bc import BC, BCConfig
from aigb.algos.dt import DTConfig
from aigb.algos.iql import IQLConfig
from aigb.algos.normalizer import Normalizer
from aigb.algos.check import AlgorithmCheckError, check_algorithm
from aigb.algos.registry import ALGORITHMS, CHECK_OVERRIDES, make_algorithm, make_config
from aigb.types import ConfigError


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_checker_passes_every_registered_algorithm(name):
    losses = check_algorithm(name)
    assert losses and all(np.isfinite(v) for v in losses.values())


class _OutOfBoundsPolicy:
    def act(self, states, actions, rewards):
        return A_HIGH + 1.0


class _BrokenBC(BC):
    name = "broken_bc"

    def policy(self):
        return _OutOfBoundsPolicy()


class _NondeterministicBC(BC):
    name = "flaky_bc"

    def policy(self):
        class Flaky:
            calls = 0

            def act(self, states, actions, rewards):
                Flaky.calls += 1
                return float(np.clip(-1.0 + 0.1 * Flaky.calls, A_LOW, A_HIGH))

        return Flaky()


@pytest.mark.parametrize("cls, problem", [(_BrokenBC, "within"), (_NondeterministicBC, "deterministic")])
def test_checker_catches_a_broken_algorithm(monkeypatch, cls, problem):
    monkeypatch.setitem(ALGORITHMS, cls.name, cls)
    monkeypatch.setitem(CHECK_OVERRIDES, cls.name, CHECK_OVERRIDES["bc"])
    with pytest.raises(AlgorithmCheckError, match=problem):
        check_algorithm(cls.name)


def test_unknown_algorithm_is_refused_with_the_registered_names():
    with pytest.raises(KeyError, match="unknown algorithm 'ppo'.*bc, cql, diffbid, dt, iql"):
        make_algorithm("ppo", 8)


def test_unknown_override_is_refused_naming_the_key_and_the_options():
    with pytest.raises(ConfigError, match="expectil: unknown option for IQLConfig; known options: .*expectile"):
        make_algorithm("iql", 8, {"expectil": 0.8})


def test_overrides_accept_cli_strings():
    cfg = make_config("iql", {"hidden_dims": "[64, 32]", "expectile": "0.8", "steps": "10"})
    assert cfg == IQLConfig(hidden_dims=(64, 32), expectile=0.8, steps=10)
    assert make_config("dt", {"target_return": "null"}).target_return is None
    with pytest.raises(ConfigError, match="expectile: cannot parse"):
        make_config("iql", {"expectile": "high"})
    # Text fields take the string as it is.
    assert make_config("bc", {"regress_on": "ratio", "top_fraction": "0.25"}) == BCConfig(regress_on="ratio", top_fraction=0.25)
    with pytest.raises(ConfigError, match="^regress_on: must be 'log_ratio' or 'ratio'"):
        make_config("bc", {"regress_on": "0.5"})


@pytest.mark.parametrize("cls, kwargs, field", [
    (IQLConfig, {"expectile": 1.2}, "expectile"),
    (IQLConfig, {"discount": 0.0}, "discount"),
    (BCConfig, {"hidden_dims": (64, 0)}, "hidden_dims"),
    (BCConfig, {"steps": 0}, "steps"),
    (BCConfig, {"top_fraction": 0.0}, "top_fraction"),
    (BCConfig, {"top_fraction": 1.5}, "top_fraction"),
    (DTConfig, {"embed_dim": 30, "n_heads": 4}, "n_heads"),
    (DTConfig, {"context_len": 60}, "context_len"),
    (DTConfig, {"dropout": 1.0}, "dropout"),
])
def test_bad_config_values_name_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        cls(**kwargs)


def test_bad_feature_dim_is_refused():
    with pytest.raises(ConfigError, match="feature_dim"):
        make_algorithm("bc", 0)


def test_action_bounds_map_to_the_unit_interval_and_back():
    assert (ACTION_BOUNDS.low, ACTION_BOUNDS.high) == (A_LOW, A_HIGH) == (-3.0, 2.0)
    a = np.array([A_LOW, -0.5, A_HIGH])
    np.testing.assert_allclose(ACTION_BOUNDS.to_unit(a), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(ACTION_BOUNDS.from_unit(ACTION_BOUNDS.to_unit(a)), a)
    assert ACTION_BOUNDS.clip(torch.tensor([5.0])).item() == A_HIGH
    with pytest.raises(ConfigError, match="action_bounds"):
        ActionBounds(1.0, -1.0)


def test_normalizer_validates_and_centres_constant_features():
    norm = Normalizer([1.0, 2.0], [2.0, 0.0], reward_scale=4.0)
    out = norm.states(torch.tensor([[3.0, 5.0]]))
    np.testing.assert_allclose(out.numpy(), [[1.0, 3.0]])       # constant feature divided by 1
    assert norm.rewards(torch.tensor(8.0)).item() == 2.0
    assert norm.states(torch.tensor([[1e6, 2.0]]))[0, 0].item() == norm.clip
    back = Normalizer.from_state_dict(norm.state_dict())
    np.testing.assert_array_equal(back.state_std, norm.state_std)
    with pytest.raises(ValueError, match="state_std: shape"):
        Normalizer([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="reward_scale"):
        Normalizer([0.0], [1.0], reward_scale=0.0)
    with pytest.raises(ValueError, match="state_mean: contains NaN"):
        Normalizer([np.nan], [1.0])


def test_initial_weights_do_not_touch_the_global_torch_generator():
    before = torch.random.get_rng_state()
    make_algorithm("dt", 5, CHECK_OVERRIDES["dt"], seed=3)
    make_algorithm("cql", 5, CHECK_OVERRIDES["cql"], seed=3)
    assert torch.equal(before, torch.random.get_rng_state())
