"""DiffBid decision latency: milliseconds per tick for one campaign, by DDIM step count, and the
cost of serving-time objectives (guidance) and decision-time search (N candidates).

    python benchmarks/diffbid_latency.py [--checkpoint runs/diffbid/best.pt] [--steps 5,10,20] [--threads 1]
        [--candidates 1,4,16] [--guide cpa:0.9] [--evaluator runs/diffbid/evaluator.pt]
        [--levels 16x2 --critic runs/cql/best.pt[,MORE.pt] [--qsmooth 0.2]]
        # a level planner: levels ranked by plans and by the critic (an ensemble, smoothed)

Each decision is ``DiffBidPlanner.plan``: plan features of the realised prefix, in-painted DDIM
sampling with classifier-free guidance (conditional and unconditional branches in one batch of 2;
w = 1 runs one branch), then the inverse dynamics. Latency does not depend on the weights, so
without a checkpoint the default config is timed untrained. The states are one campaign's real v1
states, played in the market with a fixed-rate rule. Figures are printed, not asserted; the last
line is the JSON summary. Wall and CPU time are both reported: on a shared machine the CPU time
(process time, one torch thread) is the steadier figure.

The second table times search and guidance at the config's K and w: N candidate plans per tick
sampled as one batch (one denoiser call on N x 2 rows per DDIM step), ranked by the plan evaluator
when one is given (else by the plan's claimed score, ``select=plan``), each unguided, with mean
guidance (MPGD: no gradient through the denoiser) and with variance guidance (DPS: one backward
pass through it per step) toward ``--guide``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from aigb.algos.checkpoint import load_algorithm
from aigb.algos.registry import make_algorithm
from aigb.features import FEATURE_DIM
from aigb.sim.env import BiddingEnv
from aigb.types import MarketConfig


def campaign_states(n_pv: int, seed: int) -> np.ndarray:
    """(48, F) the v1 states one campaign sees, bidding alpha = 2 C."""
    env = BiddingEnv(MarketConfig(n_pv=n_pv), advertiser=7, seed=seed)
    obs, _ = env.reset()
    states = []
    while True:
        states.append(obs.features)
        obs, _, done, _, _ = env.step(obs.p_value * obs.campaign.target_cpa * 2.0)
        if done:
            return np.stack(states)


def time_planner(planner, states: np.ndarray, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of every decision, ticks 0..47, ``repeats`` days. On a shared
    machine the CPU time is the steadier figure; the wall time is what a bidder waits."""
    wall, cpu = [], []
    for r in range(repeats):
        previous = None   # last tick's action, as the strategy passes it (a level planner's trust region)
        for t in range(states.shape[0]):
            t0, c0 = time.perf_counter(), time.process_time()
            previous = planner.plan(states[: t + 1], seed=r, previous=previous).action
            wall.append(1000.0 * (time.perf_counter() - t0))
            cpu.append(1000.0 * (time.process_time() - c0))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a diffbid checkpoint (default: the default config, untrained)")
    parser.add_argument("--steps", default="5,10,20", help="DDIM step counts K to time")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.2, 1.0], help="guidance weights w to time")
    parser.add_argument("--repeats", type=int, default=3, help="days of 48 decisions per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-pv", type=int, default=100_000, help="PVs of the period that makes the states")
    parser.add_argument("--candidates", default="1,4,16", help="candidate plans per tick N to time (search)")
    parser.add_argument("--guide", default="cpa:0.9", help="objective of the guided rows")
    parser.add_argument("--evaluator", default=None, help="a plan evaluator file (aigb diffbid fit-evaluator); default: rank by the plan")
    parser.add_argument("--change", type=float, default=0.0,
                        help="trust region of the timed level searches (the serving option change; 0: none)")
    parser.add_argument("--critic", default=None,
                        help="a CQL or IQL checkpoint, or several comma-separated (an ensemble): also time each level "
                             "search ranked by its Q (select=critic)")
    parser.add_argument("--qsmooth", type=float, default=0.0,
                        help="with --critic: rank by the critic's mean over N(level, SD^2) (7 Q calls per level)")
    parser.add_argument("--levels", default="16x2,8x2,8x1",
                        help="LEVELSxSAMPLES searches to time for a planner trained with condition=level (instead of N candidates)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    algo = load_algorithm(args.checkpoint) if args.checkpoint else make_algorithm("diffbid", FEATURE_DIM, seed=0)
    states = campaign_states(args.n_pv, seed=0)
    n_params = sum(p.numel() for p in algo.nets["ema_denoiser"].parameters())
    print(f"diffbid {algo.config.denoiser} d={algo.config.d_model} x {algo.config.n_layers} layers ({n_params:,} denoiser parameters), "
          f"{args.threads} thread(s), {args.device}")
    print(f"{'K':>3} {'w':>5} {'median ms':>10} {'mean ms':>9} {'p95 ms':>8} {'max ms':>8} {'CPU median ms':>14}")
    results = []
    for k in (int(s) for s in args.steps.split(",")):
        for w in args.guidance:
            planner = algo.policy(steps=k, guidance=w, device=args.device)
            time_planner(planner, states[:4], 1)                          # warm-up
            ms, cpu = time_planner(planner, states, args.repeats)
            row = {"steps": k, "guidance": w, "median_ms": round(statistics.median(ms), 2), "mean_ms": round(statistics.fmean(ms), 2),
                   "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(max(ms), 2),
                   "cpu_median_ms": round(statistics.median(cpu), 2), "decisions": len(ms)}
            results.append(row)
            print(f"{k:>3} {w:>5.2f} {row['median_ms']:>10.2f} {row['mean_ms']:>9.2f} {row['p95_ms']:>8.2f} {row['max_ms']:>8.2f} "
                  f"{row['cpu_median_ms']:>14.2f}")
    search = time_levels(algo, states, args) if algo.config.condition == "level" else time_search(algo, states, args)
    print(json.dumps({"benchmark": "diffbid_latency", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "device": args.device, "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "checkpoint": args.checkpoint, "config": {"denoiser": algo.config.denoiser, "d_model": algo.config.d_model,
                                                                "n_layers": algo.config.n_layers}, "results": results,
                      "search": search}))


