"""DiffBid as a bidding strategy: ``aigb evaluate --strategy 'diffbid:runs/diffbid/best.pt?w=1.2&return=0.9'``.

The spec is a checkpoint path, optionally followed by ``@PRESET`` (a named set of options,
``aigb.algos.diffbid.serving.SERVING_PRESETS``) and by ``?`` and ``&``-separated serving options
that change the planner without retraining. Values are read as ``--set`` reads them
(``aigb.configs.parse_value``) and the options become one typed ``ServingConfig`` (sampling,
condition, optional guidance, a search of candidates or of levels), which an evaluation records:

    w            classifier-free guidance weight (0: unconditional, 1: conditional)
    return       return condition, the score-efficiency rank in [0, 1] to plan for
    cpa          CPA condition min(1, (C / CPA)^2) in [0, 1]
    util         budget-utilisation condition spend / B in [0, 1]
    steps        DDIM sampling steps per tick
    temperature  scale of the sampling noise (> 0)
    eta          DDIM stochasticity (>= 0)
    device       auto | cpu | cuda (auto: the GPU when torch sees one)

Objectives after training (``aigb.algos.diffbid.objectives``; training-free guidance,
``aigb.diffusion.guidance``) and decision-time search:

    guide        objective terms, e.g. cpa:0.9,util:0.95 or cap:0.5@24 (CPA <= 0.9 C, spend >= 95 %
                 of the budget, at most half of it before tick 24; also exhaust@TAU, smooth, *WEIGHT)
    preset       guidance method: mpgd (default: mean guidance, no gradient through the denoiser),
                 dps, lgd, freedom, ugd, or tfg (all of TFG's corrections)
    strength     auto (the strengths ``aigb diffbid tune-guidance`` found for this checkpoint and these
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
                 ``aigb diffbid fit-evaluator``), plan (the score the plan claims) or objective; an
                 objective's log f is added to the first two. A level planner ranks its levels by
                 the score its plans claim, or with select=critic by a Q critic (Q + mean|Q| log f)
    evaluator    the evaluator file (default: evaluator.pt beside the checkpoint)
    critic       with select=critic: a CQL or IQL checkpoint whose twin-Q ranks a level planner's
                 levels (``aigb.algos.diffbid.critic``), or several, comma-separated: their mean
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
from pathlib import Path
from typing import Any

import numpy as np

from aigb.algos.diffbid.serving import (
    GUIDANCE_PRESETS, SELECTIONS, SERVING_PRESETS, SPEC_OPTIONS, ByCritic, ByEvaluator, Candidates, Levels, ServingConfig,
    parse_spec_options, split_preset,
)
from aigb.algos.diffbid.objectives import parse_guide
from aigb.features import FEATURE_VERSION, check_feature_set, features_for
from aigb.sim.env import Observation
from aigb.strategies.base import AlphaStrategy
from aigb.types import ConfigError, Campaign

__all__ = ["DIFFBID_OPTIONS", "GUIDANCE_PRESETS", "SELECTIONS", "SERVING_PRESETS", "parse_diffbid_spec", "serving_config", "check_diffbid_spec", "load_diffbid_strategy",
           "DiffBidStrategy", "guidance_config", "tuning_key", "tuned_strengths_path", "read_tuned_strengths",
           "write_tuned_strengths", "evaluator_path", "critic_paths"]

DEFAULT_GAMMA = 0.001
"""Implicit-dynamics scale of lgd and tfg when none is given: TFG's beam-search start."""
# Options that tune the strengths, or only say where things run or live: not part of the key of a tuning.
_NOT_IN_TUNING_KEY = ("strength", "rho", "mu", "gamma", "device", "evaluator", "throttle", "critic", "qsmooth")

DIFFBID_OPTIONS = SPEC_OPTIONS
"""Spec option -> its keyword, check and help (``aigb.algos.diffbid.serving.SPEC_OPTIONS``)."""


def serving_config(text: str) -> tuple[str, ServingConfig]:
    """``'PATH[@PRESET][?options]'`` -> the checkpoint path and the typed serving config."""
    path, options = parse_diffbid_spec(text)
    return path, ServingConfig.from_options(options, split_preset(text.partition("?")[0])[1])


