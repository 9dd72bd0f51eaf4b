"""Benchmark of the streaming CSV import: speed, Parquet size, and flat memory.

Writes a synthetic AuctionNet-style impression log (sorted by period, tick, pv, advertiser; 48
rows per PV; campaign columns constant per advertiser; GSP with 3 slots so ~94 % of rows are not
won, with slot 0 and cost 0; p_value lognormal around 5e-4; tick volumes from the reference day
profile), imports it in a child process and reports the child's peak RSS. A second import of a
file with 1/5 of the rows shows that memory does not grow with the file size.

    python benchmarks/csv_import.py [--rows 6000000] [--block-size BYTES] [--workdir DIR]
    python benchmarks/csv_import.py --from-parquet DATA/impressions/period=00100.parquet [--workdir DIR]

The second form writes a full-size period of ``aigb generate --impressions`` as AuctionNet's CSV
(~24M rows, 3 GB; deleted afterwards) and compares the multithreaded import with the exact one.

The last line printed is one JSON object with the measurements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from aigb.data.csv_import import DEFAULT_BLOCK_SIZE
from aigb.data.schema import IMPRESSION_CSV_COLUMNS
from aigb.seeding import rng

N_ADVERTISERS = 48
PVS_PER_CHUNK = 20_000  # 960k rows per generated chunk
EXPOSURE = np.array([1.0, 0.8, 0.6])


def _reference() -> dict:
    return json.loads(resources.files("aigb.sim").joinpath("market_reference.json").read_text())


def write_impression_csv(path: Path, n_rows: int, seed: int = 0, period: int = 7) -> int:
    """Write a synthetic impression log of about ``n_rows`` rows (a multiple of 48); return rows."""
    ref = _reference()
    advertisers = sorted(ref["advertisers"], key=lambda a: a["advertiser"])[:N_ADVERTISERS]
    budget = np.array([a["budget"] for a in advertisers], dtype=np.float64)  # (n_adv,)
    target_cpa = np.array([a["target_cpa"] for a in advertisers], dtype=np.float64)
    category = np.array([a["category"] for a in advertisers], dtype=np.int64)
    share = np.asarray(ref["tick_volume_share"], dtype=np.float64)
    share /= share.sum()
    n_ticks = len(share)
    n_pv = max(1, n_rows // N_ADVERTISERS)
    tick_end = np.round(np.cumsum(share) * n_pv).astype(np.int64)  # first pv of the next tick
    g = rng(seed, "benchmark_csv", period)
    alpha = target_cpa * g.uniform(0.6, 1.2, N_ADVERTISERS)  # (n_adv,)
    # Budgets spent along the day profile, unevenly per advertiser; known before each tick.
    spent_share = np.concatenate([[0.0], np.cumsum(share)[:-1]])  # (n_ticks,)
    remaining = budget[None, :] * (1.0 - spent_share[:, None] * g.uniform(0.5, 1.0, N_ADVERTISERS)[None, :])  # (n_ticks, n_adv)

    writer = None
    try:
        for start in range(0, n_pv, PVS_PER_CHUNK):
            pv = np.arange(start, min(n_pv, start + PVS_PER_CHUNK))  # (m,)
            m = len(pv)
            tick = np.searchsorted(tick_end, pv, side="right").clip(max=n_ticks - 1)  # (m,)
            p_value = np.clip(g.lognormal(np.log(5e-4), 0.5, (m, N_ADVERTISERS)), 0.0, 1.0)  # (m, n_adv)
            p_value[g.random((m, N_ADVERTISERS)) < 0.03] = 0.0
            sigma = p_value * g.uniform(0.05, 0.25, (m, N_ADVERTISERS))
            bid = alpha[None, :] * p_value
            order = np.argsort(-bid, axis=1)[:, :4]  # (m, 4) top four bidders
            top = np.take_along_axis(bid, order, axis=1)
            slot = np.zeros((m, N_ADVERTISERS), dtype=np.int64)
            cost = np.zeros((m, N_ADVERTISERS))
            exposed = np.zeros((m, N_ADVERTISERS), dtype=bool)
            shown = np.ones(m, dtype=bool)
            rows = np.arange(m)
            for k in range(3):
                sold = top[:, k + 1] > 1e-4  # price above the reserve
                shown = shown & (g.random(m) < EXPOSURE[k] / (EXPOSURE[k - 1] if k else 1.0))
                slot[rows[sold], order[sold, k]] = k + 1
                exposed[rows[sold], order[sold, k]] = shown[sold]
                cost[rows[sold], order[sold, k]] = np.where(shown[sold], top[sold, k + 1], 0.0)
            conversion = exposed & (g.random((m, N_ADVERTISERS)) < p_value)
            flat = m * N_ADVERTISERS
            adv = np.tile(np.arange(N_ADVERTISERS), m)
            ticks = np.repeat(tick, N_ADVERTISERS)
            columns = {
                "deliveryPeriodIndex": np.full(flat, period),
                "advertiserNumber": adv,
                "advertiserCategoryIndex": category[adv],
                "budget": budget[adv],
                "CPAConstraint": target_cpa[adv],
                "timeStepIndex": ticks,
                "remainingBudget": remaining[ticks, adv],
                "pvIndex": np.repeat(pv, N_ADVERTISERS),
                "pValue": p_value.ravel(),
                "pValueSigma": sigma.ravel(),
                "bid": bid.ravel(),
                "xi": (slot > 0).ravel().astype(np.int64),
                "adSlot": slot.ravel(),
                "cost": cost.ravel(),
                "isExposed": exposed.ravel().astype(np.int64),
                "conversionAction": conversion.ravel().astype(np.int64),
                "leastWinningCost": np.repeat(top[:, 3], N_ADVERTISERS),
                "isEnd": (ticks == n_ticks - 1).astype(np.int64),
            }
            assert list(columns) == list(IMPRESSION_CSV_COLUMNS)
            table = pa.table(columns)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return n_pv * N_ADVERTISERS


def write_csv_from_parquet(parquet: Path, path: Path) -> int:
    """Write an aigb impression log (``aigb generate --impressions``) as AuctionNet writes its logs:
    the 18 CSV columns, every value a float; return rows."""
    import pyarrow.parquet as pq

    names = list(IMPRESSION_CSV_COLUMNS)
    rows = 0
    with pacsv.CSVWriter(str(path), pa.schema([(n, pa.float64()) for n in names])) as writer:
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=1 << 20):
            arrays = [batch.column(ours).cast(pa.float64()) for ours in IMPRESSION_CSV_COLUMNS.values()]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, names=names))
            rows += batch.num_rows
    return rows


# The child reports its own peak RSS. On Linux it reads VmHWM, the high-water mark of its own
# address space: ru_maxrss would also carry the parent's peak across fork+exec (the parent holds
# the generated data), hiding the import's real figure for small files.
_CHILD = """
import json, resource, sys, time
from aigb.data.csv_import import import_csv

