"""``aigb train oil``: oracle imitation with DAgger in the simulator.

Each round rolls the current student (``aigb.algos.oil``) in the market, on training periods only
(from ``first_period``, always below ``aigb.seeding.VALIDATION_FIRST_PERIOD``), labels every state
it visited with the hindsight oracle's best multiplier for the rest of that day
(``aigb.strategies.oracle_state``), adds them to all earlier rounds' states and refits. In round i
an expert acts at each tick with probability beta_i (1 in round 0, so round 0 rolls the oracle; then
``OILConfig.expert_decay ** i``): the expert replays the period with a reference rule strategy to
see the day's traffic and competitors, then at each tick it acts takes the oracle's continuation
from the campaign's actual spend and conversions so far.

Labels use the competitors' bids as recorded in the rollout itself (the day the student actually
played), the rest of the day from each visited tick, the realised spend and conversions before it
and the task's score (Target-CPA: the CPA penalty with beta = 2; Max-Return: conversions). The
multiplier is restricted to the policy's action bounds (an exact optimum inside them). Ticks after
the budget ran out are not labelled: no bid changes anything there.

Run directory (resumable per round: a run killed mid-round restarts that round; re-running with
more ``rounds`` and otherwise the same settings continues a finished run)::

    train_args.json  the arguments of the call that started it
    config.json      the resolved OIL config, market, population, seed, task
    states.npz       every labelled state so far: obs, action (the label), tick, period, advertiser,
                     round, expert (whether the expert acted at that state)
    metrics.jsonl    one line per round: expert share, states, the rollouts' mean score, the
                     refit's loss, the validation score, seconds spent
    last.pt, best.pt checkpoints (``aigb.algos.checkpoint``); best by validation score
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from aigb.backends import Backend, TaskRun
from aigb.data.parquet import atomic_output, ensure_writable_dir
from aigb.features import FEATURE_DIM, FEATURE_VERSION
from aigb.score import DEFAULT_TASK, check_task, task_beta
from aigb.seeding import VALIDATION_FIRST_PERIOD
from aigb.seeding import rng as named_rng
from aigb.sim.env import BiddingEnv
from aigb.sim.period import campaign_outcomes
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import Episode
from aigb.strategies.oracle_state import DayOracle
from aigb.strategies.oracle_strategy import replay_competitors
from aigb.strategies.registry import strategy_factory
from aigb.types import ACTION_HIGH, ACTION_LOW, ConfigError, MarketConfig

__all__ = ["Mix", "STATE_FIELDS", "rollout_states", "LabelledStates", "train_oil", "OILResult"]

STATE_FIELDS = ("obs", "action", "tick", "period", "advertiser", "expert")
"""Per labelled state: obs (n, D) float32, action (n,) float32 the oracle's label, tick, period,
advertiser (n,) int64, expert (n,) bool (the expert, not the student, acted there)."""


@dataclass(frozen=True)
class Mix:
    """Who bids in a rollout: at each tick the expert with probability ``expert_share``, else ``policy``."""

    policy: object | None
    """The student (``aigb.algos.base.Policy``); None only with ``expert_share`` 1."""
    expert_share: float = 0.0
    """beta: probability that the expert acts at a tick."""
    reference: str = "pid"
    """Rule strategy the expert replays the period with to see it in hindsight."""
    stream: int = 0
    """Index of the coin flips' named stream (the DAgger round), so rounds draw differently."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.expert_share <= 1.0:
            raise ConfigError(f"expert_share: must lie in [0, 1], got {self.expert_share}")
        if self.policy is None and self.expert_share < 1.0:
            raise ConfigError("policy: a rollout the expert does not play alone needs a student policy")


def _bounds(target_cpa: float) -> tuple[float, float]:
    return math.exp(ACTION_LOW) * target_cpa, math.exp(ACTION_HIGH) * target_cpa


def _action(alpha: float, target_cpa: float) -> float:
    return float(np.clip(math.log(max(alpha, 1e-300) / target_cpa), ACTION_LOW, ACTION_HIGH))


