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

The same loop trains DiffBid's oracle form (``aigb train diffbid --set condition=oracle``,
``train_oil(..., algo="diffbid")``): each labelled state also keeps its day as the oracle continues
it (``oracle_days``: the realised rows up to the state, then the expected per-tick spend,
conversions and wins of the oracle's multiplier), which the planner learns to complete from the
realised prefix, and the inverse dynamics learns the oracle's multiplier from the realised rows and
the oracle's next one. Its ``steps`` are the run's total, spread evenly over the rounds.

Run directory (resumable per round: a run killed mid-round restarts that round; re-running with
more ``rounds`` and otherwise the same settings continues a finished run)::

    train_args.json  the arguments of the call that started it
    config.json      the resolved OIL config, market, population, seed, task
    states.npz       every labelled state so far: obs, action (the label), tick, period, advertiser,
                     round, expert (whether the expert acted at that state); for DiffBid also
                     plan (the oracle day in plan units), context, tick_info, efficiency
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

__all__ = ["Mix", "STATE_FIELDS", "PLAN_FIELDS", "rollout_states", "oracle_days", "LabelledStates", "LabelledPlans", "train_oil",
           "OILResult"]

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
    days: bool = False
    """Also return, per labelled state, its day as the oracle continues it (``oracle_days``): what
    DiffBid's oracle form learns to plan."""

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
    k = day.solve(np.asarray(ticks)[live], spent_arr[live], np.asarray(won)[live], plans=mix.days)
    labels = np.array([_action(a, c.target_cpa) for a in k.alpha], dtype=np.float32)
    extra = {}
    if mix.days:
        pv_ticks = np.concatenate(pv_tick)
        extra = {"day": oracle_days(obs.history, k, np.concatenate(p_value), np.concatenate(comp_top)[:, -1], pv_ticks,
                                    c, market.n_ticks, market.reserve_price),
                 "efficiency": (k.score * c.target_cpa / c.budget).astype(np.float64)}
    out = {key: float(v[slot]) for key, v in campaign_outcomes(env.sim.history, env.sim.campaigns, task_name).items()}
    n = live.size
    return {
        "obs": np.stack(states)[live], "action": labels, "tick": np.asarray(ticks, dtype=np.int64)[live],
        "period": np.full(n, period, dtype=np.int64), "advertiser": np.full(n, slot, dtype=np.int64),
        "expert": np.asarray(by_expert, dtype=bool)[live], **extra,
        "campaign": {"period": period, "advertiser": slot, "score": out["score"], "expected_score": out["expected_score"],
                     "budget": c.budget, "spend": out["spend"], "expert_ticks": int(np.sum(by_expert))},
    }


def oracle_days(own: dict, k, p_value: np.ndarray, comp_third: np.ndarray, pv_tick: np.ndarray, campaign, n_ticks: int,
                reserve_price: float) -> np.ndarray:
    """The v1 states of each labelled state's day as the oracle continues it -> (n, T+1, F) float32.

    own: the campaign's realised per-tick statistics of the whole day (``TICK_STAT_FIELDS`` ->
    (T,)); k: the ``Continuations`` of the n states, with their per-tick plans; p_value,
    comp_third, pv_tick (n_pv,): the day's PVs, the third-highest competing bid of each (the
    price of the last slot) and their ticks. Ticks before a state's start keep the realised
    statistics (rows 0..start equal the states the campaign saw); from its start on, the tick's
    spend and conversions are the oracle plan's expected ones at its multiplier alpha, its win rate
    the share of PVs whose bid alpha x p_value beats the last slot's price (and the reserve), its
    mean bid alpha x mean p_value. Traffic (PV count, mean p_value) and the market's least winning
    cost are exogenous and stay as realised. Row T is the state after the day.
    """
    from aigb.features import build_features, trajectory_features

    start, alpha = np.asarray(k.start_tick), np.asarray(k.alpha, dtype=np.float64)
    n = start.size
    after = np.arange(n_ticks)[None] >= start[:, None]                                   # (n, T)
    with np.errstate(divide="ignore"):
        price = np.where(p_value > 0, np.maximum(comp_third, reserve_price) / np.where(p_value > 0, p_value, 1.0), np.inf)
    n_pv = np.bincount(pv_tick, minlength=n_ticks).astype(np.float64)                   # (T,)
    win = np.zeros((n, n_ticks))
    for tau in range(n_ticks):
        thresholds = np.sort(price[pv_tick == tau])
        win[:, tau] = np.searchsorted(thresholds, alpha, side="left") / max(thresholds.size, 1)

    def realised(field):
        return np.broadcast_to(np.asarray(own[field], dtype=np.float64)[:n_ticks], (n, n_ticks))

    hist = {f: realised(f).copy() for f in ("n_pv", "lwc_mean", "p_value_mean")}
    hist["cost"] = np.where(after, k.tick_spend, realised("cost"))
    hist["conversions"] = np.where(after, k.tick_conversions, realised("conversions"))
    hist["win_rate"] = np.where(after, win, realised("win_rate"))
    hist["bid_mean"] = np.where(after, alpha[:, None] * realised("p_value_mean"), realised("bid_mean"))
    hist["conversion_rate"] = np.where(after, k.tick_conversions / np.maximum(n_pv, 1.0)[None], realised("conversion_rate"))
    c = campaign
    states = trajectory_features(hist, c.budget, c.target_cpa, c.category)              # (n, T, F)
    terminal = build_features(hist, n_ticks, 0, 0.0, c.budget, c.target_cpa, c.category)   # (n, F)
    return np.concatenate([states, terminal[:, None]], axis=1).astype(np.float32)


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
    fields = STATE_FIELDS + (("day", "efficiency") if mix.days else ())
    out = {f: np.concatenate([r[f] for r in parts]) if parts else np.zeros(0) for f in fields}
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


class LabelledPlans(LabelledStates):
    """Labelled states with their oracle plans, as DiffBid's oracle form reads them: plan (n, T+1,
    P), context (n, C), tick_info (n, I), tick (n,), efficiency (n,) (the oracle day's expected
    score x C / B) and the task."""

    def __init__(self, data: dict, task: str):
        super().__init__(data["obs"], data["action"])
        self.plan, self.context, self.tick_info = data["plan"], data["context"], data["tick_info"]
        self.tick, self.efficiency, self.task = data["tick"], data["efficiency"], task


PLAN_FIELDS = ("plan", "context", "tick_info", "efficiency")
"""What DiffBid's oracle form keeps of each labelled state besides ``STATE_FIELDS``."""


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
            np.savez(f, **data)


def _load_states(path: Path, rows: int, fields: tuple[str, ...]) -> dict:
    if not path.exists():
        raise ValueError(f"{path}: missing; the run's labelled states are gone, start a fresh run directory")
    with np.load(path) as z:
        missing = [k for k in fields if k not in z.files]
        if missing:
            raise ValueError(f"{path}: lacks {missing}; start a fresh run directory")
        data = {k: z[k] for k in fields}
    if data["obs"].shape[0] < rows:
        raise ValueError(f"{path}: holds {data['obs'].shape[0]} states, the checkpoint counts {rows}; start a fresh run directory")
    return {k: v[:rows] for k, v in data.items()}   # a round written after the last checkpoint is redone


def _refit(algo, labelled, steps: int, gen: np.random.Generator) -> dict[str, float]:
    """``steps`` updates on batches drawn from every state aggregated so far (``labelled``), on one
    torch thread (small matrices: a second thread mostly waits for a core another process holds).
    Returns each loss's mean over the last tenth of the updates."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logs = [algo.update(algo.sample_batch(labelled, algo.config.batch_size, gen)) for _ in range(steps)]
    finally:
        torch.set_num_threads(threads)
    tail = logs[-max(1, len(logs) // 10):]
    return {k: float(np.mean([log[k] for log in tail])) for k in tail[0] if k.endswith("loss")}


def _round_steps(algo) -> int:
    """Updates after each round: OIL's ``steps``; DiffBid's oracle form spreads its ``steps`` (the
    run's total, over which its learning rate decays) evenly over the rounds."""
    cfg = algo.config
    return cfg.steps if algo.name == "oil" else -(-cfg.steps // cfg.rounds)


def train_oil(run_dir, *, market: MarketConfig = MarketConfig(), population: PopulationConfig | None = None,
              seed: int = 0, overrides: dict | None = None, task: str = DEFAULT_TASK, validation=None,
              first_period: int = 0, workers: int = 1, backend: Backend | str | None = None,
              resume: bool = True, progress: bool = True, algo: str = "oil") -> OILResult:
    """DAgger with the hindsight oracle (module docstring). ``validation``: an
    ``aigb.workflows.training.ValidationSet`` (its market and task are set to this run's) or None.
    ``algo``: "oil", or "diffbid" with ``condition="oracle"`` in ``overrides`` (the planner learns
    each labelled state's oracle day, ``oracle_days``, as a completer of the realised prefix)."""
    from aigb.algos.checkpoint import read_checkpoint, save_checkpoint, stored_config
    from aigb.algos.registry import make_algorithm

    check_task(task)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    name = algo
    if name not in ("oil", "diffbid"):
        raise ConfigError(f"algo: learns in the loop with the oracle: 'oil' or 'diffbid', got {name!r}")
    algo = make_algorithm(name, FEATURE_DIM, overrides, seed=seed)
    algo.market_version = market.version   # the checkpoint serves this market's version
    population = market_population(market) if population is None else population
    cfg = algo.config
    if name == "diffbid" and cfg.condition != "oracle":
        raise ConfigError(f"condition: DiffBid learns in the simulator only as condition=oracle, got {cfg.condition!r}")
    plans = name == "diffbid"
    fields = STATE_FIELDS + ("round",) + (PLAN_FIELDS if plans else ())
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
    fingerprint = {"kind": "oil-rollouts" if name == "oil" else "diffbid-oracle-rollouts", "market": market.to_dict(),
                   "population": population.to_dict(), "seed": int(seed), "task": task, "first_period": int(first_period), "slots": list(slots),
                   "feature_version": FEATURE_VERSION}

    start, best_score, best_round = 0, None, None
    data = None   # every labelled state so far: ``fields`` -> arrays, from the first round's on
    if resume and last_path.exists():
        payload = read_checkpoint(last_path)
        hint = "use a fresh run directory"
        if payload["algo"] != name:
            raise ValueError(f"{last_path}: holds a {payload['algo']!r} run, not {name!r}; {hint}")
        # More rounds extend a run: a round depends on its index, never on the total.
        if replace(stored_config(payload), rounds=cfg.rounds) != cfg:
            raise ValueError(f"{last_path}: was trained with config {payload['config']}, not {json.dumps(algo.config_dict(), sort_keys=True)}; {hint}")
        if json.loads(payload.get("dataset_fingerprint") or "null") != json.loads(json.dumps(fingerprint)):
            raise ValueError(f"{last_path}: was rolled out in {payload.get('dataset_fingerprint')}, not {fingerprint}; {hint}")
        state = json.loads(payload["fit_state"])
        algo.load_state_dict(payload["algorithm"])
        start, best_score, best_round = int(state["round"]) + 1, state["best_score"], state["best_round"]
        data = _load_states(states_path, int(state["rows"]), fields)
        kept = [line for line in metrics_path.read_text().splitlines() if line.strip()
                and json.loads(line)["round"] < start] if metrics_path.exists() else []
        with atomic_output(metrics_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
    else:
        for stale in (last_path, best_path, states_path, metrics_path):
            stale.unlink(missing_ok=True)
        _write_json(run_dir / "config.json", {"algo": name, "config": algo.config_dict(), **fingerprint,
                                              "validation": None if validation is None else {
                                                  "periods": validation.periods, "slots": list(validation.slots)}})
    resumed_from = start
    began = time.perf_counter()
    for r in range(start, cfg.rounds):
        t0 = time.perf_counter()
        share = cfg.expert_share(r)
        mix = Mix(None if share >= 1.0 else algo.policy(), share, cfg.reference, stream=r, days=plans)
        periods = range(first_period + r * cfg.periods_per_round, first_period + (r + 1) * cfg.periods_per_round)
        part = rollout_states(mix, market, population, seed, periods, slots, task=task, workers=workers, backend=backend)
        n_new = part["obs"].shape[0]
        part["round"] = np.full(n_new, r, dtype=np.int64)
        if plans:   # the planner's units of each oracle day (the days themselves are not kept)
            part.update(algo.oracle_fields(part.pop("day"), part["tick"]))
        data = ({k: part[k] for k in fields} if data is None else
                {k: np.concatenate([data[k], part[k]]) for k in fields})
        _save_states(states_path, data)
        t_rollout = time.perf_counter() - t0
        if data["obs"].shape[0] == 0:
            raise RuntimeError(f"round {r}: the rollouts visited no state with budget left; nothing to learn from")

        t0 = time.perf_counter()
        labelled = LabelledPlans(data, task) if plans else LabelledStates(data["obs"], data["action"], task)
        if r == 0 or algo.feature_version is None:
            algo.prepare(labelled, seed)   # the normaliser (and a planner's scalers) from round 0's states
        n = data["obs"].shape[0]
        losses = _refit(algo, labelled, _round_steps(algo), named_rng(seed, "oil/batches", r))
        t_fit = time.perf_counter() - t0

        t0 = time.perf_counter()
        entry = {"round": r, "expert_share": share, "periods": [periods.start, periods.stop - 1], "new_states": n_new,
                 "states": n, "expert_states": int(part["expert"].sum()),
                 "rollout_score": float(np.mean([c["score"] for c in part["campaigns"]])),
                 "rollout_expected_score": float(np.mean([c["expected_score"] for c in part["campaigns"]])),
                 **losses}
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
            loss = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
            print(f"{name} round {r + 1}/{cfg.rounds}: expert share {share:.3g}, {n_new} new states ({n} in all), "
                  f"rollout score {entry['rollout_score']:.3f}, {loss}{val} "
                  f"({t_rollout:.0f} s rollouts, {t_fit:.0f} s fit, {entry['seconds_validation']:.0f} s validation)", flush=True)
    return OILResult(run_dir, cfg.rounds, int(data["obs"].shape[0]), best_score, best_round, resumed_from,
                     time.perf_counter() - began)
