"""``aigb train``: fit a learned algorithm on a dataset, validating it in the market as it learns.

Validation plays the policy, wrapped as a bidding strategy, on a fixed set of campaigns: periods
of ``VALIDATION_SEED`` numbered from ``VALIDATION_FIRST_PERIOD``, disjoint both from generated
training periods (0, 1, ...) and from the evaluation periods (``EVAL_FIRST_PERIOD``), so early
stopping never looks at the data the final table is computed on. Validation scores the dataset's
task (``TrajectoryDataset.task``): a policy trained on a Max-Return dataset is selected by its
conversions.

A run directory is resumable (``aigb.algos.fit``): ``train_args.json`` records the arguments of the
call that started it and is never rewritten by a resume; the dataset's fingerprint in the
checkpoints makes a resume on other data fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from aigb.files import atomic_output, claim_dir
from aigb.score import DEFAULT_TASK
from aigb.seeding import VALIDATION_FIRST_PERIOD
from aigb.sim.population import market_population
from aigb.types import MARKET_VERSION, ConfigError, MarketConfig, check_market_version

__all__ = ["VALIDATION_SEED", "VALIDATION_FIRST_PERIOD", "ValidationSet", "train"]

VALIDATION_SEED = 7


@dataclass(frozen=True)
class ValidationSet:
    """The campaigns a policy is scored on during training."""

    periods: int = 1
    """Validation periods (each a different day of traffic)."""
    slots: tuple[int, ...] = (0, 3, 6, 9, 13, 16, 19, 22, 26, 29, 32, 35, 39, 42, 45, 47)
    """Advertiser slots the policy controls in turn (spread over categories, budgets and CPAs)."""
    market: MarketConfig = MarketConfig()
    """The market the policy is validated in."""
    task: str = DEFAULT_TASK
    """What the campaigns are scored on (``aigb.score.TASKS``); ``train`` sets the dataset's."""
    feature_set: str = "v1"
    """The states the policy reads (``aigb.features.FEATURE_SETS``); ``train`` sets the dataset's."""

    def __post_init__(self) -> None:
        if isinstance(self.periods, bool) or not isinstance(self.periods, int) or self.periods < 1:
            raise ConfigError(f"val_periods: must be an integer >= 1, got {self.periods!r}")
        bad = [a for a in self.slots if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < self.market.n_advertisers]
        if not self.slots or bad:
            raise ConfigError(f"validation slots: need advertiser indices in [0, {self.market.n_advertisers}), got {self.slots!r}")

    def __call__(self, policy) -> dict:
        from aigb.eval.batched import play_period
        from aigb.strategies.learned import LearnedStrategy

        # Each period's campaigns in one batched run (rows as single rollouts give them).
        built = {"validation": LearnedStrategy(policy, "validation", self.feature_set)}
        rows = [row for p in range(self.periods)
                for slot in play_period(("validation",), self.market, market_population(self.market), VALIDATION_SEED,
                                        VALIDATION_FIRST_PERIOD + p, self.slots, built, self.task)
                for row in slot]
        errors = [r["error"] for r in rows if r["error"]]
        if errors:
            raise RuntimeError(f"validation rollout failed: {errors[0]}")
        score = np.array([r["score"] for r in rows])
        oracle = np.array([r["oracle_score"] for r in rows])
        cpa_ok = np.array([not (r["realized_cpa"] > r["target_cpa"]) for r in rows])
        expected = np.array([r["expected_score"] for r in rows])
        # Early stopping follows the expected-conversion score: on 8-16 campaigns the realised
        # score's Bernoulli noise is larger than the differences between checkpoints.
        return {"score": float(expected.mean()), "realized_score": float(score.mean()),
                "pct_oracle": float(score.sum() / max(oracle.sum(), 1e-12)), "cpa_ok_rate": float(cpa_ok.mean())}


def _run_length(last: Path, steps: int | None) -> int | None:
    """The config's ``steps`` for a run asked for ``steps`` updates: those of a fresh run; a resumed
    run keeps the length it started with (stored in its checkpoint's config), so that resuming with
    more updates extends it at the end of its schedule rather than changing the schedule."""
    if not last.exists():
        return steps
    from aigb.algos.checkpoint import read_checkpoint

    try:
        return int(json.loads(read_checkpoint(last)["config"])["steps"])
    except (ValueError, KeyError, TypeError):
        return steps   # an unreadable checkpoint: fit reports it


