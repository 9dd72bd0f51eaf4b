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

Objectives after training (``aigb.algos.plan_objectives``; training-free guidance,
``aigb.diffusion.guidance``) and decision-time search:

    guide        objective terms, e.g. cpa:0.9,util:0.95 or cap:0.5@24 (CPA <= 0.9 C, spend >= 95 %
                 of the budget, at most half of it before tick 24; also exhaust@TAU, smooth, *WEIGHT)
    preset       guidance method: mpgd (default: mean guidance, no gradient through the denoiser),
                 dps, lgd, freedom, ugd, or tfg (all of TFG's corrections)
    strength     auto (the strengths ``aigb tune-guidance`` found for this checkpoint and these
                 options; the default when no strength, rho or mu is given) or a number: the
                 preset's strength(s)
    rho mu gamma TFG's variance and mean strengths and implicit-dynamics scale, overriding the preset's
    iters recur  mean-guidance steps and recurrences per DDIM step; clip: per-sample gradient clip
    n            candidate plans per tick, sampled as one batch (1: plain sampling)
    levels       bid levels a planner trained with condition=level searches per tick (default 16)
    samples      plans per level and tick, sharing one noise draw across levels (default 2)
    support      search only levels up to this quantile of the open-loop training days' levels at
                 the tick (default 0.9; 1: all): beyond, the planner would extrapolate
    change       largest move of the bid level from one tick to the next (log units; default 0: any)
    select       how candidates are ranked: evaluator (default; the learned plan evaluator, see
                 ``aigb fit-evaluator``), plan (the score the plan claims) or objective; an
                 objective's log f is added to the first two. A level planner ranks its levels by
                 the score its plans claim, or with select=critic by a Q critic (Q + mean|Q| log f)
    evaluator    the evaluator file (default: evaluator.pt beside the checkpoint)
    critic       with select=critic: a CQL or IQL checkpoint whose twin-Q ranks a level planner's
                 levels (``aigb.algos.level_critic``), or several, comma-separated: their mean
    qsmooth      with select=critic: rank a level by the critic's mean over N(level, SD^2), SD in
                 log(alpha / C) (default 0: the critic's value at the level itself)
    throttle     enforce the guide's cap and exhaust terms on every day, not only on the plans:
                 bid on a share of the PVs when the tick's forecast spend would cross a cap,
                 aiming this margin below it (e.g. 0.1; ``aigb.strategies.throttle``)

Left out, an option keeps the value stored in the checkpoint's config. At every tick the strategy
re-plans the rest of the day with the realised states in-painted (``aigb.algos.diffbid``) and
keeps the plan: ``strategy.plans[t]`` is tick t's ``PlanStep`` (plan rows in plan units, the
channels are ``strategy.channels``), so a report can draw planned against realised trajectories.
Parsing the spec needs no torch; building the strategy does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aigb.algos.plan_objectives import parse_guide
from aigb.features import FEATURE_VERSION, check_feature_set, features_for
from aigb.sim.env import Observation
from aigb.strategies.base import AlphaStrategy
from aigb.types import ConfigError, Campaign

__all__ = ["DIFFBID_OPTIONS", "GUIDANCE_PRESETS", "parse_diffbid_spec", "check_diffbid_spec", "load_diffbid_strategy",
           "DiffBidStrategy", "guidance_config", "tuning_key", "tuned_strengths_path", "read_tuned_strengths",
           "write_tuned_strengths", "evaluator_path", "critic_paths"]

DEVICES = ("auto", "cpu", "cuda")
GUIDANCE_PRESETS = ("mpgd", "dps", "lgd", "freedom", "ugd", "tfg")
"""aigb.diffusion.guidance.PRESETS, and "tfg": every correction at once."""
DEFAULT_GAMMA = 0.001
"""Implicit-dynamics scale of lgd and tfg when none is given: TFG's beam-search start."""
SELECTIONS = ("evaluator", "plan", "objective", "critic")
# Options that tune the strengths, or only say where things run or live: not part of the key of a tuning.
_NOT_IN_TUNING_KEY = ("strength", "rho", "mu", "gamma", "device", "evaluator", "throttle", "critic", "qsmooth")
_NEEDS_GUIDE = ("preset", "strength", "rho", "mu", "gamma", "iters", "recur", "clip")


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


def _integer(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"must be an integer >= {low}")
        return value
    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


def _strength(text: str) -> float | str:
    return "auto" if text == "auto" else _number(0.0)(text)


def _guide(text: str) -> str:
    return ",".join(t.label for t in parse_guide(text))       # canonical, ValueError names the bad term


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"must be 0 or 1, got {text!r}")
    return text == "1"


