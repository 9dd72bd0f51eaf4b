"""The x0 parameterisation: the completer loss against the clean plan, and sampling from an x0 model."""

from __future__ import annotations

import torch

from aigb.diffusion import CosineSchedule, completer_loss, ddim_sample, ddpm_sample, x0_model_eps_fn


class _Fixed(torch.nn.Module):
    """Outputs a fixed tensor whatever its input (a known x0 or noise prediction)."""

    known_input = False

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x_t, t, emb):
        return self.out.expand(x_t.shape[0], -1, -1)


def test_completer_loss_compares_an_x0_model_with_the_clean_plan():
    s = CosineSchedule(50)
    x0 = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    known = torch.arange(6)[None] <= torch.tensor([0, 2, 4, 1])[:, None]
    guess = torch.zeros(1, 6, 3)
    loss = completer_loss(_Fixed(guess), s, x0, torch.zeros(4, 2), known, torch.Generator().manual_seed(1), prediction="x0")
    # By hand: mean over unknown rows of the per-row mean squared difference between 0 and x0.
    per_row = x0.square().mean(-1)
    expected = per_row[~known].mean()
    torch.testing.assert_close(loss, expected)
    # The exact plan gives zero loss whatever the noise draw.
    exact = completer_loss(_Fixed(x0[:1]), s, x0[:1], torch.zeros(1, 2), known[:1], torch.Generator().manual_seed(2), prediction="x0")
    assert exact.item() == 0.0


def test_an_x0_model_that_knows_the_answer_samples_it():
    s = CosineSchedule(100)
    target = torch.linspace(-1, 1, 8 * 2).reshape(1, 8, 2)
    eps_fn = x0_model_eps_fn(lambda x_t, t: target.expand(x_t.shape[0], -1, -1), s)
    g = torch.Generator().manual_seed(3)
    for out in (ddim_sample(eps_fn, s, (3, 8, 2), steps=10, generator=g),
                ddim_sample(eps_fn, s, (3, 8, 2), steps=10, eta=1.0, generator=g),
                ddpm_sample(eps_fn, s, (3, 8, 2), generator=g)):
        torch.testing.assert_close(out, target.expand(3, -1, -1), atol=1e-4, rtol=0)
