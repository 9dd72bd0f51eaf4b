"""Shared fixtures: one torch thread, and a tiny planner trained on straight lines.

The toy data are plans of H=16 rows, one feature: x_h = a * u_h with u evenly spaced on [-1, 1]
and a random slope a ~ U(-0.8, 0.8). The outcome condition is sign(a) (like a constraint flag);
half of the training plans have a random realised prefix, the other half none (like tick 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")

from aigb.diffusion import (  # noqa: E402
    ConditionEmbedding, CosineSchedule, TransformerDenoiser, build_seeded, completer_loss, random_prefix_mask,
)

H, D = 16, 1
U = torch.linspace(-1.0, 1.0, H)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Tiny models run fastest on one thread and leave the second core to others.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def lines(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n straight-line plans (n, H, 1) and their slopes (n,)."""
    a = torch.rand(n, generator=generator) * 1.6 - 0.8
    return (a[:, None] * U[None, :])[..., None], a


def fit_lines(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares line through each plan (B, H, 1) -> (rms residual (B,), slope (B,))."""
    design = torch.stack([torch.ones(H), U], dim=1)                                     # (H, 2)
    coef = torch.linalg.lstsq(design, x[..., 0].T).solution                              # (2, B)
    resid = x[..., 0] - (design @ coef).T
    return resid.square().mean(dim=1).sqrt(), coef[1]


@dataclass
class Toy:
    schedule: CosineSchedule
    denoiser: TransformerDenoiser
    condition: ConditionEmbedding

    def embeddings(self, b: int, sign: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.condition(torch.ones(b, 1), None if sign is None else sign[:, None])


@pytest.fixture(scope="session")
def toy() -> Toy:
    return train_toy()


def train_toy() -> Toy:
    """800 Adam steps of completer training (about 10 s on one thread)."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        schedule = CosineSchedule(100)
        denoiser = build_seeded(TransformerDenoiser, H, D, emb_dim=16, d_model=32, n_layers=2, n_heads=4, known_input=True,
                                generator=torch.Generator().manual_seed(1))
        condition = build_seeded(ConditionEmbedding, 1, 1, emb_dim=16, generator=torch.Generator().manual_seed(2))
        steps, batch = 800, 64
        opt = torch.optim.Adam([*denoiser.parameters(), *condition.parameters()], lr=3e-3)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * i / steps)))
        for _ in range(steps):
            x0, a = lines(batch, gen)
            known = random_prefix_mask(batch, H, gen) & (torch.rand(batch, 1, generator=gen) < 0.5)
            emb = condition(torch.ones(batch, 1), a.sign()[:, None], condition.drop_mask(batch, gen))
            loss = completer_loss(denoiser, schedule, x0, emb, known, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decay.step()
    finally:
        torch.set_num_threads(n_threads)
    denoiser.eval()
    condition.eval()
    return Toy(schedule, denoiser, condition)