def _path(text: str) -> str:
    if not text:
        raise ValueError("must be a file path")
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
    "guide": ("guide", _guide, "objective terms, e.g. cpa:0.9,util:0.95,cap:0.5@24"),
    "preset": ("preset", _choice(GUIDANCE_PRESETS), f"guidance method: {', '.join(GUIDANCE_PRESETS)}"),
    "strength": ("strength", _strength, "auto or a guidance strength >= 0"),
    "rho": ("rho", _number(0.0), "variance-guidance strength (>= 0)"),
    "mu": ("mu", _number(0.0), "mean-guidance strength (>= 0)"),
    "gamma": ("gamma", _number(0.0), "implicit-dynamics scale (>= 0)"),
    "iters": ("n_iter", _integer(0), "mean-guidance steps per DDIM step"),
    "recur": ("n_recur", _integer(1), "recurrences per DDIM step"),
    "clip": ("grad_clip", _number(0.0, strict_low=True), "per-sample clip of the objective's gradient (> 0)"),
    "n": ("n_candidates", _integer(1), "candidate plans per tick"),
    "levels": ("search_levels", _integer(1), "bid levels searched per tick (a planner trained with condition=level)"),
    "samples": ("search_samples", _integer(1), "plans per bid level and tick (condition=level)"),
    "change": ("max_change", _number(0.0), "largest change of the bid level from one tick to the next, log units (condition=level; 0: none)"),
    "refine": ("refine", _flag, "1: bid between grid levels, at the vertex of the parabola through the best level's score and its neighbours' (condition=level)"),
    "day_noise": ("day_noise", _flag, "1: one sampling-noise draw per day instead of one per tick"),
    "support": ("support", _number(0.5, 1.0), "highest level searched: this quantile of the data's levels at the tick (condition=level)"),
    "select": ("select", _choice(SELECTIONS), f"candidate ranking: {', '.join(SELECTIONS)}"),
    "evaluator": ("evaluator", _path, "plan evaluator file"),
    "critic": ("critic", _path, "CQL or IQL checkpoint(s), comma-separated, whose mean Q ranks a level planner's levels (with select=critic)"),
    "qsmooth": ("qsmooth", _number(0.0), "with select=critic: rank a level by the critic's mean over N(level, SD^2), log units (>= 0)"),
    "throttle": ("throttle", _number(0.0, 0.99), "enforce the guide's caps by throttling, aiming this margin below them (in [0, 0.99])"),
}
"""Spec option -> (keyword, parser, help). The guidance and search keywords are turned into the
planner's ``tfg``, ``n_candidates``, ``select`` and ``evaluator`` by ``load_diffbid_strategy``."""


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
    _check_combination(given, options, text)
    return path, options


