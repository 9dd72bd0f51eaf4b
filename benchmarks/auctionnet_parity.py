"""Parity of aigb's AuctionNet converter with AuctionNet's own, on real files.

    python benchmarks/auctionnet_parity.py LOG.csv[.zst] RLDATA.csv[.zst]

LOG is one period's impression log (all of it, or every row of some advertisers); RLDATA the file
AuctionNet's converter made from that period. Imports both into a temporary folder, builds the
16-feature states, actions, rewards and ``done`` of every advertiser the log holds, and prints the
largest absolute and relative difference per quantity against the rlData rows, parsed from the
CSV text as float64.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from aigb.data.auctionnet import converter_rows, log_tick_stats
from aigb.data.csv_import import import_csv
from aigb.features import AUCTIONNET_FEATURE_NAMES, AUCTIONNET_FEATURE_VERSION


def _rldata(path: Path) -> dict[tuple[int, int, int], dict]:
    compression = "zstd" if path.name.endswith(".zst") else None
    with pa.input_stream(str(path), compression=compression) as fh:
        text = fh.read().decode()
    out = {}
    for r in csv.DictReader(text.splitlines()):
        key = (int(float(r["deliveryPeriodIndex"])), int(float(r["advertiserNumber"])), int(float(r["timeStepIndex"])))
        out[key] = {"state": np.array([float(x) for x in r["state"].strip("()").split(",")]),
                    "action": float(r["action"]), "reward": float(r["reward"]),
                    "reward_continuous": float(r["reward_continuous"]), "done": int(float(r["done"]))}
    return out


def main(log: str, rldata: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = import_csv([log], Path(tmp) / "log", build_dataset=False)
        print(f"imported {report.rows_written:,} log rows in {report.seconds:.1f} s")
        files = sorted((Path(tmp) / "log" / "impressions").glob("period=*/*.parquet"))
        by_period: dict[int, list[Path]] = {}
        for f in files:
            by_period.setdefault(int(f.parent.name.split("=")[1]), []).append(f)
        theirs = _rldata(Path(rldata))
        worst: dict[str, list[float]] = {}
        n_rows = 0
        for period, paths in by_period.items():
            log_ = log_tick_stats(paths, feature_set=AUCTIONNET_FEATURE_VERSION)
            ours = converter_rows(log_)
            for i, c in enumerate(log_.campaigns):
                for t in range(ours["state"].shape[1]):
                    ref = theirs[(period, c.advertiser, t)]
                    n_rows += 1
                    pairs = [(f"state[{k}] {name}", float(ours["state"][i, t, k]), ref["state"][k])
                             for k, name in enumerate(AUCTIONNET_FEATURE_NAMES)]
                    pairs += [(q, float(ours[q][i, t]), ref[q]) for q in ("action", "reward", "reward_continuous", "done")]
                    for name, a, b in pairs:
                        d = abs(a - b)
                        w = worst.setdefault(name, [0.0, 0.0])
                        w[0] = max(w[0], d)
                        w[1] = max(w[1], d / abs(b) if b else (0.0 if d == 0 else np.inf))
    print(f"{n_rows} rlData rows compared; largest differences (ours - AuctionNet's converter):")
    print(f"{'quantity':32} {'abs':>10} {'rel':>10}")
    for name, (a, r) in worst.items():
        print(f"{name:32} {a:10.3g} {r:10.3g}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
