"""Simulator speed and memory on the default period (500k PVs, 48 advertisers, 48 ticks).

Prints a few human lines, then as the last line one JSON object with seconds_per_period,
pv_auctions_per_second, peak_rss_mb, the reference (one auction at a time) implementation's speed
on a slice of the same period and the speed ratio, and the scaling with the PV count.

    .venv/bin/python benchmarks/sim_throughput.py [--repeats 3]
    .venv/bin/python benchmarks/sim_throughput.py --versions v2 v3   # market versions side by side

With ``--versions`` it times the default period of each market version, alternating versions within
every repeat (so machine load hits both alike), prints each version's mean, best and peak RSS and
the ratios to the first version, and stops.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np


def _period_in_child(n_pv: int, seed: int, queue, version: str | None = None) -> None:
    from aigb.sim.period import PeriodSim
    from aigb.types import MarketConfig

    start = time.perf_counter()
    config = MarketConfig(n_pv=n_pv) if version is None else MarketConfig(n_pv=n_pv, version=version)
    sim = PeriodSim(config, seed, 0)
    out = sim.run()
    seconds = time.perf_counter() - start
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, float(out["score"].mean())))


def run_period(n_pv: int, seed: int, version: str | None = None) -> tuple[float, float, float]:
    """(seconds, peak RSS MB, mean score) of one period in a fresh process (clean RSS)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_period_in_child, args=(n_pv, seed, queue, version))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def reference_slice(n_slice: int, seed: int) -> tuple[float, float]:
    """Seconds per PV of the reference and of the fast tick on the same slice of a midday tick."""
    from aigb.seeding import rng
    from aigb.sim.auction import draw_tick, step_market
    from aigb.sim.period import PeriodSim
    from aigb.sim.reference import reference_step
    from aigb.types import MarketConfig

    config = MarketConfig()
    sim = PeriodSim(config, seed, 0)
    while sim.tick < 20:
        sim.step()
    p, s = sim.tick_inputs()
    p, s = p[:n_slice], s[:n_slice]
    alpha = sim.bidders.alphas(sim.tick, sim.spent, sim.conversions, rng(seed, "bench"))
    bids = p * alpha
    draws = draw_tick(rng(seed, "bench_draws"), n_slice, config.n_slots)
    args = (bids, sim.remaining_budget, p, s, sim.traffic.trunc_low, sim.traffic.trunc_high, draws, config)
    start = time.perf_counter()
    reference_step(*args, rng(seed, "drop"))
    ref = (time.perf_counter() - start) / n_slice
    start = time.perf_counter()
    for _ in range(20):
        step_market(*args, rng(seed, "drop"))
    fast = (time.perf_counter() - start) / 20 / n_slice
    return ref, fast


def compare_versions(versions: list[str], repeats: int) -> None:
    """Default periods of each version, alternating within every repeat; ratios to the first."""
    runs = {v: [] for v in versions}
    for seed in range(repeats):
        for v in versions:
            runs[v].append(run_period(500_000, seed, v))
    base = np.mean([r[0] for r in runs[versions[0]]])
    base_rss = max(r[1] for r in runs[versions[0]])
    for v in versions:
        seconds, rss = [r[0] for r in runs[v]], max(r[1] for r in runs[v])
        print(f"market {v}: {np.mean(seconds):.2f} s mean, {min(seconds):.2f} s best, peak RSS {rss:.0f} MB; "
              f"x{np.mean(seconds) / base:.2f} time, x{rss / base_rss:.2f} RSS of {versions[0]} "
              f"(mean score {np.mean([r[2] for r in runs[v]]):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="default periods timed (best and mean reported)")
    parser.add_argument("--slice", type=int, default=3000, help="PVs the reference implementation runs")
    parser.add_argument("--versions", nargs="+", default=None, help="market versions to time side by side")
    args = parser.parse_args()

    if args.versions:
        compare_versions(args.versions, args.repeats)
        return
    runs = [run_period(500_000, seed) for seed in range(args.repeats)]
    seconds = [r[0] for r in runs]
    rss = max(r[1] for r in runs)
    print(f"default period: {np.mean(seconds):.2f} s mean, {min(seconds):.2f} s best, peak RSS {rss:.0f} MB "
          f"(mean score {np.mean([r[2] for r in runs]):.2f})")
    scaling = {}
    for n in (125_000, 250_000, 1_000_000):
        scaling[n] = run_period(n, 0)[0]
        print(f"{n:>9,} PVs: {scaling[n]:.2f} s")
    ref, fast = reference_slice(args.slice, 0)
    print(f"reference: {ref * 1e6:.0f} us/PV; fast tick: {fast * 1e6:.2f} us/PV (x{ref / fast:.0f})")
    mean = float(np.mean(seconds))
    print(json.dumps({
        "seconds_per_period": round(mean, 3),
        "seconds_per_period_best": round(min(seconds), 3),
        "pv_auctions_per_second": round(500_000 / mean),
        "peak_rss_mb": round(rss, 1),
        "target_seconds": 2.0, "target_peak_rss_mb": 800,
        "seconds_by_n_pv": {str(k): round(v, 3) for k, v in {**scaling, 500_000: mean}.items()},
        "reference_us_per_pv": round(ref * 1e6, 2),
        "fast_us_per_pv": round(fast * 1e6, 3),
        "reference_seconds_per_period_extrapolated": round(ref * 500_000, 1),
        "speed_ratio_vs_reference": round(ref / fast, 1),
    }))


if __name__ == "__main__":
    main()
