import math

import pytest
import torch

from aigb.diffusion import ConditionEmbedding, build_seeded


def make(outcome_dim=3, drop_prob=0.25):
    return build_seeded(ConditionEmbedding, 4, outcome_dim, emb_dim=8, drop_prob=drop_prob, generator=torch.Generator().manual_seed(0))


def test_dropped_rows_equal_the_unconditional_embedding_whatever_the_outcome():
    net = make()
    g = torch.Generator().manual_seed(1)
    ctx, out = torch.randn(6, 4, generator=g), torch.randn(6, 3, generator=g)
    drop = torch.tensor([True, False, True, False, False, True])
    e = net(ctx, out, drop)
    e_uncond = net(ctx, None)
    assert e.shape == (6, 8)
    torch.testing.assert_close(e[drop], e_uncond[drop], rtol=0, atol=0)
    # The outcome matters where it is kept and nowhere else.
    e_other = net(ctx, out + 5.0, drop)
    torch.testing.assert_close(e_other[drop], e[drop], rtol=0, atol=0)
    assert (e_other[~drop] - e[~drop]).abs().amax(dim=1).min() > 1e-4


def test_context_is_never_dropped():
    net = make()
    g = torch.Generator().manual_seed(2)
    ctx, out = torch.randn(4, 4, generator=g), torch.randn(4, 3, generator=g)
    drop = torch.ones(4, dtype=torch.bool)
    moved = net(ctx + 1.0, out, drop) - net(ctx, out, drop)
    assert moved.abs().amax(dim=1).min() > 1e-4


def test_null_embedding_is_learned():
    net = make()
    ctx, out = torch.randn(3, 4), torch.randn(3, 3)
    net(ctx, out, torch.tensor([True, False, True])).sum().backward()
    assert net.null.value.grad is not None and net.null.value.grad.abs().sum() > 0


def test_drop_mask_rate_and_determinism_from_its_generator_only():
    net = make(drop_prob=0.25)
    before = torch.random.get_rng_state()
    m1 = net.drop_mask(20_000, torch.Generator().manual_seed(7))
    m2 = net.drop_mask(20_000, torch.Generator().manual_seed(7))
    m3 = net.drop_mask(20_000, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert m1.dtype == torch.bool and m1.shape == (20_000,)
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    # Binomial(20000, 0.25): 5 standard deviations is 0.0153.
    assert abs(m1.float().mean().item() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 20_000)
    assert not make(drop_prob=0.0).drop_mask(100, torch.Generator()).any()
    assert make(drop_prob=1.0).drop_mask(100, torch.Generator()).all()


def test_no_outcome_condition_at_all():
    net = build_seeded(ConditionEmbedding, 2, 0, emb_dim=8, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(3, 2)
    torch.testing.assert_close(net(ctx, None), net(ctx, torch.zeros(3, 0)), rtol=0, atol=0)


@pytest.mark.parametrize("args", [(torch.zeros(2, 5), None), (torch.zeros(2, 4), torch.zeros(2, 2))])
def test_shapes_are_checked(args):
    with pytest.raises(ValueError):
        make()(*args)