def _check_combination(given: set[str], options: dict[str, Any], text: str) -> None:
    for key in _NEEDS_GUIDE:
        if key in given and "guide" not in given:
            raise ConfigError(f"diffbid: option {key} steers toward an objective; give one with guide=... in {text!r}")
    if options.get("strength") == "auto":
        for key in ("rho", "mu", "gamma"):
            if key in given:
                raise ConfigError(f"diffbid: option {key}: strength=auto tunes rho, mu and gamma; give either, not both, in {text!r}")
    n = options.get("n_candidates", 1)
    by_critic = options.get("select") == "critic"
    if by_critic != ("critic" in given):
        raise ConfigError(f"diffbid: options select=critic and critic=CHECKPOINT go together (a level planner's levels "
                          f"ranked by that checkpoint's Q) in {text!r}")
    if "qsmooth" in given and not by_critic:
        raise ConfigError(f"diffbid: option qsmooth smooths a critic's values; it needs select=critic and critic=CHECKPOINT in {text!r}")
    for key in ("select", "evaluator"):
        if key in given and n < 2 and not by_critic:
            raise ConfigError(f"diffbid: option {key} ranks candidate plans; it needs n >= 2 in {text!r}")
    if "throttle" in given:
        from aigb.strategies.throttle import CAP_KINDS

        if "guide" not in given or not any(t.kind in CAP_KINDS for t in parse_guide(options["guide"])):
            raise ConfigError(f"diffbid: option throttle enforces caps on early spend; give one with guide=cap:S@TAU "
                              f"or guide=exhaust:F@TAU in {text!r}")
    if options.get("select") == "objective" and "guide" not in given:
        raise ConfigError(f"diffbid: option select: 'objective' needs guide=... in {text!r}")


def _strength_given(options: dict[str, Any]) -> bool:
    return any(k in options for k in ("strength", "rho", "mu"))


def _auto(options: dict[str, Any]) -> bool:
    """strength=auto, given or implied (a guide with no strength, rho or mu)."""
    return "guide" in options and (options.get("strength") == "auto" or not _strength_given(options))


def evaluator_path(path: str, options: dict[str, Any]) -> Path | None:
    """The evaluator file a search needs (None when it needs none)."""
    if options.get("n_candidates", 1) < 2 or options.get("select", "evaluator") != "evaluator":
        return None
    from aigb.algos.plan_evaluator import DEFAULT_EVALUATOR_NAME

    return Path(options["evaluator"]) if "evaluator" in options else Path(path).parent / DEFAULT_EVALUATOR_NAME


