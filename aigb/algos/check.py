"""The contract checker of the registered algorithms.

    check_algorithm("iql")                               -> raises AlgorithmCheckError on a broken contract

``check_algorithm`` runs a tiny configuration (``registry.CHECK_OVERRIDES``) on
``SyntheticTrajectories``, an in-memory dataset with a known good policy that also serves the tests
and the step-speed benchmark.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from aigb.algos.base import A_HIGH, A_LOW, Algorithm, Policy
from aigb.algos.checkpoint import load_policy, save_checkpoint
from aigb.algos.registry import CHECK_OVERRIDES, make_algorithm
from aigb.algos.synthetic import SyntheticTrajectories
from aigb.seeding import rng as named_rng

__all__ = ["AlgorithmCheckError", "check_algorithm"]


class AlgorithmCheckError(AssertionError):
    """A registered algorithm breaks its contract; the message says which part."""


# --------------------------------------------------------------------------------------------
# The contract checker
# --------------------------------------------------------------------------------------------

def _fail(name: str, what: str) -> None:
    raise AlgorithmCheckError(f"{name}: {what}")


def _actions(policy: Policy, data: SyntheticTrajectories, ticks: tuple[int, ...]) -> list[float]:
    traj = data.trajectory(0)
    return [policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t]) for t in ticks]


def check_algorithm(name: str, *, seed: int = 0, overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Check the ``Algorithm`` contract of ``name`` on tiny synthetic data; returns the last losses.

    Checks: protocol conformance; ``update`` returns finite float losses; the policy meets
    ``Policy``, returns floats within [A_LOW, A_HIGH], is deterministic and is a snapshot;
    a checkpoint round trip and a state-dict round trip reproduce actions exactly, and the
    restored algorithm continues training identically; a malformed batch raises ``ValueError``.
    """

    data = SyntheticTrajectories(n_trajectories=32, n_ticks=12, feature_dim=5, seed=seed)
    cfg_overrides = {**CHECK_OVERRIDES.get(name, {}), **dict(overrides or {})}
    algo = make_algorithm(name, data.feature_dim, cfg_overrides, seed=seed)
    if not isinstance(algo, Algorithm):
        _fail(name, "does not implement the Algorithm protocol")
    algo.prepare(data, seed)
    rng = named_rng(seed, "check-algorithm")
    batches = [algo.sample_batch(data, algo.config.batch_size, rng) for _ in range(4)]
    losses: dict[str, float] = {}
    for batch in batches[:3]:
        losses = algo.update(batch)
        if not isinstance(losses, dict) or not losses:
            _fail(name, f"update must return a non-empty dict of losses, got {losses!r}")
        for key, value in losses.items():
            if not isinstance(value, float) or not math.isfinite(value):
                _fail(name, f"loss {key!r} is not a finite float: {value!r}")
    if algo.n_updates != 3:
        _fail(name, f"n_updates is {algo.n_updates} after 3 updates")

    ticks = (0, 1, 5, data.n_ticks - 1)
    policy = algo.policy()
    if not isinstance(policy, Policy):
        _fail(name, "policy() does not implement the Policy protocol")
    first = _actions(policy, data, ticks)
    if first != _actions(policy, data, ticks):
        _fail(name, f"policy is not deterministic: {first} vs a second call")
    for a in first:
        if not isinstance(a, float) or not (A_LOW <= a <= A_HIGH):
            _fail(name, f"action {a!r} is not a float within [{A_LOW}, {A_HIGH}]")

    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "check.pt", algo, dataset_fingerprint=data.fingerprint)
        restored = load_policy(path, expected_feature_version=data.feature_version)
        if _actions(restored, data, ticks) != first:
            _fail(name, "checkpoint round trip changes the policy's actions")

    twin = make_algorithm(name, data.feature_dim, cfg_overrides, seed=seed + 1)
    twin.load_state_dict(algo.state_dict())
    if _actions(twin.policy(), data, ticks) != first:
        _fail(name, "state-dict round trip changes the policy's actions")
    loss_a, loss_b = algo.update(batches[3]), twin.update(batches[3])
    if loss_a != loss_b:
        _fail(name, f"a restored algorithm trains differently: {loss_a} vs {loss_b}")
    for (key, p), q in zip(algo.nets.state_dict().items(), twin.nets.state_dict().values()):
        if not torch.equal(p, q):
            _fail(name, f"weights {key!r} diverge after one update from a restored state")
    if _actions(policy, data, ticks) != first:
        _fail(name, "policy() is not a snapshot: further training changed it")

    broken = dict(batches[0])
    broken.pop("obs")
    try:
        algo.update(broken)
    except ValueError as exc:
        if "obs" not in str(exc):
            _fail(name, f"a batch without 'obs' raised an error that does not name it: {exc}")
    else:
        _fail(name, "a batch without 'obs' was accepted")
    return loss_a
