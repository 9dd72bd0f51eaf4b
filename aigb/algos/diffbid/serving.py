"""DiffBid's serving configuration, typed: how a trained planner plans and bids, from a spec.

    diffbid:PATH[@PRESET][?option=value&option=value...]

Each option's text is read by the parser of ``--set`` (``aigb.configs.parse_value``: JSON, else a
number; text options stay text) and checked on its own, then the options are assembled into one
``ServingConfig`` whose parts exclude each other by type:

    sampling   Sampling     DDIM steps, temperature, eta, per-day noise, device
    condition  Condition    classifier-free guidance weight and the outcome targets
    guidance   Guidance     optional: an objective on the plan (training-free guidance, throttling)
    search     Candidates | Levels | None
                            Candidates: N plans per tick ranked ByEvaluator, ByPlan or ByObjective;
                            Levels: a level planner's grid search ranked ByPlan or ByCritic

A field left as None keeps the value the checkpoint's config stores. A preset (``@NAME``,
``SERVING_PRESETS``) supplies options that the spec's own options override. Needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from aigb.algos.diffbid.objectives import parse_guide
from aigb.configs import parse_value
from aigb.types import ConfigError

__all__ = ["DEVICES", "GUIDANCE_PRESETS", "SELECTIONS", "CAP_KINDS", "SPEC_OPTIONS", "SERVING_PRESETS", "DEFAULT_PRESET",
           "Sampling", "Condition", "Guidance", "ByPlan", "ByEvaluator", "ByObjective", "ByCritic", "Candidates", "Levels",
           "ServingConfig", "parse_spec_options", "split_preset"]

DEVICES = ("auto", "cpu", "cuda")
GUIDANCE_PRESETS = ("mpgd", "dps", "lgd", "freedom", "ugd", "tfg")
"""aigb.diffusion.guidance.PRESETS, and "tfg": every correction at once."""
SELECTIONS = ("evaluator", "plan", "objective", "critic")
"""How a search ranks: see ``ByEvaluator``, ``ByPlan``, ``ByObjective``, ``ByCritic``."""
CAP_KINDS = ("cap", "exhaust")
"""Objective terms that cap early spend (what ``throttle`` enforces; ``aigb.strategies.throttle``)."""


# --- one option's value -----------------------------------------------------------------------
def _number(low: float | None = None, high: float | None = None, *, strict_low: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("must be finite")
        if low is not None and (value <= low if strict_low else value < low):
            raise ValueError(f"must be {'>' if strict_low else '>='} {low}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}")
        return value
    return check


def _integer(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"must be an integer >= {low}")
        return value
    return check


def _flag(value: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"must be 0 or 1, got {value!r}")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return check


def _device(text: str) -> str:
    text = text.strip().lower()
    if text not in DEVICES and not text.startswith("cuda:"):
        raise ValueError(f"must be one of {', '.join(DEVICES)}")
    return text


def _strength(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = parse_value("strength", text)
    except ConfigError as err:
        raise ValueError(str(err).partition(": ")[2]) from None
    return _number(0.0)(value)


def _guide(text: str) -> str:
    return ",".join(t.label for t in parse_guide(text))       # canonical, ValueError names the bad term


def _path(text: str) -> str:
    if not text:
        raise ValueError("must be a file path")
    return text


@dataclass(frozen=True)
class _Option:
    keyword: str
    """The keyword the planner (or the spec's typed part) takes."""
    check: Callable[[Any], Any]
    """Validates the parsed value and returns it (ValueError with the problem otherwise)."""
    help: str
    text: bool = False
    """Kept as text (not read as JSON or a number)."""
    expected: str | None = None
    """What an unreadable value must be, for the error (e.g. "0 or 1")."""


SPEC_OPTIONS: dict[str, _Option] = {
    "w": _Option("guidance", _number(0.0), "guidance weight (>= 0)"),
    "return": _Option("target_return", _number(0.0, 1.0), "return rank to plan for, in [0, 1]"),
    "cpa": _Option("target_cpa", _number(0.0, 1.0), "CPA satisfaction min(1, (C / CPA)^2), in [0, 1]"),
    "util": _Option("target_util", _number(0.0, 1.0), "budget utilisation, in [0, 1]"),
    "steps": _Option("steps", _integer(1), "DDIM steps per tick"),
    "temperature": _Option("temperature", _number(0.0, strict_low=True), "sampling noise scale (> 0)"),
    "eta": _Option("eta", _number(0.0), "DDIM stochasticity (>= 0)"),
    "device": _Option("device", _device, "auto, cpu or cuda", text=True),
    "guide": _Option("guide", _guide, "objective terms, e.g. cpa:0.9,util:0.95,cap:0.5@24", text=True),
    "preset": _Option("preset", _choice(GUIDANCE_PRESETS), f"guidance method: {', '.join(GUIDANCE_PRESETS)}", text=True),
    "strength": _Option("strength", _strength, "auto or a guidance strength >= 0", text=True),
    "rho": _Option("rho", _number(0.0), "variance-guidance strength (>= 0)"),
    "mu": _Option("mu", _number(0.0), "mean-guidance strength (>= 0)"),
    "gamma": _Option("gamma", _number(0.0), "implicit-dynamics scale (>= 0)"),
    "iters": _Option("n_iter", _integer(0), "mean-guidance steps per DDIM step"),
    "recur": _Option("n_recur", _integer(1), "recurrences per DDIM step"),
    "clip": _Option("grad_clip", _number(0.0, strict_low=True), "per-sample clip of the objective's gradient (> 0)"),
    "n": _Option("n_candidates", _integer(1), "candidate plans per tick"),
    "levels": _Option("search_levels", _integer(1), "bid levels searched per tick (a planner trained with condition=level)"),
    "samples": _Option("search_samples", _integer(1), "plans per bid level and tick (condition=level)"),
    "change": _Option("max_change", _number(0.0), "largest change of the bid level from one tick to the next, log units (condition=level; 0: none)"),
    "support": _Option("support", _number(0.5, 1.0), "highest level searched: this quantile of the data's levels at the tick (condition=level)"),
    "select": _Option("select", _choice(SELECTIONS), f"candidate ranking: {', '.join(SELECTIONS)}", text=True),
    "evaluator": _Option("evaluator", _path, "plan evaluator file", text=True),
    "critic": _Option("critic", _path, "CQL or IQL checkpoint(s), comma-separated, whose mean Q ranks a level planner's levels (with select=critic)", text=True),
    "qsmooth": _Option("qsmooth", _number(0.0), "with select=critic: rank a level by the critic's mean over N(level, SD^2), log units (>= 0)"),
    "throttle": _Option("throttle", _number(0.0, 0.99), "enforce the guide's caps by throttling, aiming this margin below them (in [0, 0.99])"),
}
"""Spec option -> its keyword, check and help (``ServingConfig.from_options`` sorts them into parts)."""

SERVING_PRESETS: dict[str, str] = {
    "best": "steps=5&levels=32&select=critic&qsmooth=0.2",
    "own": "steps=5",
    "fast": "steps=5&change=0.3",
}
"""Named serving settings of a level planner (``diffbid:PATH@NAME``), the benchmarked ones of
docs/diffbid.md. ``best`` ranks 32 levels by critics the spec names (``@best?critic=A,B,C``);
``own`` ranks them by the plans' own claimed score; ``fast`` adds a trust region of 0.3 (about
half the time per decision)."""
DEFAULT_PRESET: str | None = None
"""The preset a spec without ``@NAME`` gets: none, i.e. the serving values stored in the checkpoint
(a default preset would change the decisions of every existing spec)."""


# --- the typed parts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How each tick's plans are drawn (DDIM; None keeps the checkpoint's value)."""

    steps: int | None = None
    """DDIM steps per tick."""
    temperature: float | None = None
    """Scale of the initial and per-step noise."""
    eta: float | None = None
    """DDIM stochasticity (0: deterministic given the initial noise)."""
    device: str = "auto"
    """Where the planner runs: auto (the GPU when torch sees one), cpu, cuda."""


@dataclass(frozen=True)
class Condition:
    """What the plans are conditioned on (None keeps the checkpoint's value)."""

    guidance: float | None = None
    """Classifier-free guidance weight w: eps = eps_u + w (eps_c - eps_u)."""
    target_return: float | None = None
    """An outcome planner's return condition (score-efficiency rank in [0, 1])."""
    target_cpa: float | None = None
    """An outcome planner's CPA condition min(1, (C / CPA)^2)."""
    target_util: float | None = None
    """An outcome planner's budget-utilisation condition."""


@dataclass(frozen=True)
class Guidance:
    """An objective on the plan: training-free guidance toward it, the search's log f, and
    optionally throttling that enforces its caps on the realised day."""

    guide: str
    """Objective terms (``aigb.algos.diffbid.objectives.parse_guide``), canonical text."""
    preset: str | None = None
    """Guidance method (``GUIDANCE_PRESETS``; None: mpgd)."""
    strength: float | str | None = None
    """"auto" (the stored tuning; also when no strength, rho or mu is given) or a number."""
    rho: float | None = None
    mu: float | None = None
    gamma: float | None = None
    n_iter: int | None = None
    n_recur: int | None = None
    grad_clip: float | None = None
    throttle: float | None = None
    """Enforce the guide's cap and exhaust terms by bidding on a share of the PVs, aiming this
    margin below the cap."""

    def __post_init__(self) -> None:
        if self.strength == "auto":
            for key in ("rho", "mu", "gamma"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"option {key}: strength=auto tunes rho, mu and gamma; give either, not both")
        if self.throttle is not None and not any(t.kind in CAP_KINDS for t in parse_guide(self.guide)):
            raise ConfigError("option throttle enforces caps on early spend; give one with guide=cap:S@TAU or guide=exhaust:F@TAU")

    @property
    def auto(self) -> bool:
        """Strengths from the stored tuning: strength=auto, given or implied (no strength, rho or mu)."""
        return self.strength == "auto" or all(v is None for v in (self.strength, self.rho, self.mu))


@dataclass(frozen=True)
class ByPlan:
    """Rank by the score efficiency the plan's last row claims (plus the objective's log f)."""


@dataclass(frozen=True)
class ByObjective:
    """Rank candidates by the objective's log f alone (needs ``Guidance``)."""


@dataclass(frozen=True)
class ByEvaluator:
    """Rank candidates by the learned plan evaluator's predicted efficiency (plus log f)."""

    path: str | None = None
    """The evaluator file (None: evaluator.pt beside the checkpoint)."""


@dataclass(frozen=True)
class ByCritic:
    """Rank a level planner's levels by the mean min(Q1, Q2) of offline-RL checkpoints."""

    paths: str
    """The CQL or IQL checkpoints, comma-separated."""
    qsmooth: float | None = None
    """The critic's mean over N(level, SD^2) instead of its value at the level."""


@dataclass(frozen=True)
class Candidates:
    """N plans sampled per tick as one batch, the best kept."""

    n: int
    """Candidates per tick (>= 2; one plan is no search)."""
    rank: Union[ByEvaluator, ByPlan, ByObjective] = field(default_factory=ByEvaluator)


@dataclass(frozen=True)
class Levels:
    """A level planner's search over its grid of bid levels (None keeps the checkpoint's value);
    a planner trained with condition=level always searches, with or without these options."""

    search_levels: int | None = None
    search_samples: int | None = None
    support: float | None = None
    max_change: float | None = None
    rank: Union[ByPlan, ByCritic] = field(default_factory=ByPlan)


@dataclass(frozen=True)
class ServingConfig:
    """A ``diffbid:`` spec, resolved into its parts (module docstring)."""

    sampling: Sampling = field(default_factory=Sampling)
    condition: Condition = field(default_factory=Condition)
    guidance: Guidance | None = None
    search: Union[Candidates, Levels, None] = None
    preset: str | None = None
    """The ``@NAME`` the spec started from, if any."""

    def __post_init__(self) -> None:
        if isinstance(self.search, Candidates) and isinstance(self.search.rank, ByObjective) and self.guidance is None:
            raise ConfigError("option select: 'objective' needs guide=...")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for results and logs); the search and rank named by their types."""
        out = asdict(self)
        if self.search is not None:
            out["search"] = {"kind": type(self.search).__name__.lower(), **out["search"],
                             "rank": {"by": type(self.search.rank).__name__[2:].lower(), **out["search"]["rank"]}}
        return out

    @classmethod
    def from_options(cls, options: dict[str, Any], preset: str | None = None) -> "ServingConfig":
        """The typed config of parsed option keywords (``parse_spec_options``); ConfigError names
        the option that does not fit."""
        o = dict(options)
        pick = lambda *keys: {k: o[k] for k in keys if k in o}   # noqa: E731
        guidance = None
        if "guide" in o:
            guidance = Guidance(**pick("guide", "preset", "strength", "rho", "mu", "gamma", "n_iter", "n_recur",
                                       "grad_clip", "throttle"))
        else:
            for key, option in SPEC_OPTIONS.items():
                if option.keyword in ("preset", "strength", "rho", "mu", "gamma", "n_iter", "n_recur", "grad_clip") and option.keyword in o:
                    raise ConfigError(f"option {key} steers toward an objective; give one with guide=...")
            if "throttle" in o:
                raise ConfigError("option throttle enforces caps on early spend; give one with guide=cap:S@TAU or guide=exhaust:F@TAU")
        select = o.get("select")
        by_critic = select == "critic"
        if by_critic != ("critic" in o):
            raise ConfigError("options select=critic and critic=CHECKPOINT go together (a level planner's levels "
                              "ranked by that checkpoint's Q)")
        if "qsmooth" in o and not by_critic:
            raise ConfigError("option qsmooth smooths a critic's values; it needs select=critic and critic=CHECKPOINT")
        n = o.get("n_candidates", 1)
        for key in ("select", "evaluator"):
            if key in o and n < 2 and not by_critic:
                raise ConfigError(f"option {key} ranks candidate plans; it needs n >= 2")
        level_keys = ("search_levels", "search_samples", "support", "max_change")
        search: Candidates | Levels | None = None
        if n >= 2:
            if by_critic or any(k in o for k in level_keys):
                raise ConfigError("option n: a search is either candidates (n, select, evaluator) or a level planner's "
                                  "levels (levels, samples, support, change, select=critic), not both")
            rank = {"plan": ByPlan(), "objective": ByObjective()}.get(select) or ByEvaluator(o.get("evaluator"))
            search = Candidates(n, rank)
        elif by_critic or any(k in o for k in level_keys):
            rank = ByCritic(o["critic"], o.get("qsmooth")) if by_critic else ByPlan()
            search = Levels(**pick(*level_keys), rank=rank)
        return cls(Sampling(**pick("steps", "temperature", "eta", "device")),
                   Condition(**pick("guidance", "target_return", "target_cpa", "target_util")), guidance, search, preset)


# --- text -> options --------------------------------------------------------------------------------
def split_preset(path: str) -> tuple[str, str | None]:
    """``'runs/d/best.pt@best'`` -> ``('runs/d/best.pt', 'best')``: an ``@NAME`` after the last
    ``/`` names a preset (``SERVING_PRESETS``); ConfigError for an unknown name."""
    head, at, name = path.rpartition("@")
    if not at or "/" in name:
        return path, DEFAULT_PRESET
    if name not in SERVING_PRESETS:
        raise ConfigError(f"diffbid: unknown preset {name!r}; known: {', '.join(SERVING_PRESETS)}")
    return head, name


def parse_spec_options(query: str, text: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``'w=1.2&steps=10'`` -> ``{'guidance': 1.2, 'steps': 10}``: each value read as ``--set``
    reads it and checked; ``given`` (a preset's options) is overridden. ``text`` (the whole spec)
    goes into the errors."""
    options: dict[str, Any] = dict(given or {})
    seen: set[str] = set()
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise ConfigError(f"diffbid: expected option=value, got {item!r} in {text!r}")
        option = SPEC_OPTIONS.get(key)
        if option is None:
            raise ConfigError(f"diffbid: unknown option {key!r} in {text!r}; accepted: {', '.join(SPEC_OPTIONS)}")
        if key in seen:
            raise ConfigError(f"diffbid: option {key!r} given twice in {text!r}")
        seen.add(key)
        try:
            parsed = parse_value(key, value, text=option.text)
        except ConfigError as err:
            problem = f"must be {option.expected}, got {value!r}" if option.expected else str(err).partition(": ")[2]
            raise ConfigError(f"diffbid: option {key}: cannot use {value!r} ({problem})") from None
        try:
            options[option.keyword] = option.check(parsed)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"diffbid: option {key}: cannot use {value!r} ({err})") from None
    return options

