"""Generation and evaluation throughput: one local worker, two local workers, Ray with 2 CPUs.

Prints periods per minute for ``generate_dataset`` and campaigns per minute for ``evaluate`` under
each, the speed-up over one local worker, and Ray's own cost: starting a local instance, and the
round trip of many trivial tasks (per task). Both parallel runs include what a user waits for
(spawning local processes; Ray's workers are started with the instance, which is timed apart).
The load average is printed beside the figures: on a shared machine they depend on it.

    .venv/bin/python benchmarks/ray_scaling.py [--periods 8] [--campaigns 8] [--n-pv 500000]

The output is also written to benchmarks/results/ray_scaling.txt (--out).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--periods", type=int, default=8, help="generated periods per configuration (default %(default)s)")
    parser.add_argument("--campaigns", type=int, default=8, help="evaluation campaigns (slots of one period; default %(default)s)")
    parser.add_argument("--n-pv", type=int, default=500_000, help="PVs per period (default %(default)s, the default market)")
    parser.add_argument("--trivial", type=int, default=500, help="trivial Ray tasks for the per-task cost (default %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray_scaling.txt"))
    args = parser.parse_args()

    import ray

    from aigb.data.generate import DEFAULT_MARKET, generate_dataset
    from aigb.eval.evaluate import evaluate
    from aigb.strategies.rules import default_lp_prior
    from aigb.types import MarketConfig

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    data_market = replace(DEFAULT_MARKET, n_pv=args.n_pv)   # the training default, at --n-pv
    eval_market = MarketConfig(n_pv=args.n_pv)
    specs = ["fixed", "pid", "onlinelp"]
    say(f"ray_scaling: {args.periods} periods of {args.n_pv:,} PVs (generate), {args.campaigns} campaigns x "
        f"{len(specs)} strategies ({', '.join(specs)}) with the hindsight oracle (evaluate); Ray {ray.__version__}")
    say(f"at start: {_load()}")
    default_lp_prior(eval_market)   # fitted once and cached, outside the timings

    def gen(**kwargs) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            rep = generate_dataset(tmp, args.periods, 0, market=data_market, progress=False, **kwargs)
        return rep.periods_per_minute

    def ev(**kwargs) -> float:
        res = evaluate(specs, periods=1, slots=args.campaigns, market=eval_market, progress=False, **kwargs)
        return 60.0 * args.campaigns / res.wall_s

    results = {}
    for name, kwargs in (("local, 1 worker", {"workers": 1}), ("local, 2 workers", {"workers": 2})):
        results[name] = (gen(**kwargs), ev(**kwargs))
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    startup = time.perf_counter() - start
    results["Ray, 2 CPUs"] = (gen(backend="ray"), ev(backend="ray"))

    @ray.remote
    def nothing(x):
        return x

    ray.get([nothing.remote(i) for i in range(20)])   # warm
    start = time.perf_counter()
    ray.get([nothing.remote(i) for i in range(args.trivial)])
    per_task_ms = 1000 * (time.perf_counter() - start) / args.trivial
    ray.shutdown()

    base = results["local, 1 worker"]
    say(f"{'':<18} {'periods/min':>12} {'x':>6} {'campaigns/min':>14} {'x':>6}")
    for name, (g, e) in results.items():
        say(f"{name:<18} {g:>12.1f} {g / base[0]:>6.2f} {e:>14.1f} {e / base[1]:>6.2f}")
    say(f"Ray overhead: {startup:.1f} s to start a local instance; {per_task_ms:.2f} ms per trivial task "
        f"({args.trivial} tasks, submitted at once, 2 CPUs)")
    say(f"at end: {_load()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
