"""An imported AuctionNet folder as an aigb dataset that ``aigb train`` reads like a generated one.

After ``aigb import-csv`` has converted the CSV files (``aigb.data.csv_import``),
``build_imported_dataset`` makes the folder a dataset:

* from **impression logs** (``impressions/period=<P>/<file>.parquet``): one trajectory file per
  period, ``trajectories/period=<P:05d>.parquet``, built exactly as ``aigb generate`` builds one
  (``aigb.data.trajectories.trajectory_table``: v1 features, sparse and dense rewards, CPA-penalised
  score-to-go) from the log's per-(advertiser, tick) statistics (``aigb.data.auctionnet``);
* from **rlData** (``trajectories/<file>.parquet``, AuctionNet's 16-feature states): nothing is
  rewritten; ``aigb.data.dataset.TrajectoryDataset`` reads those files under the feature set
  ``auctionnet16`` (``aigb.data.auctionnet.rldata_arrays``).

``dataset.json`` then says ``"imported": true`` with the format, the source files' fingerprints
(name, bytes, SHA-256), the periods and the feature set; it records no seed and no market
configuration (the data did not come from our simulator). Each trajectory file's identity is its
period's source fingerprints, so a re-run skips periods already built from the same sources and
rebuilds the others (resumable). A folder mixing impression logs and rlData, or imported with
generated files, is refused naming a file of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aigb
from aigb.data.auctionnet import AUCTIONNET_TICKS, behaviour_alpha, log_tick_stats
from aigb.data.generate import DATASET_FILE, IMPRESSIONS, TRAJECTORIES, dataset_fingerprint, period_path
from aigb.data.parquet import CorruptFileError, atomic_output, read_metadata, write_table_atomic, file_metadata
from aigb.data.schema import SCHEMA_VERSION
from aigb.data.trajectories import trajectory_table
from aigb.features import AUCTIONNET_FEATURE_VERSION, FEATURE_DIM, FEATURE_VERSION
from aigb.score import DEFAULT_TASK, check_task

__all__ = ["IMPRESSION_FORMAT", "RLDATA_FORMAT", "MixedSourcesError", "ImportedDataset", "build_imported_dataset",
           "is_imported", "imported_sources", "rldata_files"]

IMPRESSION_FORMAT = "auctionnet-impressions"
RLDATA_FORMAT = "auctionnet-rldata"


class MixedSourcesError(ValueError):
    """A folder holds data of several sources (impression logs, rlData, generated data)."""


def is_imported(config: dict | None) -> bool:
    """True for the identity (``config``) of an imported file or dataset."""
    return bool((config or {}).get("imported"))


@dataclass(frozen=True)
class ImportedDataset:
    """What ``build_imported_dataset`` found and built."""

    format: str
    """``IMPRESSION_FORMAT`` or ``RLDATA_FORMAT``."""
    periods: tuple[int, ...]
    """Periods of the dataset."""
    built: tuple[int, ...]
    """Periods whose trajectory file this call wrote (the others were up to date)."""
    feature_version: str
    """The feature set of the trajectories."""


def _source(meta: dict, path: Path) -> dict[str, Any]:
    return {"file": meta.get("source", path.name), "bytes": meta.get("source_bytes"), "sha256": meta.get("source_sha256")}


def rldata_files(directory: Path) -> list[Path]:
    """Imported rlData files of a folder (``trajectories/<name>.parquet``, not ``period=``)."""
    folder = Path(directory) / TRAJECTORIES
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("period=")) if folder.is_dir() else []


def _impression_files(directory: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for path in sorted((directory / IMPRESSIONS).glob("period=*/*.parquet")):
        try:
            period = int(path.parent.name.split("=", 1)[1])
        except ValueError:
            raise ValueError(f"{path.parent}: folder name must be period=<integer>") from None
        out.setdefault(period, []).append(path)
    return out


def imported_sources(directory: str | Path) -> tuple[str | None, dict[int, list[dict]]]:
    """(format, period -> source fingerprints) of an imported folder; format None if it holds no
    imported data. Raises ``MixedSourcesError`` naming a file of each source it mixes."""
    directory = Path(directory)
    logs = _impression_files(directory)
    rl = rldata_files(directory)
    generated = sorted((directory / IMPRESSIONS).glob("period=*.parquet")) if (directory / IMPRESSIONS).is_dir() else []
    if logs and rl:
        first = next(iter(logs.values()))[0]
        raise MixedSourcesError(f"{directory}: mixes an impression log ({first}) and rlData ({rl[0]}); field kind: import "
                                "each source into its own directory")
    if (logs or rl) and generated:
        raise MixedSourcesError(f"{directory}: mixes imported data ({(rl or next(iter(logs.values())))[0]}) and a generated "
                                f"period ({generated[0]}); field kind: import into a directory of its own")
    sources: dict[int, list[dict]] = {}
    if logs:
        for period, paths in logs.items():
            for path in paths:
                meta = read_metadata(path)
                if not meta.get("source"):
                    raise MixedSourcesError(f"{path}: field source: not an imported log (no source recorded); "
                                            "import CSV files with aigb import-csv")
                sources.setdefault(period, []).append(_source(meta, path))
        return IMPRESSION_FORMAT, sources
    if rl:
        import pyarrow.parquet as pq

        for path in rl:
            meta = read_metadata(path)
            if meta.get("kind") != "auctionnet_trajectories":
                raise MixedSourcesError(f"{path}: field kind: {meta.get('kind')!r} among imported rlData files")
            periods = pq.read_table(path, columns=["period"]).column("period").to_numpy()
            for period in sorted(set(periods.tolist())):
                sources.setdefault(int(period), []).append(_source(meta, path))
        return RLDATA_FORMAT, sources
    return None, {}


def _identity(fmt: str, period_sources: list[dict], n_ticks: int, task: str) -> dict:
    identity = {"imported": True, "format": fmt, "sources": sorted(period_sources, key=lambda s: s["file"]),
                "n_ticks": n_ticks}
    if task != DEFAULT_TASK:
        identity["task"] = task
    return json.loads(json.dumps(identity))


def build_imported_dataset(directory: str | Path, *, task: str = DEFAULT_TASK, n_ticks: int = AUCTIONNET_TICKS,
                           progress: Any = None) -> ImportedDataset | None:
    """Make an imported folder a dataset (see the module docstring); None if it holds no imported data.

    progress: optional callable(period) told before each period is built.
    """
    directory = Path(directory)
    check_task(task)
    fmt, sources = imported_sources(directory)
    if fmt is None:
        return None
    built = []
    if fmt == IMPRESSION_FORMAT:
        for period, paths in sorted(_impression_files(directory).items()):
            identity = _identity(fmt, sources[period], n_ticks, task)
            target = period_path(directory, TRAJECTORIES, period)
            if _up_to_date(target, identity, period):
                continue
            if progress is not None:
                progress(period)
            log = log_tick_stats(paths, n_ticks=n_ticks)
            table = trajectory_table(period, log.campaigns, log.stats, behaviour_alpha(log), task)
            meta = file_metadata(TRAJECTORIES, identity, None, period=period, feature_version=FEATURE_VERSION,
                                 feature_dim=FEATURE_DIM)
            write_table_atomic(table, target, meta)
            built.append(period)
        # Trajectory files of periods whose logs are gone are stale.
        for old in (directory / TRAJECTORIES).glob("period=*.parquet"):
            if int(old.stem.split("=", 1)[1]) not in sources:
                old.unlink(missing_ok=True)
        feature_version = FEATURE_VERSION
    else:
        feature_version = AUCTIONNET_FEATURE_VERSION
    periods = tuple(sorted(sources))
    identity_files = [(p, None, _identity(fmt, sources[p], n_ticks, task)) for p in periods]
    info = {
        "kind": "aigb-dataset", "imported": True, "format": fmt, "schema_version": SCHEMA_VERSION,
        "feature_version": feature_version, "aigb_version": aigb.__version__, "seed": None, "config": None,
        "task": task, "periods": list(periods), "n_ticks": n_ticks,
        "sources": sorted({json.dumps(s, sort_keys=True) for ss in sources.values() for s in ss}),
        "fingerprint": dataset_fingerprint(identity_files, feature_version),
    }
    info["sources"] = [json.loads(s) for s in info["sources"]]
    with atomic_output(directory / DATASET_FILE) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return ImportedDataset(fmt, periods, tuple(built), feature_version)


def _up_to_date(path: Path, identity: dict, period: int) -> bool:
    if not path.exists():
        return False
    try:
        meta = read_metadata(path)
    except CorruptFileError:
        return False
    return (meta.get("config") == identity and meta.get("period") == period
            and meta.get("feature_version") == FEATURE_VERSION and meta.get("schema_version") == SCHEMA_VERSION)
