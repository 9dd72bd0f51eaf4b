"""Named random streams derived from one root seed.

Every random draw in aigb comes from ``rng(root_seed, name, *indices)``. The stream is a pure
function of its arguments, so the traffic of period 3 tick 17 is the same whichever strategy is
being evaluated and in whichever order periods run (paired comparisons and resumable jobs rely on
this). Names are mapped to integers with CRC-32, which, unlike ``hash()``, is stable across
processes and Python versions. Library code never touches numpy's or torch's global generators.

Periods are split into disjoint ranges, so that no training campaign shares a (seed, period)
stream, and hence traffic, with a validation or evaluation one whatever seeds each side uses:
training data and derived files (datasets, the OnlineLP prior) use periods below
``VALIDATION_FIRST_PERIOD``; validation during training uses periods from it; evaluation uses
periods from ``EVAL_FIRST_PERIOD``.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["rng", "seed_sequence", "stream_key", "torch_seed", "VALIDATION_FIRST_PERIOD", "EVAL_FIRST_PERIOD"]

VALIDATION_FIRST_PERIOD = 500_000
"""First period of validation campaigns; training data lies below it."""
EVAL_FIRST_PERIOD = 1_000_000
"""First evaluation period."""


def stream_key(name: str, *indices: int) -> tuple[int, ...]:
    """The spawn key of a named stream: ``(crc32(name), *indices)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"stream name must be a non-empty string, got {name!r}")
    key = [zlib.crc32(name.encode("utf-8"))]
    for i in indices:
        i = int(i)
        if i < 0:
            raise ValueError(f"stream index must be >= 0, got {i} in stream {name!r}")
        key.append(i)
    return tuple(key)


def seed_sequence(root_seed: int, name: str, *indices: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of stream ``name`` at ``indices`` under ``root_seed``."""
    root_seed = int(root_seed)
    if root_seed < 0:
        raise ValueError(f"seed must be >= 0, got {root_seed}")
    return np.random.SeedSequence(entropy=root_seed, spawn_key=stream_key(name, *indices))


def rng(root_seed: int, name: str, *indices: int) -> np.random.Generator:
    """A fresh generator for stream ``name`` at ``indices``, e.g. ``rng(7, "traffic", period, tick)``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(root_seed, name, *indices)))


def torch_seed(root_seed: int, name: str, *indices: int) -> int:
    """A 63-bit integer seed for a ``torch.Generator`` drawn from a named stream."""
    return int(seed_sequence(root_seed, name, *indices).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> np.uint64(1))
