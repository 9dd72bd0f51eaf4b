"""Evaluation against simulation: what one period's 48 campaigns cost beside the period itself.

Each case runs in a fresh process (so its peak memory is its own) and prints CPU seconds, wall
seconds and peak RSS; ratios are taken against simulating the same default period in the same run.

    python benchmarks/eval_speed.py                    # rule, state policy, DT; start-up
    python benchmarks/eval_speed.py --kinds rule diffbid --single-slots 6
    python benchmarks/eval_speed.py --standard         # + the standard evaluation's wall time (minutes)

Cases:
* simulate: ``PeriodSim(...).run()`` of the default market, seed 0, the first evaluation period;
* batched KIND: ``aigb.eval.batched.play_period`` of one strategy on all 48 slots of that period,
  with the bound per row (as ``aigb evaluate``) and without it (``with_oracle=False``);
* single KIND: ``aigb.eval.rollout.run_campaign`` per slot, the one-campaign path, on
  ``--single-slots`` slots spread over the advertisers (reported per campaign and scaled to 48);
* start-up: ``aigb --help`` and a whole ``aigb simulate --periods 1`` process.

Strategy kinds: rule (fixed), state policy (CQL's default network), dt (the Decision Transformer's
default network), diffbid (DiffBid's default planner). The learned kinds use untrained networks of
the default sizes: a decision costs the same whatever the weights, and no dataset is needed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED, PERIOD = 0, 1_000_000
KINDS = ("rule", "state_policy", "dt", "diffbid")


def _checkpoint(kind: str, folder: Path) -> str:
    """A spec of the kind; learned kinds get an untrained checkpoint of the default network."""
    if kind == "rule":
        return "fixed"
    name = {"state_policy": "cql", "dt": "dt", "diffbid": "diffbid"}[kind]
    path = folder / f"{name}.pt"
    if not path.exists():
        from aigb.algos.checkpoint import save_checkpoint
        from aigb.algos.registry import make_algorithm
        from aigb.data.dataset import TrajectoryDataset
        from aigb.data.generate import generate_dataset
        from aigb.features import FEATURE_DIM
        from aigb.types import MarketConfig

        data_dir = folder / "data"   # a tiny dataset: the normaliser's statistics, no training
        if not data_dir.exists():
            generate_dataset(data_dir, periods=1, seed=0, market=MarketConfig(n_pv=3000, n_advertisers=8), progress=False)
        algo = make_algorithm(name, FEATURE_DIM, {}, seed=0)
        algo.prepare(TrajectoryDataset.load(data_dir), 0)
        save_checkpoint(path, algo, with_optimizers=False)
    return f"{name}:{path}"


def _case(name: str, kind: str | None, slots: int, folder: str) -> dict:
    """One measurement, in this process (the parent runs each in a child)."""
    from aigb.sim.population import market_population
    from aigb.types import MarketConfig

    market = MarketConfig()
    population = market_population(market)
    spec = None if kind is None else _checkpoint(kind, Path(folder))
    if spec is not None:   # loading and warming up (numba's compiled loops load from their cache) is not timed
        from aigb.eval.batched import play_period
        from aigb.types import MarketConfig as _M

        play_period((spec,), _M(n_pv=2000, n_ticks=48, n_advertisers=4), population, SEED, PERIOD, [0])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if name == "simulate":
        from aigb.sim.period import PeriodSim

        PeriodSim(market, SEED, PERIOD, population=population).run()
    elif name in ("batched", "batched-no-bound"):
        from aigb.eval.batched import play_period

        play_period((spec,), market, population, SEED, PERIOD, range(market.n_advertisers),
                    with_oracle=name == "batched")
    elif name == "single":
        import numpy as np

        from aigb.eval.rollout import run_campaign

        for a in np.unique(np.round(np.linspace(0, market.n_advertisers - 1, slots)).astype(int)):
            run_campaign((spec,), market, population, SEED, PERIOD, int(a))
    else:
        raise ValueError(name)
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(name: str, kind: str | None, slots: int, folder: str) -> dict:
    cmd = [sys.executable, __file__, "--case", name, "--kind", kind or "", "--single-slots", str(slots), "--folder", folder]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], capture_output=True, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": r.ru_utime + r.ru_stime, "wall_s": time.perf_counter() - t0, "peak_rss_mb": r.ru_maxrss / 1024}))
"""


def _process(cmd: list[str]) -> dict:
    """CPU (user + system), wall and peak RSS of a whole command, from the kernel's accounting of a
    fresh wrapper's only child."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=["rule", "state_policy", "dt"], choices=KINDS)
    ap.add_argument("--single-slots", type=int, default=8, help="slots the one-campaign path plays (default 8)")
    ap.add_argument("--standard", action="store_true", help="also time the standard evaluation (5 periods x 48 slots x "
                                                            "seeds 0 and 1, 2 workers) of each kind")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, args.kind or None, args.single_slots, args.folder)))
        return
    with tempfile.TemporaryDirectory() as folder:
        sim = _child("simulate", None, 0, folder)
        print(f"simulate one default period: {sim['cpu_s']:.2f} s CPU, {sim['wall_s']:.2f} s wall, "
              f"peak {sim['peak_rss_mb']:.0f} MB")
        print(f"{'kind':<13} {'path':<17} {'campaigns':>9} {'CPU s':>8} {'x sim':>7} {'wall s':>8} {'peak MB':>8}")
        for kind in args.kinds:
            rows = []
            for name in ("batched", "batched-no-bound", "single"):
                r = _child(name, kind, args.single_slots, folder)
                n = 48 if name != "single" else args.single_slots
                scale = 48 / n
                rows.append((name, n, r))
                print(f"{kind:<13} {name:<17} {n:>9} {r['cpu_s']:>8.2f} {r['cpu_s'] * scale / sim['cpu_s']:>7.1f} "
                      f"{r['wall_s']:>8.2f} {r['peak_rss_mb']:>8.0f}")
            batched, single = rows[0][2], rows[2][2]
            per_b, per_s = batched["cpu_s"] / 48, single["cpu_s"] / args.single_slots
            print(f"{kind:<13} CPU per campaign: batched {per_b:.3f} s, single {per_s:.3f} s ({per_s / per_b:.1f}x)")
        exe = Path(sys.executable).with_name("aigb")
        helped = _process([str(exe), "--help"])
        whole = _process([str(exe), "simulate", "--periods", "1", "--quiet"])
        print(f"aigb --help: {helped['cpu_s']:.2f} s CPU, peak {helped['peak_rss_mb']:.0f} MB; whole `aigb simulate "
              f"--periods 1`: {whole['cpu_s']:.2f} s CPU ({whole['cpu_s'] - sim['cpu_s']:+.2f} s over the in-process period)")
        if args.standard:
            for kind in args.kinds:
                spec = _checkpoint(kind, Path(folder))
                cmd = [str(exe), "evaluate", "--strategy", spec, "--periods", "5", "--slots", "all", "--seeds", "0", "1",
                       "--workers", "2", "--quiet", "--out", str(Path(folder) / f"std_{kind}")]
                r = _process(cmd)
                print(f"standard evaluation, {kind}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU on 2 workers")


if __name__ == "__main__":
    main()