def _campaign_states(task: tuple) -> dict:
    """Play one campaign under a ``Mix`` and label its visited states; a worker's unit of work."""
    if task[0].policy is None:
        return _play_and_label(task)
    import torch

    # One decision is a few tiny matrix products: a second thread only waits for a busy core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _play_and_label(task)
    finally:
        torch.set_num_threads(threads)


def _play_and_label(task: tuple) -> dict:
    mix, market, population, seed, period, slot, task_name = task
    beta = task_beta(task_name)
    rules = {"n_ticks": market.n_ticks, "exposure_probs": market.net_exposure_probs,
             "reserve_price": market.reserve_price, "beta": beta}
    env = BiddingEnv(market, slot, seed=seed, population=population, record_competitors=True)
    obs, _ = env.reset(period=period)
    c = obs.campaign
    bounds = _bounds(c.target_cpa)
    expert = None
    if mix.expert_share > 0:
        reference = strategy_factory(mix.reference)(market)
        p, comp, tick = replay_competitors(Episode(market, seed, period, slot, population, c, task_name), reference)
        expert = DayOracle(p, comp, tick, c.budget, c.target_cpa, alpha_range=bounds, lp=False, **rules)
    coins = named_rng(seed, "oil/expert", mix.stream, period, slot).random(market.n_ticks)
    states, actions, spent, won, remaining, ticks, by_expert = [], [], [], [], [], [], []
    p_value, comp_top, pv_tick = [], [], []
    done = False
    while not done:
        t = obs.tick
        states.append(np.asarray(obs.features, dtype=np.float32))
        spent.append(float(np.sum(obs.history["cost"], dtype=np.float64)))
        won.append(float(np.sum(obs.history["conversions"], dtype=np.float64)))
        remaining.append(obs.remaining_budget)
        ticks.append(t)
        use_expert = expert is not None and coins[t] < mix.expert_share
        if use_expert:
            a = _action(expert.solve([t], min(spent[-1], c.budget), won[-1]).alpha[0], c.target_cpa)
        else:
            a = float(np.clip(mix.policy.act(np.stack(states), np.asarray(actions, dtype=np.float32),
                                             np.asarray(obs.history["conversions"], dtype=np.float32)),
                              ACTION_LOW, ACTION_HIGH))
        actions.append(a)
        by_expert.append(use_expert)
        obs, _, done, _, info = env.step(math.exp(a) * c.target_cpa * obs.p_value.astype(np.float64))
        p_value.append(info["p_value"].astype(np.float64))
        comp_top.append(info["competitor_top"])
        pv_tick.append(np.full(info["p_value"].size, t, dtype=np.int64))

    # Label the visited states on the day as it was played (the competitors' bids it recorded).
    live = np.flatnonzero(np.asarray(remaining) >= market.min_remaining_budget)
    day = DayOracle(np.concatenate(p_value), np.concatenate(comp_top), np.concatenate(pv_tick), c.budget,
                    c.target_cpa, alpha_range=bounds, lp=False, **rules)
    spent_arr = np.minimum(np.asarray(spent), c.budget)
    k = day.solve(np.asarray(ticks)[live], spent_arr[live], np.asarray(won)[live])
    labels = np.array([_action(a, c.target_cpa) for a in k.alpha], dtype=np.float32)
    out = {key: float(v[slot]) for key, v in campaign_outcomes(env.sim.history, env.sim.campaigns, task_name).items()}
    n = live.size
    return {
        "obs": np.stack(states)[live], "action": labels, "tick": np.asarray(ticks, dtype=np.int64)[live],
        "period": np.full(n, period, dtype=np.int64), "advertiser": np.full(n, slot, dtype=np.int64),
        "expert": np.asarray(by_expert, dtype=bool)[live],
        "campaign": {"period": period, "advertiser": slot, "score": out["score"], "expected_score": out["expected_score"],
                     "budget": c.budget, "spend": out["spend"], "expert_ticks": int(np.sum(by_expert))},
    }


