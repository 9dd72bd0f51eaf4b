import pytest
import torch
from torch import nn

from aigb.diffusion import CosineSchedule, TransformerDenoiser, build_seeded, completer_loss, prefix_mask, random_prefix_mask


class Recorder(nn.Module):
    """A fake denoiser: records its inputs and returns a fixed output plus an optional edit."""

    def __init__(self, output: torch.Tensor, known_input: bool = False) -> None:
        super().__init__()
        self.output, self.known_input, self.seen = output, known_input, {}

    def forward(self, x_t, t, emb, known=None):
        self.seen = {"x_t": x_t.clone(), "t": t.clone(), "known": known}
        return self.output


def setup(b=4, h=6, d=3):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, h, d, generator=g)
    known = prefix_mask(torch.tensor([0, 2, 5, 3]), h)
    return CosineSchedule(100), x0, torch.zeros(b, 1), known


def test_loss_is_the_mean_squared_error_over_unknown_rows_by_hand():
    sched, x0, emb, known = setup()
    out = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    loss = completer_loss(Recorder(out), sched, x0, emb, known, torch.Generator().manual_seed(5))
    # Replay the generator: t first, then the noise.
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    unknown = ~known
    expected = (out - noise)[unknown].square().mean()
    torch.testing.assert_close(loss, expected)


def test_known_rows_are_clean_and_unknown_rows_noised_in_the_input():
    sched, x0, emb, known = setup()
    rec = Recorder(torch.zeros_like(x0), known_input=True)
    completer_loss(rec, sched, x0, emb, known, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    assert torch.equal(rec.seen["t"], t)
    assert torch.equal(rec.seen["x_t"][known], x0[known])
    torch.testing.assert_close(rec.seen["x_t"][~known], sched.q_sample(x0, t, noise)[~known])
    assert torch.equal(rec.seen["known"], known)                 # a known_input denoiser is told


def test_perturbing_known_rows_of_the_output_changes_nothing_and_unknown_rows_do():
    sched, x0, emb, known = setup()
    out = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    base = completer_loss(Recorder(out), sched, x0, emb, known, torch.Generator().manual_seed(5))
    on_known = out + 100.0 * known[..., None]
    assert completer_loss(Recorder(on_known), sched, x0, emb, known, torch.Generator().manual_seed(5)) == base
    inf_known = out.clone()
    inf_known[known] = float("inf")
    assert completer_loss(Recorder(inf_known), sched, x0, emb, known, torch.Generator().manual_seed(5)) == base
    on_unknown = out + 0.1 * (~known)[..., None]
    assert completer_loss(Recorder(on_unknown), sched, x0, emb, known, torch.Generator().manual_seed(5)) != base


def test_gradients_reach_only_through_unknown_rows():
    sched, x0, emb, known = setup()
    out = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9), requires_grad=True)
    completer_loss(Recorder(out), sched, x0, emb, known, torch.Generator().manual_seed(5)).backward()
    assert (out.grad[known] == 0).all() and (out.grad[~known] != 0).all()


def test_row_weights_give_a_weighted_mean():
    sched, x0, emb, known = setup()
    out = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    w = torch.linspace(1.0, 3.0, 6)
    loss = completer_loss(Recorder(out), sched, x0, emb, known, torch.Generator().manual_seed(5), weight=w)
    g = torch.Generator().manual_seed(5)
    torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    rw = (~known) * w
    expected = ((out - noise).square().mean(-1) * rw).sum() / rw.sum()
    torch.testing.assert_close(loss, expected)


def test_all_rows_known_gives_zero():
    sched, x0, emb, _ = setup()
    known = torch.ones(4, 6, dtype=torch.bool)
    assert completer_loss(Recorder(torch.ones_like(x0)), sched, x0, emb, known, torch.Generator()) == 0


def test_loss_is_deterministic_for_a_seed_and_differentiable_for_a_real_denoiser():
    sched, x0, _, known = setup()
    net = build_seeded(TransformerDenoiser, 6, 3, emb_dim=4, d_model=16, n_heads=2, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(4, 4)
    l1 = completer_loss(net, sched, x0, emb, known, torch.Generator().manual_seed(1))
    l2 = completer_loss(net, sched, x0, emb, known, torch.Generator().manual_seed(1))
    l3 = completer_loss(net, sched, x0, emb, known, torch.Generator().manual_seed(2))
    assert l1 == l2 and l1 != l3
    l1.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_random_prefix_mask_lengths():
    g = torch.Generator().manual_seed(0)
    m = random_prefix_mask(5_000, 10, g)
    lengths = m.sum(1)
    assert torch.equal(m, prefix_mask(lengths, 10))             # prefixes, nothing else
    assert lengths.min() == 0 and lengths.max() == 9           # at least one unknown row
    counts = torch.bincount(lengths, minlength=10).float()
    assert (counts - 500).abs().max() < 100
    with pytest.raises(ValueError):
        random_prefix_mask(3, 10, g, low=5, high=5)
