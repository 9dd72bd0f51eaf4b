"""Export an aigb strategy as a folder the NeurIPS 2024 competition's harness can load.

``export_neurips2024(source, out)`` takes a checkpoint path (``runs/cql/best.pt``) or a strategy
spec (``fixed:rate=0.9``, ``pid``, ``onlinelp:cap=1.5``, ``iql:runs/iql/best.pt``,
``diffbid:runs/diffbid/best.pt?w=1.2&steps=10``) and writes:

    __init__.py player.py strategy.py history.py rules.py networks.py planner.py bundle.py
                  the runtime (``aigb/export/runtime``), copied as it is: numpy, torch, stdlib
    params.json   what the strategy is: its kind, parameters, network shapes, serving options, and
                  the task a learned one was trained for
    weights.pt    learned strategies: one flat dict of plain tensors (aigb's state-dict names)
    README.md     how to drop the folder into a competition harness
    selftest.py, selftest.npz
                  a recorded period (the harness's inputs and the bids the export returned) and a
                  numpy-only script that replays it where the folder is installed

How each kind travels: rule strategies (fixed, pid, onlinelp) as parameters only (the OnlineLP
prior as its table of rows); BC, IQL and CQL as the actor MLP and the state normaliser; the
Decision Transformer as its weights, context length and target (one return, or a score efficiency
scaled by each campaign's B / C); DiffBid as the EMA
condition network and denoiser, the inverse dynamics, the three scalers, the noise schedule and
the serving options of the spec, fixed at export.

Before the folder is put in place the export is checked: the aigb strategy plays a period of a
small market in ``BiddingEnv`` and the exported folder, loaded by file path, plays the same period
through ``aigb.export.harness.play_competition``; the bids must agree to float rounding (they are
equal in practice), or nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import aigb
from aigb.eval.rollout import one_torch_thread
from aigb.export.harness import HISTORY_NAMES, play_competition, play_env
from aigb.export.readme import readme_text
from aigb.features import AUCTIONNET_FEATURE_NAMES, AUCTIONNET_FEATURE_VERSION, FEATURE_NAMES, FEATURE_VERSION
from aigb.files import MARKER, OutputOwnedError, check_dir, dir_owner, read_marker
from aigb.sim.period import PeriodSim
from aigb.strategies.registry import UnknownStrategyError, make_strategy, parse_spec
from aigb.types import ACTION_HIGH, ACTION_LOW, ConfigError, MarketConfig

__all__ = ["export_neurips2024", "ExportReport", "ExportMismatch", "resolve_source", "load_exported_class",
           "CHECK_MARKET", "EXPORTABLE"]

COMMAND = "export-neurips2024"
RUNTIME = Path(__file__).with_name("runtime")
RUNTIME_FILES = ("__init__.py", "player.py", "strategy.py", "history.py", "rules.py", "networks.py", "planner.py",
                 "bundle.py", "selftest.py")
EXPORT_FILES = (*RUNTIME_FILES, "params.json", "weights.pt", "selftest.npz", "README.md")
"""Every file an export may write; any other file in its folder is the user's and is kept."""
EXPORTABLE = ("fixed", "pid", "onlinelp", "bc", "iql", "cql", "dt", "diffbid", "oil")
CHECK_MARKET = dict(n_pv=50_000, n_advertisers=8)
"""The market of the export check and the self-test recording (n_ticks and preset from the export's);
the campaign's budget is scaled to its traffic (x n_pv / 500,000), so pacing strategies meet their
budget within the day as they would in the default market."""
CHECK_SEED, CHECK_PERIOD = 20_240_000, 1_000_000
"""A fixed evaluation-range campaign, so every export of one strategy records the same period."""
BID_TOLERANCE = 1e-9
"""Largest relative bid difference the check accepts (identical code paths give 0)."""
_DIFFBID_OPTIONS = {"guidance", "target_return", "target_cpa", "target_util", "steps", "temperature", "eta", "device"}
_NO_PRIOR_ROW = 1 << 30   # an advertiser index beyond any prior table: the campaign's category mean


class ExportMismatch(ValueError):
    """The exported folder does not bid as the aigb strategy does."""


