"""The evaluation: strategies x seeds x periods x advertiser slots -> tidy rows, a summary, files.

Every strategy plays every chosen advertiser slot against the same rule-bidder population on the
same seeds and periods, so comparisons are paired: two strategies on one (seed, period, slot) see
the same traffic, the same population draw and the same exposure/conversion luck per (PV, slot).

Seed convention. Evaluation periods are numbered from ``EVAL_FIRST_PERIOD`` (1,000,000): with
``periods=N`` a run plays periods 1,000,000 .. 1,000,000 + N - 1 of each evaluation seed. Training
data, datasets and the OnlineLP prior use periods below that (``aigb.strategies.rules`` fits its
prior on periods 0..7 of ``PRIOR_SEED``), and every random stream is keyed by (seed, period), so no
evaluation campaign ever shares traffic with a training one, whatever seeds either side uses.

Work is split by period: one unit plays every strategy on the slots of one (seed, period) in one
batched run (``aigb.eval.batched.period_task``; a period is split into parts only when there are
fewer periods than workers), run over local processes or Ray tasks (``aigb.backends``). Each
campaign's row equals the row of playing it alone (``aigb.eval.rollout.run_campaign``); rows are
ordered by strategy, then campaign, so the table is bit-for-bit the same for any number of
workers and either backend. ``out_dir`` receives
``results.parquet`` (configuration in its metadata) and ``config.json``, both written atomically.

Nothing is lost to a crash. ``out_dir`` is checked for writing before the first rollout; the rows
of every campaign that all strategies completed are appended to ``out_dir/rows.partial.jsonl`` as
it finishes (one fsynced line per campaign; JSON keeps every float exactly); a re-run with the same
settings resumes from them and ends with the table an uninterrupted run writes, and the journal is
removed once ``results.parquet`` is written. An ``out_dir`` that already holds results, or a
partial run of other settings, is refused unless ``force`` (which starts over). ``config.json`` is
written last: a finish interrupted before it (a full disk while writing the traces) keeps the
journal, and a re-run writes the files from it without playing a campaign again.

Tasks. ``task`` (``aigb.score.TASKS``) is what every row is scored and bounded on: "cpa"
(Target-CPA, the default) or "max-return" (budget only, the score is the conversions). It is
recorded in ``config.json`` and the results' metadata; results written before tasks existed record
none and are Target-CPA ones. ``combine_results`` (``aigb compare``, ``aigb report``) refuses to
pool evaluations of different tasks: their scores and bounds measure different things.

Errors. A campaign where a strategy fails (raises, returns invalid bids) stops the evaluation
after the campaigns in flight finish (``EvaluationStopped``; completed campaigns stay in the
journal) unless ``keep_going``, which plays every campaign and reports the failures as error rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

import aigb
from aigb.backends import Backend, TaskRun
from aigb.data.parquet import OutputPathError, atomic_output, file_metadata, read_table, write_table_atomic
from aigb.eval.metrics import Summary, format_summary, summarize
from aigb.eval.traces import write_traces
from aigb.eval.batched import period_task
from aigb.files import claim_dir
from aigb.score import DEFAULT_TASK, check_task
from aigb.seeding import EVAL_FIRST_PERIOD
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import check_task as check_strategy_task
from aigb.strategies.registry import strategy_factory
from aigb.types import ConfigError, MarketConfig, MarketVersionError, recorded_market_version

__all__ = ["EVAL_FIRST_PERIOD", "EvalConfig", "EvalResults", "EvaluationStopped", "evaluate", "resolve_periods",
           "resolve_slots", "RESULT_SCHEMA", "RESULTS_FILE", "CONFIG_FILE", "JOURNAL_FILE", "load_results", "combine_results"]

RESULTS_FILE, CONFIG_FILE = "results.parquet", "config.json"
JOURNAL_FILE = "rows.partial.jsonl"
"""Rows of the campaigns finished so far, while an evaluation runs (see the module docstring)."""
_OLD_RESULT_FILES = (RESULTS_FILE, CONFIG_FILE, "ticks.parquet", "plans.parquet")  # what --force replaces

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
    task: str = DEFAULT_TASK
    """What rows are scored and bounded on: "cpa" (Target-CPA) or "max-return" (``aigb.score.TASKS``)."""

    def to_dict(self) -> dict:
        return {"strategies": list(self.strategies), "periods": list(self.periods), "slots": list(self.slots),
                "seeds": list(self.seeds), "market": self.market.to_dict(),
                "population": self.population.to_dict(), "task": self.task,
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


class EvaluationStopped(RuntimeError):
    """A strategy failed on a campaign and ``keep_going`` was off; the message names the
    strategy, the campaign and where the completed campaigns' rows are kept."""


