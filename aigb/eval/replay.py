"""Offline replay evaluation on logged impression data: the protocol behind AuctionNet's tables.

``replay_evaluate`` scores strategies on real (imported) or generated impression logs, one
advertiser at a time, the way the competition baselines' offline evaluator does once its known
bugs are fixed (budget 100 and CPA 2 hard-coded, a single (period, advertiser)):

* the logged competitors stay as logged: a PV's price is its logged ``least_winning_cost`` (the
  4th highest bid, the price of entering slot 3);
* the evaluated strategy replaces one advertiser, with that advertiser's real budget (times
  ``budget_rate``), target CPA and category, and sees that advertiser's PVs (``p_value``,
  ``p_value_sigma``) tick by tick through the same ``Observation`` the simulator gives;
* a PV is won iff the bid is positive and at least its least winning cost, and costs exactly that
  (one slot, always shown: no exposure draw);
* a won PV's value is drawn from N(pValue, pValueSigma) clipped to [0, 1], its conversion from a
  Bernoulli of that value, from the named streams ``("replay_outcome", period, advertiser, tick)``
  of the evaluation seed, drawn for every PV of the tick before the bids are known, so every
  strategy on one (seed, period, advertiser) meets the same luck on each PV (paired);
* a tick whose cost would exceed the remaining budget drops a random
  ``ceil(n_won * (cost - remaining) / cost)`` of the won PVs and re-prices until it fits, as the
  simulator does (stream ``("replay_budget_drop", period, advertiser, tick)``); below the market's
  minimum remaining budget (0.1) the advertiser bids nothing;
* every advertiser of every chosen period is replayed, each a row of ``aigb.eval.evaluate``'s
  ``RESULT_SCHEMA``; the summary is the same paired table, over (seed, period, advertiser).

Each row's bound (``oracle_score``) is the hindsight LP over the logged prices (``solve_oracle``
with one slot shown with probability 1 at price ``least_winning_cost``). Hindsight strategies
(``oracle``) replay the simulator's period and are refused here.

Outputs, resume and errors are those of ``aigb.eval.evaluate`` (journal, ``results.parquet``,
``config.json`` with a ``replay`` entry naming the log's source files and the budget rate).
Replaying the periods a learned strategy was trained on (an imported dataset recorded beside its
checkpoint, ``train_args.json``) is refused.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

import aigb
from aigb.backends import Backend, TaskRun
from aigb.data.generate import DATASET_FILE, IMPRESSIONS
from aigb.data.parquet import CorruptFileError, atomic_output, file_metadata, read_metadata, write_table_atomic
from aigb.eval.metrics import summarize
from aigb.eval.rollout import exhaustion_tick, one_torch_thread, spend_oscillation
from aigb.eval.traces import tick_traces, write_traces
from aigb.features import build_features
from aigb.score import DEFAULT_TASK, check_task, realized_cpa, score, task_beta
from aigb.seeding import rng
from aigb.sim.env import InvalidBids, Observation, validate_bids
from aigb.strategies.base import Strategy, strategy_seed
from aigb.strategies.base import check_task as check_strategy_task
from aigb.strategies.oracle import solve_oracle
from aigb.strategies.registry import strategy_factory
from aigb.types import TICK_STAT_FIELDS, Campaign, ConfigError, MarketConfig

__all__ = ["REPLAY_COLUMNS", "ReplayConfig", "ReplayLog", "replay_periods", "load_replay_log", "replay_rollout",
           "replay_evaluate", "ReplayDataError"]

REPLAY_COLUMNS = ("period", "advertiser", "category", "budget", "target_cpa", "tick", "pv_index", "p_value",
                  "p_value_sigma", "least_winning_cost")
"""Impression-log columns replay reads."""


class ReplayDataError(ValueError):
    """A replay folder that cannot be replayed; the message names the file or folder and the field."""


def replay_periods(directory: str | Path) -> dict[int, list[Path]]:
    """Period -> impression-log files of a folder (imported ``impressions/period=<P>/*.parquet``
    or generated ``impressions/period=<P>.parquet``)."""
    folder = Path(directory) / IMPRESSIONS
    if not folder.is_dir():
        raise ReplayDataError(f"{directory}: no {IMPRESSIONS}/ folder; replay needs impression logs "
                              "(aigb import-csv LOG.csv --out DIR, or aigb generate --impressions)")
    out: dict[int, list[Path]] = {}
    for path in sorted(folder.glob("period=*.parquet")) + sorted(folder.glob("period=*/*.parquet")):
        name = path.stem if path.parent == folder else path.parent.name
        try:
            out.setdefault(int(name.split("=", 1)[1]), []).append(path)
        except ValueError:
            raise ReplayDataError(f"{path}: field period: the name must be period=<integer>") from None
    if not out:
        raise ReplayDataError(f"{folder}: no impression-log files")
    return dict(sorted(out.items()))


@dataclass
class ReplayLog:
    """One advertiser's side of a logged period: its campaign and its PVs tick by tick."""

    period: int
    campaign: Campaign
    """The real campaign (budget before any ``budget_rate``)."""
    p_value: list[np.ndarray]
    """Per tick, (n_pv,) float32."""
    p_value_sigma: list[np.ndarray]
    """Per tick, (n_pv,) float32."""
    least_winning_cost: list[np.ndarray]
    """Per tick, (n_pv,) float64: the logged price of each PV."""


def load_replay_log(paths: Sequence[Path], advertiser: int, n_ticks: int) -> ReplayLog:
    """The rows of ``advertiser`` in a period's files, a row group at a time, ordered by (tick, pv)."""
    parts, period = [], None
    for path in paths:
        try:
            f = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            raise CorruptFileError(f"{path}: cannot be read as Parquet ({err})") from None
        missing = [c for c in REPLAY_COLUMNS if c not in f.schema_arrow.names]
        if missing:
            raise ReplayDataError(f"{path}: lacks column(s) {missing} that replay needs")
        for batch in f.iter_batches(columns=list(REPLAY_COLUMNS), batch_size=1 << 20):
            adv = batch.column("advertiser").to_numpy()
            keep = adv == advertiser
            if keep.any():
                parts.append(batch.filter(pa.array(keep)))
    if not parts:
        raise ReplayDataError(f"{paths[0].parent}: field advertiser: no rows of advertiser {advertiser}")
    t = pa.Table.from_batches(parts)
    col = {c: t.column(c).to_numpy() for c in REPLAY_COLUMNS}
    periods = np.unique(col["period"])
    if periods.size != 1:
        raise ReplayDataError(f"{paths[0].parent}: field period: rows of periods {periods.tolist()} in one period's files")
    campaign_keys = np.unique(np.stack([col["category"], col["budget"], col["target_cpa"]], axis=1).astype(np.float64), axis=0)
    if len(campaign_keys) != 1:
        raise ReplayDataError(f"{paths[0].parent}: fields category/budget/target_cpa of advertiser {advertiser} change "
                              f"within the period: {campaign_keys.tolist()[:3]}")
    tick = col["tick"].astype(np.int64)
    if tick.min() < 0 or tick.max() >= n_ticks:
        raise ReplayDataError(f"{paths[0].parent}: field tick: values {tick.min()}..{tick.max()} outside 0..{n_ticks - 1}")
    order = np.lexsort((col["pv_index"], tick))
    tick = tick[order]
    bounds = np.searchsorted(tick, np.arange(n_ticks + 1))
    c, b, k = campaign_keys[0]
    period = int(periods[0])

    def split(name, dtype):
        v = col[name][order].astype(dtype)
        return [v[bounds[i]:bounds[i + 1]] for i in range(n_ticks)]

    return ReplayLog(period, Campaign(int(advertiser), int(c), float(b), float(k)), split("p_value", np.float32),
                     split("p_value_sigma", np.float32), split("least_winning_cost", np.float64))


def _advertisers(paths: Sequence[Path]) -> list[int]:
    found: set[int] = set()
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(columns=["advertiser"], batch_size=1 << 22):
            found.update(np.unique(batch.column(0).to_numpy()).tolist())
    return sorted(int(a) for a in found)


# ---------------------------------------------------------------------------------------------
# One strategy, one logged campaign


def replay_rollout(strategy: Strategy, label: str, log: ReplayLog, seed: int, budget_rate: float = 1.0,
                   market: MarketConfig = MarketConfig(), task: str = DEFAULT_TASK) -> dict:
    """Replay ``strategy`` in ``log``'s campaign (see the module docstring); one result row."""
    with one_torch_thread():
        return _replay(strategy, label, log, seed, budget_rate, market, task)


def _replay(strategy, label, log, seed, budget_rate, market, task) -> dict:
    n_ticks, a, period = market.n_ticks, log.campaign.advertiser, log.period
    real = log.campaign
    c = Campaign(a, real.category, real.budget * budget_rate, real.target_cpa)
    row = {"strategy": label, "seed": int(seed), "period": int(period), "advertiser": int(a), "category": int(c.category),
           "budget": c.budget, "target_cpa": c.target_cpa, "error": None, "error_tick": -1}
    history = {f: np.zeros(n_ticks) for f in TICK_STAT_FIELDS}  # field -> (n_ticks,)
    pv_history = [] if strategy.needs_pv_history else None
    remaining = c.budget
    t = 0
    try:
        strategy.reset(c, n_ticks, strategy_seed(seed, period, a))
        for t in range(n_ticks):
            p, sigma, lwc = log.p_value[t], log.p_value_sigma[t], log.least_winning_cost[t]
            n = p.size
            past = {f: v[:t].copy() for f, v in history.items()}
            obs = Observation(t, n_ticks, c, remaining, p, sigma, past,
                              build_features(past, n_ticks, n, float(p.mean(dtype=np.float64)) if n else 0.0,
                                             c.budget, c.target_cpa, c.category),
                              None if pv_history is None else list(pv_history))
            bids = validate_bids(strategy.bid(obs), n, label)
            stats, view = _tick(bids, p, sigma, lwc, remaining, market, rng(seed, "replay_outcome", period, a, t),
                                rng(seed, "replay_budget_drop", period, a, t))
            for f, v in stats.items():
                history[f][t] = v
            if pv_history is not None:
                pv_history.append({"p_value": p, "p_value_sigma": sigma, "least_winning_cost": lwc, **view})
            remaining -= stats["cost"]
    except InvalidBids as err:
        return _failed(row, history, t, f"{label} returned invalid bids at tick {t}: {err}")
    except Exception as err:  # noqa: BLE001 - any failure of user code becomes a row, not a crash
        return _failed(row, history, t, f"{label} raised at tick {t}: {type(err).__name__}: {err}")
    beta = task_beta(task)
    spend, conv = float(history["cost"].sum()), float(history["conversions"].sum())
    exp_conv = float(history["expected_conversions"].sum())
    row.update({
        "spend": spend, "conversions": conv, "expected_conversions": exp_conv, "expected_spend": spend,
        "realized_cpa": float(realized_cpa(spend, conv)), "score": float(score(conv, spend, c.target_cpa, beta)),
        "expected_score": float(score(exp_conv, spend, c.target_cpa, beta)), "budget_utilisation": spend / c.budget,
        "exhaustion_tick": exhaustion_tick(history["remaining_budget"], history["cost"], market.min_remaining_budget),
        "spend_oscillation": spend_oscillation(history["cost"]), "tick_spend": history["cost"].tolist(),
        "remaining_budget": history["remaining_budget"].tolist(),
    })
    row.update(tick_traces(strategy, {f: v[:, None] for f, v in history.items()}, 0))
    p_all = np.concatenate(log.p_value).astype(np.float64)
    # A PV logged at price 0 is free to win; the LP needs a positive price to list it.
    price = np.maximum(np.concatenate(log.least_winning_cost), 1e-12)[:, None]
    ticks = np.repeat(np.arange(n_ticks), [x.size for x in log.p_value])
    sol = solve_oracle(p_all, price, ticks, c.budget, c.target_cpa, n_ticks=n_ticks, exposure_probs=(1.0,),
                       reserve_price=0.0, beta=beta, frontier_spend=c.budget)
    row.update({"oracle_score": float(sol.max_score), "oracle_conversions": float(sol.conversions),
                "oracle_spend": float(sol.spend), "oracle_alpha": float(sol.alpha), "bound_score": float(sol.max_score)})
    return row


def _tick(bids, p, sigma, lwc, remaining, market: MarketConfig, outcome_rng, drop_rng):
    """One replayed tick: (tick statistics, per-PV results)."""
    n = p.size
    # The luck of every PV, drawn before the bids matter (paired across strategies).
    z = outcome_rng.standard_normal(n)
    u = outcome_rng.random(n)
    value = np.clip(p.astype(np.float64) + sigma.astype(np.float64) * z, 0.0, 1.0)
    bids = bids.copy()
    if remaining < market.min_remaining_budget:
        bids[:] = 0.0
    won = (bids > 0) & (bids >= lwc)
    cost = float(lwc[won].sum())
    while cost > remaining:  # the simulator's budget cap: drop won PVs at random, re-price
        won_pv = np.flatnonzero(won)
        n_drop = int(np.ceil(won_pv.size * (cost - remaining) / cost))
        dropped = drop_rng.choice(won_pv, size=min(n_drop, won_pv.size), replace=False)
        bids[dropped] = 0.0
        won[dropped] = False
        cost = float(lwc[won].sum())
    conversion = won & (u < value)
    n_won = float(won.sum())
    denom = max(n, 1)
    pw = float(p[won].astype(np.float64).sum())
    stats = {
        "n_pv": float(n), "bid_mean": float(bids.sum()) / denom, "p_value_mean": float(p.sum(dtype=np.float64)) / denom,
        "lwc_mean": float(lwc.sum()) / denom, "win_rate": n_won / denom, "conversion_rate": float(conversion.sum()) / denom,
        "n_won": n_won, "n_exposed": n_won, "cost": cost, "conversions": float(conversion.sum()), "exposed_p_value": pw,
        "expected_conversions": pw, "expected_cost": cost, "remaining_budget": float(remaining),
    }
    price = np.where(won, lwc, 0.0)
    view = {"bid": bids, "won": won, "slot": won.astype(np.int8), "price": price, "cost": price, "exposed": won.copy(),
            "conversion": conversion}
    return stats, view


def _failed(row: dict, history: dict, tick: int, message: str) -> dict:
    for k in ("spend", "conversions", "expected_conversions", "expected_spend", "realized_cpa", "score", "expected_score",
              "oracle_score", "oracle_conversions", "oracle_spend", "oracle_alpha", "bound_score", "budget_utilisation",
              "spend_oscillation"):
        row[k] = math.nan
    row.update({"exhaustion_tick": -1, "error": message, "error_tick": int(tick),
                "tick_spend": history["cost"][:tick].tolist(), "remaining_budget": history["remaining_budget"][:tick].tolist()})
    return row


# ---------------------------------------------------------------------------------------------
# The evaluation


@dataclass(frozen=True)
class ReplayConfig:
    """What a replay evaluation played; written to ``config.json`` and the results' metadata."""

    strategies: tuple[str, ...]
    """Strategy specs."""
    replay_dir: str
    """The folder of impression logs."""
    periods: tuple[int, ...]
    """Logged periods replayed."""
    slots: tuple[int, ...]
    """Advertisers replayed (with ``every_advertiser``, those any period logs)."""
    seeds: tuple[int, ...]
    """Seeds of the value and conversion draws."""
    budget_rate: float
    """Factor on every advertiser's logged budget."""
    sources: dict
    """Period -> the log's source files (name, bytes, SHA-256), or the generated files' identity."""
    market: MarketConfig
    """The rules the strategies are built for (ticks, minimum remaining budget)."""
    baseline: str | None
    """Strategy the paired differences are taken against."""
    task: str = DEFAULT_TASK
    """What rows are scored and bounded on."""
    every_advertiser: bool = True
    """Every advertiser of each period was replayed (``slots="all"``)."""

    def to_dict(self) -> dict:
        return {"strategies": list(self.strategies), "periods": list(self.periods),
                "slots": list(self.slots), "seeds": list(self.seeds),
                "market": self.market.to_dict(), "population": None, "task": self.task, "baseline": self.baseline,
                "eval_first_period": None, "aigb_version": aigb.__version__,
                "replay": {"dir": self.replay_dir, "budget_rate": self.budget_rate, "every_advertiser": self.every_advertiser,
                           "sources": {str(k): v for k, v in self.sources.items()}}}


def _sources(paths: Sequence[Path]) -> list:
    out = []
    for path in paths:
        meta = read_metadata(path)
        if meta.get("source"):
            out.append({"file": meta["source"], "bytes": meta.get("source_bytes"), "sha256": meta.get("source_sha256")})
        else:  # a generated log: its identity
            out.append({"file": path.name, "seed": meta.get("seed"), "config": meta.get("config")})
    return out


def _check_not_training_data(specs: Sequence[str], replay_dir: Path, periods: Sequence[int]) -> None:
    """Refuse a learned strategy whose imported training data holds a replayed period."""
    for spec in specs:
        _, _, rest = spec.partition(":")
        path = Path(rest.split("?", 1)[0])
        if not rest or not path.is_file():
            continue
        args = path.parent / "train_args.json"
        if not args.is_file():
            continue
        try:
            data = Path(json.loads(args.read_text())["data"])
            info = json.loads((data / DATASET_FILE).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not info.get("imported"):
            continue  # generated periods are days of our simulator, not logged days
        overlap = sorted(set(info.get("periods", [])) & set(periods))
        if overlap:
            raise ConfigError(f"periods: replay period(s) {overlap} of {replay_dir} are training data of {spec} "
                              f"({data / DATASET_FILE}, field periods); replay periods the strategy was not trained on")


def _replay_task(task: tuple, built=None) -> tuple[int, list[dict]]:
    index, specs, paths, seed, period, advertiser, rate, market, scoring = task
    log = load_replay_log([Path(p) for p in paths], advertiser, market.n_ticks)
    if log.period != period:
        raise ReplayDataError(f"{paths[0]}: field period: holds period {log.period}, its folder says {period}")
    rows = []
    for spec in specs:
        try:
            strategy = copy.deepcopy(built[spec]) if built and spec in built else strategy_factory(spec)(market)
        except Exception as err:  # noqa: BLE001
            row = {"strategy": spec, "seed": int(seed), "period": int(period), "advertiser": int(advertiser),
                   "category": log.campaign.category, "budget": log.campaign.budget * rate,
                   "target_cpa": log.campaign.target_cpa, "error": None}
            rows.append(_failed(row, {f: np.zeros(0) for f in TICK_STAT_FIELDS}, 0,
                                f"{spec} could not be built: {type(err).__name__}: {err}"))
            continue
        rows.append(replay_rollout(strategy, spec, log, seed, rate, market, scoring))
    return index, rows


def replay_evaluate(strategies: Sequence[str], replay_dir, *, periods: Sequence[int] | None = None, slots="all",
                    seeds: Sequence[int] = (0,), budget_rate: float = 1.0, market: MarketConfig = MarketConfig(),
                    workers: int = 1, out_dir=None, baseline: str | None = None, progress: bool = True,
                    keep_going: bool = False, force: bool = False, backend: Backend | str = "local",
                    task: str = DEFAULT_TASK):
    """Replay ``strategies`` on the logged periods of ``replay_dir``; returns ``EvalResults``.

    periods: logged periods to replay (None: all in the folder); slots: "all" (every advertiser of
    each period) or advertiser indices; budget_rate: factor on every logged budget (e.g. 0.5-1.5).
    The rest as ``aigb.eval.evaluate.evaluate``.
    """
    from aigb.eval.evaluate import (JOURNAL_FILE, RESULT_SCHEMA, RESULTS_FILE, CONFIG_FILE, EvalResults,
                                    EvaluationStopped, _Journal, _prepare_out)

    specs = tuple(strategies)
    if not specs:
        raise ConfigError("strategies: give at least one strategy")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"strategies: each may appear once, got {list(specs)}")
    check_task(task)
    for spec in specs:
        factory = strategy_factory(spec)
        built = factory(market)
        check_strategy_task(built, task)   # a policy trained for the other task is refused
        if built.hindsight:
            raise ConfigError(f"strategies: {spec} is a hindsight strategy, which replays the simulator's period; "
                              "replay rows carry the LP bound over the logged prices as oracle_score")
    if baseline is not None and baseline not in specs:
        raise ConfigError(f"baseline: {baseline!r} must be one of the evaluated strategies {list(specs)}")
    rate = float(budget_rate)
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"budget_rate: must be a number > 0, got {budget_rate!r}")
    seeds_t = tuple(int(s) for s in seeds)
    if not seeds_t or any(s < 0 for s in seeds_t) or len(set(seeds_t)) != len(seeds_t):
        raise ConfigError(f"seeds: need distinct seeds >= 0, got {seeds!r}")
    check_task(task)
    replay_dir = Path(replay_dir)
    available = replay_periods(replay_dir)
    chosen = tuple(available) if periods is None else tuple(int(p) for p in periods)
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ReplayDataError(f"{replay_dir}: field periods: period(s) {missing} not in its impression logs "
                              f"(it holds {list(available)[:20]})")
    _check_not_training_data(specs, replay_dir, chosen)
    advertisers = {p: _advertisers(available[p]) for p in chosen}
    every = slots == "all" or slots is None
    if every:
        slot_t = tuple(sorted({a for p in chosen for a in advertisers[p]}))
        plan = [(p, a) for p in chosen for a in advertisers[p]]
    else:
        slot_t = tuple(int(s) for s in (slots.split(",") if isinstance(slots, str) else slots))
        for p in chosen:
            absent = [a for a in slot_t if a not in advertisers[p]]
            if absent:
                raise ReplayDataError(f"{replay_dir}: field slots: advertiser(s) {absent} have no rows in period {p} "
                                      f"(it logs advertisers {advertisers[p][:48]})")
        plan = [(p, a) for p in chosen for a in slot_t]
    config = ReplayConfig(specs, str(replay_dir), chosen, slot_t, seeds_t, rate,
                          {p: _sources(available[p]) for p in chosen}, market, baseline, task, every)
    out = None if out_dir is None else Path(out_dir)
    results: dict[int, list[dict]] = {} if out is None else _prepare_out(out, config, force)
    tasks = [(i, specs, [str(x) for x in available[p]], s, p, a, rate, market, task)
             for i, (s, (p, a)) in enumerate((s, pa_) for s in seeds_t for pa_ in plan)]
    todo = [t for t in tasks if t[0] not in results]
    journal = None if out is None else _Journal(out / JOURNAL_FILE, config)
    failed: list[dict] = []
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="replay", unit="campaign", disable=not progress)
    start = time.perf_counter()
    try:
        with TaskRun(_replay_task, todo, backend=Backend.of(backend), workers=int(workers)) as run:
            for i, rows in run:
                results[i] = rows
                errors = [r for r in rows if r["error"] is not None]
                if errors:
                    failed.append(errors[0])
                elif journal is not None:
                    journal.add(i, rows)
                bar.update(1)
                if failed and not keep_going:
                    run.cancel_pending()
    finally:
        bar.close()
        if journal is not None:
            journal.close()
    wall = time.perf_counter() - start
    if failed and not keep_going:
        row = failed[0]
        raise EvaluationStopped(f"{row['error']} (seed {row['seed']}, period {row['period']}, advertiser "
                                f"{row['advertiser']}); --keep-going (keep_going=True) replays every campaign")
    ordered = [results[i][k] for k in range(len(specs)) for i in range(len(tasks))]
    table = pa.Table.from_pylist(ordered, schema=RESULT_SCHEMA)
    summary = summarize(table, baseline=baseline)
    if out is not None:
        write_table_atomic(table, out / RESULTS_FILE, file_metadata("evaluation", config.to_dict()))
        write_traces(ordered, out)
        with atomic_output(out / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
        (out / JOURNAL_FILE).unlink(missing_ok=True)
    return EvalResults(table, summary, config, wall, out)
