"""Reading a generated dataset: whole trajectories in numpy, batch sampling, normalisation, info.

``TrajectoryDataset`` implements the protocol the learning code samples from
(``aigb.algos.base.TrajectoryDataset``): ``feature_dim``, ``feature_version``, ``state_mean``,
``state_std``, ``reward_scale``, ``return_quantiles``, ``sample_transitions`` and
``sample_windows``. Everything lives in (n_traj, n_ticks, ...) arrays, one trajectory per
(period, advertiser), so a transition is an index pair (trajectory, tick) and a window a slice.

Normalisation statistics are computed once over every trajectory of the directory and stored in
``out_dir/stats.json`` with a fingerprint of the files they came from; they are recomputed when the
file is missing or the data changed. Train and validation splits share them, so both are
normalised the same way (the validation periods contribute to a mean and a standard deviation only).

Imported AuctionNet data (``aigb.data.imported``) loads the same way: trajectories built from
impression logs are v1 files like generated ones (no market version to check), and imported rlData
is read as it is under the feature set ``auctionnet16`` (``aigb.data.auctionnet.rldata_arrays``);
``feature_version`` says which.

``TrajectoryDataset.fingerprint`` identifies the loaded data (``aigb.data.generate.dataset_fingerprint``
over the files' recorded config, seed and period); ``aigb.algos.fit`` stores it in checkpoints and
refuses to resume a run on other data. Files are read with their page checksums verified: a damaged
file raises ``CorruptFileError`` naming it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aigb.data.generate import DATASET_FILE, IMPRESSIONS, TRAJECTORIES, dataset_fingerprint, identity_task, read_dataset_file
from aigb.data.parquet import CorruptFileError, atomic_output, check_schema_version, num_rows, read_table
from aigb.data.schema import SCHEMA_VERSION
from aigb.features import AUCTIONNET_FEATURE_VERSION, FEATURE_DIM, FEATURE_VERSION, check_feature_set, check_feature_version
from aigb.score import DEFAULT_TASK, realized_cpa
from aigb.seeding import rng as named_rng
from aigb.types import MarketVersionError, recorded_market_version

__all__ = ["TrajectoryDataset", "STATS_FILE", "RETURN_QUANTILE_LEVELS", "trajectory_files", "dataset_info",
           "format_dataset_info"]

STATS_FILE = "stats.json"
RETURN_QUANTILE_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
"""Levels of the stored quantiles of campaign scores (score_to_go at tick 0)."""

# Columns kept per tick; the campaign columns are kept per trajectory.
_TICK_COLUMNS = ("alpha", "action", "reward_sparse", "reward_dense", "score_to_go", "cost", "conversions",
                 "remaining_budget", "n_pv")
_CAMPAIGN_COLUMNS = ("period", "advertiser", "category", "budget", "target_cpa")


def trajectory_files(directory: str | Path) -> list[tuple[int, Path]]:
    """(period, path) of every trajectory file of a dataset directory, by period."""
    folder = Path(directory) / TRAJECTORIES
    if not folder.is_dir():
        raise FileNotFoundError(f"{directory}: no {TRAJECTORIES}/ folder; is this an aigb dataset directory?")
    out = []
    for path in folder.glob("period=*.parquet"):
        try:
            out.append((int(path.stem.split("=", 1)[1]), path))
        except ValueError:
            raise ValueError(f"{path}: file name must be period=<integer>.parquet") from None
    return sorted(out)


def _vectors(column: pa.ChunkedArray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Fixed-size list column -> (n, k) float32; null rows take ``fallback``'s rows."""
    arr = column.combine_chunks()
    k = arr.type.list_size
    values = arr.values.slice(arr.offset * k, len(arr) * k).to_numpy(zero_copy_only=False)
    out = np.asarray(values, dtype=np.float32).reshape(len(arr), k).copy()
    if arr.null_count:
        if fallback is None:
            raise ValueError(f"column {column!r} has missing vectors")
        null = arr.is_null().to_numpy(zero_copy_only=False)
        out[null] = fallback[null]
    return out