def resolve_slots(slots, n_advertisers: int) -> tuple[int, ...]:
    """The advertiser slots to play.

    Text (the command line's ``--slots``): ``"all"``; advertiser indices ``"7"`` or ``"0,7,12"``;
    ``"spread:K"``, K slots spread evenly over the advertisers (so every category is represented).
    Python values: a sequence of indices, or an int K meaning ``"spread:K"``.
    """
    if isinstance(slots, str):
        text = slots.strip()
        if text == "all":
            return tuple(range(n_advertisers))
        if text.startswith("spread:"):
            count = text.partition(":")[2].strip()
            if not count.isdigit():
                raise ConfigError(f"slots: expected 'spread:K' with a count K, got {text!r}")
            slots = int(count)
        else:
            try:
                slots = [int(s) for s in text.split(",")]
            except ValueError:
                raise ConfigError(f"slots: expected 'all', advertiser indices like '7' or '0,7,12', or 'spread:K' "
                                  f"for K slots spread over the advertisers, got {text!r}") from None
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


def _settings(config: dict) -> dict:
    """A configuration as read back from JSON, without what does not change rows (the aigb version);
    one written before tasks existed is a Target-CPA one."""
    return {"task": DEFAULT_TASK, **{k: v for k, v in json.loads(json.dumps(config)).items() if k != "aigb_version"}}


def _differences(there, now, prefix: str = "") -> list[str]:
    if isinstance(there, dict) and isinstance(now, dict):
        return [d for k in sorted(set(there) | set(now)) for d in _differences(there.get(k), now.get(k), f"{prefix}{k}.")]
    return [] if there == now else [f"{prefix.rstrip('.')}: {there!r} there, {now!r} now"]


def _read_journal(journal: Path) -> tuple[dict | None, dict[int, list[dict]], int]:
    """(header, task -> rows of each completed campaign, bytes of whole lines) of a journal; the
    part after the last newline, cut by a crash, is left out (header None: not even it is whole)."""
    done, valid_bytes, header = {}, 0, None
    with open(journal, "rb") as fh:
        lines = fh.read().split(b"\n")
    for n, line in enumerate(lines[:-1]):
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if n == 0:
            if not isinstance(entry, dict) or entry.get("kind") != "aigb-evaluation-rows":
                raise ConfigError(f"out_dir: {journal} is not an aigb evaluation journal; use another directory or --force")
            header = entry
        else:
            done[int(entry["task"])] = entry["rows"]
        valid_bytes += len(line) + 1
    return header, done, valid_bytes


def _prepare_out(out: Path, config: EvalConfig, force: bool) -> dict[int, list[dict]]:
    """Check ``out`` before any rollout; return the journal's completed campaigns (task -> rows)."""
    claim_dir(out, "evaluate", force=force, writes=(*_OLD_RESULT_FILES, JOURNAL_FILE))
    journal = out / JOURNAL_FILE
    if force:
        for name in (*_OLD_RESULT_FILES, JOURNAL_FILE):
            (out / name).unlink(missing_ok=True)
        return {}
    # config.json is written last: without it, results.parquet beside a journal is a finish that a
    # failed write interrupted, and the journal resumes it.
    if (out / CONFIG_FILE).exists() or ((out / RESULTS_FILE).exists() and not journal.exists()):
        raise ConfigError(f"out_dir: {out} already holds an evaluation ({RESULTS_FILE}); use another directory, "
                          f"or --force (force=True) to replace it")
    if not journal.exists():
        return {}
    header, done, valid_bytes = _read_journal(journal)
    diffs = [] if header is None else _differences(_settings(header.get("config") or {}), _settings(config.to_dict()))
    if diffs:
        raise ConfigError(
            f"out_dir: {out} holds a partial evaluation of other settings ({'; '.join(diffs[:3])}"
            f"{' ...' if len(diffs) > 3 else ''}); re-run those settings to resume it, use another "
            "directory, or --force (force=True) to start over")
    try:
        with open(journal, "r+b") as fh:  # drop a line cut short by a crash before appending to it
            fh.truncate(valid_bytes)
    except OSError as err:
        raise OutputPathError(f"{journal}: cannot write ({err.strerror or err})") from None
    return done


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


