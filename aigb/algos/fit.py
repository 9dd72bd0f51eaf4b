"""The one training loop every learned algorithm runs through.

    result = fit(make_algorithm("iql", data.feature_dim), data, seed=0, run_dir="runs/iql",
                 eval_fn=lambda policy: {"score": evaluate(policy)})

A run directory is self-describing and resumable:

    config.json    the resolved algorithm config and loop settings
    metrics.jsonl  one JSON object per line: {"step", "kind": "train", <mean losses>} every
                   log_every updates and {"step", "kind": "eval", "score", ...} every eval_every
    last.pt        weights, optimisers, noise generator, the loop's step, batch rng and best score
    best.pt        the weights with the best eval score (the final weights when there is no eval_fn)
    tb/            TensorBoard scalars, when ``torch.utils.tensorboard`` imports

A run is a pure function of (algorithm config, dataset, seed): ``prepare`` draws the initial
weights from the seed and batches come from the named stream ``rng(seed, "fit/batches")``.
Re-running with ``resume=True`` continues from last.pt and ends with the same weights an
uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from aigb.algos.base import Policy, TorchAlgorithm, TrajectoryDataset
from aigb.algos.checkpoint import json_default, one_line, read_checkpoint, save_checkpoint, stored_config
from aigb.files import atomic_output
from aigb.seeding import rng as named_rng
from aigb.types import MARKET_VERSION, check_market_version

__all__ = ["fit", "FitResult"]


@dataclass(frozen=True)
class FitResult:
    """What a call to ``fit`` did."""

    run_dir: Path
    """The run directory."""
    steps_done: int
    """Updates applied in total (including those of earlier, resumed calls)."""
    best_score: float | None
    """Best eval score so far; None without eval_fn."""
    best_step: int | None
    """Update count at the best eval score."""
    stopped_early: bool
    """True when patience ran out."""
    resumed_from: int
    """Step this call started at (0 for a fresh run)."""


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    return int(value)


def _write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= last_step]
    with atomic_output(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def _tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:   # tensorboard is optional; metrics.jsonl always has everything
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _check_resumable(payload: dict, algo: TorchAlgorithm, dataset, fingerprint, seed: int, batch_size: int, path: Path) -> dict:
    hint = "use a fresh run_dir or resume=False"
    if payload["algo"] != algo.name:
        raise ValueError(f"{path}: holds a {payload['algo']!r} run, not {algo.name!r}; {hint}")
    if stored_config(payload) != algo.config:
        raise ValueError(f"{path}: was trained with config {payload['config']}, not {json.dumps(algo.config_dict(), sort_keys=True)}; {hint}")
    check_market_version(payload.get("market_version"), str(path), algo.market_version or MARKET_VERSION, "dataset")
    if payload["feature_version"] != dataset.feature_version:
        raise ValueError(f"{path}: feature version {payload['feature_version']!r} != dataset's {dataset.feature_version!r}; {hint}")
    stored_fp = json.loads(payload["dataset_fingerprint"]) if payload.get("dataset_fingerprint") else None
    current_fp = None if fingerprint is None else json.loads(json.dumps(fingerprint, default=json_default))
    if stored_fp != current_fp:
        if stored_fp is None:
            raise ValueError(f"{path}: records no dataset fingerprint, so the data it was trained on cannot be "
                             f"checked against this dataset ({current_fp}); {hint}")
        raise ValueError(f"{path}: was trained on dataset {stored_fp}, not {current_fp}; {hint}")
    if not payload.get("fit_state"):
        raise ValueError(f"{path}: has no training-loop state to resume from; {hint}")
    state = json.loads(payload["fit_state"])
    for key, value in (("seed", seed), ("batch_size", batch_size)):
        if state[key] != value:
            raise ValueError(f"{path}: was trained with {key}={state[key]}, not {value}; {hint}")
    return state


def fit(
    algo: TorchAlgorithm,
    dataset: TrajectoryDataset,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    run_dir: str | os.PathLike,
    eval_fn: Callable[[Policy], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    patience: int | None = 5,
    log_every: int = 100,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
    dataset_fingerprint: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``algo`` on ``dataset``; see the module docstring for the run directory.

    steps, batch_size: None takes the algorithm config's (benchmarked) defaults.
    eval_fn(policy) -> dict with a finite "score" (higher is better), called every ``eval_every``
    updates (default steps // 20) and after the last; training stops early after ``patience``
    evaluations without improvement (None: never). ``checkpoint_every`` (default steps // 20)
    sets how often last.pt is rewritten besides every evaluation and the end.
    dataset_fingerprint: JSON-able description of the training data stored in the checkpoints
    (default: the dataset's ``fingerprint`` attribute, if any); resuming on other data is refused.
    """
    steps = _positive_int(algo.config.steps if steps is None else steps, "steps")
    batch_size = _positive_int(algo.config.batch_size if batch_size is None else batch_size, "batch_size")
    log_every = _positive_int(log_every, "log_every")
    eval_every = _positive_int(max(1, steps // 20) if eval_every is None else eval_every, "eval_every")
    checkpoint_every = _positive_int(max(1, steps // 20) if checkpoint_every is None else checkpoint_every, "checkpoint_every")
    if patience is not None:
        patience = _positive_int(patience, "patience")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path, metrics_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "metrics.jsonl"
    fingerprint = dataset_fingerprint if dataset_fingerprint is not None else getattr(dataset, "fingerprint", None)
    if isinstance(fingerprint, Mapping):
        fingerprint = dict(fingerprint)
    rng = named_rng(seed, "fit/batches")

    algo.market_version = getattr(dataset, "market_version", None) or algo.market_version   # as prepare() sets it
    if resume and last_path.exists():
        payload = read_checkpoint(last_path)
        state = _check_resumable(payload, algo, dataset, fingerprint, seed, batch_size, last_path)
        try:
            algo.load_state_dict(payload["algorithm"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ValueError(f"{last_path}: its weights do not fit this {algo.name} run ({one_line(err)}); "
                             "use a fresh run_dir or resume=False") from None
        rng.bit_generator.state = state["rng_state"]
        step, best_score, best_step = int(state["step"]), state["best_score"], state["best_step"]
        bad_evals, stopped_early = int(state["bad_evals"]), bool(state["stopped_early"])
        # The loss window open at the checkpoint: the first record after a resume averages the
        # same updates an uninterrupted run's record does.
        sums, n_summed = dict(state.get("log_sums", {})), int(state.get("log_count", 0))
        window_seconds = float(state.get("log_seconds", 0.0))
        _truncate_metrics(metrics_path, step)
    else:
        algo.prepare(dataset, seed)
        step, best_score, best_step, bad_evals, stopped_early = 0, None, None, 0, False
        sums, n_summed, window_seconds = {}, 0, 0.0
        for stale in (last_path, best_path, metrics_path):
            stale.unlink(missing_ok=True)
    resumed_from = step

    _write_json_atomic(run_dir / "config.json", {
        "algo": algo.name,
        "config": algo.config_dict(),
        "feature_dim": algo.feature_dim,
        "feature_version": algo.feature_version,
        "action_bounds": algo.bounds.to_dict(),
        "dataset_fingerprint": fingerprint,
        "fit": {"steps": steps, "batch_size": batch_size, "seed": seed, "eval_every": eval_every if eval_fn else None,
                "patience": patience if eval_fn else None, "log_every": log_every, "checkpoint_every": checkpoint_every},
        "torch_version": torch.__version__,
    })

    def fit_state() -> dict:
        return {"step": step, "seed": seed, "batch_size": batch_size, "rng_state": rng.bit_generator.state,
                "best_score": best_score, "best_step": best_step, "bad_evals": bad_evals, "stopped_early": stopped_early,
                "log_sums": sums, "log_count": n_summed, "log_seconds": time.perf_counter() - window_start}

    def save_last() -> None:
        save_checkpoint(last_path, algo, dataset_fingerprint=fingerprint, fit_state=fit_state())

    writer = _tensorboard(run_dir, tensorboard) if step < steps and not stopped_early else None
    bar = tqdm(total=steps, initial=step, desc=f"fit {algo.name}", disable=not progress, dynamic_ncols=True)
    window_start = time.perf_counter() - window_seconds
    try:
        with open(metrics_path, "a", buffering=1) as metrics:
            def record(entry: dict) -> None:
                metrics.write(json.dumps(entry, default=json_default) + "\n")
                if writer is not None:
                    for key, value in entry.items():
                        if key not in ("step", "kind") and isinstance(value, (int, float)):
                            writer.add_scalar(f"{entry['kind']}/{key}", value, entry["step"])

            while step < steps and not stopped_early:
                losses = algo.update(algo.sample_batch(dataset, batch_size, rng))
                step += 1
                bar.update(1)
                for key, value in losses.items():
                    if not math.isfinite(value):
                        raise FloatingPointError(f"{algo.name}: loss {key!r} is {value} at step {step}; training diverged (last good state: {last_path})")
                    sums[key] = sums.get(key, 0.0) + value
                n_summed += 1

                if step % log_every == 0 or step == steps:
                    elapsed = time.perf_counter() - window_start
                    means = {k: v / n_summed for k, v in sums.items()}
                    record({"step": step, "kind": "train", **means, "ms_per_step": 1000.0 * elapsed / n_summed})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                    sums, n_summed, window_start = {}, 0, time.perf_counter()

                evaluated = False
                if eval_fn is not None and (step % eval_every == 0 or step == steps):
                    result = dict(eval_fn(algo.policy()))
                    score = result.get("score")
                    if not isinstance(score, (int, float, np.number)) or not math.isfinite(float(score)):
                        raise ValueError(f"eval_fn: must return a dict with a finite 'score', got {result!r}")
                    score = float(score)
                    if best_score is None or score > best_score:
                        best_score, best_step, bad_evals = score, step, 0
                        save_checkpoint(best_path, algo, dataset_fingerprint=fingerprint, with_optimizers=False)
                    else:
                        bad_evals += 1
                    stopped_early = patience is not None and bad_evals >= patience
                    record({"step": step, "kind": "eval", **result, "score": score, "best_score": best_score,
                            "best_step": best_step, "stopped_early": stopped_early})
                    evaluated = True
                if evaluated or step % checkpoint_every == 0 or step == steps:
                    save_last()
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    if eval_fn is None and (step > resumed_from or not best_path.exists()):
        save_checkpoint(best_path, algo, dataset_fingerprint=fingerprint, with_optimizers=False)
    return FitResult(run_dir=run_dir, steps_done=step, best_score=best_score, best_step=best_step,
                     stopped_early=stopped_early, resumed_from=resumed_from)
