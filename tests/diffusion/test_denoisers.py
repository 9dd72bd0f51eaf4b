import pytest
import torch

from aigb.diffusion import DENOISERS, TemporalUNet, TransformerDenoiser, build_seeded, check_denoiser


@pytest.mark.parametrize("known_input", [False, True])
@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_every_registered_denoiser_meets_the_contract(name, known_input):
    check_denoiser(DENOISERS[name], horizon=48, x_dim=7, known_input=known_input)


@pytest.mark.parametrize("horizon", [1, 13, 50])
def test_unet_handles_horizons_that_do_not_halve_evenly(horizon):
    check_denoiser(TemporalUNet, horizon=horizon, x_dim=2, dim=8, dim_mults=(1, 2, 4))


def test_the_checker_catches_a_batch_dependent_network():
    class LeaksAcrossBatch(TransformerDenoiser):
        def forward(self, x_t, t, emb, known=None):
            return super().forward(x_t, t, emb, known) + x_t.mean(dim=0, keepdim=True)

    with pytest.raises(AssertionError, match="rest of its batch"):
        check_denoiser(LeaksAcrossBatch, horizon=8, x_dim=2)


def test_default_sizes():
    small = build_seeded(TransformerDenoiser, 48, 7, generator=torch.Generator().manual_seed(0))
    assert 0.08e6 < sum(p.numel() for p in small.parameters()) < 0.2e6       # ~0.12 M, anchors section 1.4
    assert all(p.dtype == torch.float32 for p in small.parameters())


def test_seeded_builds_ignore_the_global_generator():
    before = torch.random.get_rng_state()
    a = build_seeded(TemporalUNet, 48, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_seeded(TemporalUNet, 48, 7, generator=torch.Generator().manual_seed(4))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_algorithms_layer_initialiser_accepts_the_denoisers(name):
    # The planner builds on the meta device and calls aigb.algos.base.init_default_.
    base = pytest.importorskip("aigb.algos.base")
    with torch.device("meta"):
        net = DENOISERS[name](48, 7, known_input=True)
    base.init_default_(net.to_empty(device="cpu"), torch.Generator().manual_seed(0))
    ref = build_seeded(DENOISERS[name], 48, 7, known_input=True, generator=torch.Generator().manual_seed(0))
    for p, q in zip(net.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_wrong_shapes_raise():
    net = build_seeded(TransformerDenoiser, 8, 2, emb_dim=4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 8, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 8, 2), torch.zeros(3, dtype=torch.long), torch.zeros(2, 4))