def time_levels(algo, states: np.ndarray, args) -> list[dict]:
    """Milliseconds per tick of a level planner's search (L levels x S plans in one batch), by K, at w = 1,
    ranked by the plans' claimed score and, with --critic, by the critic's Q."""
    rankings = [("plan", {})]
    if args.critic:
        from aigb.algos.level_critic import LevelCritic
        from aigb.strategies.diffbid import critic_paths

        critic = LevelCritic.load(critic_paths({"critic": args.critic}), smooth=args.qsmooth)
        rankings.append(("critic", {"select": "critic", "critic": critic}))
    print(f"level search, w = 1 (one branch): L levels x S plans per tick, trust region change = {args.change}")
    print(f"{'L x S':>7} {'K':>3} {'ranked by':>9} {'median ms':>10} {'p95 ms':>8} {'CPU median ms':>14}")
    rows = []
    for spec in args.levels.split(","):
        n_levels, n_samples = (int(v) for v in spec.split("x"))
        for k in (int(s) for s in args.steps.split(",")):
            for ranking, extra in rankings:
                planner = algo.policy(device=args.device, steps=k, guidance=1.0, search_levels=n_levels, search_samples=n_samples,
                                      max_change=args.change, **extra)
                time_planner(planner, states[:4], 1)                          # warm-up
                ms, cpu = time_planner(planner, states, args.repeats)
                row = {"levels": n_levels, "samples": n_samples, "steps": k, "change": args.change, "ranked_by": ranking,
                       "median_ms": round(statistics.median(ms), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
                       "cpu_median_ms": round(statistics.median(cpu), 2), "decisions": len(ms)}
                rows.append(row)
                print(f"{spec:>7} {k:>3} {ranking:>9} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} {row['cpu_median_ms']:>14.2f}",
                      flush=True)
    return rows


def time_search(algo, states: np.ndarray, args) -> list[dict]:
    """Milliseconds per tick by candidates N and guidance (none, MPGD, DPS), at the config's K and w."""
    from aigb.algos.plan_evaluator import PlanEvaluator
    from aigb.diffusion import PRESETS

    evaluator = PlanEvaluator.load(args.evaluator, channels=tuple(algo.view.channels)) if args.evaluator else None
    select = "evaluator" if evaluator is not None else "plan"
    print(f"search and guidance at K = {algo.config.sampling_steps}, w = {algo.config.guidance}; candidates ranked by "
          f"{select}; guide {args.guide}")
    print(f"{'N':>3} {'guidance':>9} {'median ms':>10} {'p95 ms':>8} {'CPU median ms':>14}")
    rows = []
    for n in (int(s) for s in args.candidates.split(",")):
        for label, tfg in (("none", None), ("mpgd", PRESETS["mpgd"](0.2)), ("dps", PRESETS["dps"](0.2))):
            planner = algo.policy(device=args.device, n_candidates=n, select=select, evaluator=evaluator,
                                  guide=None if tfg is None else args.guide, tfg=tfg)
            time_planner(planner, states[:4], 1)                          # warm-up
            ms, cpu = time_planner(planner, states, args.repeats)
            row = {"candidates": n, "guidance": label, "select": select if n > 1 else None,
                   "median_ms": round(statistics.median(ms), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
                   "cpu_median_ms": round(statistics.median(cpu), 2), "decisions": len(ms)}
            rows.append(row)
            print(f"{n:>3} {label:>9} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} {row['cpu_median_ms']:>14.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
