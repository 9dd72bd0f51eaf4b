"""Per-update time of every registered algorithm at its default config (default batch size).

    python benchmarks/algo_step_speed.py [--threads 1] [--steps 40] [--feature-dim 30]

Batches come from ``SyntheticTrajectories`` (48 ticks, D features) and are sampled before the
clock starts, so ``update_ms`` is the algorithm alone; ``sample_ms`` is the synthetic sampler and
``act_ms`` one serving call at the last tick. ``est_min_default_steps`` extrapolates the default
step count. The last line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from aigb.algos.registry import ALGORITHMS, SyntheticTrajectories, make_algorithm
from aigb.seeding import rng as named_rng


def measure(name: str, data: SyntheticTrajectories, steps: int, warmup: int, seed: int) -> dict:
    # DiffBid's default plan reads v1 market states; on synthetic states it diffuses the states
    # themselves (same networks and batch, D plan channels instead of 7). The DT's default return
    # tokens read B and C from v1 states too; synthetic states take one score-unit target (the
    # same network and step, less one elementwise product).
    overrides = {"diffbid": {"plan": "raw"}, "dt": {"target_scale": "data", "rtg_decrement": "conversions"}}.get(name)
    algo = make_algorithm(name, data.feature_dim, overrides, seed=seed)
    algo.prepare(data, seed)
    gen = named_rng(seed, "bench/batches", list(ALGORITHMS).index(name))
    batch_size = algo.config.batch_size
    t0 = time.perf_counter()
    batches = [algo.sample_batch(data, batch_size, gen) for _ in range(steps + warmup)]
    sample_ms = 1000.0 * (time.perf_counter() - t0) / len(batches)
    for batch in batches[:warmup]:
        algo.update(batch)
    times = []
    for batch in batches[warmup:]:
        t0 = time.perf_counter()
        algo.update(batch)
        times.append(1000.0 * (time.perf_counter() - t0))
    policy = algo.policy()
    traj = data.trajectory(0)
    t_last = data.n_ticks - 1
    act_times = []
    for _ in range(10):
        t0 = time.perf_counter()
        policy.act(traj["obs"][: t_last + 1], traj["action"][:t_last], traj["reward"][:t_last])
        act_times.append(1000.0 * (time.perf_counter() - t0))
    update_ms = statistics.median(times)
    return {
        "batch_size": batch_size,
        "update_ms": round(update_ms, 3),
        "update_ms_mean": round(statistics.fmean(times), 3),
        "sample_ms": round(sample_ms, 3),
        "act_ms": round(statistics.median(act_times), 3),
        "default_steps": algo.config.steps,
        "est_min_default_steps": round(algo.config.steps * (update_ms + sample_ms) / 60_000.0, 1),
        "n_params": sum(p.numel() for p in algo.nets.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default=",".join(ALGORITHMS), help="comma-separated registry names")
    parser.add_argument("--feature-dim", type=int, default=30, help="state features D")
    parser.add_argument("--trajectories", type=int, default=2048, help="synthetic trajectories of 48 ticks")
    parser.add_argument("--steps", type=int, default=40, help="timed updates per algorithm")
    parser.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data = SyntheticTrajectories(args.trajectories, 48, args.feature_dim, seed=args.seed)
    results = {}
    print(f"{'algo':5} {'batch':>6} {'update ms':>10} {'sample ms':>10} {'act ms':>8} {'steps':>8} {'est min':>8}")
    for name in args.algos.split(","):
        r = measure(name, data, args.steps, args.warmup, args.seed)
        results[name] = r
        print(f"{name:5} {r['batch_size']:>6} {r['update_ms']:>10.2f} {r['sample_ms']:>10.2f} {r['act_ms']:>8.2f} "
              f"{r['default_steps']:>8} {r['est_min_default_steps']:>8.1f}")
    print(json.dumps({
        "benchmark": "algo_step_speed", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "feature_dim": args.feature_dim, "results": results,
    }))


if __name__ == "__main__":
    main()
