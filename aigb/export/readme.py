"""The README.md of an exported folder: what it holds and how to drop it into a competition harness."""

from __future__ import annotations

__all__ = ["readme_text"]

_KINDS = {
    "rule": "a rule strategy: parameters only (`params.json`), numpy is all it needs",
    "state_policy": "a state policy (BC, IQL or CQL): the actor MLP and the state normaliser in `weights.pt`",
    "dt": "a Decision Transformer: its weights, context length and target return",
    "diffbid": "DiffBid: the condition network, denoiser and inverse dynamics (EMA weights), the scalers "
               "and the noise schedule in `weights.pt`; serving options fixed at export (see `params.json`, `planner.options`)",
}


def readme_text(params: dict, has_weights: bool) -> str:
    """The folder's README for export parameters ``params``."""
    needs = "numpy" if not has_weights else "numpy and torch (1.12 or later)"
    return f"""# aigb strategy `{params['source']}` for the NeurIPS 2024 auto-bidding harness

Exported by aigb {params['aigb_version']} (market {params['market_version']}, features {params['feature_version']}).
Kind: {_KINDS[params['kind']]}.

This folder is self-contained: its code imports {needs} and the Python standard library
(3.9 or later), never aigb. `weights.pt` (learned strategies) is a dict of plain tensors, read with
`torch.load(weights_only=True)` (on torch 1.12, which lacks that argument, by an unpickler that
accepts tensors only).

## Drop it in

Copy the folder into your harness's code, e.g. as `bidding_train_env/strategy/aigb_export/`, and
import the class where your harness takes its player from:

```python
from bidding_train_env.strategy.aigb_export import PlayerBiddingStrategy
player = PlayerBiddingStrategy(budget=budget, name="aigb", cpa=cpa, category=category)
```

or load `player.py` by path (it imports the folder as a package itself):
`importlib.util.spec_from_file_location("player", "aigb_export/player.py")`. In aigb, the folder
plays as `neurips2024:aigb_export/player.py:PlayerBiddingStrategy`.

The harness does what the competition's does: sets `budget`, `cpa`, `category`, calls `reset()`
per campaign, then per tick
`bidding(timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid, historyAuctionResult,
historyImpressionResult, historyLeastWinningCost)` with one array per past tick in each history,
and subtracts each tick's cost from `remaining_budget` (it stops asking once that is below
{params['min_remaining_budget']}).

## What it computes

Every tick it rebuilds aigb's v1 state ({len(params['feature_names'])} features: time and budget left,
the published market means over all past ticks and over the last 3, this tick's PV count and mean
pValue, budget, target CPA, spend, conversions, realised CPA, the category) from the history
arguments, decides one multiplier alpha and bids `alpha * pValues`. Its spend is the history's
`cost x exposed` (column 3 of `historyAuctionResult` times column 1 of `historyImpressionResult`),
tick by tick: the amount the harness subtracts from `remaining_budget`. A day has
{params['n_ticks']} ticks.

Random draws (OnlineLP's histogram subsample, DiffBid's sampling noise) come from the root seed
`player.seed` ({params['seed']} here; set it before `reset()`), so one campaign gives the same bids
each time. Learned networks run on `player.device` ('{params['device']}'; 'cuda' or 'auto' to use a GPU).

## Check it where you install it

```
python selftest.py
```

replays a period recorded at export (the harness's arguments, tick by tick, and the bids this
folder returned, which equalled aigb's own strategy's) and checks the bids; it prints the largest
difference. Small differences in the last digits are expected on other numpy or torch versions.
"""
