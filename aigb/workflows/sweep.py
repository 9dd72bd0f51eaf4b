"""``aigb sweep``: one ``aigb train`` per point of a grid of config overrides, validated as usual.

    aigb sweep iql --data data/v2 --grid expectile=0.7,0.8 lr=1e-4,3e-4 --out runs/iql-sweep

The grid is the product of the keys' values, in the order given; each point trains in its own run
directory ``OUT/NN_key=value_...`` with ``aigb.workflows.training.train`` (validation, early stopping on
the validation score, ``best.pt``, resume from ``last.pt``). Every point is checked against the
algorithm's config before anything trains, so a key the config does not have, or a value it
refuses, fails at once, naming the key.

Points run one after the other here, in local worker processes (``workers``), or as Ray tasks
(``aigb.backends``); a point whose Ray worker dies runs again and resumes from its ``last.pt``, so
the data directory and ``OUT`` must be on a file system every node sees. As points finish,
``OUT/sweep.txt`` (the table printed) and ``OUT/sweep.json`` are rewritten atomically: best
validation score first, and the best point's checkpoint named.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aigb.backends import Backend, TaskRun
from aigb.data.parquet import atomic_output
from aigb.workflows.training import ValidationSet
from aigb.files import claim_dir
from aigb.types import MARKET_VERSION, ConfigError

__all__ = ["SWEEP_TABLE", "SWEEP_JSON", "SweepPoint", "SweepResult", "parse_grid", "grid_points", "sweep", "format_sweep"]

SWEEP_TABLE, SWEEP_JSON = "sweep.txt", "sweep.json"


@dataclass(frozen=True)
class SweepPoint:
    """One training run of the sweep."""

    name: str
    """Run directory name under the sweep's output: its index and overrides."""
    overrides: dict
    """The grid's values at this point (text, parsed by the algorithm's config)."""


@dataclass(frozen=True)
class SweepResult:
    """What ``sweep`` did: one entry per point, best validation score first."""

    rows: tuple[dict, ...]
    """Per point: name, overrides, run_dir, best_score, best_step, steps_done, stopped_early, seconds."""
    best: dict | None
    """The row with the best validation score (None if no point validated)."""
    out_dir: Path
    seconds: float


