"""Dataset generation speed and the size of a simulated impression log.

Measures, on default-size periods (500k PVs, 48 advertisers, 48 ticks):
* generation throughput (periods per minute, trajectory rows per second) with 1 and 2 workers;
* the Parquet size of one period's impression log (``--impressions``) against the same rows
  written as CSV by ``pyarrow.csv`` (AuctionNet ships its logs as CSV);
* the projected wall time of the default training set (500 periods) at the measured rates.

Prints a few human lines, then as the last line one JSON object.

    .venv/bin/python benchmarks/generate_throughput.py [--periods 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from aigb.data.generate import generate_dataset, period_path
from aigb.types import MarketConfig

TRAINING_PERIODS = 500  # the default training set


def throughput(root: Path, periods: int, workers: int, seed: int) -> dict:
    report = generate_dataset(root / f"workers{workers}", periods, seed, workers=workers, progress=False)
    return {
        "workers": workers,
        "periods": periods,
        "seconds": round(report.seconds, 2),
        "periods_per_minute": round(report.periods_per_minute, 2),
        "trajectory_rows_per_second": round(report.trajectory_rows / report.seconds, 1),
        "mean_behaviour_score": round(report.mean_score, 3),
    }


def impression_sizes(root: Path, seed: int) -> dict:
    out = root / "impressions"
    start = time.perf_counter()
    report = generate_dataset(out, 1, seed, impressions=True, progress=False)
    seconds = time.perf_counter() - start
    parquet_path = period_path(out, "impressions", 0)
    csv_path = root / "impressions.csv"
    # Stream row group by row group: the whole log as one table would need several GB.
    source = pq.ParquetFile(parquet_path)
    with pacsv.CSVWriter(csv_path, source.schema_arrow) as writer:
        for batch in source.iter_batches(batch_size=1 << 20):
            writer.write_batch(batch)
    parquet_bytes, csv_bytes = parquet_path.stat().st_size, csv_path.stat().st_size
    return {
        "rows": report.impression_rows,
        "seconds_with_impressions": round(seconds, 2),
        "parquet_mb": round(parquet_bytes / 2**20, 1),
        "csv_mb": round(csv_bytes / 2**20, 1),
        "parquet_bytes_per_row": round(parquet_bytes / report.impression_rows, 2),
        "csv_over_parquet": round(csv_bytes / parquet_bytes, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, default=4, help="default-size periods per throughput run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory, removed)")
    args = parser.parse_args()

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="aigb-generate-"))
    try:
        runs = [throughput(root, args.periods, w, args.seed) for w in (1, 2)]
        for r in runs:
            print(f"{r['workers']} worker(s): {r['periods']} periods in {r['seconds']:.1f} s = "
                  f"{r['periods_per_minute']:.1f} periods/min, {r['trajectory_rows_per_second']:,.0f} trajectory rows/s")
        best = max(runs, key=lambda r: r["periods_per_minute"])
        projected = {f"workers{r['workers']}_minutes": round(TRAINING_PERIODS / r["periods_per_minute"], 1) for r in runs}
        print(f"projected {TRAINING_PERIODS}-period training set: "
              + ", ".join(f"{v:.1f} min with {k[7]} worker(s)" for k, v in projected.items()))
        sizes = impression_sizes(root, args.seed)
        print(f"impression log of one default period: {sizes['rows']:,} rows, Parquet {sizes['parquet_mb']:.1f} MB "
              f"({sizes['parquet_bytes_per_row']:.1f} B/row), CSV {sizes['csv_mb']:.1f} MB: "
              f"{sizes['csv_over_parquet']:.1f}x smaller; generation with the log {sizes['seconds_with_impressions']:.1f} s")
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "n_pv": MarketConfig().n_pv,
        "throughput": runs,
        "best_periods_per_minute": best["periods_per_minute"],
        "projected_training_set_minutes": projected,
        "training_set_periods": TRAINING_PERIODS,
        "impression_log": sizes,
    }))


if __name__ == "__main__":
    main()