def train(algo_name: str, data_dir, *, run_dir, steps: int | None = None, batch_size: int | None = None,
          seed: int = 0, overrides: dict | None = None, validation: ValidationSet | None = ValidationSet(),
          eval_every: int | None = None, patience: int | None = 4, progress: bool = True, device: str = "auto",
          force: bool = False, market_version: str = MARKET_VERSION):
    """Train ``algo_name`` on the trajectories in ``data_dir``; returns ``aigb.algos.fit.FitResult``.

    The best checkpoint by validation score is ``run_dir/best.pt``; ``run_dir/last.pt`` resumes.
    device: 'auto' | 'cpu' | 'cuda' for algorithms that train on a GPU (``to_device``: diffbid);
    the others train on the CPU, and refuse an explicit 'cuda'. force: write into a ``run_dir`` another
    command wrote (``aigb.files.claim_dir``). market_version: the market the policy is trained for: it is
    validated there and its checkpoints record it; a dataset generated on another version is refused.
    """
    from aigb.algos.fit import fit
    from aigb.algos.registry import ALGORITHMS, make_algorithm
    from aigb.data.dataset import TrajectoryDataset

    if algo_name not in ALGORITHMS:
        raise ConfigError(f"algo: unknown algorithm {algo_name!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    # Before loading the data, so a bad path fails at once; another command's directory is refused.
    run_dir = claim_dir(run_dir, "train", force=force,
                        writes=("config.json", "metrics.jsonl", "last.pt", "best.pt", "train_args.json", "tb"))
    market_version = MarketConfig(version=market_version).version   # an unknown version fails here
    dataset = TrajectoryDataset.load(data_dir)
    if dataset.market_version is not None:   # generated data: made in one market version, trained for it
        check_market_version(dataset.market_version, f"dataset {data_dir}", market_version, "training market")
    # Imported data comes from no market of ours: the policy is trained for the market it is validated in.
    dataset.market_version = market_version
    if validation is not None:
        # Select by the score the data was made for, serving the features it holds, in the market trained for.
        validation = replace(validation, task=dataset.task, feature_set=dataset.feature_version,
                             market=replace(validation.market, version=market_version))
    config_overrides = dict(overrides or {})
    length = _run_length(run_dir / "last.pt", steps)
    if length is not None and "steps" not in config_overrides:
        # The run's length is the config's: schedules that decay over ``config.steps`` (DiffBid's
        # cosine learning rate) end with the run instead of stopping part-way down. An explicit
        # ``--set steps=N`` keeps a schedule of N updates (e.g. to run only its start).
        config_overrides["steps"] = length
    algo = make_algorithm(algo_name, dataset.feature_dim, config_overrides, seed=seed)
    if hasattr(algo, "to_device"):
        algo.to_device(device)
    elif device not in ("auto", "cpu"):
        raise ConfigError(f"device: {algo_name} trains on the CPU only, got {device!r}")
    if not (run_dir / "last.pt").exists():  # a fresh run; a resume keeps the arguments that started it
        with atomic_output(run_dir / "train_args.json") as tmp:
            tmp.write_text(json.dumps({
                "algo": algo_name, "data": str(data_dir), "dataset_fingerprint": dataset.fingerprint,
                "market_version": market_version, "steps": steps,
                "batch_size": batch_size, "seed": seed, "device": device, "overrides": overrides or {},
                "validation": None if validation is None else {
                    "seed": VALIDATION_SEED, "first_period": VALIDATION_FIRST_PERIOD, "periods": validation.periods,
                    "slots": list(validation.slots), "market": validation.market.to_dict(),
                    "task": validation.task}}, indent=2))
    if eval_every is None:
        # Ten validations per run: each plays 16 full-size campaigns (~40 s on this 2-core machine).
        eval_every = max(1, (steps or algo.config.steps) // 10)
    return fit(algo, dataset, steps=steps, batch_size=batch_size, seed=seed, run_dir=run_dir,
               eval_fn=validation, eval_every=eval_every, patience=patience, progress=progress)
