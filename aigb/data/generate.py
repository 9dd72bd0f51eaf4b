"""Offline datasets: simulate periods of an exploring market and write trajectories (and logs).

Layout of a dataset directory::

    out_dir/dataset.json                          resolved config, seed, versions, periods
    out_dir/trajectories/period=<P:05d>.parquet   one row per (advertiser, tick)   (aigb.data.trajectories)
    out_dir/impressions/period=<P:05d>.parquet    one row per (tick, advertiser, pv), optional
    out_dir/stats.json                            normalisation statistics (aigb.data.dataset)

Behaviour: every advertiser of every period is a rule bidder drawn from
``aigb.sim.population.EXPLORE`` (wide rate ranges, noisy, timid and aggressive bidders), so offline
learners see good and bad decisions. The default market is ``MarketConfig(preset="random")``: the
sparse regime (AuctionNet's final round: budgets 2,000-4,850, target CPA 60-130) with budgets and
CPAs drawn per (seed, period). With the fixed "sparse" or "dense" tables, ``explore_campaigns``
(default on) likewise redraws each period's budgets and CPAs uniformly within that preset's ranges
(stream ``("dataset_campaigns", period)``), keeping the categories.

Every period file is written atomically and carries the identity of its data (config, seed,
period, feature version) in its metadata, so generation is resumable: a re-run skips periods whose
files exist with the same identity and read back intact (page checksums), regenerates damaged ones
(``GenerateReport.damaged`` says which), refuses files of another identity, and produces the same
tables as an uninterrupted run because each period depends on (seed, period) alone.

``dataset.json`` records the dataset's fingerprint (``dataset_fingerprint``): a digest of what
determines its content (configuration, seed, versions and the periods present). Training stores it
in its checkpoints and refuses to resume on data with another one.

Periods run in this process, in local worker processes (which write their own files) or as Ray
tasks (``aigb.backends``), whose tables come back to this process and are written here as they
arrive, through the same atomic writes and resume checks: the files are those of a local run.

The task (``aigb.score.TASKS``) decides what ``score_to_go`` scores: "cpa" (Target-CPA, the
default) or "max-return" (the conversions). A Max-Return dataset records ``"task"`` in its
identity (``dataset.json``'s config, every file's metadata, so its fingerprint); a Target-CPA one
records none, so datasets generated before tasks existed keep their identity and resume.

Periods from ``aigb.seeding.VALIDATION_FIRST_PERIOD`` (500,000) on are validation and evaluation
periods; generating training data there is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import aigb
from aigb.backends import Backend, TaskRun
from aigb.data.impressions import impression_batch
from aigb.data.parquet import (AtomicParquetWriter, CorruptFileError, atomic_output, file_metadata,
                               read_metadata, read_table, write_table_atomic)
from aigb.data.schema import IMPRESSION_SCHEMA, SCHEMA_VERSION
from aigb.data.trajectories import trajectory_table
from aigb.features import FEATURE_DIM, FEATURE_VERSION
from aigb.files import claim_dir
from aigb.score import DEFAULT_TASK, check_task
from aigb.seeding import VALIDATION_FIRST_PERIOD, rng
from aigb.sim.market import DENSE_RANGES, SPARSE_RANGES, campaigns_for
from aigb.sim.period import PeriodSim
from aigb.sim.population import EXPLORE, PopulationConfig
from aigb.types import DATASET_MARKET, Campaign, ConfigError, MarketConfig

__all__ = ["DEFAULT_MARKET", "DATASET_FILE", "DatasetMismatchError", "GenerateReport", "generate_dataset",
           "dataset_campaigns", "period_path", "dataset_identity", "dataset_fingerprint", "read_dataset_file",
           "identity_task"]

DEFAULT_MARKET = DATASET_MARKET
"""Training default: the sparse regime with per-period random budgets and target CPAs."""
DATASET_FILE = "dataset.json"
TRAJECTORIES, IMPRESSIONS = "trajectories", "impressions"


class DatasetMismatchError(ValueError):
    """A dataset directory holds data of another configuration, seed or feature version."""


def period_path(out_dir: str | Path, kind: str, period: int) -> Path:
    """``out_dir/<kind>/period=<P:05d>.parquet``."""
    if kind not in (TRAJECTORIES, IMPRESSIONS):
        raise ValueError(f"kind: must be {TRAJECTORIES!r} or {IMPRESSIONS!r}, got {kind!r}")
    return Path(out_dir) / kind / f"period={int(period):05d}.parquet"


def dataset_identity(market: MarketConfig, population: PopulationConfig, explore_campaigns: bool,
                     task: str = DEFAULT_TASK) -> dict[str, Any]:
    """The resolved configuration that determines a dataset's content, as plain JSON values; the
    task only when it is not the default (see the module docstring)."""
    identity = {"market": market.to_dict(), "population": population.to_dict(), "explore_campaigns": bool(explore_campaigns)}
    if check_task(task) != DEFAULT_TASK:
        identity["task"] = task
    return json.loads(json.dumps(identity))  # tuples -> lists: the form it has when read back


def identity_task(identity: dict | None) -> str:
    """The task of a dataset identity (``dataset_identity``), "cpa" where none is recorded."""
    return (identity or {}).get("task", DEFAULT_TASK)


def dataset_fingerprint(files: Iterable[tuple[int, int, Any]], feature_version: str = FEATURE_VERSION) -> str:
    """Digest of a dataset's content-determining facts: (period, seed, config) of each trajectory
    file, with the feature and schema versions. Every period is a pure function of these, so two
    directories with the same fingerprint hold the same trajectories, and adding, dropping or
    regenerating periods differently changes it. (An imported period's config holds its source
    files' fingerprints and its seed is None.)"""
    key = {"feature_version": feature_version, "schema_version": SCHEMA_VERSION,
           "files": sorted(([int(p), None if s is None else int(s), c] for p, s, c in files), key=lambda f: f[0])}
    return "sha256:" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def dataset_campaigns(market: MarketConfig, seed: int, period: int, explore: bool = True) -> tuple[Campaign, ...]:
    """The campaigns of one dataset period (see the module docstring)."""
    campaigns = campaigns_for(market, seed, period)
    if not explore or market.preset == "random":  # "random" already draws per (seed, period)
        return campaigns
    ranges = DENSE_RANGES if market.preset == "dense" else SPARSE_RANGES
    g = rng(seed, "dataset_campaigns", period)
    budgets = g.uniform(*ranges["budget"], len(campaigns))
    cpas = g.uniform(*ranges["target_cpa"], len(campaigns))
    return tuple(replace(c, budget=float(b), target_cpa=float(k)) for c, b, k in zip(campaigns, budgets, cpas))


@dataclass(frozen=True)
class GenerateReport:
    """What one ``generate_dataset`` call did."""

    out_dir: Path
    """The dataset directory."""
    periods: tuple[int, ...]
    """Every period asked for."""
    generated: tuple[int, ...]
    """Periods simulated by this call (the others were already complete)."""
    trajectory_rows: int
    """Trajectory rows written by this call."""
    impression_rows: int
    """Impression rows written by this call."""
    seconds: float
    """Wall time of the call."""
    mean_score: float
    """Mean behaviour-policy score per campaign over the generated periods (NaN if none)."""
    damaged: tuple[str, ...] = ()
    """Files found damaged and regenerated by this call, each as 'path: reason'."""

    @property
    def skipped(self) -> tuple[int, ...]:
        return tuple(p for p in self.periods if p not in set(self.generated))

    @property
    def periods_per_minute(self) -> float:
        return 60.0 * len(self.generated) / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class _PeriodTask:
    out_dir: str
    market: MarketConfig
    population: PopulationConfig
    explore_campaigns: bool
    seed: int
    period: int
    write_trajectories: bool
    write_impressions: bool
    scoring: str = DEFAULT_TASK
    """The ``aigb.score`` task ``score_to_go`` scores."""


def _metadata(task: _PeriodTask, kind: str) -> dict[bytes, bytes]:
    identity = dataset_identity(task.market, task.population, task.explore_campaigns, task.scoring)
    return file_metadata(kind, identity, task.seed,
                         period=task.period, feature_version=FEATURE_VERSION, feature_dim=FEATURE_DIM)


class _Batches:
    """Collects a period's impression batches where a Ray task hands them back instead of writing."""

    def __init__(self):
        self.batches = []

    def write_batch(self, batch) -> None:
        self.batches.append(batch)


def _simulate_period(task: _PeriodTask, collect: bool = False) -> dict[str, Any]:
    """Simulate one period; write its files (a local worker), or, with ``collect``, return them
    as ``trajectories`` (a table) and ``impressions`` (record batches) for the caller to write
    (a Ray task, whose node may not see ``out_dir``; ``_write_collected``)."""
    start = time.perf_counter()
    market, period = task.market, task.period
    campaigns = dataset_campaigns(market, task.seed, period, task.explore_campaigns)
    sim = PeriodSim(market, task.seed, period, campaigns=campaigns, population=task.population)
    alpha = np.zeros((market.n_ticks, market.n_advertisers))  # (n_ticks, n_adv)
    offsets = sim.traffic.offsets
    impression_rows = 0
    with contextlib.ExitStack() as stack:
        writer = None
        if task.write_impressions:
            writer = _Batches() if collect else stack.enter_context(AtomicParquetWriter(
                period_path(task.out_dir, IMPRESSIONS, period), IMPRESSION_SCHEMA, _metadata(task, IMPRESSIONS)))
        while not sim.done:
            record = sim.step()
            alpha[record.tick] = record.alpha
            if writer is not None:
                batch = impression_batch(record, period, campaigns, market, int(offsets[record.tick]))
                writer.write_batch(batch)
                impression_rows += batch.num_rows
    table = trajectory_table(period, campaigns, sim.history, alpha, task.scoring)
    if task.write_trajectories and not collect:
        write_table_atomic(table, period_path(task.out_dir, TRAJECTORIES, period), _metadata(task, TRAJECTORIES))
    scores = table.filter(table.column("tick").to_numpy() == 0).column("score_to_go").to_numpy()
    out = {"period": period, "trajectory_rows": table.num_rows if task.write_trajectories else 0,
           "impression_rows": impression_rows, "scores": scores, "seconds": time.perf_counter() - start}
    if collect:
        out["trajectories"] = table if task.write_trajectories else None
        out["impressions"] = writer.batches if writer is not None else None
    return out


def _collect_period(task: _PeriodTask) -> dict[str, Any]:
    """A Ray task: one period's tables, returned (``_simulate_period`` with ``collect``)."""
    return _simulate_period(task, collect=True)


def _write_collected(task: _PeriodTask, result: dict[str, Any]) -> dict[str, Any]:
    """Write the files of a collected period exactly as a local worker writes them (same
    metadata, same batches in the same order, so the same files); return the summary alone."""
    batches, table = result.pop("impressions"), result.pop("trajectories")
    if batches is not None:
        with AtomicParquetWriter(period_path(task.out_dir, IMPRESSIONS, task.period), IMPRESSION_SCHEMA,
                                 _metadata(task, IMPRESSIONS)) as writer:
            for batch in batches:
                writer.write_batch(batch)
    if table is not None:
        write_table_atomic(table, period_path(task.out_dir, TRAJECTORIES, task.period), _metadata(task, TRAJECTORIES))
    return result


def read_dataset_file(out_dir: str | Path) -> dict[str, Any] | None:
    """The decoded ``dataset.json`` of a directory, or None if there is none."""
    path = Path(out_dir) / DATASET_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DatasetMismatchError(f"{path}: not valid JSON ({err})") from None


def _differences(expected: Any, found: Any, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(found, dict):
        out = []
        for key in sorted(set(expected) | set(found)):
            out += _differences(expected.get(key), found.get(key), f"{prefix}{key}.")
        return out
    return [] if expected == found else [f"{prefix.rstrip('.')}: {found!r} here, {expected!r} asked for"]


def _check_existing(path: Path, identity: dict, seed: int, period: int, damaged: list[str]) -> bool:
    """True if ``path`` holds this period of this dataset, intact; False if absent or damaged
    (appended to ``damaged``: it is regenerated); raise on a file of another dataset."""
    if not path.exists():
        return False
    try:
        meta = read_metadata(path)
    except CorruptFileError as err:
        damaged.append(str(err).split("; delete it")[0])
        return False
    found = {"config": meta.get("config"), "seed": meta.get("seed"), "period": meta.get("period"),
             "feature_version": meta.get("feature_version"), "schema_version": meta.get("schema_version")}
    expected = {"config": identity, "seed": seed, "period": period, "feature_version": FEATURE_VERSION,
                "schema_version": SCHEMA_VERSION}
    diffs = _differences(expected, found)
    if diffs:
        raise DatasetMismatchError(
            f"{path} was generated differently: {'; '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}. "
            "Use another output directory, or delete the file to regenerate it")
    try:
        read_table(path, check_version=False)  # every page, checksums verified
    except CorruptFileError as err:
        damaged.append(str(err).split("; delete it")[0])
        return False
    return True


def _complete_periods(out_dir: Path, kind: str) -> list[int]:
    folder = out_dir / kind
    if not folder.is_dir():
        return []
    return sorted(int(p.stem.split("=", 1)[1]) for p in folder.glob("period=*.parquet"))


def _write_dataset_file(out_dir: Path, identity: dict, seed: int) -> None:
    periods = _complete_periods(out_dir, TRAJECTORIES)
    info = {
        "kind": "aigb-dataset",
        "schema_version": SCHEMA_VERSION,
        "feature_version": FEATURE_VERSION,
        "feature_dim": FEATURE_DIM,
        "aigb_version": aigb.__version__,
        "seed": seed,
        "config": identity,
        "task": identity_task(identity),
        "periods": periods,
        "impression_periods": _complete_periods(out_dir, IMPRESSIONS),
        "fingerprint": dataset_fingerprint((p, seed, identity) for p in periods),
    }
    with atomic_output(out_dir / DATASET_FILE) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


def generate_dataset(out_dir: str | Path, periods: int, seed: int, *, market: MarketConfig = DEFAULT_MARKET,
                     impressions: bool = False, workers: int = 1, first_period: int = 0, progress: bool = True,
                     population: PopulationConfig = EXPLORE, explore_campaigns: bool = True,
                     backend: Backend | str = "local", task: str = DEFAULT_TASK, force: bool = False) -> GenerateReport:
    """Simulate periods ``first_period .. first_period + periods - 1`` and write their files.

    Args:
        out_dir: dataset directory (created if needed; may hold earlier periods of the same dataset).
        periods: number of periods (>= 1).
        seed: root seed; every period depends on (seed, period) only.
        market: the market; the default is the sparse regime with random campaigns.
        impressions: also write the per-impression log (~24M rows per default period).
        workers: processes simulating periods in parallel (1 = in this process); local backend only.
        first_period: index of the first period; the periods must lie below
            ``VALIDATION_FIRST_PERIOD`` (500,000), where validation and evaluation periods start.
        progress: show a progress bar over periods.
        population: the behaviour policies' distribution (default ``EXPLORE``).
        explore_campaigns: redraw the budgets and CPAs of the fixed presets per period.
        backend: 'local', 'ray' or an ``aigb.backends.Backend``; on Ray each period is a task whose
            tables come back to this process, which writes them (``out_dir`` need not be shared).
        task: what ``score_to_go`` scores: "cpa" (Target-CPA) or "max-return" (the conversions).
    Raises:
        ConfigError: a bad argument. DatasetMismatchError: ``out_dir`` holds data of another
        config, seed or feature version. OutputPathError: ``out_dir`` cannot be written.
    """
    if isinstance(periods, bool) or int(periods) != periods or periods < 1:
        raise ConfigError(f"periods: must be an integer >= 1, got {periods!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ConfigError(f"workers: must be an integer >= 1, got {workers!r}")
    if int(first_period) != first_period or first_period < 0:
        raise ConfigError(f"first_period: must be an integer >= 0, got {first_period!r}")
    if int(first_period) + int(periods) > VALIDATION_FIRST_PERIOD:
        raise ConfigError(
            f"first_period: periods {int(first_period):,}..{int(first_period) + int(periods) - 1:,} reach "
            f"{VALIDATION_FIRST_PERIOD:,}, where validation (and from 1,000,000 evaluation) periods start; "
            f"training data must lie below {VALIDATION_FIRST_PERIOD:,} so that it never shares traffic with them")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    if not isinstance(market, MarketConfig):
        raise ConfigError(f"market: expected a MarketConfig, got {type(market).__name__}")
    backend = Backend.of(backend)
    start = time.perf_counter()
    out_dir, seed = Path(out_dir), int(seed)
    identity = dataset_identity(market, population, explore_campaigns, task)
    existing = read_dataset_file(out_dir)
    if existing is not None:
        diffs = _differences({"seed": seed, "config": identity, "feature_version": FEATURE_VERSION},
                             {k: existing.get(k) for k in ("seed", "config", "feature_version")})
        if diffs:
            raise DatasetMismatchError(
                f"{out_dir / DATASET_FILE} describes another dataset: {'; '.join(diffs[:5])}"
                f"{' ...' if len(diffs) > 5 else ''}. Use another output directory")

    claim_dir(out_dir, "generate", force=force, writes=(DATASET_FILE, TRAJECTORIES, IMPRESSIONS))
    asked = tuple(range(int(first_period), int(first_period) + int(periods)))
    tasks, damaged = [], []
    for p in asked:
        has_traj = _check_existing(period_path(out_dir, TRAJECTORIES, p), identity, seed, p, damaged)
        has_imp = impressions and _check_existing(period_path(out_dir, IMPRESSIONS, p), identity, seed, p, damaged)
        if not has_traj or (impressions and not has_imp):
            tasks.append(_PeriodTask(str(out_dir), market, population, bool(explore_campaigns), seed, p,
                                     write_trajectories=not has_traj, write_impressions=impressions and not has_imp,
                                     scoring=task))
    for kind in (TRAJECTORIES, IMPRESSIONS):
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
    # A killed run can leave hidden temporary files; those of periods about to be written are stale.
    for task in tasks:
        for kind in (TRAJECTORIES, IMPRESSIONS):
            final = period_path(out_dir, kind, task.period)
            for tmp in final.parent.glob(f".{final.name}.tmp-*"):
                tmp.unlink(missing_ok=True)
    _write_dataset_file(out_dir, identity, seed)

    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(asked), initial=len(asked) - len(tasks), desc="generate", unit="period", disable=not progress)
    by_period = {t.period: t for t in tasks}
    on_ray = backend.kind == "ray"
    try:
        # Local: the workers write their periods. Ray: each period's tables come back here and
        # are written as they arrive, so a killed run keeps every period finished so far.
        with TaskRun(_collect_period if on_ray else _simulate_period, tasks, backend=backend, workers=workers) as run:
            for result in run:
                results.append(_write_collected(by_period[result["period"]], result) if on_ray else result)
                bar.update(1)
    finally:
        bar.close()
        _write_dataset_file(out_dir, identity, seed)

    scores = [r["scores"] for r in results]
    return GenerateReport(
        out_dir=out_dir,
        periods=asked,
        generated=tuple(sorted(r["period"] for r in results)),
        trajectory_rows=sum(r["trajectory_rows"] for r in results),
        impression_rows=sum(r["impression_rows"] for r in results),
        seconds=time.perf_counter() - start,
        mean_score=float(np.concatenate(scores).mean()) if scores else float("nan"),
        damaged=tuple(damaged),
    )
