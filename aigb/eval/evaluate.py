"""The evaluation: strategies x seeds x periods x advertiser slots -> tidy rows, a summary, files.

Every strategy plays every chosen advertiser slot against the same rule-bidder population on the
same seeds and periods, so comparisons are paired: two strategies on one (seed, period, slot) see
the same traffic, the same population draw and the same exposure/conversion luck per (PV, slot).

Seed convention. Evaluation periods are numbered from ``EVAL_FIRST_PERIOD`` (1,000,000): with
``periods=N`` a run plays periods 1,000,000 .. 1,000,000 + N - 1 of each evaluation seed. Training
data, datasets and the OnlineLP prior use periods below that (``aigb.strategies.rules`` fits its
prior on periods 0..7 of ``PRIOR_SEED``), and every random stream is keyed by (seed, period), so no
evaluation campaign ever shares traffic with a training one, whatever seeds either side uses.

Work is split into one task per (seed, period, slot) that plays all strategies there
(``aigb.eval.rollout.run_campaign``), run over processes; rows are ordered by strategy, then task,
so the table is bit-for-bit the same for any number of workers. ``out_dir`` receives
``results.parquet`` (configuration in its metadata) and ``config.json``, both written atomically.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

import aigb
from aigb.data.parquet import atomic_output, file_metadata, write_table_atomic
from aigb.eval.metrics import Summary, format_summary, summarize
from aigb.eval.rollout import campaign_task
from aigb.sim.population import PopulationConfig
from aigb.strategies.registry import strategy_factory
from aigb.types import ConfigError, MarketConfig, check_market_version

__all__ = ["EVAL_FIRST_PERIOD", "EvalConfig", "EvalResults", "evaluate", "resolve_periods", "resolve_slots", "RESULT_SCHEMA",
           "load_results", "combine_results"]

EVAL_FIRST_PERIOD = 1_000_000
"""First evaluation period; training and data generation use periods below it."""

_F, _I = pa.float64(), pa.int64()
RESULT_SCHEMA = pa.schema([
    ("strategy", pa.string()), ("seed", _I), ("period", _I), ("advertiser", _I), ("category", _I),
    ("budget", _F), ("target_cpa", _F), ("spend", _F), ("conversions", _F), ("expected_conversions", _F),
    ("expected_spend", _F), ("realized_cpa", _F), ("score", _F), ("expected_score", _F), ("oracle_score", _F),
    ("oracle_conversions", _F), ("oracle_spend", _F), ("oracle_alpha", _F), ("bound_score", _F),
    ("budget_utilisation", _F), ("exhaustion_tick", _I), ("spend_oscillation", _F),
    ("tick_spend", pa.list_(_F)), ("remaining_budget", pa.list_(_F)), ("error", pa.string()), ("error_tick", _I),
])


@dataclass(frozen=True)
class EvalConfig:
    """A resolved evaluation: everything that determines its rows."""

    strategies: tuple[str, ...]
    """Strategy specs (``aigb.strategies.registry``), in table order."""
    periods: tuple[int, ...]
    """Period indices played under every seed."""
    slots: tuple[int, ...]
    """Advertiser slots each strategy controls in turn."""
    seeds: tuple[int, ...]
    """Evaluation root seeds."""
    market: MarketConfig
    """The market."""
    population: PopulationConfig
    """How the competing rule bidders are drawn."""
    baseline: str | None
    """Strategy the paired differences are taken against."""

    def to_dict(self) -> dict:
        return {"strategies": list(self.strategies), "periods": list(self.periods), "slots": list(self.slots),
                "seeds": list(self.seeds), "market": self.market.to_dict(),
                "population": self.population.to_dict(),
                "baseline": self.baseline, "eval_first_period": EVAL_FIRST_PERIOD, "aigb_version": aigb.__version__}


@dataclass(frozen=True)
class EvalResults:
    """What ``evaluate`` returns."""

    table: pa.Table
    """One row per (strategy, seed, period, slot), columns ``RESULT_SCHEMA``."""
    summary: Summary
    """Per-strategy statistics and paired differences."""
    config: EvalConfig
    """The resolved configuration."""
    wall_s: float
    """Wall time of the rollouts (not stored in the results: it is not reproducible)."""
    out_dir: Path | None
    """Where the files went, if anywhere."""

    def format(self) -> str:
        return format_summary(self.summary)


def resolve_periods(periods: int | Sequence[int]) -> tuple[int, ...]:
    """``N`` -> the first N evaluation periods; a sequence -> those periods (as given)."""
    if isinstance(periods, (int, np.integer)) and not isinstance(periods, bool):
        if periods < 1:
            raise ConfigError(f"periods: must be >= 1, got {periods}")
        return tuple(range(EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + int(periods)))
    out = tuple(int(p) for p in periods)
    if not out or any(p < 0 for p in out) or len(set(out)) != len(out):
        raise ConfigError(f"periods: need distinct period indices >= 0, got {periods!r}")
    return out


def resolve_slots(slots, n_advertisers: int) -> tuple[int, ...]:
    """``"all"``; ``K`` (an int or a digit string): K slots spread evenly over the advertisers
    (so every category is represented); or explicit slot indices."""
    if isinstance(slots, str):
        text = slots.strip()
        if text == "all":
            return tuple(range(n_advertisers))
        if text.isdigit():
            slots = int(text)
        else:
            try:
                slots = [int(s) for s in text.split(",")]
            except ValueError:
                raise ConfigError(f"slots: expected 'all', a count K or indices like '0,7,12', got {text!r}") from None
    if isinstance(slots, (int, np.integer)) and not isinstance(slots, bool):
        k = int(slots)
        if not 1 <= k <= n_advertisers:
            raise ConfigError(f"slots: a count must be in [1, {n_advertisers}], got {k}")
        return tuple(int(s) for s in np.unique(np.round(np.linspace(0, n_advertisers - 1, k)).astype(int)))
    out = tuple(int(s) for s in slots)
    bad = [s for s in out if not 0 <= s < n_advertisers]
    if not out or bad or len(set(out)) != len(out):
        raise ConfigError(f"slots: need distinct indices in [0, {n_advertisers}), got {slots!r}")
    return out


def evaluate(strategies: Sequence[str], *, periods: int | Sequence[int] = 5, slots="all", seeds: Sequence[int] = (0,),
             market: MarketConfig = MarketConfig(), population: PopulationConfig = PopulationConfig(),
             workers: int = 1, out_dir=None, baseline: str | None = None, progress: bool = True) -> EvalResults:
    """Evaluate ``strategies`` (spec strings) paired on the same campaigns; see the module docstring."""
    specs = tuple(strategies)
    if not specs:
        raise ConfigError("strategies: give at least one strategy")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"strategies: each may appear once, got {list(specs)}")
    for spec in specs:
        strategy_factory(spec)  # unknown names and bad parameters fail here, before any rollout
    if baseline is not None and baseline not in specs:
        raise ConfigError(f"baseline: {baseline!r} must be one of the evaluated strategies {list(specs)}")
    seeds_t = tuple(int(s) for s in seeds)
    if not seeds_t or any(s < 0 for s in seeds_t) or len(set(seeds_t)) != len(seeds_t):
        raise ConfigError(f"seeds: need distinct seeds >= 0, got {seeds!r}")
    if int(workers) < 1:
        raise ConfigError(f"workers: must be >= 1, got {workers}")
    config = EvalConfig(specs, resolve_periods(periods), resolve_slots(slots, market.n_advertisers), seeds_t,
                        market, population, baseline)
    for spec in specs:
        # Build each once here: files a strategy derives on first use (the OnlineLP prior) are
        # made once, before workers race to make them.
        strategy_factory(spec)(market)

    tasks = [(i, specs, market, population, s, p, a)
             for i, (s, p, a) in enumerate((s, p, a) for s in config.seeds for p in config.periods for a in config.slots)]
    results: dict[int, list[dict]] = {}
    bar = tqdm(total=len(tasks), desc="evaluate", unit="campaign", disable=not progress)
    start = time.perf_counter()
    if int(workers) == 1:
        for t in tasks:
            i, rows = campaign_task(t)
            results[i] = rows
            bar.update(1)
    else:
        # spawn: workers start clean (no inherited threads or torch state), on every platform alike.
        with ProcessPoolExecutor(max_workers=int(workers), mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(campaign_task, t) for t in tasks]):
                i, rows = fut.result()
                results[i] = rows
                bar.update(1)
    wall = time.perf_counter() - start
    bar.close()

    ordered = [results[i][k] for k in range(len(specs)) for i in range(len(tasks))]
    table = pa.Table.from_pylist(ordered, schema=RESULT_SCHEMA)
    summary = summarize(table, baseline=baseline)
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_table_atomic(table, out / "results.parquet", file_metadata("evaluation", config.to_dict()))
        with atomic_output(out / "config.json") as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    return EvalResults(table, summary, config, wall, out)


# Configuration fields that decide how a campaign is played: evaluations that agree on all of them
# can be summarised together, rows pairing up by (seed, period, slot). Seeds may differ: more seeds
# are more campaigns of the same evaluation.
_CAMPAIGN_FIELDS = ("periods", "slots", "market", "population", "eval_first_period")


def load_results(directory) -> tuple[pa.Table, dict]:
    """(rows, configuration) of an evaluation's output directory."""
    directory = Path(directory)
    path, config_path = directory / "results.parquet", directory / "config.json"
    for f in (path, config_path):
        if not f.is_file():
            raise FileNotFoundError(f"{directory}: no {f.name}; is this an `aigb evaluate --out` directory?")
    config = json.loads(config_path.read_text())
    check_market_version((config.get("market") or {}).get("market_version"), str(config_path))
    table = pq.read_table(path)
    missing = [n for n in RESULT_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing result columns {missing}")
    return table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA), config