def parse_diffbid_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``'PATH[@PRESET]?w=1.2&steps=10'`` -> ``('PATH', {'guidance': 1.2, 'steps': 10})``, a preset's
    options under the spec's own; ConfigError names a bad option or a combination that does not fit
    (``ServingConfig.from_options``)."""
    path, _, query = text.partition("?")
    if not path:
        raise ConfigError(f"diffbid: needs a checkpoint path before the options, got {text!r}")
    path, preset = split_preset(path)
    if not path:
        raise ConfigError(f"diffbid: needs a checkpoint path before the preset, got {text!r}")
    given = {} if preset is None else parse_spec_options(SERVING_PRESETS[preset], f"@{preset}")
    options = parse_spec_options(query, text, given)
    try:
        ServingConfig.from_options(options, preset)
    except ConfigError as err:
        raise ConfigError(f"diffbid: {err} in {text!r}") from None
    return path, options


def _strength_given(options: dict[str, Any]) -> bool:
    return any(k in options for k in ("strength", "rho", "mu"))


def _auto(options: dict[str, Any]) -> bool:
    """strength=auto, given or implied (a guide with no strength, rho or mu)."""
    return "guide" in options and (options.get("strength") == "auto" or not _strength_given(options))


def evaluator_path(path: str, options: dict[str, Any]) -> Path | None:
    """The evaluator file a search needs (None when it needs none)."""
    if options.get("n_candidates", 1) < 2 or options.get("select", "evaluator") != "evaluator":
        return None
    from aigb.algos.diffbid.evaluator import DEFAULT_EVALUATOR_NAME

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
    inverse = {option.keyword: key for key, option in DIFFBID_OPTIONS.items()}
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
                          f"run `aigb diffbid tune-guidance '{spec}'` first, or give strength=NUMBER")
    entry = json.loads(file.read_text())
    if entry.get("key") != tuning_key(path, options):
        raise ConfigError(f"diffbid: strength=auto: {file} was tuned for another checkpoint or options; re-run aigb diffbid tune-guidance")
    return entry


def write_tuned_strengths(path: str, options: dict[str, Any], entry: dict[str, Any]) -> Path:
    """Store a tuning (atomically: a reader sees the old file or the new one, never a part)."""
    from aigb.files import atomic_output

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
                          f"fit one (aigb diffbid fit-evaluator --data DIR --out {evaluator}) or give select=plan or select=objective")
    for critic in critic_paths(options):
        if not Path(critic).is_file():
            raise ConfigError(f"diffbid: option critic: no checkpoint at {critic!r} (train one: aigb train cql)")
    if _auto(options):
        read_tuned_strengths(path, options)


def load_diffbid_strategy(text: str, name: str | None = None, market_version: str | None = None) -> "DiffBidStrategy":
    """Build the strategy of spec text ``PATH[?options]`` (the checkpoint is read with weights_only);
    a checkpoint trained for another market version than ``market_version`` is refused."""
    from aigb.algos.checkpoint import load_algorithm, read_checkpoint

    path, options = parse_diffbid_spec(text)
    check_diffbid_spec(text)
    found = read_checkpoint(path).get("algo")
    if found != "diffbid":
        raise ValueError(f"{path}: checkpoint holds a {found!r} policy, not 'diffbid'")
    # The planner serves the feature set it was trained on (v1, or auctionnet16 from imported rlData).
    feature_set = check_feature_set(str(read_checkpoint(path).get("feature_version")), f"checkpoint {path}")
    algo = load_algorithm(path, expected_feature_version=feature_set, market_version=market_version)
    guard = None
    if "throttle" in options:
        from aigb.strategies.throttle import SpendCapGuard, caps_of_terms

        guard = SpendCapGuard(caps_of_terms(parse_guide(options["guide"]), algo.config.n_ticks), margin=options["throttle"])
    strategy = DiffBidStrategy(planner_of(algo, path, options), name or f"diffbid:{text}", guard=guard, checkpoint=path,
                               serving=serving_config(text)[1], feature_set=feature_set)
    strategy.trained_for = (algo.task, f"checkpoint {path}")   # DiffBid has recorded its task since it had one
    return strategy


def planner_of(algo, path: str, options: dict[str, Any], tfg=None):
    """The planner of parsed spec options for a loaded checkpoint; ``tfg`` replaces the strengths
    the options give (``aigb diffbid tune-guidance`` tries its candidates this way)."""
    from aigb.algos.diffbid.evaluator import PlanEvaluator

    serving = ServingConfig.from_options(options)
    kwargs = {"device": serving.sampling.device}
    parts = [serving.condition, serving.sampling] + ([serving.search] if isinstance(serving.search, Levels) else [])
    for part in parts:   # None: the checkpoint config's value
        kwargs.update({k: v for k, v in vars(part).items() if v is not None and k not in ("device", "rank")})
    try:
        if serving.guidance is not None:
            kwargs["guide"] = serving.guidance.guide
            if tfg is None:
                tfg = guidance_config(options, read_tuned_strengths(path, options)["config"] if _auto(options) else None)
            kwargs["tfg"] = tfg
        search = serving.search
        if isinstance(search, Candidates):
            kwargs["n_candidates"] = search.n
            kwargs["select"] = options.get("select", "evaluator")
            if isinstance(search.rank, ByEvaluator):
                kwargs["evaluator"] = PlanEvaluator.load(evaluator_path(path, options), channels=tuple(algo.view.channels))
        if isinstance(search, Levels) and isinstance(search.rank, ByCritic):
            from aigb.algos.diffbid.critic import LevelCritic

            kwargs["select"] = "critic"
            kwargs["critic"] = LevelCritic.load(critic_paths(options), expected_feature_version=FEATURE_VERSION,
                                                smooth=search.rank.qsmooth or 0.0)
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

    def __init__(self, planner, name: str, guard=None, *, checkpoint: str | None = None,
                 serving: ServingConfig | None = None, feature_set: str = FEATURE_VERSION) -> None:
        self.planner = planner
        self.name = name
        self.feature_set = check_feature_set(feature_set, f"{name}: feature_set")
        self.guard = guard
        self.checkpoint = checkpoint
        self.serving = serving
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

    def resolved_config(self) -> dict[str, Any]:
        """What this strategy serves with, for results: the checkpoint, the spec's typed serving
        config (None: the checkpoint's value) and the planner's options in force."""
        out = {"checkpoint": self.checkpoint, "spec": None if self.serving is None else self.serving.to_dict(),
               "planner": self.planner.options()}
        return json.loads(json.dumps(out, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))

    def planned_remaining_budget(self, tick: int) -> np.ndarray:
        """(T + 1,) the remaining budget, in money, that the plan of ``tick`` expects before each
        tick and after the day (rows up to ``tick`` are the realised ones)."""
        if "budget_left" not in self.channels or self._campaign is None:
            raise ValueError(f"{self.name}: no budget channel in plans of kind {self.channels[:3]}...")
        return self.plans[tick].plan[:, self.channels.index("budget_left")] * self._campaign.budget