def rollout_states(policy_or_mix, market: MarketConfig, population: PopulationConfig, seed: int, periods, slots, *,
                   task: str = DEFAULT_TASK, workers: int = 1, backend: Backend | str | None = None) -> dict:
    """Play ``policy_or_mix`` (a ``Mix``, or a policy played alone) in every (period, slot) and label
    each visited state with the oracle's continuation.

    Returns ``STATE_FIELDS`` arrays over all campaigns, in (period, slot) order, and ``campaigns``:
    one dict per campaign (period, advertiser, score, expected_score, budget, spend, expert_ticks). Only periods
    below ``VALIDATION_FIRST_PERIOD`` are accepted (training periods).
    """
    mix = policy_or_mix if isinstance(policy_or_mix, Mix) else Mix(policy_or_mix, 0.0)
    check_task(task)
    periods, slots = [int(p) for p in periods], [int(s) for s in slots]
    bad = [p for p in periods if not 0 <= p < VALIDATION_FIRST_PERIOD]
    if bad:
        raise ConfigError(f"periods: OIL rolls out on training periods only (0 <= period < {VALIDATION_FIRST_PERIOD}), got {bad[0]}")
    bad = [s for s in slots if not 0 <= s < market.n_advertisers]
    if bad:
        raise ConfigError(f"slots: advertiser {bad[0]} is not in the market's [0, {market.n_advertisers})")
    tasks = [(mix, market, population, int(seed), p, s, task) for p in periods for s in slots]
    with TaskRun(_campaign_states, tasks, backend=backend, workers=workers) as run:
        parts = list(run)
    parts.sort(key=lambda r: (r["campaign"]["period"], r["campaign"]["advertiser"]))
    out = {f: np.concatenate([r[f] for r in parts]) if parts else np.zeros(0) for f in STATE_FIELDS}
    if not parts:
        out["obs"] = np.zeros((0, FEATURE_DIM), np.float32)
    out["campaigns"] = [r["campaign"] for r in parts]
    return out


class LabelledStates:
    """Aggregated (state, oracle action) pairs as the dataset ``TorchAlgorithm.prepare`` reads."""

    feature_version = FEATURE_VERSION

    def __init__(self, obs: np.ndarray, action: np.ndarray, task: str = DEFAULT_TASK):
        self.task = check_task(task)   # the task the oracle labelled for; the checkpoint records it
        self.obs = np.asarray(obs, dtype=np.float32)
        self.action = np.asarray(action, dtype=np.float32)
        if self.obs.ndim != 2 or self.obs.shape[0] != self.action.shape[0] or self.obs.shape[0] == 0:
            raise ValueError(f"labelled states: need obs (n, D) and action (n,) with n >= 1, got {self.obs.shape}, {self.action.shape}")
        self.feature_dim = self.obs.shape[1]
        self.state_mean = self.obs.mean(0)
        self.state_std = self.obs.std(0)
        self.reward_scale = 1.0

    def sample_transitions(self, batch_size: int, rng: np.random.Generator, trajectories=None) -> dict[str, np.ndarray]:
        i = rng.integers(self.obs.shape[0], size=batch_size)
        return {"obs": self.obs[i], "action": self.action[i]}


@dataclass(frozen=True)
class OILResult:
    """What a call to ``train_oil`` did."""

    run_dir: Path
    rounds_done: int
    """Rounds completed in total (including earlier, resumed calls)."""
    n_states: int
    """Labelled states aggregated."""
    best_score: float | None
    """Best validation score (None without validation)."""
    best_round: int | None
    resumed_from: int
    """Round this call started at."""
    seconds: float


def _write_json(path: Path, obj) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _save_states(path: Path, data: dict) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: data[k] for k in STATE_FIELDS + ("round",)})


