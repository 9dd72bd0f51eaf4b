import math

import numpy as np
import pytest
import torch

from aigb.diffusion import CosineSchedule


@pytest.mark.parametrize("n_steps", [1, 10, 100, 1000])
def test_alpha_bar_matches_the_cosine_closed_form(n_steps):
    # Nichol & Dhariwal eq. 17, computed independently in numpy: alpha_bar(u) = f(u) / f(0).
    s = 0.008
    u = np.arange(n_steps + 1) / n_steps
    f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    betas = np.minimum(1 - abar[1:] / abar[:-1], 0.999)
    sched = CosineSchedule(n_steps, s)
    assert sched.alpha_bar.dtype == torch.float64 and sched.alpha_bar.shape == (n_steps,)
    np.testing.assert_allclose(sched.betas.numpy(), betas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sched.alpha_bar.numpy(), np.cumprod(1 - betas), rtol=1e-12, atol=0)
    # Away from the clipped last step the cumulative product is the closed form itself.
    np.testing.assert_allclose(sched.alpha_bar.numpy()[:-1], abar[1:-1], rtol=1e-10)


def test_alpha_bar_is_the_running_product_of_alphas_and_decreases():
    sched = CosineSchedule(100)
    assert torch.allclose(sched.alpha_bar, torch.cumprod(sched.alphas, 0), rtol=0, atol=0)
    assert torch.allclose(sched.alphas, 1 - sched.betas, rtol=0, atol=0)
    assert (sched.alpha_bar[1:] < sched.alpha_bar[:-1]).all()
    assert 0.999 < sched.alpha_bar[0] < 1 and sched.alpha_bar[-1] < 1e-6
    assert float(sched.betas.max()) == pytest.approx(0.999)


def test_q_sample_and_x0_from_eps_are_inverse():
    sched = CosineSchedule(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 48, 7, generator=g)
    noise = torch.randn(5, 48, 7, generator=g)
    t = torch.tensor([0, 1, 37, 80, 95])
    x_t = sched.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float32 and x_t.shape == x0.shape
    torch.testing.assert_close(sched.x0_from_eps(x_t, t, noise), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(sched.eps_from_x0(x_t, t, x0), noise, atol=1e-4, rtol=1e-4)


def test_q_sample_coefficients_by_hand():
    sched = CosineSchedule(100)
    x0 = torch.full((2, 3, 1), 2.0)
    noise = torch.full((2, 3, 1), -1.0)
    t = torch.tensor([10, 60])
    ab = [float(sched.alpha_bar[10]), float(sched.alpha_bar[60])]
    expected = torch.tensor([2 * math.sqrt(a) - math.sqrt(1 - a) for a in ab], dtype=torch.float32)
    torch.testing.assert_close(sched.q_sample(x0, t, noise)[:, 0, 0], expected)


@pytest.mark.parametrize("bad", [torch.tensor([0, 100]), torch.tensor([-1, 3]), torch.tensor([1])])
def test_out_of_range_or_misshaped_steps_raise(bad):
    sched = CosineSchedule(100)
    with pytest.raises(ValueError):
        sched.q_sample(torch.zeros(2, 4, 1), bad, torch.zeros(2, 4, 1))


def test_bad_n_steps_raise():
    with pytest.raises(ValueError):
        CosineSchedule(0)