@dataclass(frozen=True)
class ExportReport:
    """What was exported and how the check went."""

    out: Path
    spec: str
    kind: str
    files: tuple[str, ...]
    max_bid_difference: float
    """Largest |bid difference| over the check period (aigb environment vs the exported folder in the harness)."""
    score_env: float
    score_harness: float

    def summary(self) -> str:
        return (f"exported {self.spec} to {self.out} ({self.kind}: {', '.join(self.files)}); checked on a "
                f"{CHECK_MARKET['n_pv']:,}-PV period: max |bid difference| {self.max_bid_difference:.3g}, "
                f"score {self.score_env:.4g} in aigb's environment, {self.score_harness:.4g} in the competition loop")


# ----------------------------------------------------------------------------- sources


def resolve_source(source: str) -> str:
    """The strategy spec of ``source``: a checkpoint path (DiffBid's may carry ``?options``) or a spec."""
    from aigb.algos.checkpoint import read_checkpoint

    text = str(source).strip()
    path, _, query = text.partition("?")
    if path and Path(path).is_file():
        algo = read_checkpoint(path)["algo"]          # ValueError for a file that is no checkpoint
        if query and algo != "diffbid":
            raise ConfigError(f"source: only a diffbid checkpoint takes ?options, {path} holds {algo!r}")
        return f"{algo}:{text}"
    try:
        name, _ = parse_spec(text)
    except UnknownStrategyError:
        if "/" in path or path.endswith(".pt"):
            raise ConfigError(f"source: no checkpoint file at {path!r}") from None
        raise
    if name == "oracle":
        raise ConfigError("source: the hindsight oracle sees the period before playing it; no competition harness "
                          "can give it that, so it cannot be exported")
    if name == "neurips2024":
        raise ConfigError("source: a neurips2024: spec is competition code already; use its folder as it is")
    if name not in EXPORTABLE:
        raise ConfigError(f"source: {name!r} has no competition export; exportable: {', '.join(EXPORTABLE)}")
    return text


# ----------------------------------------------------------------------------- parameters


def _base_params(spec: str, market: MarketConfig, seed: int, device: str) -> dict:
    return {
        "format": "aigb.export.neurips2024", "format_version": 1, "source": spec,
        "aigb_version": aigb.__version__, "market_version": market.version,
        "feature_version": FEATURE_VERSION, "feature_names": list(FEATURE_NAMES),
        "n_ticks": int(market.n_ticks), "min_remaining_budget": float(market.min_remaining_budget),
        "action_bounds": [float(ACTION_LOW), float(ACTION_HIGH)], "seed": int(seed), "device": device,
    }


def _rule_params(strategy, n_ticks: int, advertiser: int | None) -> dict:
    from aigb.sim.population import LOG_RATIO_RANGE, LP_SAMPLE, N_RATIO_BINS, PID_RESPONSE
    from aigb.sim.traffic import day_profile
    from aigb.strategies.rules import _KIND, ALPHA_BOUNDS

    rule = {"kind": strategy.kind, "rate": strategy.rate, "gain": strategy.gain, "cap": strategy.cap,
            "alpha_bounds": list(ALPHA_BOUNDS), "n_bins": N_RATIO_BINS, "log_ratio_range": list(LOG_RATIO_RANGE),
            "lp_sample": LP_SAMPLE, "pid_response": PID_RESPONSE, "stream_index": _KIND[strategy.kind],
            "profile": day_profile(n_ticks, strategy.market_version).tolist(), "lp_prior": None}
    prior = getattr(strategy, "prior", None)
    if prior is not None:
        rule["lp_prior"] = {"per_pv": prior.per_pv.tolist(), "target_cpa": prior.target_cpa.tolist(),
                            "category": prior.category.tolist(), "log_ratio_range": list(LOG_RATIO_RANGE),
                            "n_pv": int(strategy.n_pv), "advertiser": advertiser}
    return rule


def _mlp_layers(seq, where: str) -> list[int]:
    """Indices of the Linear layers of aigb's ``mlp`` (Linear, ReLU, ..., Linear); refuses anything else."""
    from torch import nn

    kinds = [type(m) for m in seq]
    expected = [nn.Linear if i % 2 == 0 else nn.ReLU for i in range(len(kinds))]
    if kinds != expected or len(kinds) % 2 == 0:
        raise ConfigError(f"{where}: expected aigb's Linear/ReLU MLP, found {[k.__name__ for k in kinds]}")
    return list(range(0, len(kinds), 2))


