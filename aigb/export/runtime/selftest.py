"""Replay the period recorded at export and check that this folder bids as it did in aigb.

    python selftest.py            (from anywhere; exit status 0: the bids agree)

``selftest.npz`` holds, per tick of one campaign's period, what the competition harness handed the
strategy (pValues, pValueSigmas, the histories, its remaining budget) and the bids the exported
strategy returned at export time, where they equalled the aigb strategy's own bids. The replay
calls ``bidding`` with the same arguments and compares. Numbers may differ in the last digits on
another numpy or torch (reductions and kernels round differently); the check allows 1e-5 of each
bid. torch runs on one thread, as at export: with more, a network's reductions round differently
and a diffusion planner carries that into its bids.

This file is copied into exported folders: numpy and the standard library only (plus torch
through the strategy, for learned strategies).
"""

import importlib.util
import os
import sys

import numpy as np

HISTORY_NAMES = ("historyPValueInfo", "historyBid", "historyAuctionResult", "historyImpressionResult",
                 "historyLeastWinningCost")
RTOL, ATOL = 1e-5, 1e-12


def replay(folder: str) -> tuple:
    """(ticks asked, max |bid difference|, max allowed) of the recorded period."""
    spec = importlib.util.spec_from_file_location("_aigb_selftest_player", os.path.join(folder, "player.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    PlayerBiddingStrategy = module.PlayerBiddingStrategy
    if os.path.exists(os.path.join(folder, "weights.pt")):   # a network: recorded on one thread (see above)
        import torch

        torch.set_num_threads(1)
    data = np.load(os.path.join(folder, "selftest.npz"))
    offsets = data["offsets"]
    budget, cpa, category = data["campaign"]
    player = PlayerBiddingStrategy(budget=float(budget), cpa=float(cpa), category=int(category))
    player.seed = int(data["seed"])
    player.device = "cpu"
    player.reset()
    histories = [[] for _ in HISTORY_NAMES]
    asked, worst, allowed = 0, 0.0, 0.0
    for t in range(offsets.size - 1):
        rows = slice(offsets[t], offsets[t + 1])
        info = data["historyPValueInfo"][rows].astype(np.float64)   # stored as float32, aigb's precision
        player.remaining_budget = float(data["remaining_budget"][t])
        if data["asked"][t]:
            bids = np.asarray(player.bidding(t, info[:, 0].copy(), info[:, 1].copy(), *histories), dtype=np.float64)
            expected = data["returned"][rows]
            if bids.shape != expected.shape:
                raise AssertionError("tick %d: %s bids for %d PVs" % (t, bids.shape, expected.size))
            if expected.size:
                worst = max(worst, float(np.max(np.abs(bids - expected))))
                allowed = max(allowed, float(np.max(RTOL * np.abs(expected) + ATOL)))
                if not np.all(np.abs(bids - expected) <= RTOL * np.abs(expected) + ATOL):
                    raise AssertionError("tick %d: bids differ from the recorded ones by up to %.3g" % (t, worst))
            asked += 1
        for h, name in zip(histories, HISTORY_NAMES):
            h.append(data[name][rows].astype(np.float64))
    return asked, worst, allowed


def main() -> int:
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        asked, worst, _ = replay(folder)
    except AssertionError as err:
        print("selftest: FAILED: %s" % err)
        return 1
    print("selftest: %d ticks replayed, max |bid difference| %.3g: OK" % (asked, worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