# --- strength=auto: tunings stored beside the checkpoint ----------------------------------------
def _file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tuning_key(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """What a tuning of guidance strengths is valid for: the checkpoint's bytes and every serving
    option as given, except the strengths themselves, the device and the evaluator's path. The
    objective's terms are sorted, so their order does not matter."""
    inverse = {keyword: key for key, (keyword, _, _) in DIFFBID_OPTIONS.items()}
    kept = {}
    for keyword, value in options.items():
        key = inverse[keyword]
        if key in _NOT_IN_TUNING_KEY:
            continue
        kept[key] = ",".join(sorted(value.split(","))) if key == "guide" else value
    kept.setdefault("preset", "mpgd")
    return {"checkpoint_sha256": _file_sha256(path), "options": dict(sorted(kept.items()))}


def tuned_strengths_path(path: str, options: dict[str, Any]) -> Path:
    """``DIR/STEM.guidance/HASH.json`` beside checkpoint ``DIR/STEM.pt``: one file per tuning key."""
    key = json.dumps(tuning_key(path, options), sort_keys=True)
    p = Path(path)
    return p.parent / f"{p.stem}.guidance" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_tuned_strengths(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """The stored tuning for this checkpoint and options; ConfigError naming the command otherwise."""
    file = tuned_strengths_path(path, options)
    if not file.is_file():
        spec = "diffbid:" + path + "?" + "&".join(f"{k}={v}" for k, v in tuning_key(path, options)["options"].items())
        raise ConfigError(f"diffbid: strength=auto: no tuned strengths for this checkpoint and options (looked for {file}); "
                          f"run `aigb tune-guidance '{spec}'` first, or give strength=NUMBER")
    entry = json.loads(file.read_text())
    if entry.get("key") != tuning_key(path, options):
        raise ConfigError(f"diffbid: strength=auto: {file} was tuned for another checkpoint or options; re-run aigb tune-guidance")
    return entry


def write_tuned_strengths(path: str, options: dict[str, Any], entry: dict[str, Any]) -> Path:
    """Store a tuning (atomically: a reader sees the old file or the new one, never a part)."""
    from aigb.data.parquet import atomic_output

    file = tuned_strengths_path(path, options)
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(file) as tmp:
        tmp.write_text(json.dumps({**entry, "key": tuning_key(path, options)}, indent=2, sort_keys=True) + "\n")
    return file


def guidance_config(options: dict[str, Any], tuned: dict[str, Any] | None = None):
    """The TFGConfig of parsed spec options (None without guide=). ``tuned`` (a stored tuning's
    "config") supplies the strengths under strength=auto; a number sets the preset's strength(s):
    rho for dps, lgd and freedom, mu for mpgd, both for ugd and tfg; rho, mu and gamma given
    explicitly override."""
    if "guide" not in options:
        return None
    import dataclasses

    from aigb.diffusion.guidance import PRESETS, TFGConfig

    if _auto(options):
        if tuned is None:
            raise ValueError("strength=auto needs the stored tuning (read_tuned_strengths)")
        return TFGConfig(**tuned)
    s = options.get("strength", 0.0)
    preset = options.get("preset", "mpgd")
    if preset == "lgd":
        config = PRESETS["lgd"](s, DEFAULT_GAMMA)
    elif preset == "ugd":
        config = PRESETS["ugd"](s, s)
    elif preset == "tfg":
        config = TFGConfig(rho=s, mu=s, gamma=DEFAULT_GAMMA, eps_bsz=4)
    else:   # dps, freedom, mpgd: one strength
        config = PRESETS[preset](s)
    overrides = {k: options[k] for k in ("rho", "mu", "gamma", "n_iter", "n_recur", "grad_clip") if k in options}
    return dataclasses.replace(config, **overrides)


def critic_paths(options: dict[str, Any]) -> list[str]:
    """The checkpoints of option critic (comma-separated; none without it)."""
    if "critic" not in options:
        return []
    paths = [p.strip() for p in options["critic"].split(",")]
    if not all(paths):
        raise ConfigError(f"diffbid: option critic: an empty checkpoint path in {options['critic']!r}")
    return paths


def check_diffbid_spec(text: str) -> None:
    """Check a spec's options and that its checkpoint (and the evaluator and stored tuning the
    options need) exist, without loading torch."""
    path, options = parse_diffbid_spec(text)
    if not Path(path).exists():
        raise ConfigError(f"diffbid: no checkpoint at {path!r}")
    evaluator = evaluator_path(path, options)
    if evaluator is not None and not evaluator.is_file():
        raise ConfigError(f"diffbid: n={options['n_candidates']} ranks candidates by the plan evaluator, none at {str(evaluator)!r}; "
                          f"fit one (aigb fit-evaluator --data DIR --out {evaluator}) or give select=plan or select=objective")
    for critic in critic_paths(options):
        if not Path(critic).is_file():
            raise ConfigError(f"diffbid: option critic: no checkpoint at {critic!r} (train one: aigb train cql)")
    if _auto(options):
        read_tuned_strengths(path, options)


def load_diffbid_strategy(text: str, name: str | None = None) -> "DiffBidStrategy":
    """Build the strategy of spec text ``PATH[?options]`` (the checkpoint is read with weights_only)."""
    from aigb.algos.checkpoint import load_algorithm, read_checkpoint

    path, options = parse_diffbid_spec(text)
    check_diffbid_spec(text)
    found = read_checkpoint(path).get("algo")
    if found != "diffbid":
        raise ValueError(f"{path}: checkpoint holds a {found!r} policy, not 'diffbid'")
    # The planner serves the feature set it was trained on (v1, or auctionnet16 from imported rlData).
    feature_set = check_feature_set(str(read_checkpoint(path).get("feature_version")), f"checkpoint {path}")
    algo = load_algorithm(path, expected_feature_version=feature_set)
    guard = None
    if "throttle" in options:
        from aigb.strategies.throttle import SpendCapGuard, caps_of_terms

        guard = SpendCapGuard(caps_of_terms(parse_guide(options["guide"]), algo.config.n_ticks), margin=options["throttle"])
    return DiffBidStrategy(planner_of(algo, path, options), name or f"diffbid:{text}", guard=guard, feature_set=feature_set)


def planner_of(algo, path: str, options: dict[str, Any], tfg=None):
    """The planner of parsed spec options for a loaded checkpoint; ``tfg`` replaces the strengths
    the options give (``aigb tune-guidance`` tries its candidates this way)."""
    from aigb.algos.plan_evaluator import PlanEvaluator

    planner_keys = {"guidance", "target_return", "target_cpa", "target_util", "steps", "temperature", "eta", "device",
                    "search_levels", "search_samples", "support", "max_change", "refine", "day_noise"}
    kwargs = {"device": "auto", **{k: v for k, v in options.items() if k in planner_keys}}
    try:
        if "guide" in options:
            kwargs["guide"] = options["guide"]
            if tfg is None:
                tfg = guidance_config(options, read_tuned_strengths(path, options)["config"] if _auto(options) else None)
            kwargs["tfg"] = tfg
        if options.get("n_candidates", 1) > 1:
            kwargs["n_candidates"] = options["n_candidates"]
            kwargs["select"] = options.get("select", "evaluator")
            evaluator = evaluator_path(path, options)
            if evaluator is not None:
                kwargs["evaluator"] = PlanEvaluator.load(evaluator, channels=tuple(algo.view.channels))
        if "critic" in options:
            from aigb.algos.level_critic import LevelCritic

            kwargs["select"] = "critic"
            kwargs["critic"] = LevelCritic.load(critic_paths(options), expected_feature_version=FEATURE_VERSION,
                                                smooth=options.get("qsmooth", 0.0))
        return algo.policy(**kwargs)
    except ValueError as err:   # ConfigError from an option the checkpoint's config refuses (e.g. steps)
        raise ConfigError(f"diffbid: {err}") from None


class DiffBidStrategy(AlphaStrategy):
    """Bids ``alpha = exp(a_t) * C`` with a_t from a fresh plan at every tick; keeps the plans.

    The planner's noise comes from the campaign's seed and the tick (``aigb.seeding`` stream
    "diffbid/plan"), so the same campaign and seed give the same plans and bids. ``guard``
    (``aigb.strategies.throttle.SpendCapGuard``) throttles the bids where a cap on early spend
    would be crossed.
    """

    def __init__(self, planner, name: str, guard=None, feature_set: str = FEATURE_VERSION) -> None:
        self.planner = planner
        self.name = name
        self.feature_set = check_feature_set(feature_set, f"{name}: feature_set")
        self.guard = guard
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
        if self.feature_set == FEATURE_VERSION:
            state = obs.features
        else:
            c, n_pv = obs.campaign, obs.p_value.size
            state = features_for(self.feature_set, obs.history, obs.n_ticks, n_pv,
                                 float(obs.p_value.mean(dtype=np.float64)) if n_pv else 0.0, c.budget, c.target_cpa, c.category)
        self._states.append(np.asarray(state, dtype=np.float32))
        step = self.planner.plan(np.stack(self._states), seed=self._seed,
                                 previous=self.plans[-1].action if self.plans else None)
        self.plans.append(step)
        return float(np.exp(step.action) * obs.campaign.target_cpa)

    def bid(self, obs: Observation) -> np.ndarray:
        bids = super().bid(obs)
        return bids if self.guard is None else self.guard.apply(obs, bids, self._seed)

    def planned_remaining_budget(self, tick: int) -> np.ndarray:
        """(T + 1,) the remaining budget, in money, that the plan of ``tick`` expects before each
        tick and after the day (rows up to ``tick`` are the realised ones)."""
        if "budget_left" not in self.channels or self._campaign is None:
            raise ValueError(f"{self.name}: no budget channel in plans of kind {self.channels[:3]}...")
        return self.plans[tick].plan[:, self.channels.index("budget_left")] * self._campaign.budget