def _split_values(text: str) -> list[str]:
    """``"1e-4,3e-4"`` -> two values; commas inside brackets stay (``"[64,64],[256,256]"``)."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return values


def parse_grid(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``["lr=1e-4,3e-4", "expectile=0.8"]`` -> ``{"lr": ("1e-4", "3e-4"), "expectile": ("0.8",)}``."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid: expected KEY=V1,V2,..., got {item!r}")
        values = _split_values(text)
        if any(not v for v in values):
            raise ConfigError(f"--grid: {key}: empty value in {item!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid: {key}: a value is given twice in {item!r}")
        if key in grid:
            raise ConfigError(f"--grid: {key} is given twice")
        grid[key] = tuple(values)
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,...")
    return grid


def _dir_name(index: int, overrides: dict) -> str:
    text = "_".join(f"{k}={v}" for k, v in overrides.items())
    return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9._=+-]+", "-", text)


def grid_points(algo: str, grid: dict[str, tuple[str, ...]], fixed: dict | None = None) -> list[SweepPoint]:
    """The grid's points, each checked against ``algo``'s config (with the ``fixed`` overrides);
    raises ``ConfigError`` naming the first key the config does not have or refuses."""
    from aigb.algos.registry import ALGORITHMS, make_config

    if algo not in ALGORITHMS:
        raise ConfigError(f"algo: unknown algorithm {algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    fixed = dict(fixed or {})
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ConfigError(f"--grid: {both[0]} is also given with --set; give it in one place")
    points = []
    for index, values in enumerate(itertools.product(*grid.values())):
        overrides = dict(zip(grid, values))
        try:
            make_config(algo, {**fixed, **overrides})
        except ConfigError as err:
            raise ConfigError(f"--grid: {algo}: {err}") from None
        points.append(SweepPoint(_dir_name(index, overrides), overrides))
    return points


@dataclass(frozen=True)
class _PointTask:
    algo: str
    data_dir: str
    run_dir: str
    point: SweepPoint
    fixed: dict
    steps: int | None
    batch_size: int | None
    seed: int
    validation: ValidationSet
    eval_every: int | None
    patience: int | None
    device: str
    one_thread: bool
    market_version: str = MARKET_VERSION


def _train_point(task: _PointTask) -> dict:
    """Train one point (in this process, a worker process or a Ray task)."""
    from aigb.workflows.training import train

    if task.one_thread:   # workers side by side share the cores; one torch thread each
        import torch

        torch.set_num_threads(1)
    start = time.perf_counter()
    result = train(task.algo, task.data_dir, run_dir=task.run_dir, steps=task.steps, batch_size=task.batch_size,
                   seed=task.seed, overrides={**task.fixed, **task.point.overrides}, validation=task.validation,
                   eval_every=task.eval_every, patience=task.patience, progress=False, device=task.device,
                   market_version=task.market_version)
    return {"name": task.point.name, "overrides": task.point.overrides, "run_dir": task.run_dir,
            "best_score": result.best_score, "best_step": result.best_step, "steps_done": result.steps_done,
            "stopped_early": result.stopped_early, "seconds": time.perf_counter() - start}


def _ranked(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["best_score"] is None, -(r["best_score"] or 0.0), r["name"]))


def format_sweep(algo: str, rows: list[dict], total: int) -> str:
    """The table: one line per finished point, best validation score first, the best checkpoint named."""
    keys = list(rows[0]["overrides"]) if rows else []
    head = ["point"] + keys + ["best score", "at step", "updates", "stopped"]
    lines = [[r["name"].partition("_")[0]] + [str(r["overrides"][k]) for k in keys]
             + ["n/a" if r["best_score"] is None else f"{r['best_score']:.3f}", str(r["best_step"]),
                f"{r['steps_done']:,}", "early" if r["stopped_early"] else "no"] for r in _ranked(rows)]
    widths = [max(len(c) for c in col) for col in zip(head, *lines)]
    out = [f"{algo} sweep: {len(rows)} of {total} point(s) done; validation expected score per campaign, best first"]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in [head, *lines]]
    best = next((r for r in _ranked(rows) if r["best_score"] is not None), None)
    if best is not None:
        out.append(f"best: point {best['name'].partition('_')[0]} "
                   f"({', '.join(f'{k}={v}' for k, v in best['overrides'].items())}) -> {Path(best['run_dir']) / 'best.pt'}")
    return "\n".join(out)


def _write_tables(out: Path, algo: str, rows: list[dict], total: int) -> None:
    with atomic_output(out / SWEEP_TABLE) as tmp:
        tmp.write_text(format_sweep(algo, rows, total) + "\n")
    ranked = _ranked(rows)
    best = next((r for r in ranked if r["best_score"] is not None), None)
    with atomic_output(out / SWEEP_JSON) as tmp:
        tmp.write_text(json.dumps({"algo": algo, "points": total, "done": len(rows), "rows": ranked,
                                   "best_checkpoint": None if best is None else str(Path(best["run_dir"]) / "best.pt")},
                                  indent=2) + "\n")


def sweep(algo: str, data_dir, grid: dict[str, tuple[str, ...]], out_dir, *, overrides: dict | None = None,
          steps: int | None = None, batch_size: int | None = None, seed: int = 0,
          validation: ValidationSet = ValidationSet(), eval_every: int | None = None, patience: int | None = 4,
          device: str = "auto", workers: int = 1, backend: Backend | str = "local", progress: bool = True,
          say=print, force: bool = False, market_version: str = MARKET_VERSION) -> SweepResult:
    """Train ``algo`` at every point of ``grid`` (see the module docstring); re-running resumes.
    market_version: the market every run is trained for (``aigb.workflows.training.train``)."""
    from tqdm.auto import tqdm

    backend = Backend.of(backend)
    if int(workers) < 1:
        raise ConfigError(f"workers: must be >= 1, got {workers}")
    points = grid_points(algo, grid, overrides)   # every point checked before anything trains
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"--data: no dataset directory at {data_dir}")
    out = claim_dir(out_dir, "sweep", force=force, writes=(SWEEP_TABLE, SWEEP_JSON, *(p.name for p in points)))
    parallel = backend.kind == "ray" or int(workers) > 1
    tasks = [_PointTask(algo, str(data_dir), str(out / p.name), p, dict(overrides or {}), steps, batch_size, seed,
                        validation, eval_every, patience, device, one_thread=parallel, market_version=market_version)
             for p in points]
    rows: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=f"sweep {algo}", unit="run", disable=not progress)
    try:
        with TaskRun(_train_point, tasks, backend=backend, workers=workers) as run:
            for row in run:
                rows.append(row)
                _write_tables(out, algo, rows, len(tasks))   # as points finish: a killed sweep keeps its table
                bar.update(1)
    finally:
        bar.close()
    ranked = _ranked(rows)
    best = next((r for r in ranked if r["best_score"] is not None), None)
    return SweepResult(tuple(ranked), best, out, time.perf_counter() - start)
