"""Named random streams: pure functions of (root seed, name, indices)."""

import zlib

import numpy as np
import pytest

from aigb.seeding import rng, seed_sequence, stream_key, torch_seed


def test_streams_are_reproducible():
    np.testing.assert_array_equal(rng(7, "traffic", 3, 17).random(5), rng(7, "traffic", 3, 17).random(5))
    assert torch_seed(7, "init", 1) == torch_seed(7, "init", 1)


@pytest.mark.parametrize("other", [
    (8, "traffic", 3, 17),    # root seed
    (7, "outcome", 3, 17),    # name
    (7, "traffic", 4, 17),    # first index
    (7, "traffic", 3, 18),    # second index
    (7, "traffic", 17, 3),    # index order
    (7, "traffic", 3),        # fewer indices
    (7, "traffic", 3, 17, 0),  # more indices
])
def test_distinct_streams_differ(other):
    base = rng(7, "traffic", 3, 17).random(4)
    assert not np.array_equal(base, rng(*other).random(4))


def test_stream_key_is_crc32_of_the_name_then_indices():
    assert stream_key("traffic", 2, 5) == (zlib.crc32(b"traffic"), 2, 5)
    assert stream_key("x") == (zlib.crc32(b"x"),)
    assert seed_sequence(3, "traffic", 2).spawn_key == stream_key("traffic", 2)
    assert seed_sequence(3, "traffic", 2).entropy == 3


def test_bad_seeds_names_and_indices_are_rejected():
    with pytest.raises(ValueError, match="seed"):
        rng(-1, "traffic")
    with pytest.raises(ValueError, match="index"):
        rng(0, "traffic", -2)
    with pytest.raises(ValueError, match="name"):
        rng(0, "")
    with pytest.raises(ValueError, match="name"):
        stream_key(5)


def test_torch_seed_is_a_63_bit_integer():
    seeds = {torch_seed(s, "policy", i) for s in range(4) for i in range(4)}
    assert len(seeds) == 16
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)


def test_streams_do_not_touch_the_global_generator():
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    rng(5, "bidding", 0, 0).standard_normal(100)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
