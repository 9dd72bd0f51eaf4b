"""DiffBid digests, to compare two versions of the code bit for bit.

Trains tiny DiffBid planners (outcome and level) and a tiny CQL on a small generated dataset, plays
one campaign with several serving specs (plain, conditions, candidates, guidance, throttling, level
search, critic ranking), and prints a digest of every checkpoint's weights and of every spec's
actions and plans. Run it under each version and compare the two outputs:

    python benchmarks/diffbid_digest.py OUT_DIR > digest.json

Keys do not contain OUT_DIR, so two runs into different directories compare key by key.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from aigb.algos.checkpoint import read_checkpoint
from aigb.data.generate import generate_dataset
from aigb.workflows.training import train
from aigb.strategies.check import play_bids
from aigb.strategies.registry import make_strategy
from aigb.types import MarketConfig

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 4,
        "idm_hidden_dims": (32, 32), "warmup_steps": 10}


def digest_ckpt(path: Path) -> tuple[str, str]:
    """A digest of the checkpoint's weights, and its config."""
    p = read_checkpoint(path)
    h = hashlib.sha256()
    for k, v in sorted(p["algorithm"]["nets"].items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()[:16], p["config"]


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not data.exists():
        generate_dataset(data, periods=3, seed=11, market=MarketConfig(n_pv=3000, preset="random"), progress=False)
    res = {}
    for name, over in (("outcome", TINY), ("level", {**TINY, "condition": "level", "guidance": 1.0})):
        run = out / name
        train("diffbid", data, run_dir=run, steps=20, batch_size=16, seed=3, overrides=over, validation=None, progress=False, device="cpu")
        res[f"ckpt/{name}"] = digest_ckpt(run / "last.pt")
    train("cql", data, run_dir=out / "cql", steps=20, batch_size=16, seed=1, overrides={"hidden_dims": (32, 32), "batch_size": 16},
          validation=None, progress=False)
    res["ckpt/cql"] = digest_ckpt(out / "cql" / "last.pt")[0]
    market = MarketConfig(n_pv=2000, n_advertisers=12)
    specs = {
      "outcome": ["", "?w=1.5&return=0.8&steps=3", "?n=3&select=plan", "?guide=cpa:0.9&strength=0.05&steps=2", "?guide=cap:0.5@24&strength=0&throttle=0.1",
                  "?temperature=0.7&eta=0.5"],
      "level": ["", "?levels=4&samples=1&steps=2", "?change=0.3", "?support=1&levels=6", f"?select=critic&critic={out/'cql'/'last.pt'}&qsmooth=0.2&levels=8",
                f"?select=critic&critic={out/'cql'/'last.pt'}&guide=cpa:0.9&strength=0&steps=2"],
    }
    for name, tails in specs.items():
        for tail in tails:
            spec = f"diffbid:{out / name / 'last.pt'}?device=cpu" if not tail else f"diffbid:{out / name / 'last.pt'}{tail}&device=cpu"
            s = make_strategy(spec, market)
            play_bids(s, market, 0, 0, 3)
            acts = [p.action for p in s.plans]
            plans = hashlib.sha256(np.stack([p.unit for p in s.plans]).tobytes()).hexdigest()[:16]
            res[f"{name}{tail.replace(str(out), '')}"] = (hashlib.sha256(np.asarray(acts, np.float64).tobytes()).hexdigest()[:16], plans, acts[:3])
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
