#!/usr/bin/env bash
# The full benchmark: the default dataset, every algorithm trained with its defaults, the standard
# evaluation (5 periods x 48 advertiser slots of seeds 0 and 1, sparse market, 500,000 PVs), the table and
# the report. Many hours on 2 cores (training alone is 1.5-2 h per algorithm on the CPU; DiffBid
# trains on a GPU when torch sees one). Every step resumes or is skipped when done, so an
# interrupted run continues where it stopped:
#
#     make benchmark-full                 # or: OUT=results/full bash benchmarks/full_benchmark.sh
#
# MARKET_VERSION=v2 runs it on market v2 (the README's published table); the default is the
# project's default market (v3).
#
# The README's table of every strategy is the `aigb compare` output this script ends with.
set -euo pipefail
cd "$(dirname "$0")/.."
AIGB=${AIGB:-.venv/bin/aigb}
OUT=${OUT:-results/full}
ALGOS=${ALGOS:-bc iql cql dt diffbid}
VERSION=(--market-version "${MARKET_VERSION:-v3}")
EVAL=(--periods 5 --slots all --seeds 0 1 --workers 2 "${VERSION[@]}")

"$AIGB" generate --periods 500 --out "$OUT/data" --workers 2 --seed 0 "${VERSION[@]}"
learned=()
for algo in $ALGOS; do
    "$AIGB" train "$algo" --data "$OUT/data" --out "$OUT/runs/$algo" --quiet "${VERSION[@]}"
    learned+=("$algo:$OUT/runs/$algo/best.pt")
done
[ -f "$OUT/eval/rules/results.parquet" ] ||
    "$AIGB" evaluate --strategy fixed pid onlinelp oracle "${EVAL[@]}" --baseline fixed --out "$OUT/eval/rules" --quiet
[ -f "$OUT/eval/learned/results.parquet" ] ||
    "$AIGB" evaluate --strategy "${learned[@]}" "${EVAL[@]}" --out "$OUT/eval/learned" --quiet
"$AIGB" compare "$OUT/eval/rules" "$OUT/eval/learned" --baseline fixed | tee "$OUT/table.txt"
"$AIGB" report "$OUT/eval/rules" "$OUT/eval/learned" --baseline fixed --out "$OUT/report"
