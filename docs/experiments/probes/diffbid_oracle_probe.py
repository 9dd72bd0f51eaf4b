"""Where DiffBid's oracle form (``condition=oracle``) loses to its teacher: label quality, plan
against the oracle's plan, and the inverse dynamics given the oracle's own next row.

    python docs/experiments/probes/diffbid_oracle_probe.py runs/diffbid_oracle/best.pt [--periods 100,101] [--slots all]
        [--temperature T] [--steps K]

Plays the checkpoint on *training* periods that its run did not roll out (by default 100 and 101;
never a validation or evaluation period), labels every visited state with the oracle's
continuation (``aigb.workflows.oil.rollout_states`` with ``days``) and, at each state, re-plans as the
strategy did (the same seed) to compare:

* action: the planner's action against the oracle's label (mean squared error, in log(alpha / C));
  the labels' variance is what a constant would score;
* idm given the oracle row: the inverse dynamics fed the oracle's true next row instead of the
  planned one: how much of the action error the plan's next row causes;
* plan: the planned next row and last row against the oracle day's (scaled units, RMS per channel):
  how far the planned day is from the oracle's;
* coverage: the share of states whose scaled realised row lies outside [-1.5, 1.5] in some channel
  (outside what the training states spanned).

Figures are printed; the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from aigb.algos.checkpoint import load_algorithm
from aigb.algos.diffbid.dynamics import transition_rows
from aigb.workflows.oil import Mix, rollout_states
from aigb.sim.population import PopulationConfig
from aigb.types import MarketConfig


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--periods", default="100,101")
    ap.add_argument("--slots", default="all")
    ap.add_argument("--seed", type=int, default=0, help="the training run's seed (its market draws)")
    ap.add_argument("--n-pv", type=int, default=MarketConfig().n_pv)
    ap.add_argument("--temperature", type=float, default=None, help="serving temperature (default: the checkpoint's)")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps per tick (default: the checkpoint's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    market = MarketConfig(n_pv=args.n_pv)
    algo = load_algorithm(args.checkpoint)
    if algo.config.condition != "oracle":
        raise SystemExit(f"{args.checkpoint}: a condition={algo.config.condition!r} planner; this probe reads oracle planners")
    planner = algo.policy(temperature=args.temperature, steps=args.steps)
    periods = [int(p) for p in args.periods.split(",")]
    slots = range(market.n_advertisers) if args.slots == "all" else [int(s) for s in args.slots.split(",")]
    d = rollout_states(Mix(planner, 0.0, days=True), market, PopulationConfig(), args.seed, periods, slots)
    fields = algo.oracle_fields(d["day"], d["tick"])
    target = algo.plan_scaler.to_unit(fields["plan"])                                        # (n, H, P) the oracle days
    acted, via_oracle_row, next_err, last_err = [], [], [], []
    for i in range(d["obs"].shape[0]):
        t = int(d["tick"][i])
        prefix = d["obs"][i - t: i + 1]                                                      # the campaign's states 0..t
        step = planner.plan(prefix, seed=planner.seed)
        acted.append(step.action)
        next_err.append((step.unit[min(t + 1, algo.horizon - 1)] - target[i, min(t + 1, algo.horizon - 1)]) ** 2)
        last_err.append((step.unit[-1] - target[i, -1]) ** 2)
        with torch.no_grad():
            x = torch.from_numpy(target[i][None].astype(np.float32))
            rows = transition_rows(x, torch.tensor([t]), algo.config.idm_rows)
            context = torch.from_numpy(algo.context_scaler.to_unit(fields["context"][i][None]))
            info = torch.from_numpy(algo.info_scaler.to_unit(fields["tick_info"][i][None]))
            a = float(algo.bounds.clip(algo.bounds.from_unit(planner.idm(rows, context, info))[0]))
        via_oracle_row.append(a)
    label = d["action"].astype(np.float64)
    acted, via_oracle_row = np.array(acted), np.array(via_oracle_row)
    realised = algo.plan_scaler.to_unit(algo.view.plan(d["obs"][:, None]))[:, 0]            # (n, P)
    channels = list(algo.view.channels)
    out = {
        "states": int(label.size), "campaigns": len(d["campaigns"]),
        "score": float(np.mean([c["score"] for c in d["campaigns"]])),
        "expected_score": float(np.mean([c["expected_score"] for c in d["campaigns"]])),
        "label_var": float(np.var(label)),
        "action_mse": float(np.mean((acted - label) ** 2)),
        "action_bias": float(np.mean(acted - label)),
        "idm_oracle_row_mse": float(np.mean((via_oracle_row - label) ** 2)),
        "next_row_rms": dict(zip(channels, np.sqrt(np.mean(next_err, axis=0)).round(3).tolist())),
        "last_row_rms": dict(zip(channels, np.sqrt(np.mean(last_err, axis=0)).round(3).tolist())),
        "outside_training_range": float(np.mean(np.any(np.abs(realised) > 1.5, axis=1))),
    }
    print(f"{out['campaigns']} campaigns, {out['states']} labelled states; score {out['score']:.2f} "
          f"(expected {out['expected_score']:.2f})")
    print(f"action vs oracle label: MSE {out['action_mse']:.3f} (bias {out['action_bias']:+.3f}); labels' variance "
          f"{out['label_var']:.3f}; the IDM fed the oracle's next row: MSE {out['idm_oracle_row_mse']:.3f}")
    print("planned next row vs the oracle's, RMS (scaled):", out["next_row_rms"])
    print("planned last row vs the oracle's, RMS (scaled):", out["last_row_rms"])
    print(f"states outside the training range (|scaled| > 1.5 in a channel): {out['outside_training_range']:.1%}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
