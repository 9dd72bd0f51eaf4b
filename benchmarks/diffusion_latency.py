"""Milliseconds per plan of the diffusion samplers: one campaign, and 48 campaigns at once.

    python benchmarks/diffusion_latency.py [--threads 1] [--reps 5] [--steps 5 10 20]

Plans are H=48 x D=7 (a day of ticks, the planner's feature count); classifier-free guidance runs
the conditional and unconditional branches as one batch (2 for one campaign, 96 for 48). The
denoisers are untrained but seeded, at their default sizes (transformer d_model 64 x 2 layers,
U-Net dim 32 x (1, 2, 4)). Rows:

* ``ddim``: DDIM with K steps from pure noise (K = --steps);
* ``warm``: warm start, last plan re-noised to training step 30 and 3 DDIM steps;
* ``mpgd`` / ``dps``: K=10 with mean guidance (no extra network call) / variance guidance (one
  backward pass through the denoiser per step) on a spend objective.

Figures, not assertions: the median of --reps timed runs after one warm-up, wall clock, on
whatever else the machine is doing. The last line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from aigb.diffusion import (
    DENOISERS, PRESETS, ConditionEmbedding, CosineSchedule, TFGGuidance, build_seeded, cfg_eps_fn, ddim_sample, prefix_mask,
)

H, D, EMB = 48, 7, 64


def time_ms(fn, reps: int) -> float:
    fn()                                                                                # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(name: str, n_campaigns: int, steps: list[int], reps: int) -> list[dict]:
    denoiser = build_seeded(DENOISERS[name], H, D, emb_dim=EMB, generator=torch.Generator().manual_seed(0)).eval()
    condition = build_seeded(ConditionEmbedding, 3, 2, emb_dim=EMB, generator=torch.Generator().manual_seed(1)).eval()
    schedule = CosineSchedule(100)
    ctx = torch.randn(n_campaigns, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        e_c, e_u = condition.cfg_pair(ctx, torch.ones(n_campaigns, 2))
    eps_fn = cfg_eps_fn(denoiser, e_c, e_u, w=1.2)
    known_x = torch.zeros(n_campaigns, H, D)
    known = prefix_mask(torch.full((n_campaigns,), 20), H)                              # mid-day: 20 ticks realised
    shape = (n_campaigns, H, D)
    spend = TFGGuidance(lambda x0: -x0[..., 0].sum(dim=1), PRESETS["mpgd"](0.05))
    spend_dps = TFGGuidance(lambda x0: -x0[..., 0].sum(dim=1), PRESETS["dps"](0.05))

    def plan(k: int, **kw):
        return lambda: ddim_sample(eps_fn, schedule, shape, steps=k, known_x=known_x, known_mask=known, clip_x0=3.0,
                                   temperature=0.5, generator=torch.Generator().manual_seed(3), **kw)

    cases = [(f"ddim K={k}", plan(k)) for k in steps]
    cases += [("warm 30->0, 3 steps", plan(3, x_init=known_x, start_step=30)),
              ("mpgd K=10", plan(10, guidance=spend)), ("dps K=10", plan(10, guidance=spend_dps))]
    rows = []
    for label, fn in cases:
        ms = time_ms(fn, reps)
        rows.append({"denoiser": name, "campaigns": n_campaigns, "case": label, "ms_per_call": round(ms, 2),
                     "ms_per_campaign": round(ms / n_campaigns, 2)})
        print(f"{name:12s} {n_campaigns:3d} campaigns  {label:22s} {ms:9.1f} ms/call  {ms / n_campaigns:7.2f} ms/campaign", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="DDIM step counts K")
    parser.add_argument("--denoisers", nargs="+", default=sorted(DENOISERS), help="which registered denoisers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.denoisers:
        n_params = sum(p.numel() for p in build_seeded(DENOISERS[name], H, D, emb_dim=EMB, generator=torch.Generator()).parameters())
        print(f"# {name}: {n_params / 1e6:.3f} M parameters, torch {torch.__version__}, {args.threads} thread(s)", flush=True)
        for n_campaigns in (1, 48):
            rows += measure(name, n_campaigns, args.steps, args.reps)
    print(json.dumps({"H": H, "D": D, "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
