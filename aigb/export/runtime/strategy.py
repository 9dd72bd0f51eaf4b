"""``PlayerBiddingStrategy``: an aigb strategy in the NeurIPS 2024 auto-bidding competition's interface.

The harness sets ``budget``, ``cpa`` and ``category`` (or passes them to the constructor), calls
``reset()`` once per campaign, then once per tick::

    bids = player.bidding(timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
                          historyAuctionResult, historyImpressionResult, historyLeastWinningCost)

and owns ``remaining_budget``, which it decrements by each tick's cost. ``bids`` is ``alpha *
pValues``: one bid multiplier per tick, decided as the aigb strategy named in ``params.json``
decides it, from the aigb state (v1 features) that ``history.py`` rebuilds from the history
arguments. The strategy's own record of its spend is the history's cost x exposed, tick by tick
(``history.TickLedger``); ``remaining_budget`` is the harness's and is not read.

A tick the harness did not ask about (e.g. after the budget ran out) is decided afterwards from
the history, in order, before the current one, so that stateful deciders (PID, OnlineLP, the
Decision Transformer's action history) stay on the path aigb's own strategy would take.

This file is copied into exported folders: numpy, torch (learned strategies only) and the
standard library only.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .bundle import load_params, load_tensors
from .history import AUCTIONNET_FEATURE_VERSION, FEATURE_VERSION, TickLedger, auctionnet16_features, current_tick, v1_features
from .rules import RuleController

_DECIDERS = {}


def _prior_for_campaign(prior: dict, category: int, target_cpa: float, advertiser):
    """The OnlineLP prior row of a campaign, shifted to its target CPA and scaled to the period's PVs (N_bins, 2)."""
    per_pv = np.asarray(prior["per_pv"], dtype=np.float64)
    cpas = np.asarray(prior["target_cpa"], dtype=np.float64)
    if advertiser is not None and 0 <= advertiser < per_pv.shape[0]:
        row, cpa = per_pv[advertiser], float(cpas[advertiser])
    else:
        same = np.asarray(prior["category"]) == category
        same = same if same.any() else np.ones_like(same)
        row, cpa = per_pv[same].mean(axis=0), float(cpas[same].mean())
    n_bins = row.shape[0]
    lo, hi = prior["log_ratio_range"]
    shift = int(np.clip(round(math.log(cpa / target_cpa) / ((hi - lo) / n_bins)), 1 - n_bins, n_bins - 1))
    out = np.zeros_like(row)
    # Mass pushed past either end stays in the end bin, as the online histogram clamps.
    if shift >= 0:
        out[shift:] = row[:n_bins - shift]
        out[-1] += row[n_bins - shift:].sum(axis=0)
    else:
        out[:shift] = row[-shift:]
        out[0] += row[:-shift].sum(axis=0)
    return out * float(prior["n_pv"])


def _learned_decider(folder: str, params: dict, device: str):
    """The network of a learned export, built once per process (a re-export in place is rebuilt)."""
    weights = os.path.join(folder, "weights.pt")
    key = (os.path.abspath(folder), os.stat(weights).st_mtime_ns, os.stat(weights).st_size,
           json.dumps(params, sort_keys=True), device)
    if key not in _DECIDERS:
        tensors = load_tensors(folder)
        if params["kind"] == "state_policy":
            from .networks import StatePolicy
            _DECIDERS[key] = StatePolicy(params["policy"], tensors)
        elif params["kind"] == "dt":
            from .networks import DecisionTransformer
            _DECIDERS[key] = DecisionTransformer(params["policy"], tensors)
        elif params["kind"] == "diffbid":
            from .planner import DiffBidPlanner
            _DECIDERS[key] = DiffBidPlanner(params["planner"], tensors, device)
        else:
            raise ValueError("params.json: unknown kind %r" % params["kind"])
    return _DECIDERS[key]