def peak_kb():
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

before = peak_kb()
start, cpu_start = time.perf_counter(), time.process_time()
report = import_csv([sys.argv[1]], sys.argv[2], block_size=int(sys.argv[3]), use_threads=sys.argv[4] == "1",
                    build_dataset=False)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start

print(json.dumps({"rows": report.rows_written, "seconds": seconds, "cpu_seconds": cpu,
                  "outputs": [str(p) for p in report.outputs],
                  "rss_after_imports_kb": before, "peak_rss_kb": peak_kb()}))
"""


_BUILD_CHILD = """
import json, sys, time
from aigb.data.imported import build_imported_dataset
start = time.perf_counter()
build_imported_dataset(sys.argv[1])
seconds = time.perf_counter() - start
with open("/proc/self/status") as f:
    peak = int(next(line for line in f if line.startswith("VmHWM:")).split()[1])
print(json.dumps({"seconds": seconds, "peak_rss_kb": peak}))
"""


def build_in_child(out_dir: Path) -> dict:
    """Build the dataset (trajectories of every advertiser) from an imported folder in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _BUILD_CHILD, str(out_dir)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_in_child(csv_path: Path, out_dir: Path, block_size: int, use_threads: bool = True) -> dict:
    """Run the import in a fresh interpreter so only the import's memory is measured."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(csv_path), str(out_dir), str(block_size), str(int(use_threads))],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6_000_000, help="rows of the synthetic CSV (>= 5M for the published figure)")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="CSV block size in bytes")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--from-parquet", type=Path, default=None, metavar="PATH",
                        help="instead of a synthetic log, write this impression log (aigb generate --impressions: a "
                             "full-size period) as AuctionNet's CSV and time the multithreaded import against the exact "
                             "single-threaded one (--exact-rows of it), and the dataset built from it")
    parser.add_argument("--exact-rows", type=int, default=3_000_000, help="rows the exact path imports (default %(default)s)")
    args = parser.parse_args(argv)
    if args.from_parquet is not None:
        return full_period(args)
    if args.rows < N_ADVERTISERS * 5:
        parser.error(f"--rows must be >= {N_ADVERTISERS * 5}")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        big, small = tmp / "period-7.csv", tmp / "period-8.csv"
        rows = write_impression_csv(big, args.rows, seed=0, period=7)
        rows_small = write_impression_csv(small, args.rows // 5, seed=1, period=8)
        print(f"generated {rows:,} + {rows_small:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        full = import_in_child(big, tmp / "out", args.block_size)
        fifth = import_in_child(small, tmp / "out_small", args.block_size)
        if full["rows"] != rows or fifth["rows"] != rows_small:
            raise RuntimeError(f"import wrote {full['rows']} and {fifth['rows']} rows, expected {rows} and {rows_small}")
        csv_mb = big.stat().st_size / 2**20
        parquet_mb = sum(Path(p).stat().st_size for p in full["outputs"]) / 2**20
        result = {
            "csv_rows": rows,
            "csv_mb": round(csv_mb, 1),
            "parquet_mb": round(parquet_mb, 1),
            "size_ratio": round(csv_mb / parquet_mb, 2),
            "import_seconds": round(full["seconds"], 2),
            "import_rows_per_second": round(rows / full["seconds"]),
            # CPU time is the fairer speed figure on a shared machine, where wall time waits.
            "import_cpu_seconds": round(full["cpu_seconds"], 2),
            "import_rows_per_cpu_second": round(rows / full["cpu_seconds"]),
            "peak_rss_mb": round(full["peak_rss_kb"] / 1024, 1),
            "csv_rows_fifth": rows_small,
            "peak_rss_mb_fifth": round(fifth["peak_rss_kb"] / 1024, 1),
            "rss_after_imports_mb": round(full["rss_after_imports_kb"] / 1024, 1),
            "block_size": args.block_size,
        }
    print(json.dumps(result))
    return result


def full_period(args) -> dict:
    """Fast and exact import of a full-size period written as AuctionNet's CSV, side by side."""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        big = tmp / "period.csv"
        t0 = time.perf_counter()
        rows = write_csv_from_parquet(args.from_parquet, big)
        print(f"wrote {rows:,} rows ({big.stat().st_size / 2**30:.2f} GB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        head = tmp / "head.csv"  # the first --exact-rows rows, for the slow exact path
        with open(big, "rb") as src, open(head, "wb") as dst:
            for i, line in enumerate(src):
                if i > args.exact_rows:
                    break
                dst.write(line)
        fast = import_in_child(big, tmp / "fast", args.block_size, True)
        build = build_in_child(tmp / "fast")
        fast_head = import_in_child(head, tmp / "fast_head", args.block_size, True)
        exact_head = import_in_child(head, tmp / "exact_head", args.block_size, False)
        result = {
            "csv_rows": rows, "csv_gb": round(big.stat().st_size / 2**30, 2),
            "fast_seconds": round(fast["seconds"], 1), "fast_rows_per_second": round(rows / fast["seconds"]),
            "fast_rows_per_cpu_second": round(rows / fast["cpu_seconds"]), "fast_peak_rss_mb": round(fast["peak_rss_kb"] / 1024),
            "dataset_build_seconds": round(build["seconds"], 1), "dataset_build_peak_rss_mb": round(build["peak_rss_kb"] / 1024),
            "head_rows": fast_head["rows"],
            "head_fast_rows_per_second": round(fast_head["rows"] / fast_head["seconds"]),
            "head_exact_rows_per_second": round(exact_head["rows"] / exact_head["seconds"]),
            "head_speedup": round(exact_head["seconds"] / fast_head["seconds"], 1),
            "head_fast_peak_rss_mb": round(fast_head["peak_rss_kb"] / 1024),
            "block_size": args.block_size,
        }
        # The big files go with the temporary folder.
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
