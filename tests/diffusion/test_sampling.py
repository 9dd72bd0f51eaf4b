import math

import pytest
import torch

from aigb.diffusion import (
    CosineSchedule, TransformerDenoiser, build_seeded, cfg_combine, cfg_eps_fn, ddim_sample, ddim_timesteps, ddpm_sample,
    inpaint, prefix_mask,
)

SCHED = CosineSchedule(100)


def gaussian_eps(mean: float, std: float, schedule=SCHED):
    """The exact noise prediction E[eps | x_t] when the data are N(mean, std^2 I) (independent of any model)."""
    def eps_fn(x_t, t):
        ab = schedule.alpha_bar[t].to(torch.float32)[:, None, None]
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * mean) / (ab * std * std + 1 - ab)
    return eps_fn


def random_eps_fn(seed=0, h=8, d=2):
    """An untrained transformer: an arbitrary but fixed eps_fn."""
    net = build_seeded(TransformerDenoiser, h, d, emb_dim=4, d_model=16, n_heads=2, generator=torch.Generator().manual_seed(seed)).eval()
    emb = torch.randn(3, 4, generator=torch.Generator().manual_seed(seed + 1))
    return cfg_eps_fn(net, emb)


# --- classifier-free guidance ------------------------------------------------------------------
def test_cfg_combine_endpoints_are_exact_and_the_formula_holds():
    g = torch.Generator().manual_seed(0)
    c, u = torch.randn(4, 5, 3, generator=g), torch.randn(4, 5, 3, generator=g)
    assert torch.equal(cfg_combine(c, u, 0.0), u)
    assert torch.equal(cfg_combine(c, u, 1.0), c)
    for w in (0.2, 1.2, 3.0):
        torch.testing.assert_close(cfg_combine(c, u, w), u + w * (c - u))


def test_cfg_eps_fn_batches_both_branches_in_one_call():
    net = build_seeded(TransformerDenoiser, 8, 2, emb_dim=4, d_model=16, n_heads=2, generator=torch.Generator().manual_seed(0)).eval()
    calls = []
    net.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    g = torch.Generator().manual_seed(1)
    e_c, e_u, x = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 8, 2, generator=g)
    t = torch.full((3,), 40)
    with torch.no_grad():
        eps = cfg_eps_fn(net, e_c, e_u, 1.2)(x, t)
        assert calls == [6]
        expected = net(x, t, e_u) + 1.2 * (net(x, t, e_c) - net(x, t, e_u))
        torch.testing.assert_close(eps, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cfg_eps_fn(net, e_c, e_u, 1.0)(x, t), net(x, t, e_c), rtol=0, atol=0)
        torch.testing.assert_close(cfg_eps_fn(net, e_c, e_u, 0.0)(x, t), net(x, t, e_u), rtol=0, atol=0)


# --- helpers ---------------------------------------------------------------------------------
def test_inpaint_replaces_exactly_the_known_rows():
    x, known_x = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
    mask = prefix_mask(torch.tensor([1, 3]), 4)
    out = inpaint(x, known_x, mask)
    assert out[0, :1].eq(1).all() and out[0, 1:].eq(0).all() and out[1, :3].eq(1).all() and out[1, 3:].eq(0).all()
    assert inpaint(x, None, None) is x


def test_ddim_timesteps():
    assert ddim_timesteps(100, 10) == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]
    assert ddim_timesteps(100, 1) == [99]
    assert ddim_timesteps(100, 3, start=30) == [30, 15, 0]
    assert ddim_timesteps(10, 50) == list(range(9, -1, -1))
    with pytest.raises(ValueError):
        ddim_timesteps(100, 5, start=100)


# --- correctness against a closed form --------------------------------------------------------
@pytest.mark.parametrize("mean,std", [(0.3, 0.5), (-1.0, 1.5)])
def test_samplers_reproduce_gaussian_data_with_the_exact_noise_prediction(mean, std):
    eps_fn = gaussian_eps(mean, std)
    g = torch.Generator().manual_seed(0)
    n = (2000, 4, 2)                                                     # 16,000 values
    x = ddpm_sample(eps_fn, SCHED, n, generator=g)
    assert abs(x.mean().item() - mean) < 0.02 * (1 + std)
    assert abs(x.std().item() / std - 1) < 0.05                          # 100 steps: ~3 % low
    x = ddim_sample(eps_fn, SCHED, n, steps=100, generator=g)
    assert abs(x.mean().item() - mean) < 0.02 * (1 + std)
    assert abs(x.std().item() / std - 1) < 0.05
    x = ddpm_sample(eps_fn, SCHED, n, generator=g, temperature=0.5)       # low temperature narrows
    assert x.std().item() < 0.6 * std


def test_ddim_hits_a_point_mass_with_its_exact_noise_prediction():
    # Data = the single point m: the exact eps gives x0_hat = m at every step (float32 rounding is
    # amplified ~2000x by 1 / sqrt(abar) at the last training step, hence 1e-3).
    m = torch.linspace(-1, 1, 8)[None, :, None].expand(3, 8, 2)
    sched = SCHED
    eps_fn = lambda x, t: (x - sched.alpha_bar[t].sqrt().float()[:, None, None] * m) / (1 - sched.alpha_bar[t]).sqrt().float()[:, None, None]  # noqa: E731
    for steps in (1, 5, 10):
        x = ddim_sample(eps_fn, sched, (3, 8, 2), steps=steps, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x, m, atol=1e-3, rtol=0)