def _read_period(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The period's arrays and the file's metadata."""
    from aigb.data.imported import is_imported

    meta = check_schema_version(path, kind=TRAJECTORIES)
    check_feature_version(meta.get("feature_version", "?"), str(path))
    if not is_imported(meta.get("config")):  # imported data comes from no market of ours
        meta["market_version"] = recorded_market_version(((meta.get("config") or {}).get("market") or {}).get("market_version"), str(path))
    table = read_table(path, check_version=False)
    k = table.schema.field("state").type.list_size
    if k != FEATURE_DIM:
        raise ValueError(f"{path}: states have {k} features, feature version {FEATURE_VERSION} has {FEATURE_DIM}")
    order = np.lexsort((table.column("tick").to_numpy(), table.column("advertiser").to_numpy()))
    table = table.take(pa.array(order))
    adv = table.column("advertiser").to_numpy().astype(np.int64)
    tick = table.column("tick").to_numpy().astype(np.int64)
    n_adv = np.unique(adv).size
    if n_adv == 0 or table.num_rows % n_adv:
        raise ValueError(f"{path}: {table.num_rows} rows do not split into whole trajectories of {n_adv} advertisers")
    n_ticks = table.num_rows // n_adv
    if not np.array_equal(tick, np.tile(np.arange(n_ticks), n_adv)):
        raise ValueError(f"{path}: every advertiser needs exactly one row per tick 0..{n_ticks - 1}")
    state = _vectors(table.column("state"))
    next_state = _vectors(table.column("next_state"), fallback=state)
    state = state.reshape(n_adv, n_ticks, -1)
    next_state = next_state.reshape(n_adv, n_ticks, -1)
    # Transitions are sampled from the states alone; next_state must be the following state.
    if not np.array_equal(next_state[:, :-1], state[:, 1:]):
        raise ValueError(f"{path}: next_state differs from the next tick's state")
    out = {"state": state, "terminal": next_state[:, -1]}
    for name in _TICK_COLUMNS:
        out[name] = table.column(name).to_numpy().reshape(n_adv, n_ticks)
    for name in _CAMPAIGN_COLUMNS:
        out[name] = table.column(name).to_numpy().reshape(n_adv, n_ticks)[:, 0]
    return out, meta


def _no_trajectories(directory: Path):
    """Raise the error for a folder without trajectory files, saying what to do with imported data."""
    from aigb.data.imported import imported_sources

    fmt, _ = imported_sources(directory)
    if fmt is not None:
        raise FileNotFoundError(f"{directory}: holds imported AuctionNet data ({fmt}) but no {DATASET_FILE} built from it; "
                                "run `aigb import-csv` on its CSV files again (it builds the dataset)")
    raise FileNotFoundError(f"{directory}: no trajectory files in {TRAJECTORIES}/")


def _read_rldata(directory: Path, info: Mapping[str, Any]):
    """(files, per-period arrays, period -> (seed, identity)) of an imported rlData dataset."""
    from aigb.data.auctionnet import rldata_arrays
    from aigb.data.imported import RLDATA_FORMAT, imported_sources, rldata_files

    fmt, sources = imported_sources(directory)
    if fmt != RLDATA_FORMAT:
        raise ValueError(f"{directory / DATASET_FILE}: field format: says rlData, the folder holds {fmt or 'none'}")
    paths = rldata_files(directory)
    parts, periods = [], []
    task = info.get("task", DEFAULT_TASK)
    for path in paths:
        check_schema_version(path, kind="auctionnet_trajectories")
        for period, arrays in rldata_arrays(read_table(path, check_version=False), str(path), task):
            parts.append(arrays)
            periods.append(period)
    if len(set(periods)) != len(periods):
        raise ValueError(f"{directory}: field deliveryPeriodIndex: a period appears in several rlData files")
    if not parts:
        raise FileNotFoundError(f"{directory}: no rlData rows in {TRAJECTORIES}/")
    identity = {"imported": True, "format": RLDATA_FORMAT, "n_ticks": int(parts[0]["state"].shape[1])}
    if task != DEFAULT_TASK:
        identity["task"] = task
    out_sources = {p: (None, {**identity, "sources": sorted(sources[p], key=lambda s: s["file"])}) for p in periods}
    return [(0, path) for path in paths], parts, out_sources


def _fingerprint(files: Sequence[tuple[int, Path]]) -> list[list]:
    return [[period, path.stat().st_size, path.stat().st_mtime_ns] for period, path in files]


class TrajectoryDataset:
    """Whole-period trajectories of a dataset, sampled as numpy batches.

    Arrays (N trajectories, T ticks, D features): ``obs`` (N, T, D) float32 states,
    ``terminal`` (N, D) the state after the last tick, per-tick (N, T) columns and per-campaign
    (N,) columns. Build with ``load(dir)``; ``split`` divides it by period.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], stats: Mapping[str, Any], directory: Path | None = None,
                 sources: Mapping[int, tuple[int, Any]] | None = None, feature_version: str = FEATURE_VERSION,
                 market_version: str | None = None):
        self.obs = np.ascontiguousarray(arrays["state"], dtype=np.float32)        # (N, T, D)
        self.terminal = np.ascontiguousarray(arrays["terminal"], dtype=np.float32)  # (N, D)
        self.columns = {k: np.asarray(arrays[k]) for k in _TICK_COLUMNS + _CAMPAIGN_COLUMNS}
        if self.obs.ndim != 3 or self.obs.shape[0] == 0:
            raise ValueError(f"dataset: no trajectories (obs shape {self.obs.shape})")
        self.directory = directory
        self._sources = dict(sources) if sources is not None else None  # period -> (seed, config) of its file
        self.feature_version = check_feature_set(feature_version, "feature_version")
        # The market version the data was generated on (None: imported, from no market of ours);
        # ``aigb train`` refuses to train for another version.
        self.market_version = market_version
        self.feature_dim = int(self.obs.shape[2])
        self.state_mean = np.asarray(stats["state_mean"], dtype=np.float32)  # (D,)
        self.state_std = np.asarray(stats["state_std"], dtype=np.float32)    # (D,)
        self.reward_scale = float(stats["reward_scale"])
        self.return_quantiles = {float(q): float(v) for q, v in stats["return_quantiles"].items()}
        if self.state_mean.shape != (self.feature_dim,) or self.state_std.shape != (self.feature_dim,):
            raise ValueError(f"stats: state_mean/state_std must have shape ({self.feature_dim},)")
        self._stats = dict(stats)
        stg = np.asarray(self.columns["score_to_go"], dtype=np.float64)  # (N, T)
        after = np.concatenate([stg[:, 1:], np.zeros((stg.shape[0], 1))], axis=1)
        self._penalised_reward = (stg - after).astype(np.float32)  # (N, T); sums to the campaign score

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | Path, periods: Sequence[int] | None = None) -> TrajectoryDataset:
        """Load the trajectory files of ``directory`` (all, or only ``periods``).

        Raises ``FeatureVersionError`` for data built with another feature version and
        ``SchemaVersionError`` for files of another schema version.
        """
        directory = Path(directory)
        info = read_dataset_file(directory)
        feature_version = FEATURE_VERSION
        market_version = None
        if info is not None:
            if info.get("imported"):
                feature_version = check_feature_set(str(info.get("feature_version", "?")), str(directory / DATASET_FILE))
            else:
                check_feature_version(str(info.get("feature_version", "?")), str(directory / DATASET_FILE))
                market_version = recorded_market_version(((info.get("config") or {}).get("market") or {}).get("market_version"),
                                                         str(directory / DATASET_FILE))
        if feature_version == AUCTIONNET_FEATURE_VERSION:
            files, parts, sources = _read_rldata(directory, info)
        else:
            files = trajectory_files(directory)
            if not files:
                _no_trajectories(directory)
            read = [_read_period(path) for _, path in files]
            parts = [arrays for arrays, _ in read]
            sources = {int(period): (meta.get("seed"), meta.get("config")) for (period, _), (_, meta) in zip(files, read)}
            versions = {meta["market_version"] for _, meta in read if "market_version" in meta}
            if market_version is not None:
                versions.add(market_version)
            if len(versions) > 1:
                raise MarketVersionError(f"{directory}: holds data of market versions {', '.join(sorted(versions))}; "
                                         "a dataset holds one market version")
            market_version = versions.pop() if versions else market_version
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        n_ticks = {p["state"].shape[1] for p in parts}
        if len(n_ticks) > 1:
            raise ValueError(f"{directory}: periods have different tick counts {sorted(n_ticks)}")
        stats = cls._stored_stats(directory, files, feature_version)
        if stats is None:
            stats = compute_stats(arrays["state"], arrays["score_to_go"][:, 0])
            stats = {"feature_version": feature_version, "schema_version": SCHEMA_VERSION,
                     "files": _fingerprint(files), **stats}
            try:
                with atomic_output(directory / STATS_FILE) as tmp:
                    tmp.write_text(json.dumps(stats, indent=1) + "\n")
            except OSError as err:
                warnings.warn(f"{directory / STATS_FILE}: cannot store normalisation statistics ({err}); using them unsaved")
        dataset = cls(arrays, stats, directory, sources, feature_version, market_version)
        dataset.task  # noqa: B018 - files of two tasks fail here, at load
        if periods is not None:
            dataset = dataset.select_periods(periods)
        return dataset

    @staticmethod
    def _stored_stats(directory: Path, files, feature_version: str = FEATURE_VERSION) -> dict | None:
        path = directory / STATS_FILE
        if not path.exists():
            return None
        try:
            stats = json.loads(path.read_text())
        except ValueError:
            return None  # a damaged file is recomputed
        same = (stats.get("feature_version") == feature_version and stats.get("schema_version") == SCHEMA_VERSION
                and stats.get("files") == _fingerprint(files))
        return stats if same else None

    def select_periods(self, periods: Sequence[int]) -> TrajectoryDataset:
        """The trajectories of ``periods`` only, with this dataset's normalisation statistics."""
        wanted = np.asarray(sorted({int(p) for p in periods}), dtype=np.int64)
        have = self.columns["period"].astype(np.int64)
        missing = np.setdiff1d(wanted, have)
        if missing.size:
            raise ValueError(f"periods: {missing.tolist()[:10]} not in the dataset (it holds {np.unique(have).size} periods)")
        keep = np.isin(have, wanted)
        arrays = {"state": self.obs[keep], "terminal": self.terminal[keep],
                  **{k: v[keep] for k, v in self.columns.items()}}
        sources = None if self._sources is None else {p: self._sources[p] for p in wanted.tolist()}
        return TrajectoryDataset(arrays, self._stats, self.directory, sources, self.feature_version, self.market_version)

    def split(self, validation_fraction: float = 0.1, seed: int = 0) -> tuple[TrajectoryDataset, TrajectoryDataset]:
        """(train, validation) by whole periods, the validation periods drawn with stream
        ``("dataset_split",)`` of ``seed``; at least one period on each side."""
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: must lie in (0, 1), got {validation_fraction}")
        periods = np.unique(self.columns["period"])
        if periods.size < 2:
            raise ValueError(f"split: needs at least 2 periods, the dataset holds {periods.size}")
        n_val = min(max(1, int(round(validation_fraction * periods.size))), periods.size - 1)
        val = named_rng(seed, "dataset_split").permutation(periods)[:n_val]
        return self.select_periods(np.setdiff1d(periods, val)), self.select_periods(val)

    # ---- the sampling protocol ------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        """``dataset_fingerprint`` of the periods held (None for arrays not loaded from files)."""
        if self._sources is None:
            return None
        return dataset_fingerprint(((p, seed, config) for p, (seed, config) in self._sources.items()), self.feature_version)

    @property
    def task(self) -> str:
        """What ``score_to_go`` scores (``aigb.score.TASKS``), from the files' recorded identity:
        "cpa" (Target-CPA) unless they were generated with ``task="max-return"``; arrays not loaded
        from files are Target-CPA ones."""
        tasks = {identity_task(config) for _, config in (self._sources or {}).values()}
        if len(tasks) > 1:
            raise ValueError(f"{self.directory}: trajectory files of different tasks {sorted(tasks)}; "
                             "a dataset holds one task")
        return tasks.pop() if tasks else DEFAULT_TASK

    @property
    def n_trajectories(self) -> int:
        return int(self.obs.shape[0])

    @property
    def n_ticks(self) -> int:
        return int(self.obs.shape[1])

    @property
    def periods(self) -> np.ndarray:
        return np.unique(self.columns["period"])

    def __len__(self) -> int:
        """Transitions (trajectory-ticks) in the dataset."""
        return self.n_trajectories * self.n_ticks

    @property
    def campaign_efficiency(self) -> np.ndarray:
        """(N,) each campaign's score in units of what its budget buys at its target CPA,
        ``score * C / B``: 1.0 is the whole budget spent at exactly the target CPA, less is
        under-delivery or a CPA penalty. Unlike the raw score it compares campaigns of different
        budgets and CPAs, so ranking by it picks well-bid days rather than big budgets. In a
        Max-Return dataset the score is the conversions, so this is conversions * C / B."""
        score = np.asarray(self.columns["score_to_go"][:, 0], dtype=np.float64)
        return score * self.columns["target_cpa"].astype(np.float64) / self.columns["budget"].astype(np.float64)

    def sample_transitions(self, batch_size: int, rng: np.random.Generator,
                           trajectories: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Uniform (trajectory, tick) pairs: obs (B, D), action (B,), reward (B,), next_obs (B, D),
        done (B,), score_to_go (B,), reward_sparse (B,), all float32. ``next_obs`` of a last tick is the
        state after the period. ``trajectories`` (indices) restricts the draw to those campaigns.

        ``reward`` is the CPA-penalised per-tick reward ``score_to_go[t] - score_to_go[t+1]`` (the
        tick's conversions times the campaign's final CPA penalty), so that the undiscounted return
        of a campaign is its score: value learners then optimise the benchmark, not raw
        conversions that a CPA-blind bidder maximises by overspending. ``reward_sparse`` keeps the
        raw conversions."""
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if trajectories is None:
            flat = rng.integers(0, len(self), size=batch_size)
            i, t = np.divmod(flat, self.n_ticks)
        else:
            trajectories = np.asarray(trajectories, dtype=np.int64)
            if trajectories.ndim != 1 or trajectories.size == 0:
                raise ValueError(f"trajectories: must be a non-empty 1-D index array, got shape {trajectories.shape}")
            if trajectories.min() < 0 or trajectories.max() >= self.n_trajectories:
                raise ValueError(f"trajectories: indices must lie in [0, {self.n_trajectories}), got "
                                 f"[{trajectories.min()}, {trajectories.max()}]")
            i = trajectories[rng.integers(0, trajectories.size, size=batch_size)]
            t = rng.integers(0, self.n_ticks, size=batch_size)
        last = t == self.n_ticks - 1
        next_obs = np.where(last[:, None], self.terminal[i], self.obs[i, np.minimum(t + 1, self.n_ticks - 1)])
        return {
            "obs": self.obs[i, t],
            "action": self.columns["action"][i, t].astype(np.float32),
            "reward": self._penalised_reward[i, t],
            "reward_sparse": self.columns["reward_sparse"][i, t].astype(np.float32),
            "next_obs": next_obs,
            "done": last.astype(np.float32),
            "score_to_go": self.columns["score_to_go"][i, t].astype(np.float32),
        }

    def sample_windows(self, batch_size: int, context_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Windows of ``context_len`` consecutive ticks ending at a uniform tick of a uniform trajectory.

        A window ending at tick e covers ticks e-K+1..e, like the context a strategy has at serving
        time; positions before tick 0 are left padding (zeros, mask 0, timestep 0). Returns obs
        (B, K, D), action, rtg (score_to_go), reward (B, K) float32, timestep (B, K) int64, mask
        (B, K) float32.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if context_len < 1:
            raise ValueError(f"context_len: must be >= 1, got {context_len}")
        i = rng.integers(0, self.n_trajectories, size=batch_size)         # (B,)
        end = rng.integers(0, self.n_ticks, size=batch_size)               # (B,)
        ticks = end[:, None] - (context_len - 1) + np.arange(context_len)  # (B, K)
        real = ticks >= 0
        safe = np.maximum(ticks, 0)
        rows = i[:, None]

        def gather(values):
            return np.where(real, values[rows, safe], 0).astype(np.float32)

        return {
            "obs": np.where(real[..., None], self.obs[rows, safe], 0.0).astype(np.float32),
            "action": gather(self.columns["action"]),
            "rtg": gather(self.columns["score_to_go"]),
            "reward": gather(self.columns["reward_sparse"]),
            "timestep": np.where(real, ticks, 0).astype(np.int64),
            "mask": real.astype(np.float32),
        }

    def trajectories(self) -> dict[str, np.ndarray]:
        """Whole trajectories: obs (N, T, D), next_obs (N, T, D), terminal (N, D), per-tick (N, T)
        columns (alpha, action, reward_sparse, reward_dense, score_to_go, cost, conversions,
        remaining_budget, n_pv), done (N, T), timestep (N, T) and per-campaign (N,) columns
        (period, advertiser, category, budget, target_cpa)."""
        n, t = self.n_trajectories, self.n_ticks
        done = np.zeros((n, t), dtype=bool)
        done[:, -1] = True
        return {
            "obs": self.obs,
            "next_obs": np.concatenate([self.obs[:, 1:], self.terminal[:, None]], axis=1),
            "terminal": self.terminal,
            "done": done,
            "timestep": np.broadcast_to(np.arange(t, dtype=np.int64), (n, t)).copy(),
            **self.columns,
        }


def compute_stats(states: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Normalisation statistics: state mean/std over every (trajectory, tick), the reward scale
    (mean campaign score; 1 if no campaign scored) and quantiles of campaign scores.

    states: (N, T, D); scores: (N,) score_to_go at tick 0.
    """
    flat = np.asarray(states, dtype=np.float64).reshape(-1, states.shape[-1])
    scores = np.asarray(scores, dtype=np.float64)
    mean_score = float(scores.mean())
    return {
        "state_mean": flat.mean(axis=0).tolist(),
        "state_std": flat.std(axis=0).tolist(),
        "reward_scale": mean_score if mean_score > 0 else 1.0,
        "return_quantiles": {str(q): float(np.quantile(scores, q)) for q in RETURN_QUANTILE_LEVELS},
        "n_trajectories": int(scores.size),
    }


# ---- dataset info ---------------------------------------------------------------------------------

def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def dataset_info(directory: str | Path, verify: bool = False) -> dict[str, Any]:
    """Summary of a dataset directory: periods, campaigns, rows, size on disk, versions, config,
    and the behaviour policies' score distribution (mean, std, quantiles), budget utilisation and
    share of campaigns above their target CPA. Reads only a few columns; ``verify`` also reads every
    page of every file, checksums verified, and lists the damaged files under "damaged"."""
    directory = Path(directory)
    info = read_dataset_file(directory) or {}
    if info.get("imported") and info.get("feature_version") == AUCTIONNET_FEATURE_VERSION:
        return _rldata_info(directory, info, verify)
    files = trajectory_files(directory)
    if not files:
        _no_trajectories(directory)
    columns = ["advertiser", "tick", "budget", "target_cpa", "cost", "conversions", "score_to_go"]
    first, cost, conversions = [], [], []
    feature_versions, sources, tasks = set(), [], set()
    for period, path in files:
        meta = check_schema_version(path, kind=TRAJECTORIES)
        feature_versions.add(meta.get("feature_version", "?"))
        sources.append((period, meta.get("seed"), meta.get("config")))
        tasks.add(identity_task(meta.get("config")))
        t = read_table(path, columns=columns, check_version=False)
        adv = t.column("advertiser").to_numpy().astype(np.int64)
        keep = t.column("tick").to_numpy() == 0
        order = np.argsort(adv[keep], kind="stable")
        first.append({k: t.column(k).to_numpy()[keep][order] for k in ("budget", "target_cpa", "score_to_go")})
        # Campaign totals, in the same advertiser order as the tick-0 rows.
        present = np.sort(adv[keep])
        cost.append(np.bincount(adv, weights=t.column("cost").to_numpy())[present])
        conversions.append(np.bincount(adv, weights=t.column("conversions").to_numpy())[present])
    score = np.concatenate([f["score_to_go"] for f in first])
    budget = np.concatenate([f["budget"] for f in first])
    target_cpa = np.concatenate([f["target_cpa"] for f in first])
    spend, conv = np.concatenate(cost), np.concatenate(conversions)
    cpa = realized_cpa(spend, conv)
    # Generated: impressions/period=<P>.parquet; imported: impressions/period=<P>/<source>.parquet.
    impression_files = (sorted((directory / IMPRESSIONS).glob("period=*.parquet")) + sorted((directory / IMPRESSIONS).glob("period=*/*.parquet"))
                        if (directory / IMPRESSIONS).is_dir() else [])
    trajectory_paths = [p for _, p in files]
    damaged = []
    if verify:
        for path in trajectory_paths + impression_files:
            try:
                read_table(path, check_version=False)
            except CorruptFileError as err:
                damaged.append(str(err).split("; delete it")[0])
    return {
        "directory": str(directory),
        "periods": len(files),
        "first_period": files[0][0],
        "last_period": files[-1][0],
        "campaigns": int(score.size),
        "trajectory_rows": int(sum(num_rows(p) for p in trajectory_paths)),
        "impression_periods": len({p.name if p.suffix == ".parquet" and p.parent.name == IMPRESSIONS else p.parent.name
                                   for p in impression_files}),
        "impression_rows": int(sum(num_rows(p) for p in impression_files)),
        "trajectory_bytes": _size(trajectory_paths),
        "impression_bytes": _size(impression_files),
        "feature_version": sorted(feature_versions)[0] if len(feature_versions) == 1 else sorted(feature_versions),
        "feature_version_ok": feature_versions == {FEATURE_VERSION},
        "schema_version": SCHEMA_VERSION,
        "seed": info.get("seed"),
        "config": info.get("config"),
        **_imported_fields(info),
        "task": tasks.pop() if len(tasks) == 1 else sorted(tasks),
        "fingerprint": dataset_fingerprint(sources),
        "score": {
            "mean": float(score.mean()),
            "std": float(score.std()),
            "quantiles": {str(q): float(np.quantile(score, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
            "zero_share": float((score == 0).mean()),
        },
        "budget_utilisation": float((spend / budget).mean()),
        "cpa_violation_share": float((np.nan_to_num(cpa) > target_cpa).mean()),
        "verified": bool(verify),
        "damaged": damaged,
    }


def _imported_fields(info: Mapping[str, Any]) -> dict[str, Any]:
    if not info.get("imported"):
        return {}
    return {"imported": True, "format": info.get("format"), "sources": info.get("sources", [])}


def _rldata_info(directory: Path, info: Mapping[str, Any], verify: bool) -> dict[str, Any]:
    """``dataset_info`` of an imported rlData dataset (its files are read whole: they are small)."""
    from aigb.data.imported import rldata_files

    data = TrajectoryDataset.load(directory)
    c = data.columns
    score = np.asarray(c["score_to_go"][:, 0], dtype=np.float64)
    spend, conv = c["cost"].sum(axis=1), c["conversions"].sum(axis=1)
    paths = rldata_files(directory)
    damaged = []
    if verify:
        for path in paths:
            try:
                read_table(path, check_version=False)
            except CorruptFileError as err:
                damaged.append(str(err).split("; delete it")[0])
    periods = data.periods
    return {
        "directory": str(directory), "periods": int(periods.size), "first_period": int(periods[0]),
        "last_period": int(periods[-1]), "campaigns": data.n_trajectories, "trajectory_rows": len(data),
        "impression_periods": 0, "impression_rows": 0, "trajectory_bytes": _size(paths), "impression_bytes": 0,
        "feature_version": data.feature_version, "feature_version_ok": True, "schema_version": SCHEMA_VERSION,
        "seed": None, "config": None, **_imported_fields(info), "task": data.task, "fingerprint": data.fingerprint,
        "score": {"mean": float(score.mean()), "std": float(score.std()),
                  "quantiles": {str(q): float(np.quantile(score, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
                  "zero_share": float((score == 0).mean())},
        "budget_utilisation": float((spend / c["budget"]).mean()),
        "cpa_violation_share": float((np.nan_to_num(realized_cpa(spend, conv)) > c["target_cpa"]).mean()),
        "verified": bool(verify), "damaged": damaged,
    }


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_dataset_info(info: Mapping[str, Any]) -> str:
    """Human-readable lines of ``dataset_info``."""
    market = (info.get("config") or {}).get("market", {})
    s = info["score"]
    q = s["quantiles"]
    task = "" if info.get("task", DEFAULT_TASK) == DEFAULT_TASK else f", task {info['task']}"
    if info.get("imported"):
        origin = (f"imported from {len(info.get('sources', []))} AuctionNet "
                  f"{'rlData' if info.get('format') == 'auctionnet-rldata' else 'impression log'} file(s)")
    else:
        origin = (f"seed {info['seed']}, market {market.get('market_version', 'v1')}, preset {market.get('preset', '?')}, "
                  f"{market.get('n_pv', 0):,} PVs x {market.get('n_ticks', '?')} ticks")
    lines = [
        f"dataset {info['directory']}",
        f"  periods          {info['periods']} ({info['first_period']}..{info['last_period']}), {origin}{task}",
        f"  campaigns        {info['campaigns']:,}",
        f"  trajectory rows  {info['trajectory_rows']:,} ({_bytes(info['trajectory_bytes'])})",
        f"  impression rows  {info['impression_rows']:,} in {info['impression_periods']} period(s) ({_bytes(info['impression_bytes'])})",
        f"  feature version  {info['feature_version']}{'' if info['feature_version_ok'] else ' (MISMATCH: regenerate)'}, "
        f"schema version {info['schema_version']}",
        f"  fingerprint      {info['fingerprint']}",
        f"  behaviour score  mean {s['mean']:.2f}, std {s['std']:.2f}, "
        + ", ".join(f"q{float(k) * 100:.0f} {v:.2f}" for k, v in q.items())
        + f", zero {s['zero_share']:.1%}",
        f"  budget used      {info['budget_utilisation']:.1%} on average; CPA above target in {info['cpa_violation_share']:.1%} of campaigns",
    ]
    if info.get("verified"):
        n_files = info["periods"] + info["impression_periods"]
        lines.append(f"  integrity        {n_files - len(info['damaged'])} of {n_files} files read back intact"
                     + "".join(f"\n  DAMAGED          {d}" for d in info["damaged"]))
    return "\n".join(lines)

