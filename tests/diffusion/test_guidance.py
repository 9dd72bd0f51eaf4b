import math

import pytest
import torch

from aigb.diffusion import (
    PRESETS, CosineSchedule, TFGConfig, TFGGuidance, TransformerDenoiser, beam_search_strengths, best_of_n, build_seeded,
    cfg_eps_fn, ddim_sample, prefix_mask,
)
from aigb.diffusion.guidance import strength_weights
from aigb.diffusion.sampling import DDIMStep

SCHED = CosineSchedule(100)
B, H, D = 2, 4, 2
C = 0.3          # linear noise model eps(x, t) = C x
LAM = 2.0        # log f(x0) = -LAM / 2 * |x0 - A|^2
A = torch.linspace(-1.0, 1.0, B * H * D).view(B, H, D)


def linear_eps(x, t):
    return C * x


def log_f(x0):
    # x0 may stack several copies of the batch (implicit dynamics): (k * B, H, D).
    return -0.5 * LAM * (x0 - A.repeat(x0.shape[0] // B, 1, 1)).square().flatten(1).sum(1)


def one_step(config, x, *, seed=0, timesteps=(60, 30, 0), index=0, known_x=None, known_mask=None):
    step = DDIMStep(SCHED, linear_eps, timesteps, index, known_x=known_x, known_mask=known_mask,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return TFGGuidance(log_f, config)(step, x), step


def closed_form(step):
    """Coefficients of the linear model at this step: x0_hat = k x and plain DDIM = m x."""
    r, s = math.sqrt(step.alpha_bar_t), math.sqrt(1 - step.alpha_bar_t)
    rp, sp = math.sqrt(step.alpha_bar_prev), math.sqrt(1 - step.alpha_bar_prev)
    k = (1 - s * C) / r
    return k, rp * k + sp * C, rp


X = torch.randn(B, H, D, generator=torch.Generator().manual_seed(42))


# --- each preset is its published update on a quadratic objective --------------------------------
def test_dps_is_ddim_plus_zeta_times_the_gradient_through_the_denoiser():
    rho = 0.05
    out, step = one_step(PRESETS["dps"](rho, schedule="constant"), X)
    k, m, _ = closed_form(step)
    grad_xt = k * (-LAM) * (k * X - A)                      # chain rule through x0_hat = k x_t
    torch.testing.assert_close(out, m * X + rho / math.sqrt(step.alpha) * grad_xt, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_iter", [1, 2, 3])
def test_mpgd_moves_x0_by_gradient_steps_and_keeps_eps(n_iter):
    mu = 0.2
    out, step = one_step(PRESETS["mpgd"](mu, n_iter=n_iter, schedule="constant"), X)
    k, m, rp = closed_form(step)
    # n ascent steps of size mu on -LAM/2 |x0 - A|^2 move x0 a fraction 1 - (1 - mu LAM)^n toward A.
    delta_0 = (1 - (1 - mu * LAM) ** n_iter) * (A - k * X)
    torch.testing.assert_close(out, m * X + rp * delta_0, rtol=1e-5, atol=1e-5)


def test_ugd_without_recurrence_is_the_sum_of_both_corrections():
    rho, mu = 0.05, 0.2
    out, step = one_step(PRESETS["ugd"](rho, mu, n_iter=2, n_recur=1, schedule="constant"), X)
    k, m, rp = closed_form(step)
    expected = m * X + rho / math.sqrt(step.alpha) * k * (-LAM) * (k * X - A) + rp * (1 - (1 - mu * LAM) ** 2) * (A - k * X)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_freedom_recurrence_renoises_to_t_and_repeats_the_step():
    rho = 0.05
    out, step = one_step(PRESETS["freedom"](rho, n_recur=2, schedule="constant"), X, seed=7)
    k, m, _ = closed_form(step)

    def dps_update(x):
        return m * x + rho / math.sqrt(step.alpha) * k * (-LAM) * (k * x - A)

    z = torch.randn(B, H, D, generator=torch.Generator().manual_seed(7))      # the only draw: the re-noise
    x_t_again = math.sqrt(step.alpha) * dps_update(X) + math.sqrt(1 - step.alpha) * z
    torch.testing.assert_close(out, dps_update(x_t_again), rtol=1e-5, atol=1e-5)


def test_lgd_uses_the_log_mean_exp_over_gaussian_perturbations():
    rho, gamma, n = 0.05, 0.3, 3
    out, step = one_step(PRESETS["lgd"](rho, gamma, eps_bsz=n, schedule="constant"), X, seed=3)
    k, m, _ = closed_form(step)
    gamma_t = gamma * math.sqrt(1 - step.alpha_bar_t)                       # "decrease" schedule
    delta = torch.randn(n, B, H, D, generator=torch.Generator().manual_seed(3))
    moved = k * X + gamma_t * delta                                         # (n, B, H, D)
    lp = -0.5 * LAM * (moved - A).square().flatten(2).sum(2)                 # (n, B)
    w = torch.softmax(lp, dim=0)[..., None, None]
    grad_xt = (w * k * (-LAM) * (moved - A)).sum(0)
    torch.testing.assert_close(out, m * X + rho / math.sqrt(step.alpha) * grad_xt, rtol=1e-5, atol=1e-5)


def test_increase_schedule_is_proportional_to_alpha_with_mean_one():
    ts = (99, 66, 33, 0)
    steps = [DDIMStep(SCHED, linear_eps, ts, i, generator=torch.Generator()) for i in range(len(ts))]
    w = [strength_weights(s, "increase") for s in steps]
    assert sum(w) == pytest.approx(len(ts))
    assert all(a < b for a, b in zip(w, w[1:]))                             # weakest at the noisy start
    assert w[1] / w[2] == pytest.approx(steps[1].alpha / steps[2].alpha)
    assert [strength_weights(s, "constant") for s in steps] == [1.0] * 4


def test_grad_clip_bounds_each_samples_correction():
    rho, clip = 0.05, 1e-3
    out, step = one_step(TFGConfig(rho=rho, rho_schedule="constant", grad_clip=clip), X)
    _, m, _ = closed_form(step)
    norms = (out - m * X).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((B,), rho * clip / math.sqrt(step.alpha)), rtol=0, atol=1e-6)
    assert rho * clip / math.sqrt(step.alpha) > 1e-5


def test_known_rows_are_neither_moved_nor_seen_perturbed():
    known_x = torch.full((B, H, D), 0.5)
    mask = prefix_mask(torch.tensor([1, 3]), H)
    seen = []

    def recording_log_f(x0):
        seen.append(x0.detach().clone())
        return log_f(x0)

    step = DDIMStep(SCHED, linear_eps, (60, 30, 0), 0, known_x=known_x, known_mask=mask, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = TFGGuidance(recording_log_f, TFGConfig(rho=0.05, mu=0.2, n_iter=2, n_recur=2, gamma=0.5, eps_bsz=2))(step, X)
    assert torch.equal(out[mask], known_x[mask])
    assert seen and all(torch.equal(x.view(-1, B, H, D)[:, mask], known_x[mask].expand(x.shape[0] // B, *known_x[mask].shape)) for x in seen)


# --- inside the sampler -----------------------------------------------------------------------
def random_net_eps(h=8, d=2, b=3):
    net = build_seeded(TransformerDenoiser, h, d, emb_dim=4, d_model=16, n_heads=2, generator=torch.Generator().manual_seed(0)).eval()
    return cfg_eps_fn(net, torch.randn(b, 4, generator=torch.Generator().manual_seed(1)))


def spend(x0):
    return -x0[..., 0].sum(dim=1)


@pytest.mark.parametrize("config", [TFGConfig(), TFGConfig(gamma=0.1, n_recur=3, n_iter=4, eps_bsz=4), PRESETS["dps"](0.0)])
def test_zero_strength_is_plain_ddim_bit_for_bit(config):
    eps_fn = random_net_eps()
    kw = dict(steps=10, eta=1.0, temperature=0.5, clip_x0=2.0)
    plain = ddim_sample(eps_fn, SCHED, (3, 8, 2), generator=torch.Generator().manual_seed(5), **kw)
    guided = ddim_sample(eps_fn, SCHED, (3, 8, 2), generator=torch.Generator().manual_seed(5), guidance=TFGGuidance(spend, config), **kw)
    assert torch.equal(plain, guided)


def test_a_hook_taking_the_plain_step_is_plain_ddim_bit_for_bit():
    eps_fn = random_net_eps()
    plain = ddim_sample(eps_fn, SCHED, (3, 8, 2), eta=1.0, generator=torch.Generator().manual_seed(5))
    hooked = ddim_sample(eps_fn, SCHED, (3, 8, 2), eta=1.0, generator=torch.Generator().manual_seed(5),
                         guidance=lambda step, x: step.update(*step.predict(x)))
    assert torch.equal(plain, hooked)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_prefix_unchanged_and_seeded_under_every_preset(name):
    eps_fn = random_net_eps()
    strengths = {"dps": (0.1,), "lgd": (0.1, 0.05), "freedom": (0.1,), "mpgd": (0.1,), "ugd": (0.1, 0.1)}[name]
    guidance = TFGGuidance(spend, PRESETS[name](*strengths))
    known_x = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(2))
    mask = prefix_mask(torch.tensor([0, 4, 7]), 8)

    def run(seed):
        return ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=5, known_x=known_x, known_mask=mask, clip_x0=2.0,
                           generator=torch.Generator().manual_seed(seed), guidance=guidance)

    a, b, plain = run(1), run(1), ddim_sample(eps_fn, SCHED, (3, 8, 2), steps=5, known_x=known_x, known_mask=mask, clip_x0=2.0,
                                             generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[mask], known_x[mask])
    assert torch.equal(a, b) and not torch.equal(a, run(2))
    assert not torch.equal(a, plain)


# --- search and selection ---------------------------------------------------------------------
def test_beam_search_climbs_to_the_optimum_reachable_in_six_rounds():
    target = {"rho": 1.0, "mu": 2.0, "gamma": 0.01}                         # 2 + 3 + 1 = 6 moves from the start

    def evaluate(c):
        return -sum((math.log(getattr(c, k)) - math.log(v)) ** 2 for k, v in target.items())

    calls = []
    result = beam_search_strengths(lambda c: calls.append(c) or evaluate(c))
    assert (result.best.rho, result.best.mu, result.best.gamma) == pytest.approx((1.0, 2.0, 0.01))
    assert result.score == pytest.approx(0.0, abs=1e-18)
    assert len(calls) == len(set(calls)) == len(result.history) <= 1 + 6 * 2 * 3
    assert all(c.rho <= 8 and c.mu <= 8 and c.gamma <= 1 for c in calls)


def test_beam_search_respects_caps_and_skips_zero_strengths():
    result = beam_search_strengths(lambda c: c.rho + c.mu, start=TFGConfig(mu=0.25), rounds=10, keep=1)
    assert result.best.mu == 8.0 and result.best.rho == 0.0 and result.best.gamma == 0.0
    assert len(result.history) == 6                                          # 0.25 .. 8 by doubling


def test_best_of_one_is_plain_sampling():
    eps_fn = random_net_eps()
    plain = ddim_sample(eps_fn, SCHED, (3, 8, 2), generator=torch.Generator().manual_seed(100))
    chosen = best_of_n(lambda i: ddim_sample(eps_fn, SCHED, (3, 8, 2), generator=torch.Generator().manual_seed(100 + i)), spend, n=1)
    assert torch.equal(chosen.plan, plain) and chosen.index.tolist() == [0, 0, 0]


def test_best_of_n_picks_the_highest_score_per_sample():
    g = torch.Generator().manual_seed(0)
    cands = torch.randn(5, 3, 8, 2, generator=g)
    cands[2, 1, 0, 0] = float("nan")
    out = best_of_n(cands, spend)
    s = spend(cands.reshape(15, 8, 2)).view(5, 3)
    s = torch.nan_to_num(s, nan=-math.inf)
    assert torch.equal(out.index, s.argmax(0))
    for b in range(3):
        assert torch.equal(out.plan[b], cands[out.index[b], b])
    assert (spend(out.plan) >= spend(cands[0])).all()
