"""Refit a DiffBid checkpoint's inverse dynamics alone, reading other plan rows (the IDM ablation).

    python docs/experiments/probes/diffbid_refit_idm.py CHECKPOINT OUT ROWS [--steps 8000] [--data data/train]

ROWS is a JSON list of offsets from the acting tick (``DiffBidConfig.idm_rows``), e.g. "[0,1]" (no
history), "[-2,-1,0,1]" (the default rows), "[0,1,2,4]" (the plan's later rows). The planner's
weights are kept bit for bit; a fresh IDM of those rows is trained by
``DiffBid.update_inverse_dynamics`` (batch 256, the checkpoint's IDM learning rate) and the result
is saved to OUT, ready for ``diffbid:OUT``. Prints the training loss every 2,000 updates.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from aigb.algos.checkpoint import read_checkpoint, save_checkpoint
from aigb.algos.diffbid import DiffBid
from aigb.algos.registry import config_from_dict
from aigb.data.dataset import TrajectoryDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("rows", help='JSON list of row offsets, e.g. "[0,1]"')
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--data", default="data/train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    payload = read_checkpoint(args.checkpoint)
    config = config_from_dict(DiffBid.config_class, {**DiffBid.legacy_config, **json.loads(payload["config"]),
                                                     "idm_rows": tuple(json.loads(args.rows))})
    algo = DiffBid(config, int(payload["feature_dim"]))
    # The checkpoint's state with the fresh IDM's weights in place of its own (their shapes differ);
    # its optimisers are left out, so the IDM's starts afresh.
    state = {k: v for k, v in payload["algorithm"].items() if k not in ("optimizers", "train_generator")}
    state["nets"] = {**{k: v for k, v in state["nets"].items() if not k.startswith("idm.")},
                     **{k: v for k, v in algo.nets.state_dict().items() if k.startswith("idm.")}}
    algo.load_state_dict(state)
    dataset = TrajectoryDataset.load(args.data)
    rng = np.random.default_rng(args.seed)
    t0, losses = time.time(), []
    for i in range(args.steps):
        losses.append(algo.update_inverse_dynamics(algo.sample_batch(dataset, 256, rng)))
        if (i + 1) % 2000 == 0:
            print(f"{i + 1} updates: loss {np.mean(losses[-500:]):.4f} ({time.time() - t0:.0f} s)", flush=True)
    save_checkpoint(args.out, algo, with_optimizers=False)
    print(f"saved {args.out} (idm_rows {list(config.idm_rows)})")


if __name__ == "__main__":
    main()
