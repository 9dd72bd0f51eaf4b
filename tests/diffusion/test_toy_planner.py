"""A tiny completer trained on straight lines (conftest.toy) learns the distribution, follows its
condition under CFG and continues a realised prefix. Thresholds leave ~2x margin over the measured
values; pure noise would give residuals near 1 and an ignored prefix a continuation error near 0.4."""

import torch

from aigb.diffusion import PRESETS, TFGGuidance, cfg_eps_fn, ddim_sample, ddpm_sample, prefix_mask

from .conftest import D, H, fit_lines, lines

B = 64
CLIP = 1.5      # the plans lie in [-0.8, 0.8]; clipping x0_hat tames the 1/sqrt(abar) ~ 2000 of step 99


def test_unconditional_samples_are_straight_lines_of_varied_slope(toy):
    eps_fn = cfg_eps_fn(toy.denoiser, toy.embeddings(B))
    for x in (ddim_sample(eps_fn, toy.schedule, (B, H, D), steps=10, generator=torch.Generator().manual_seed(1), clip_x0=CLIP),
              ddpm_sample(eps_fn, toy.schedule, (B, H, D), generator=torch.Generator().manual_seed(2), clip_x0=CLIP)):
        resid, slope = fit_lines(x)
        assert resid.median() < 0.1, resid.median()
        assert 0.2 < slope.std() < 0.8                                   # U(-0.8, 0.8) has std 0.46
        assert (slope.abs() < 1.0).float().mean() > 0.9


def test_ddpm_samples_fit_lines_closely(toy):
    eps_fn = cfg_eps_fn(toy.denoiser, toy.embeddings(B))
    resid_ddpm, _ = fit_lines(ddpm_sample(eps_fn, toy.schedule, (B, H, D), generator=torch.Generator().manual_seed(2), clip_x0=CLIP))
    assert resid_ddpm.mean() < 0.05


def test_classifier_free_guidance_follows_the_requested_sign(toy):
    want = torch.where(torch.arange(B) % 2 == 0, 1.0, -1.0)
    e_c, e_u = toy.embeddings(B, want), toy.embeddings(B)
    agree = {}
    for w in (0.0, 2.0):
        x = ddim_sample(cfg_eps_fn(toy.denoiser, e_c, e_u, w), toy.schedule, (B, H, D), steps=10,
                        generator=torch.Generator().manual_seed(3), clip_x0=CLIP)
        agree[w] = (fit_lines(x)[1].sign() == want).float().mean().item()
    assert agree[2.0] >= 0.9 and agree[2.0] > agree[0.0] + 0.2, agree


def test_a_realised_prefix_is_continued(toy):
    x0, slope = lines(B, torch.Generator().manual_seed(4))
    k = 4
    known = prefix_mask(torch.full((B,), k), H)
    eps_fn = cfg_eps_fn(toy.denoiser, toy.embeddings(B), known=known)
    for x, tol in ((ddim_sample(eps_fn, toy.schedule, (B, H, D), steps=10, known_x=x0, known_mask=known,
                                generator=torch.Generator().manual_seed(5), clip_x0=CLIP), 0.25),
                   (ddpm_sample(eps_fn, toy.schedule, (B, H, D), known_x=x0, known_mask=known,
                                generator=torch.Generator().manual_seed(6), clip_x0=CLIP), 0.1)):
        assert torch.equal(x[:, :k], x0[:, :k])
        rmse = (x - x0)[:, k:].square().mean().sqrt()
        assert rmse < tol, rmse
        assert (fit_lines(x)[1] - slope).abs().mean() < 0.1


def test_warm_start_from_a_previous_plan_stays_on_the_data(toy):
    # Re-noise a plan to step 30 and denoise in 3 steps: the cheap per-tick route.
    x0, _ = lines(B, torch.Generator().manual_seed(7))
    k = 6
    known = prefix_mask(torch.full((B,), k), H)
    eps_fn = cfg_eps_fn(toy.denoiser, toy.embeddings(B), known=known)
    x = ddim_sample(eps_fn, toy.schedule, (B, H, D), steps=3, x_init=x0, start_step=30, known_x=x0, known_mask=known,
                    generator=torch.Generator().manual_seed(8), clip_x0=CLIP)
    assert (x - x0)[:, k:].square().mean().sqrt() < 0.15
    assert fit_lines(x)[0].median() < 0.1


def test_guidance_toward_less_late_spend_lowers_it_and_keeps_plans_on_the_data(toy):
    # log f = -sum of the second half of the plan ("spend late"): on lines it asks for lower slopes.
    def late(x0):
        return x0[:, H // 2:, 0].sum(dim=1)

    eps_fn = cfg_eps_fn(toy.denoiser, toy.embeddings(B))

    def sample(config=None):
        guidance = None if config is None else TFGGuidance(lambda x0: -late(x0), config)
        return ddim_sample(eps_fn, toy.schedule, (B, H, D), steps=10, clip_x0=CLIP, generator=torch.Generator().manual_seed(11),
                           guidance=guidance)

    plain = late(sample())
    previous = plain
    for config in (PRESETS["mpgd"](0.02), PRESETS["mpgd"](0.05)):          # measured: 0.85 -> 0.16 -> -0.91
        x = sample(config)
        assert (late(x) < previous).all()
        assert fit_lines(x)[0].median() < 0.05
        previous = late(x)
    assert plain.mean() - previous.mean() > 1.0
    x = sample(PRESETS["dps"](0.05))                                       # measured: 0.85 -> -0.63
    assert (late(x) < plain).all() and plain.mean() - late(x).mean() > 0.7
    assert fit_lines(x)[0].median() < 0.05