class _Journal:
    """Append-only rows of finished campaigns, one fsynced JSON line each."""

    def __init__(self, path: Path, config: EvalConfig):
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        try:
            self._fh = open(path, "a", encoding="utf-8")
        except OSError as err:
            raise OutputPathError(f"{path}: cannot write ({err.strerror or err})") from None
        if fresh:
            self._write({"kind": "aigb-evaluation-rows", "config": config.to_dict()})

    def _write(self, entry: dict) -> None:
        try:
            self._fh.write(json.dumps(entry, default=_json_default) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as err:
            raise OutputPathError(f"{self.path}: cannot write ({err.strerror or err}); the campaigns finished "
                                  "before are kept there and a re-run of the same command resumes from them") from None

    def add(self, task: int, rows: list[dict]) -> None:
        self._write({"task": task, "rows": rows})

    def close(self) -> None:
        # Every line was flushed and fsynced when written; after a failed write the buffer may
        # still hold it, and the error already raised is the one to report.
        with contextlib.suppress(OSError):
            self._fh.close()


def _shippable(built: dict) -> dict:
    """The built strategies that pickle (all the registered ones do); a strategy that does not
    (a competition class loaded from a file) is left out and built in each task from its spec."""
    from aigb.backends import require_ray

    dumps = require_ray().cloudpickle.dumps
    out = {}
    for spec, strategy in built.items():
        try:
            dumps(strategy)
        except Exception:  # noqa: BLE001 - whatever pickling raises, the spec still works
            continue
        out[spec] = strategy
    return out


def _period_units(todo: list[tuple], specs, market, population, task: str, workers: int) -> list[tuple]:
    """The campaigns still to play, as units of ``aigb.eval.batched.period_task``: the slots of one
    (seed, period) together, split into as many parts as it takes to keep ``workers`` busy."""
    by_period: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, s, p, a in todo:
        by_period.setdefault((s, p), []).append((i, a))
    parts = max(1, -(-workers // max(len(by_period), 1)))   # ceil(workers / periods)
    units = []
    for (s, p), campaigns in by_period.items():
        size = -(-len(campaigns) // parts)
        for first in range(0, len(campaigns), size):
            chunk = campaigns[first:first + size]
            units.append(([i for i, _ in chunk], specs, market, population, s, p, [a for _, a in chunk], task))
    return units


def evaluate(strategies: Sequence[str], *, periods: int | Sequence[int] = 5, slots="all", seeds: Sequence[int] = (0,),
             market: MarketConfig = MarketConfig(), population: PopulationConfig | None = None,
             workers: int = 1, out_dir=None, baseline: str | None = None, progress: bool = True,
             keep_going: bool = False, force: bool = False, backend: Backend | str = "local",
             task: str = DEFAULT_TASK) -> EvalResults:
    """Evaluate ``strategies`` (spec strings) paired on the same campaigns; see the module docstring.

    workers: local processes; backend: 'local', 'ray' or an ``aigb.backends.Backend`` (one Ray
    task per campaign; the rows are the same as a local run's).

    keep_going: play every campaign despite failing strategies (their rows carry the error);
    otherwise the first failure raises ``EvaluationStopped``. force: replace what ``out_dir`` holds.
    task: "cpa" (Target-CPA) or "max-return": what every row is scored and bounded on.
    """
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
    check_task(task)
    backend = Backend.of(backend)
    population = market_population(market) if population is None else population
    config = EvalConfig(specs, resolve_periods(periods), resolve_slots(slots, market.n_advertisers), seeds_t,
                        market, population, baseline, task)
    out = None if out_dir is None else Path(out_dir)
    results: dict[int, list[dict]] = {} if out is None else _prepare_out(out, config, force)
    # Build each once here: files a strategy derives on first use (the OnlineLP prior) are made
    # once, before workers race to make them.
    built = {spec: strategy_factory(spec)(market) for spec in specs}
    for strategy in built.values():
        check_strategy_task(strategy, task)   # a policy trained for the other task is refused before any rollout

    tasks = [(i, s, p, a) for i, (s, p, a) in enumerate((s, p, a) for s in config.seeds for p in config.periods
                                                         for a in config.slots)]
    todo = [t for t in tasks if t[0] not in results]
    units = _period_units(todo, specs, market, population, task, int(workers))
    journal = None if out is None else _Journal(out / JOURNAL_FILE, config)
    failed: list[dict] = []

    def finished(i: int, rows: list[dict]) -> None:
        results[i] = rows
        errors = [r for r in rows if r["error"] is not None]
        if errors:
            failed.append(errors[0])   # not journaled: a re-run plays the campaign again
        elif journal is not None:
            journal.add(i, rows)
        bar.update(1)

    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="evaluate", unit="campaign", disable=not progress)
    start = time.perf_counter()
    # On Ray the strategies built above travel to the tasks once, through the object store
    # (checkpoint weights, the OnlineLP prior); local workers build their own from the specs.
    shared = _shippable(built) if backend.kind == "ray" else None
    try:
        with TaskRun(period_task, units, backend=backend, workers=int(workers), shared=shared) as run:
            for unit in run:
                for i, rows in unit:
                    finished(i, rows)
                if failed and not keep_going:
                    run.cancel_pending()   # periods already running finish and are kept
    finally:
        bar.close()
        if journal is not None:
            journal.close()
    wall = time.perf_counter() - start
    if failed and not keep_going:
        row = failed[0]
        kept = f"; the rows of the {len(results) - len(failed)} campaigns completed so far are kept in {out / JOURNAL_FILE} " \
               "and a re-run resumes" if out is not None else ""
        raise EvaluationStopped(
            f"{row['error']} (seed {row['seed']}, period {row['period']}, advertiser {row['advertiser']}){kept}; "
            "--keep-going (keep_going=True) plays every campaign and reports failures as error rows")

    ordered = [results[i][k] for k in range(len(specs)) for i in range(len(tasks))]
    table = pa.Table.from_pylist(ordered, schema=RESULT_SCHEMA)
    summary = summarize(table, baseline=baseline)
    if out is not None:
        # A strategy that resolves a serving config (DiffBid's spec over its checkpoint) records it.
        serving = {spec: s.resolved_config() for spec, s in built.items() if hasattr(s, "resolved_config")}
        written = {**config.to_dict(), **({"serving": serving} if serving else {})}
        try:
            write_table_atomic(table, out / RESULTS_FILE, file_metadata("evaluation", written))
            write_traces(ordered, out)   # per-tick bid multipliers and a planner's plans, for aigb report
            with atomic_output(out / CONFIG_FILE) as tmp:
                tmp.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
        except OSError as err:   # the journal holds every campaign: a re-run writes the files without playing
            raise OutputPathError(f"{err}; the rows of all {len(tasks)} campaigns are kept in {out / JOURNAL_FILE}: "
                                  "free space and re-run the same command to write the results") from None
        (out / JOURNAL_FILE).unlink(missing_ok=True)
    return EvalResults(table, summary, config, wall, out)


# Configuration fields that decide how a campaign is played: evaluations that agree on all of them
# can be summarised together, rows pairing up by (seed, period, slot). Seeds may differ: more seeds
# are more campaigns of the same evaluation.
_CAMPAIGN_FIELDS = ("periods", "slots", "market", "population", "eval_first_period", "replay")  # replay: aigb.eval.replay


def load_results(directory) -> tuple[pa.Table, dict]:
    """(rows, configuration) of an evaluation's output directory. An interrupted evaluation (its
    journal, no results file yet) gives the rows of the campaigns it completed, and its
    configuration says so: ``partial`` = [campaigns completed, campaigns planned]."""
    directory = Path(directory)
    path, config_path = directory / RESULTS_FILE, directory / CONFIG_FILE
    journal = directory / JOURNAL_FILE
    if not config_path.is_file() and journal.is_file():   # interrupted, maybe while writing its files
        return _partial_results(journal)
    for f in (path, config_path):
        if not f.is_file():
            raise FileNotFoundError(f"{directory}: no {f.name}; is this an `aigb evaluate --out` directory?")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from None
    _check_config(config, str(config_path))
    table = read_table(path, check_version=False)  # page checksums verified: a damaged file is named
    missing = [n for n in RESULT_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing result columns {missing}")
    return table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA), config


def _check_config(config: dict, where: str) -> None:
    recorded_market_version((config.get("market") or {}).get("market_version"), where)
    config.setdefault("task", DEFAULT_TASK)   # written before tasks existed: a Target-CPA evaluation
    check_task(config["task"], f"{where}: task")


def _partial_results(journal: Path) -> tuple[pa.Table, dict]:
    """The completed campaigns of an interrupted evaluation's journal (read only: a re-run of the
    same ``aigb evaluate`` resumes it)."""
    header, done, _ = _read_journal(journal)
    if header is None or not isinstance(header.get("config"), dict):
        raise ValueError(f"{journal}: the journal's header line (its configuration) is missing or cut")
    config = dict(header["config"])
    _check_config(config, f"{journal} (header)")
    n_planned = len(config.get("seeds") or ()) * len(config.get("periods") or ()) * len(config.get("slots") or ())
    config["partial"] = [len(done), n_planned]
    rows = [{name: row.get(name) for name in RESULT_SCHEMA.names} for task in sorted(done) for row in done[task]]
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), config


def combine_results(directories: Sequence, baseline: str | None = None) -> Summary:
    """One summary of several evaluations (e.g. the rule table, a later run of learned strategies
    and a run of the same strategies on another seed), with paired differences against ``baseline``.

    Refuses evaluations of different tasks (Target-CPA and Max-Return scores measure different
    things) or market versions, evaluations that played their campaigns differently (periods, slots, market,
    population), a (strategy, seed) evaluated in two of them, and evaluations that share no campaign
    every strategy completed (ValueError: the table would be empty)."""
    if not directories:
        raise ConfigError("results: give at least one evaluation directory")
    tables, configs, first, owner = [], [], None, {}
    for d in directories:
        table, config = load_results(d)
        configs.append(config)
        if first is None:
            first = (d, config)
        if config["task"] != first[1]["task"]:
            raise ConfigError(f"task: {d} is a {config['task']} evaluation and {first[0]} a {first[1]['task']} one; "
                              "results of different tasks do not combine (their scores and bounds differ)")
        version, first_version = (c["market"].get("market_version") for c in (config, first[1]))
        if version != first_version:
            raise MarketVersionError(f"market_version: {d} was evaluated on market {version} and {first[0]} on market "
                                     f"{first_version}; results of different market versions do not combine")
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
    summary = summarize(pa.concat_tables(tables), baseline=baseline)
    if summary.campaigns == 0:   # a table of NaN over n = 0 would say nothing
        played = "; ".join(f"{d}: {', '.join(dict.fromkeys(s for s, _ in keys))} on seed(s) "
                           f"{', '.join(map(str, sorted({seed for _, seed in keys})))}"
                           for d in directories for keys in [[k for k, o in owner.items() if o == d]])
        raise ValueError(f"results: no campaign was completed by every strategy, so there is nothing to compare "
                         f"({played}); evaluate them on the same seeds (rows with errors do not count)")
    notes = tuple(f"{d}: an interrupted evaluation; its {c['partial'][0]} completed campaign(s) of {c['partial'][1]} take part"
                  for d, c in zip(directories, configs) if "partial" in c)
    return replace(summary, notes=notes)