class PlayerBiddingStrategy:
    """The exported aigb strategy (``params.json`` names it: ``PlayerBiddingStrategy.params["source"]``)."""

    folder = os.path.dirname(os.path.abspath(__file__))

    def __init__(self, budget=100, name="PlayerBiddingStrategy", cpa=2, category=1):
        self.budget, self.name, self.cpa, self.category = budget, name, cpa, category
        self.remaining_budget = budget
        self.params = load_params(self.folder)
        if self.params["feature_version"] not in (FEATURE_VERSION, AUCTIONNET_FEATURE_VERSION):
            raise ValueError("params.json: feature version %r, this code builds %r and %r"
                             % (self.params["feature_version"], FEATURE_VERSION, AUCTIONNET_FEATURE_VERSION))
        self.seed = int(self.params["seed"])
        """Root of the strategy's random streams (OnlineLP's subsample, DiffBid's noise); set it before reset()."""
        self.device = self.params.get("device", "cpu")
        """Where a learned strategy's network runs ('cpu', 'cuda' or 'auto'); set it before the first bid."""
        self.n_ticks = int(self.params["n_ticks"])
        self.task = self.params.get("task")
        """The task a learned strategy was trained for ("cpa": Target-CPA, or "max-return"); None for rules."""
        self.reset()

    def reset(self):
        """Start a campaign: forget the previous one's history and decisions."""
        self.remaining_budget = self.budget
        self._ledger = TickLedger()
        self._states = []    # v1 state of each decided tick
        self._actions = []   # learned strategies: a = log(alpha / C) of each decided tick
        self.alphas = []     # the bid multiplier of each decided tick
        self.plans = []      # DiffBid: the plan (T + 1, P rows, scaled units) of each decided tick
        self._fed = 0        # OnlineLP: past ticks fed to the histogram
        self._rule = None
        if self.params["kind"] == "rule":
            rule = self.params["rule"]
            prior = None
            if rule.get("lp_prior") is not None:
                prior = _prior_for_campaign(rule["lp_prior"], int(self.category), float(self.cpa), rule["lp_prior"].get("advertiser"))
            self._rule = RuleController(rule, float(self.budget), float(self.cpa), prior, self.seed)

    def bidding(self, timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid, historyAuctionResult,
                historyImpressionResult, historyLeastWinningCost):
        """Bids for the tick's PVs: alpha * pValues.  # (n,) float64"""
        t = int(timeStepIndex)
        histories = (historyPValueInfo, historyBid, historyAuctionResult, historyImpressionResult, historyLeastWinningCost)
        if len(historyPValueInfo) < t:
            raise ValueError("bidding at tick %d needs the history of ticks 0..%d, got %d ticks" % (t, t - 1, len(historyPValueInfo)))
        self._ledger.update(*histories)
        while len(self.alphas) < t:   # ticks the harness did not ask about, in order
            k = len(self.alphas)
            self._decide(k, np.asarray(historyPValueInfo[k], dtype=np.float64).reshape(-1, 2)[:, 0], histories)
        self._decide(t, pValues, histories)
        return self.alphas[t] * np.asarray(pValues, dtype=np.float64).reshape(-1)

    def _decide(self, t: int, p_values, histories) -> None:
        budget, cpa = float(self.budget), float(self.cpa)
        if self._rule is not None:
            if self._rule.kind == "lp":
                while self._fed < t:
                    self._rule.observe(np.asarray(histories[0][self._fed], dtype=np.float64).reshape(-1, 2)[:, 0],
                                       histories[4][self._fed])
                    self._fed += 1
            history = self._ledger.history(t)
            spent = np.array([budget - (budget - self._ledger.spent(t))])   # as budget minus remaining budget
            conversions = np.array([float(history["conversions"].sum())])
            self.alphas.append(self._rule.alpha(t, spent, conversions))
            return
        n_pv, p_mean = current_tick(p_values)
        if self.params["feature_version"] == AUCTIONNET_FEATURE_VERSION:   # a policy trained on AuctionNet's rlData
            state = auctionnet16_features(self._ledger.history(t), self.n_ticks, n_pv, p_mean, budget)
        else:
            state = v1_features(self._ledger.history(t), self.n_ticks, n_pv, p_mean, budget, cpa, int(self.category))
        self._states = self._states[:t] + [state]
        states = np.stack(self._states)
        decider = _learned_decider(self.folder, self.params, self.device)    # built once per process
        if self.params["kind"] == "diffbid":
            action, plan = decider.plan(states, self.seed)
            self.plans.append(plan)
        else:
            rewards = self._ledger.history(t)["conversions"].astype(np.float32)
            action = float(decider.act(states, np.asarray(self._actions, dtype=np.float32), rewards))
        low, high = self.params["action_bounds"]
        action = float(np.clip(action, low, high))
        self._actions.append(action)
        self.alphas.append(float(np.exp(action) * cpa))