def _load_states(path: Path, rows: int) -> dict:
    if not path.exists():
        raise ValueError(f"{path}: missing; the run's labelled states are gone, start a fresh run directory")
    with np.load(path) as z:
        data = {k: z[k] for k in STATE_FIELDS + ("round",)}
    if data["obs"].shape[0] < rows:
        raise ValueError(f"{path}: holds {data['obs'].shape[0]} states, the checkpoint counts {rows}; start a fresh run directory")
    return {k: v[:rows] for k, v in data.items()}   # a round written after the last checkpoint is redone


def _refit(algo, data: dict, gen: np.random.Generator) -> list[float]:
    """``config.steps`` updates on batches drawn from every state aggregated so far, on one torch
    thread (small matrices: a second thread mostly waits for a core another process holds)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n, cfg, losses = data["obs"].shape[0], algo.config, []
        for _ in range(cfg.steps):
            i = gen.integers(n, size=cfg.batch_size)
            losses.append(algo.update({"obs": data["obs"][i], "action": data["action"][i]})["loss"])
        return losses
    finally:
        torch.set_num_threads(threads)


def train_oil(run_dir, *, market: MarketConfig = MarketConfig(), population: PopulationConfig | None = None,
              seed: int = 0, overrides: dict | None = None, task: str = DEFAULT_TASK, validation=None,
              first_period: int = 0, workers: int = 1, backend: Backend | str | None = None,
              resume: bool = True, progress: bool = True) -> OILResult:
    """DAgger with the hindsight oracle (module docstring). ``validation``: an
    ``aigb.workflows.training.ValidationSet`` (its market and task are set to this run's) or None."""
    from aigb.algos.checkpoint import read_checkpoint, save_checkpoint, stored_config
    from aigb.algos.registry import make_algorithm

    check_task(task)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    algo = make_algorithm("oil", FEATURE_DIM, overrides, seed=seed)
    algo.market_version = market.version   # the checkpoint serves this market's version
    population = market_population(market) if population is None else population
    cfg = algo.config
    slots = cfg.slots or tuple(range(market.n_advertisers))
    last_period = first_period + cfg.rounds * cfg.periods_per_round - 1
    if first_period < 0 or last_period >= VALIDATION_FIRST_PERIOD:
        raise ConfigError(f"first_period: rounds x periods_per_round from {first_period} reach period {last_period}; "
                          f"training periods end below {VALIDATION_FIRST_PERIOD}")
    strategy_factory(cfg.reference)            # a bad reference spec fails now, not in a worker
    if validation is not None:
        validation = replace(validation, market=market, task=task)
    run_dir = ensure_writable_dir(run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    states_path, metrics_path = run_dir / "states.npz", run_dir / "metrics.jsonl"
    fingerprint = {"kind": "oil-rollouts", "market": market.to_dict(), "population": population.to_dict(),
                   "seed": int(seed), "task": task, "first_period": int(first_period), "slots": list(slots),
                   "feature_version": FEATURE_VERSION}

    start, best_score, best_round = 0, None, None
    data = {"obs": np.zeros((0, FEATURE_DIM), np.float32), "action": np.zeros(0, np.float32),
            "expert": np.zeros(0, bool), **{k: np.zeros(0, np.int64) for k in ("tick", "period", "advertiser", "round")}}
    if resume and last_path.exists():
        payload = read_checkpoint(last_path)
        hint = "use a fresh run directory"
        if payload["algo"] != "oil":
            raise ValueError(f"{last_path}: holds a {payload['algo']!r} run, not 'oil'; {hint}")
        # More rounds extend a run: a round depends on its index, never on the total.
        if replace(stored_config(payload), rounds=cfg.rounds) != cfg:
            raise ValueError(f"{last_path}: was trained with config {payload['config']}, not {json.dumps(algo.config_dict(), sort_keys=True)}; {hint}")
        if json.loads(payload.get("dataset_fingerprint") or "null") != json.loads(json.dumps(fingerprint)):
            raise ValueError(f"{last_path}: was rolled out in {payload.get('dataset_fingerprint')}, not {fingerprint}; {hint}")
        state = json.loads(payload["fit_state"])
        algo.load_state_dict(payload["algorithm"])
        start, best_score, best_round = int(state["round"]) + 1, state["best_score"], state["best_round"]
        data = _load_states(states_path, int(state["rows"]))
        kept = [line for line in metrics_path.read_text().splitlines() if line.strip()
                and json.loads(line)["round"] < start] if metrics_path.exists() else []
        with atomic_output(metrics_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
    else:
        for stale in (last_path, best_path, states_path, metrics_path):
            stale.unlink(missing_ok=True)
        _write_json(run_dir / "config.json", {"algo": "oil", "config": algo.config_dict(), **fingerprint,
                                              "validation": None if validation is None else {
                                                  "periods": validation.periods, "slots": list(validation.slots)}})
    resumed_from = start
    began = time.perf_counter()
    for r in range(start, cfg.rounds):
        t0 = time.perf_counter()
        share = cfg.expert_share(r)
        mix = Mix(None if share >= 1.0 else algo.policy(), share, cfg.reference, stream=r)
        periods = range(first_period + r * cfg.periods_per_round, first_period + (r + 1) * cfg.periods_per_round)
        part = rollout_states(mix, market, population, seed, periods, slots, task=task, workers=workers, backend=backend)
        n_new = part["obs"].shape[0]
        part["round"] = np.full(n_new, r, dtype=np.int64)
        data = {k: np.concatenate([data[k], part[k]]) for k in data}
        _save_states(states_path, data)
        t_rollout = time.perf_counter() - t0
        if data["obs"].shape[0] == 0:
            raise RuntimeError(f"round {r}: the rollouts visited no state with budget left; nothing to learn from")

        t0 = time.perf_counter()
        if r == 0 or algo.feature_version is None:
            algo.prepare(LabelledStates(data["obs"], data["action"], task), seed)   # the normaliser from round 0's states
        n = data["obs"].shape[0]
        losses = _refit(algo, data, named_rng(seed, "oil/batches", r))
        t_fit = time.perf_counter() - t0

        t0 = time.perf_counter()
        entry = {"round": r, "expert_share": share, "periods": [periods.start, periods.stop - 1], "new_states": n_new,
                 "states": n, "expert_states": int(part["expert"].sum()),
                 "rollout_score": float(np.mean([c["score"] for c in part["campaigns"]])),
                 "rollout_expected_score": float(np.mean([c["expected_score"] for c in part["campaigns"]])),
                 "loss": float(np.mean(losses[-max(1, len(losses) // 10):]))}
        if validation is not None:
            result = dict(validation(algo.policy()))
            entry.update({f"val_{k}": v for k, v in result.items()})
            if best_score is None or result["score"] > best_score:
                best_score, best_round = float(result["score"]), r
                save_checkpoint(best_path, algo, dataset_fingerprint=fingerprint, with_optimizers=False)
        else:
            best_round = r
            save_checkpoint(best_path, algo, dataset_fingerprint=fingerprint, with_optimizers=False)
        entry.update({"best_round": best_round, "seconds_rollout": t_rollout, "seconds_fit": t_fit,
                      "seconds_validation": time.perf_counter() - t0})
        with open(metrics_path, "a") as f:     # before last.pt: a resume drops lines of rounds it redoes
            f.write(json.dumps(entry) + "\n")
        save_checkpoint(last_path, algo, dataset_fingerprint=fingerprint, fit_state={
            "round": r, "rows": n, "best_score": best_score, "best_round": best_round, "seed": int(seed)})
        if progress:
            val = f", validation {entry['val_score']:.3f}" if "val_score" in entry else ""
            print(f"oil round {r + 1}/{cfg.rounds}: expert share {share:.3g}, {n_new} new states ({n} in all), "
                  f"rollout score {entry['rollout_score']:.3f}, loss {entry['loss']:.4f}{val} "
                  f"({t_rollout:.0f} s rollouts, {t_fit:.0f} s fit, {entry['seconds_validation']:.0f} s validation)", flush=True)
    return OILResult(run_dir, cfg.rounds, int(data["obs"].shape[0]), best_score, best_round, resumed_from,
                     time.perf_counter() - began)
