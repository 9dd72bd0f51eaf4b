"""Recompute a level planner's data-derived search tables with this code's rules.

    python docs/experiments/probes/diffbid_level_tables.py CHECKPOINT OUT [--data data/train]

A DiffBid trained with ``condition=level`` stores the range of levels it searches
(``LEVEL_QUANTILES`` of the open-loop days' levels) and, per tick, the levels the data support
(``level_support``), both made by ``DiffBid.level_tables``. A checkpoint written before one of
these rules existed (or changed) lacks or holds an older table; this recomputes both from the
training data (the method ``aigb train`` calls) and writes a copy to OUT, weights untouched. Used once on runs/diffbid_level2/best.pt, which
was trained before the per-tick support existed.
"""

from __future__ import annotations

import argparse

import torch

from aigb.algos.checkpoint import atomic_torch_save, load_algorithm, read_checkpoint
from aigb.data.dataset import TrajectoryDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--data", default="data/train")
    args = parser.parse_args()
    algo = load_algorithm(args.checkpoint)
    if algo.config.condition != "level":
        raise SystemExit(f"{args.checkpoint}: not a level planner (condition={algo.config.condition!r})")
    level_range, support = algo.level_tables(algo._arrays(TrajectoryDataset.load(args.data)))
    payload = read_checkpoint(args.checkpoint)
    extra = payload["algorithm"]["extra"]
    extra["level_range"] = torch.as_tensor(level_range, dtype=torch.float64)
    extra["level_support"] = torch.as_tensor(support, dtype=torch.float64)
    atomic_torch_save(payload, args.out)
    print(f"{args.out}: level range {extra['level_range'].tolist()}, 90 % support at ticks 0, 12, 24, 36: "
          f"{[round(float(v), 2) for v in extra['level_support'][8, ::12]]}")


if __name__ == "__main__":
    main()
