"""Refit an oracle-form DiffBid's inverse dynamics on the planner's own next rows (an ablation).

    python docs/experiments/probes/diffbid_oracle_idm_on_plans.py RUN_DIR OUT [--states 6000] [--steps 1500] [--checkpoint best.pt]

The oracle form trains its inverse dynamics on the oracle's exact next row, and at serving reads a
sampled one (``docs/experiments/probes/diffbid_oracle_probe.py`` measures what that costs). This script keeps
the planner bit for bit and fine-tunes the inverse dynamics on the run's labelled states
(``RUN_DIR/states.npz``, training periods only) with row t+1 replaced by the row the planner itself
samples at that state (the realised prefix in-painted, the serving sampler and seed), the target
still the oracle's multiplier. Saves OUT, ready for ``diffbid:OUT``. Prints the loss before and
after on the states it refits.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aigb.algos.checkpoint import load_algorithm, save_checkpoint
from aigb.seeding import rng


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("out")
    ap.add_argument("--checkpoint", default="best.pt")
    ap.add_argument("--states", type=int, default=6000, help="labelled states refitted on (a random subset)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    algo = load_algorithm(f"{args.run_dir}/{args.checkpoint}")
    if algo.config.condition != "oracle":
        raise SystemExit("a condition=oracle checkpoint is needed")
    z = dict(np.load(f"{args.run_dir}/states.npz"))
    n = z["obs"].shape[0]
    g = rng(0, "bench/idm-on-plans")
    pick = np.sort(g.choice(n, size=min(args.states, n), replace=False))
    planner = algo.policy()
    t0 = time.process_time()
    plans = z["plan"][pick].copy()                                                          # (m, H, P)
    for j, i in enumerate(pick):
        t = int(z["tick"][i])
        step = planner.plan(z["obs"][i - t: i + 1], seed=planner.seed)   # the campaign's states 0..t
        plans[j, t + 1] = step.plan[t + 1]
    print(f"sampled {pick.size} plans in {time.process_time() - t0:.0f} s CPU")
    data = {"obs": plans, "context": z["context"][pick], "outcome": np.ones((pick.size, 1), np.float32),
            "tick_info": z["tick_info"][pick], "action": z["action"][pick].astype(np.float32),
            "tick": z["tick"][pick].astype(np.int64)}
    data["prefix"] = data["tick"]

    def loss_on(sample):
        with torch.no_grad():
            b = algo._batch_tensors({k: v[sample] for k, v in data.items()})
            from aigb.algos.diffbid.dynamics import transition_rows

            rows = transition_rows(algo.plan_scaler.to_unit(b["obs"]), b["tick"], algo.config.idm_rows)
            pred = algo.bounds.from_unit(algo.nets["idm"](rows, algo.context_scaler.to_unit(b["context"]),
                                                          algo.info_scaler.to_unit(b["tick_info"])))
            return float(torch.mean((pred - algo.bounds.clip(b["action"])) ** 2))

    every = np.arange(pick.size)
    print(f"IDM loss on the planner's rows before: {loss_on(every):.4f}")
    for _ in range(args.steps):
        i = g.integers(pick.size, size=args.batch_size)
        algo.update_inverse_dynamics({k: v[i] for k, v in data.items()})
    print(f"after {args.steps} updates: {loss_on(every):.4f}")
    save_checkpoint(args.out, algo, with_optimizers=False)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