# --- in-painting -----------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddim", "ddim_eta1", "ddim_warm", "ddpm"])
def test_the_known_prefix_comes_back_bit_for_bit(sampler):
    eps_fn = random_eps_fn()
    g = torch.Generator().manual_seed(3)
    known_x = torch.randn(3, 8, 2, generator=g) * 3
    mask = prefix_mask(torch.tensor([0, 3, 7]), 8)
    kw = dict(known_x=known_x, known_mask=mask, generator=torch.Generator().manual_seed(4), clip_x0=1.0)
    if sampler == "ddim":
        x = ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=10, **kw)
    elif sampler == "ddim_eta1":
        x = ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=10, eta=1.0, temperature=0.5, **kw)
    elif sampler == "ddim_warm":
        x = ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=3, x_init=torch.zeros(3, 8, 2), start_step=30, **kw)
    else:
        x = ddpm_sample(eps_fn, SCHED, (3, 8, 2), **kw)
    assert x.dtype == torch.float32 and x.shape == (3, 8, 2)
    assert torch.equal(x[mask], known_x[mask])
    assert (x[~mask].abs() <= 1.0 + 1e-6).all()                          # clip_x0 bounds the rest


def test_known_rows_are_clean_at_every_denoiser_call():
    g = torch.Generator().manual_seed(3)
    known_x = torch.randn(2, 8, 2, generator=g)
    mask = prefix_mask(torch.tensor([2, 5]), 8)
    seen = []

    def eps_fn(x, t):
        seen.append(x.clone())
        return torch.zeros_like(x)

    ddim_sample(eps_fn, SCHED, (2, 8, 2), steps=4, eta=1.0, known_x=known_x, known_mask=mask, generator=g)
    ddpm_sample(eps_fn, SCHED, (2, 8, 2), known_x=known_x, known_mask=mask, generator=g)
    assert len(seen) == 4 + 100
    assert all(torch.equal(x[mask], known_x[mask]) for x in seen)


# --- determinism -------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddim", "ddim_eta1", "ddpm"])
def test_same_seed_same_plan_different_seed_different_plan_global_rng_untouched(sampler):
    eps_fn = random_eps_fn()

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        if sampler == "ddpm":
            return ddpm_sample(eps_fn, SCHED, (3, 8, 2), generator=g, temperature=0.5)
        return ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=10, eta=1.0 if sampler == "ddim_eta1" else 0.0, generator=g, temperature=0.5)

    before = torch.random.get_rng_state()
    a, b, c = run(11), run(11), run(12)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_a_generator_is_required():
    with pytest.raises(ValueError, match="Generator"):
        ddim_sample(random_eps_fn(), SCHED, (3, 8, 2))


def test_zero_temperature_starts_from_zero_noise():
    eps_fn = random_eps_fn()
    a = ddim_sample(eps_fn, SCHED, (3, 8, 2), temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(eps_fn, SCHED, (3, 8, 2), temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_warm_start_noises_x_init_to_start_step():
    # With eps_fn = 0, DDIM from step s returns x_s / sqrt(abar_s) at the first step's x0_hat and keeps it.
    x_init = torch.linspace(-1, 1, 16).view(1, 8, 2).expand(3, 8, 2)
    g = torch.Generator().manual_seed(5)
    x = ddim_sample(lambda x, t: torch.zeros_like(x), SCHED, (3, 8, 2), steps=3, x_init=x_init, start_step=20, generator=g,
                    temperature=0.5)
    z = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(5))
    ab = float(SCHED.alpha_bar[20])
    expected = (math.sqrt(ab) * x_init + math.sqrt(1 - ab) * 0.5 * z) / math.sqrt(ab)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        ddim_sample(lambda x, t: x, SCHED, (3, 8, 2), x_init=x_init, generator=g)


def test_given_noise_replaces_the_first_draw_and_rows_with_equal_noise_agree():
    # eps_fn acts on each row alone (gaussian data), so rows that start from the same noise end equal;
    # with eta 0 the generator's seed then no longer matters, and a draw from the seed reproduces the default.
    eps_fn = gaussian_eps(0.3, 0.5)
    z = torch.randn(1, 8, 2, generator=torch.Generator().manual_seed(4))
    a = ddim_sample(eps_fn, SCHED, (3, 8, 2), noise=z.expand(3, 8, 2), generator=torch.Generator().manual_seed(1), temperature=0.5)
    b = ddim_sample(eps_fn, SCHED, (3, 8, 2), noise=z.expand(3, 8, 2), generator=torch.Generator().manual_seed(2), temperature=0.5)
    assert torch.equal(a, b) and torch.equal(a[0], a[2])
    drawn = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(9))
    c = ddim_sample(eps_fn, SCHED, (3, 8, 2), noise=drawn, generator=torch.Generator().manual_seed(0), temperature=0.5)
    d = ddim_sample(eps_fn, SCHED, (3, 8, 2), generator=torch.Generator().manual_seed(9), temperature=0.5)
    assert torch.equal(c, d)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddim_sample(eps_fn, SCHED, (3, 8, 2), noise=z, generator=torch.Generator().manual_seed(1))
