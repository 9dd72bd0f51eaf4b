"""DiffBid as a bidding strategy: ``aigb evaluate --strategy 'diffbid:runs/diffbid/best.pt?w=1.2&return=0.9'``.

The spec is a checkpoint path, optionally followed by ``?`` and ``&``-separated serving options
that change the planner without retraining:

    w            classifier-free guidance weight (0: unconditional, 1: conditional)
    return       return condition, the score-efficiency rank in [0, 1] to plan for
    cpa          CPA condition min(1, (C / CPA)^2) in [0, 1]
    util         budget-utilisation condition spend / B in [0, 1]
    steps        DDIM sampling steps per tick
    temperature  scale of the sampling noise (> 0)
    eta          DDIM stochasticity (>= 0)
    device       auto | cpu | cuda (auto: the GPU when torch sees one)

Left out, an option keeps the value stored in the checkpoint's config. At every tick the strategy
re-plans the rest of the day with the realised states in-painted (``aigb.algos.diffbid``) and
keeps the plan: ``strategy.plans[t]`` is tick t's ``PlanStep`` (plan rows in plan units, the
channels are ``strategy.channels``), so a report can draw planned against realised trajectories.
Parsing the spec needs no torch; building the strategy does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aigb.features import FEATURE_VERSION
from aigb.sim.env import Observation
from aigb.strategies.base import AlphaStrategy
from aigb.types import ConfigError, Campaign

__all__ = ["DIFFBID_OPTIONS", "parse_diffbid_spec", "check_diffbid_spec", "load_diffbid_strategy", "DiffBidStrategy"]

DEVICES = ("auto", "cpu", "cuda")


def _number(low: float | None = None, high: float | None = None, *, strict_low: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("must be finite")
        if low is not None and (value <= low if strict_low else value < low):
            raise ValueError(f"must be {'>' if strict_low else '>='} {low}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}")
        return value
    return parse


def _steps(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be an integer >= 1")
    return value


def _device(text: str) -> str:
    text = text.strip().lower()
    if text not in DEVICES and not text.startswith("cuda:"):
        raise ValueError(f"must be one of {', '.join(DEVICES)}")
    return text


DIFFBID_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "w": ("guidance", _number(0.0), "guidance weight (>= 0)"),
    "return": ("target_return", _number(0.0, 1.0), "return rank to plan for, in [0, 1]"),
    "cpa": ("target_cpa", _number(0.0, 1.0), "CPA satisfaction min(1, (C / CPA)^2), in [0, 1]"),
    "util": ("target_util", _number(0.0, 1.0), "budget utilisation, in [0, 1]"),
    "steps": ("steps", _steps, "DDIM steps per tick"),
    "temperature": ("temperature", _number(0.0, strict_low=True), "sampling noise scale (> 0)"),
    "eta": ("eta", _number(0.0), "DDIM stochasticity (>= 0)"),
    "device": ("device", _device, "auto, cpu or cuda"),
}
"""Spec option -> (planner keyword, parser, help)."""


def parse_diffbid_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``'PATH?w=1.2&steps=10'`` -> ``('PATH', {'guidance': 1.2, 'steps': 10})``; ConfigError names a bad option."""
    path, _, query = text.partition("?")
    if not path:
        raise ConfigError(f"diffbid: needs a checkpoint path before the options, got {text!r}")
    options: dict[str, Any] = {}
    given: set[str] = set()
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"diffbid: expected option=value, got {item!r} in {text!r}")
        if key not in DIFFBID_OPTIONS:
            raise ConfigError(f"diffbid: unknown option {key!r} in {text!r}; accepted: {', '.join(DIFFBID_OPTIONS)}")
        if key in given:
            raise ConfigError(f"diffbid: option {key!r} given twice in {text!r}")
        given.add(key)
        keyword, parse, _ = DIFFBID_OPTIONS[key]
        try:
            options[keyword] = parse(value.strip())
        except (TypeError, ValueError) as err:
            raise ConfigError(f"diffbid: option {key}: cannot use {value!r} ({err})") from None
    return path, options


def check_diffbid_spec(text: str) -> None:
    """Check a spec's options and that its checkpoint exists, without loading torch."""
    path, _ = parse_diffbid_spec(text)
    if not Path(path).exists():
        raise ConfigError(f"diffbid: no checkpoint at {path!r}")


def load_diffbid_strategy(text: str, name: str | None = None) -> "DiffBidStrategy":
    """Build the strategy of spec text ``PATH[?options]`` (the checkpoint is read with weights_only)."""
    from aigb.algos.checkpoint import load_algorithm, read_checkpoint

    path, options = parse_diffbid_spec(text)
    found = read_checkpoint(path).get("algo")
    if found != "diffbid":
        raise ValueError(f"{path}: checkpoint holds a {found!r} policy, not 'diffbid'")
    algo = load_algorithm(path, expected_feature_version=FEATURE_VERSION)
    try:
        planner = algo.policy(**{"device": "auto", **options})
    except ValueError as err:   # ConfigError from an option the checkpoint's config refuses (e.g. steps)
        raise ConfigError(f"diffbid: {err}") from None
    return DiffBidStrategy(planner, name or f"diffbid:{text}")


class DiffBidStrategy(AlphaStrategy):
    """Bids ``alpha = exp(a_t) * C`` with a_t from a fresh plan at every tick; keeps the plans.

    The planner's noise comes from the campaign's seed and the tick (``aigb.seeding`` stream
    "diffbid/plan"), so the same campaign and seed give the same plans and bids.
    """

    def __init__(self, planner, name: str) -> None:
        self.planner = planner
        self.name = name
        self.channels: tuple[str, ...] = tuple(planner.channels)
        self.plans: list = []
        self._states: list[np.ndarray] = []
        self._seed = 0
        self._campaign: Campaign | None = None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        if n_ticks != self.planner.n_ticks:
            raise ConfigError(f"{self.name}: the planner was trained on days of {self.planner.n_ticks} ticks, "
                              f"this market has {n_ticks}")
        self._campaign = campaign
        self._seed = int(seed)
        self._states = []
        self.plans = []

    def alpha(self, obs: Observation) -> float:
        self._states.append(np.asarray(obs.features, dtype=np.float32))
        step = self.planner.plan(np.stack(self._states), seed=self._seed)
        self.plans.append(step)
        return float(np.exp(step.action) * obs.campaign.target_cpa)

    def planned_remaining_budget(self, tick: int) -> np.ndarray:
        """(T + 1,) the remaining budget, in money, that the plan of ``tick`` expects before each
        tick and after the day (rows up to ``tick`` are the realised ones)."""
        if "budget_left" not in self.channels or self._campaign is None:
            raise ValueError(f"{self.name}: no budget channel in plans of kind {self.channels[:3]}...")
        return self.plans[tick].plan[:, self.channels.index("budget_left")] * self._campaign.budget
