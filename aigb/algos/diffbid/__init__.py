"""DiffBid, a small package by role, on top of ``aigb.diffusion``:

    config      DiffBidTraining, ServingDefaults and the checkpoint's DiffBidConfig; constants
    serving     the typed serving config of a ``diffbid:`` spec (no torch)
    plans       what is diffused: plan views of the v1 states, their scaler (no torch)
    levels      the bid levels of logged days (no torch)
    dynamics    inverse dynamics: plan rows -> action
    model       the algorithm: networks, batches, losses, checkpoint state
    planner     serving: re-plan every tick, act
    search      decision-time search and its rankers (plan score, objective, evaluator, critic)
    evaluator   the learned plan evaluator (a ranker)
    critic      a Q critic from an offline-RL checkpoint (a ranker of a level planner's levels)
    objectives  objectives on a plan: parsing, log f, compliance (no torch)

``from aigb.algos.diffbid import DiffBid`` and the other names below work as before; each loads its
module on first use, so the torch-free modules import without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "config": ("DiffBidConfig", "DiffBidTraining", "ServingDefaults", "LEVEL_DAYS", "OPEN_LOOP_AUTOCORR", "SUPPORT_LEVELS",
               "LEVEL_QUANTILES", "EFFICIENCY_LEVELS"),
    "levels": ("open_loop_days", "held_from", "level_support", "remaining_levels"),
    "dynamics": ("InverseDynamics", "transition_rows"),
    "model": ("DiffBid", "PLAN_BATCH_FIELDS"),
    "planner": ("DiffBidPlanner",),
    "search": ("PlanStep", "PlanSearch", "SELECTIONS"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