def combine_results(directories: Sequence, baseline: str | None = None) -> Summary:
    """One summary of several evaluations (e.g. the rule table, a later run of learned strategies
    and a run of the same strategies on another seed), with paired differences against ``baseline``.

    Refuses evaluations that played their campaigns differently (periods, slots, market,
    population) and a (strategy, seed) evaluated in two of them."""
    if not directories:
        raise ConfigError("results: give at least one evaluation directory")
    tables, first, owner = [], None, {}
    for d in directories:
        table, config = load_results(d)
        if first is None:
            first = (d, config)
        for field in _CAMPAIGN_FIELDS:
            if config.get(field) != first[1].get(field):
                raise ConfigError(f"{field}: {d} played other campaigns than {first[0]} "
                                  f"({config.get(field)!r} vs {first[1].get(field)!r}); only paired evaluations combine")
        for key in dict.fromkeys(zip(table.column("strategy").to_pylist(), table.column("seed").to_pylist())):
            if key in owner:
                raise ConfigError(f"strategies: {key[0]!r} on seed {key[1]} is in both {owner[key]} and {d}; keep one of them")
            owner[key] = d
        tables.append(table)
    if baseline is not None and baseline not in {name for name, _ in owner}:
        raise ConfigError(f"baseline: {baseline!r} is not among the evaluated strategies {list(dict.fromkeys(n for n, _ in owner))}")
    return summarize(pa.concat_tables(tables), baseline=baseline)