def _tensors(prefix: str, module) -> dict:
    return {f"{prefix}.{k}": v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def _normalizer(norm) -> tuple[dict, dict]:
    import torch

    return ({"clip": float(norm.clip), "reward_scale": float(norm.reward_scale)},
            {"normalizer.state_mean": torch.from_numpy(norm.state_mean.copy()),
             "normalizer.state_std": torch.from_numpy(norm.state_std.copy())})


def _learned_params(strategy) -> tuple[str, dict, dict]:
    policy = strategy.policy
    feature_set = getattr(strategy, "feature_set", FEATURE_VERSION)
    if feature_set == AUCTIONNET_FEATURE_VERSION:   # trained on imported rlData: the runtime rebuilds those 16
        if policy.feature_dim != len(AUCTIONNET_FEATURE_NAMES):
            raise ConfigError(f"source: the policy reads {policy.feature_dim} features, {feature_set} has "
                              f"{len(AUCTIONNET_FEATURE_NAMES)}")
        kind, params, tensors = _learned_policy_params(policy)
        return kind, {**params, "feature_version": feature_set, "feature_names": list(AUCTIONNET_FEATURE_NAMES)}, tensors
    if feature_set != FEATURE_VERSION:
        raise ConfigError(f"source: the policy reads feature set {feature_set!r}, the export rebuilds {FEATURE_VERSION!r} "
                          f"and {AUCTIONNET_FEATURE_VERSION!r}")
    if policy.feature_dim != len(FEATURE_NAMES):
        raise ConfigError(f"source: the policy reads {policy.feature_dim} features, the export rebuilds the "
                          f"{len(FEATURE_NAMES)} of {FEATURE_VERSION}")
    return _learned_policy_params(policy)


def _learned_policy_params(policy) -> tuple[str, dict, dict]:
    from aigb.algos.base import StatePolicy
    from aigb.algos.dt import DTPolicy

    if isinstance(policy, StatePolicy):
        actor = type(policy.actor).__name__
        if actor not in ("DeterministicActor", "GaussianActor", "TanhGaussianActor"):
            raise ConfigError(f"source: no export for actor {actor}")
        norm_params, tensors = _normalizer(policy.normalizer)
        tensors.update(_tensors("actor", policy.actor.net))
        params = {"actor": actor, "actor_layers": _mlp_layers(policy.actor.net, "actor"), "normalizer": norm_params,
                  "action_bounds": [policy.bounds.low, policy.bounds.high]}
        return "state_policy", {"policy": params}, tensors
    if isinstance(policy, DTPolicy):
        norm_params, tensors = _normalizer(policy.normalizer)
        tensors.update(_tensors("model", policy.model))
        params = {"normalizer": norm_params, "action_bounds": [policy.bounds.low, policy.bounds.high],
                  "n_layers": len(policy.model.blocks), "n_heads": int(policy.model.blocks[0].attn.n_heads),
                  "context_len": int(policy.context_len), "max_ticks": int(policy.max_ticks),
                  "target_return": float(policy.target_return), "target_scale": policy.target_scale,
                  "target_efficiency": float(policy.target_efficiency), "campaign_columns": list(policy.campaign_columns),
                  "rtg_decrement": policy.rtg_decrement, "score_columns": list(policy.score_columns), "beta": float(policy.beta)}
        return "dt", {"policy": params}, tensors
    raise ConfigError(f"source: no export for policy {type(policy).__name__}")


def _diffbid_params(strategy) -> tuple[str, dict, dict]:
    import torch

    from aigb.diffusion.sampling import ddim_timesteps

    planner = strategy.planner
    # Serving-time objectives (training-free guidance) and candidate search have no export yet:
    # refused rather than exported as plain sampling.
    options = {k: v for k, v in planner.options().items() if k != "device"}   # the export's own device instead
    searched = int(options.get("n_candidates", 1)) > 1
    if getattr(planner, "objective", None) is not None or getattr(planner, "_guided", False) or searched:
        raise ConfigError("source: DiffBid's serving-time guidance (guide=, preset=, strength=, ...) and candidate "
                          "search (n > 1) have no competition export yet; export the plain planner (w, return, cpa, "
                          "util, steps, temperature, eta)")
    unknown = set(options) - _DIFFBID_OPTIONS - {"n_candidates", "tfg", "select"}
    if unknown:
        raise ConfigError(f"source: this exporter does not know DiffBid's serving option(s) {sorted(unknown)}")
    den = planner.denoiser
    kind = type(den).__name__
    if kind == "TransformerDenoiser":
        net = {"d_model": den.d_model, "n_heads": den.blocks[0].n_heads, "n_layers": len(den.blocks)}
        denoiser = "transformer"
    elif kind == "TemporalUNet":
        dim = den.step.out_dim
        net = {"dim": dim, "dim_mults": [blocks[0].conv1[0].out_channels // dim for blocks in den.down],
               "horizon": den.horizon}
        denoiser = "unet"
    else:
        raise ConfigError(f"source: no export for denoiser {kind}")
    # The planner hands the denoiser the realised rows' mask when it takes one (aigb.diffusion.cfg_eps_fn).
    net["known_input"] = bool(getattr(den, "known_input", False))
    if planner.feature_dim != len(FEATURE_NAMES):
        raise ConfigError(f"source: the planner reads {planner.feature_dim} features, the export rebuilds {len(FEATURE_NAMES)}")
    c = planner.config
    tensors = {**_tensors("cond", planner.cond), **_tensors("denoiser", den), **_tensors("idm", planner.idm),
               "schedule.alpha_bar": planner.schedule.alpha_bar.to(torch.float64).clone()}
    for name in ("plan_scaler", "context_scaler", "info_scaler"):
        scaler = getattr(planner, name)
        tensors[f"{name}.center"] = torch.from_numpy(scaler.center.copy())
        tensors[f"{name}.half"] = torch.from_numpy(scaler.half.copy())
    params = {
        "view": planner.view.kind, "n_ticks": int(planner.n_ticks), "denoiser": denoiser, "net": net,
        "prediction": getattr(c, "prediction", "eps"),
        "idm_layers": _mlp_layers(planner.idm.net, "inverse dynamics"),
        # The planner's condition values in its order (an oracle planner's: the constant 1 it learned with).
        "outcome_names": list(planner.outcome_values),
        "outcome": dict(planner.outcome_values),
        "guidance": float(c.guidance), "temperature": float(c.temperature), "eta": float(c.eta),
        "clip_x0": float(c.clip_x0), "sampling_steps": int(c.sampling_steps),
        "timesteps": ddim_timesteps(planner.schedule.n_steps, c.sampling_steps),
        "action_bounds": [planner.bounds.low, planner.bounds.high], "options": options,
    }
    return "diffbid", {"planner": params}, tensors


def _split_device(spec: str) -> tuple[str, str | None]:
    """A diffbid spec without its device option, and that option (the check always plans on the CPU)."""
    name, _, text = spec.partition(":")
    if name != "diffbid":
        return spec, None
    path, _, query = text.partition("?")
    items = [i for i in query.split("&") if i]
    device = next((i.partition("=")[2].strip() for i in items if i.partition("=")[0].strip() == "device"), None)
    rest = [i for i in items if i.partition("=")[0].strip() != "device"] + ["device=cpu"]
    return f"diffbid:{path}?{'&'.join(rest)}", device


def _native_and_params(spec: str, market: MarketConfig, seed: int, advertiser: int | None):
    """The aigb strategy of ``spec`` (on the CPU) and (kind, parameters, tensors) of its export."""
    from aigb.strategies.rules import OnlineLP, _RuleStrategy

    strategy = make_strategy(_split_device(spec)[0], market)
    if isinstance(strategy, _RuleStrategy):
        if isinstance(strategy, OnlineLP) and strategy.prior is not None:
            _pin_prior_row(strategy, advertiser)
        return strategy, "rule", {"rule": _rule_params(strategy, market.n_ticks, advertiser)}, {}
    from aigb.strategies.diffbid import DiffBidStrategy
    from aigb.strategies.learned import LearnedStrategy

    if isinstance(strategy, DiffBidStrategy):
        return (strategy, *_diffbid_params(strategy))
    if isinstance(strategy, LearnedStrategy):
        return (strategy, *_learned_params(strategy))
    raise ConfigError(f"source: no export for {type(strategy).__name__}")


def _pin_prior_row(strategy, advertiser: int | None) -> None:
    """Make the aigb OnlineLP choose its prior row as the export does (the competition's interface
    names no advertiser slot): the row of ``advertiser``, or the campaign's category mean."""
    row = _NO_PRIOR_ROW if advertiser is None else int(advertiser)
    prior, n_pv = strategy.prior, strategy.n_pv
    strategy._lp_prior = lambda campaign: prior.for_campaign(dataclasses.replace(campaign, advertiser=row), n_pv)


# ----------------------------------------------------------------------------- the folder


def load_exported_class(folder: str | Path):
    """``PlayerBiddingStrategy`` of an exported folder, loaded by file path as a harness would."""
    from aigb.strategies.neurips2024 import load_competition_class

    return load_competition_class(f"{Path(folder) / 'player.py'}:PlayerBiddingStrategy")


def _exported_files(folder: Path) -> tuple[str, ...]:
    """The files an earlier export wrote in ``folder`` (its marker's list; for an export written
    before the list was kept, the export's file names present)."""
    marker = read_marker(folder)
    if marker is not None and marker["command"] == COMMAND and isinstance(marker.get("files"), list):
        return tuple(str(name) for name in marker["files"])
    return tuple(name for name in EXPORT_FILES if (folder / name).exists())


def _publish(stage: Path, out: Path) -> None:
    """Make the finished ``stage`` the folder ``out`` in one rename: the files of the user in ``out``
    (those no export wrote) move into it first, the files of the earlier export go with the old folder.
    On a failure everything is put back where it was."""
    ours = set(_exported_files(out)) | {MARKER} if out.exists() else set()
    theirs = [p.name for p in out.iterdir() if p.name not in ours] if out.exists() else []
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    moved = []
    try:
        for name in theirs:
            os.rename(out / name, stage / name)
            moved.append(name)
        if out.exists():
            os.rename(out, old)
        os.rename(stage, out)
    except BaseException:
        if not out.exists() and old.exists():
            os.rename(old, out)
        for name in moved:
            os.rename(stage / name, out / name)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier export (which a new export may replace)."""
    try:
        params = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(params, dict) and params.get("format") == "aigb.export.neurips2024"


def _forget_loaded(folder: Path) -> None:
    """Drop the modules the check loaded from the staging folder (they point at a path about to move)."""
    import hashlib

    name = "_aigb_export_" + hashlib.sha1(os.path.abspath(str(folder)).encode("utf-8")).hexdigest()[:12]
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def _selftest_arrays(play, seed: int) -> dict[str, np.ndarray]:
    inputs = play.inputs
    sizes = [len(p) for p in inputs["pValues"]]
    returned = [np.zeros(n) if r is None else r for r, n in zip(inputs["returned"], sizes)]
    arrays = {
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "campaign": np.array([play.budget, play.target_cpa, play.category], dtype=np.float64),
        "seed": np.array(seed, dtype=np.int64),
        "remaining_budget": np.array(inputs["remaining_budget"], dtype=np.float64),
        "asked": np.array([r is not None for r in inputs["returned"]]),
        "returned": np.concatenate(returned),
        **{name: np.concatenate(inputs[name]) for name in HISTORY_NAMES},
    }
    # pValues and sigmas are float32 in aigb's market: stored as such, they widen back exactly.
    arrays["historyPValueInfo"] = arrays["historyPValueInfo"].astype(np.float32)
    arrays["historyImpressionResult"] = arrays["historyImpressionResult"].astype(np.int8)
    return arrays


def _check(stage: Path, native, market: MarketConfig, seed: int, advertiser: int | None):
    """Play the check period both ways; raise ExportMismatch unless the bids agree."""
    check_market = MarketConfig(n_ticks=market.n_ticks, preset=market.preset, version=market.version, **CHECK_MARKET)
    slot = 0 if advertiser is None else int(advertiser) % check_market.n_advertisers
    c = PeriodSim(check_market, CHECK_SEED, CHECK_PERIOD).campaigns[slot]
    campaign = dataclasses.replace(c, budget=c.budget * check_market.n_pv / MarketConfig().n_pv)
    player = load_exported_class(stage)()
    player.device = "cpu"           # the check plays on the CPU whatever the export's device
    with one_torch_thread():   # the recorded bids are replayed on one thread by selftest.py
        harness = play_competition(player, check_market, CHECK_SEED, CHECK_PERIOD, slot, campaign=campaign, record=True)
        env = play_env(native, check_market, CHECK_SEED, CHECK_PERIOD, slot, strategy_seed=seed, campaign=campaign)
    diff = env.max_bid_difference(harness)
    scale = max((float(np.max(np.abs(b))) for b in env.bids if b.size), default=0.0)
    if not diff <= BID_TOLERANCE * max(scale, 1e-12):
        raise ExportMismatch(f"the exported folder bids differently from {native.name}: max |bid difference| {diff:.3g} "
                             f"(largest bid {scale:.3g}) over a {check_market.n_pv:,}-PV period; nothing was written")
    return harness, env, diff


def export_neurips2024(source: str, out: str | Path, *, market: MarketConfig = MarketConfig(), seed: int = 0,
                       advertiser: int | None = None, device: str | None = None, force: bool = False) -> ExportReport:
    """Export ``source`` (checkpoint path or strategy spec) into the folder ``out``.

    market: the market the strategy is built for (ticks per day; its version: the rules' day profile, the
        checkpoint's training market; OnlineLP's default prior and PV count).
    seed: root of the exported strategy's random streams (OnlineLP's subsample, DiffBid's noise);
        the aigb strategy reset with this seed bids as the export does.
    advertiser: OnlineLP with a prior: use this advertiser slot's prior row (default: the mean row
        of the campaign's category; the competition's interface names no slot).
    device: where an exported network runs by default ('cpu', 'cuda' or 'auto'; None: a diffbid
        spec's device option, else 'cpu'); the check runs on the CPU.
    force: write into a folder another aigb command wrote, or over files there no export wrote; the
        files of the user in an earlier export are kept either way.
    Raises ConfigError (bad source or option), ExportMismatch (the check failed; nothing written).
    """
    from aigb.export.runtime import history as runtime_history

    if (tuple(runtime_history.FEATURE_NAMES) != tuple(FEATURE_NAMES) or runtime_history.FEATURE_VERSION != FEATURE_VERSION
            or tuple(runtime_history.AUCTIONNET_FEATURE_NAMES) != tuple(AUCTIONNET_FEATURE_NAMES)
            or runtime_history.AUCTIONNET_FEATURE_VERSION != AUCTIONNET_FEATURE_VERSION):
        raise RuntimeError("aigb.export.runtime.history has drifted from aigb.features; update both together")
    spec = resolve_source(source)
    device = device or _split_device(spec)[1] or "cpu"
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise ConfigError(f"device: must be cpu, cuda, cuda:N or auto, got {device!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    if advertiser is not None and int(advertiser) < 0:
        raise ConfigError(f"advertiser: must be >= 0, got {advertiser}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file; give a folder")
    # The user's own files in an earlier export are kept; one that an export would replace, or a
    # folder another command wrote, is refused before any work.
    owner = COMMAND if out.is_dir() and _is_export(out) else dir_owner(out)[0]
    if owner == COMMAND:
        taken = [n for n in EXPORT_FILES if (out / n).exists() and n not in _exported_files(out)]
        if taken and not force:
            raise OutputOwnedError(f"--out: {out / taken[0]} was not written by an export; `aigb {COMMAND}` does not "
                                   "replace it: move it, choose another --out, or add --force to replace it")
    else:
        check_dir(out, COMMAND, force=force, writes=EXPORT_FILES)   # the folder and its marker come with the export
    native, kind, params, tensors = _native_and_params(spec, market, seed, advertiser)
    params = {**_base_params(spec, market, seed, device), "kind": kind, **params}
    # The task a learned policy was trained for travels with it, so evaluating the export on the
    # other task is refused as the checkpoint's is (aigb.strategies.base.check_task); rules: none.
    params["task"] = native.trained_for[0] if getattr(native, "trained_for", None) else None
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        for name in RUNTIME_FILES:
            shutil.copyfile(RUNTIME / name, stage / name)
        (stage / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        if tensors:
            from aigb.algos.checkpoint import atomic_torch_save

            atomic_torch_save(tensors, stage / "weights.pt")
        harness, env, diff = _check(stage, native, market, seed, advertiser)
        _forget_loaded(stage)
        with open(stage / "selftest.npz", "wb") as fh:
            np.savez_compressed(fh, **_selftest_arrays(harness, seed))
        (stage / "README.md").write_text(readme_text(params, has_weights=bool(tensors)), encoding="utf-8")
        written = sorted(p.name for p in stage.iterdir())
        (stage / MARKER).write_text(json.dumps({"command": COMMAND, "files": written}) + "\n", encoding="utf-8")
        _publish(stage, out)
    except BaseException:
        _forget_loaded(stage)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ExportReport(out, spec, kind, tuple(written), diff, env.score, harness.score)
