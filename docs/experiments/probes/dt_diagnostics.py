"""Decision Transformer diagnostics: the return-to-go a DT is conditioned on vs what it achieves, and
its spend over the day beside the other strategies of the same evaluation.

    python docs/experiments/probes/dt_diagnostics.py results/quick                 # an `aigb evaluate --out` folder
    python docs/experiments/probes/dt_diagnostics.py --add-stats runs/dt/best.pt runs/dt/best_stats.pt --data data/train

The first form prints, per strategy of the evaluation: score, budget used, the share of the budget
spent by ticks 12 / 24 / 36 / 48 and the share of campaigns that stopped bidding with budget left;
for each ``dt:`` strategy also the target return-to-go at tick 0 (score units) beside the score and
conversions it reached, their ratio and the correlation of target and score over the campaigns, and
the same by B / C tercile.

``--add-stats`` writes a copy of a DT checkpoint trained before campaign targets with the training
set's score-efficiency quantiles added (what ``aigb train dt`` now stores; the weights are those of
the file), so that its campaign-target serving (``?scale=campaign``) can be measured on the same
weights as its old one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def add_stats(src: str, dst: str, data: str) -> None:
    from aigb.algos.checkpoint import atomic_torch_save, read_checkpoint
    from aigb.algos.dt import EFFICIENCY_LEVELS
    from aigb.data.dataset import TrajectoryDataset

    payload = read_checkpoint(src)
    if payload["algo"] != "dt":
        raise SystemExit(f"{src}: not a dt checkpoint ({payload['algo']!r})")
    dataset = TrajectoryDataset.load(data)
    if payload.get("dataset_fingerprint") and dataset.fingerprint not in payload["dataset_fingerprint"]:
        raise SystemExit(f"{src}: was trained on {payload['dataset_fingerprint']}, not {dataset.fingerprint}")
    eff = np.asarray(dataset.campaign_efficiency, dtype=np.float64)
    extra = payload["algorithm"]["extra"]
    extra["efficiency_quantiles"] = {str(q): float(np.quantile(eff, q)) for q in EFFICIENCY_LEVELS}
    extra["return_quantiles"] = {str(q): float(v) for q, v in dataset.return_quantiles.items()}
    atomic_torch_save(payload, dst)
    print(f"wrote {dst}: {src} with the score-efficiency quantiles of {data} "
          f"(q50 {np.quantile(eff, 0.5):.3f}, q90 {np.quantile(eff, 0.9):.3f})")


def _targets(spec: str, budget: np.ndarray, cpa: np.ndarray) -> np.ndarray:
    """The tick-0 return-to-go of ``spec`` (a dt spec) for campaigns of these budgets and CPAs."""
    from aigb.strategies.registry import make_strategy

    policy = make_strategy(spec).policy
    out = []
    for b, c in zip(budget, cpa):
        state = np.zeros(policy.feature_dim, np.float32)
        i, j = policy.campaign_columns
        if i >= 0:
            state[i], state[j] = b, c
        out.append(policy.target(state))
    return np.array(out)


def report(folder: str) -> None:
    rows = pq.read_table(Path(folder) / "results.parquet").to_pylist()
    specs = list(dict.fromkeys(r["strategy"] for r in rows))
    print(f"{folder}: {len(rows)} rows, strategies {specs}")
    print(f"{'strategy':58s} {'n':>3s} {'score':>6s} {'used':>5s} {'@12':>5s} {'@24':>5s} {'@36':>5s} {'@48':>5s} {'left>10%':>8s}")
    for spec in specs:
        rs = [r for r in rows if r["strategy"] == spec and not r["error"]]
        spend = np.array([np.cumsum(r["tick_spend"]) for r in rs]) / np.array([r["budget"] for r in rs])[:, None]  # (n, T)
        t = spend.shape[1]
        at = [spend[:, min(t, k) - 1].mean() for k in (12, 24, 36, 48)]
        left = np.mean(spend[:, -1] < 0.9)
        print(f"{spec[-58:]:58s} {len(rs):3d} {np.mean([r['score'] for r in rs]):6.2f} {np.mean([r['budget_utilisation'] for r in rs]):5.1%} "
              + " ".join(f"{a:5.1%}" for a in at) + f" {left:8.1%}")
    for spec in specs:
        if not spec.startswith("dt:"):
            continue
        rs = [r for r in rows if r["strategy"] == spec and not r["error"]]
        budget = np.array([r["budget"] for r in rs])
        cpa = np.array([r["target_cpa"] for r in rs])
        target = _targets(spec, budget, cpa)
        score = np.array([r["score"] for r in rs])
        conv = np.array([r["conversions"] for r in rs])
        bound = np.array([r["bound_score"] for r in rs])
        print(f"\n{spec}: target RTG at tick 0 vs outcome over {len(rs)} campaigns")
        print(f"  target mean {target.mean():.2f} (min {target.min():.2f}, max {target.max():.2f}); score {score.mean():.2f}, "
              f"conversions {conv.mean():.2f}, bound {bound.mean():.2f}; conversions / target {conv.sum() / target.sum():.2f}; "
              f"corr(target, bound) {np.corrcoef(target, bound)[0, 1] if target.std() > 0 else float('nan'):.2f}")
        ratio = budget / cpa
        edges = np.quantile(ratio, [0, 1 / 3, 2 / 3, 1])
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (ratio >= lo) & (ratio <= hi)
            used = np.mean([rs[i]["budget_utilisation"] for i in np.flatnonzero(m)])
            print(f"  B/C {lo:5.1f}-{hi:5.1f}: n {m.sum():2d}, target {target[m].mean():6.2f}, conversions {conv[m].mean():6.2f}, "
                  f"score {score[m].mean():6.2f}, bound {bound[m].mean():6.2f}, budget used {used:5.1%}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", help="an `aigb evaluate --out` folder")
    p.add_argument("--add-stats", nargs=2, metavar=("SRC", "DST"), help="copy a DT checkpoint with efficiency quantiles")
    p.add_argument("--data", help="with --add-stats: the dataset the checkpoint was trained on")
    args = p.parse_args(argv)
    if args.add_stats:
        if not args.data:
            p.error("--add-stats needs --data")
        add_stats(*args.add_stats, args.data)
    elif args.results:
        report(args.results)
    else:
        p.error("give a results folder or --add-stats")


if __name__ == "__main__":
    sys.exit(main())
