#!/bin/bash
# The objectives finding at the standard size: DiffBid's serving-time objectives and searches against their plain
# planners, one paired evaluation (5 periods x 48 slots x seeds 0 and 1).
#   bash docs/experiments/probes/objectives_std.sh OUT_DIR [WORKERS [SEED...]]   (seeds 0 1 unless given)
# then: aigb diffbid objective-check OUT_DIR results/std/s0 --guide cpa:0.8,cap:0.3@24,cpa:1
#       aigb compare results/std/s0 results/std/s1 OUT_DIR --baseline diffbid:runs/diffbid_snap/best_4500.pt
# Re-running the same command resumes an interrupted run; aigb compare reads an interrupted one's
# completed campaigns. Needs runs/diffbid_snap (outcome planner + evaluator.pt), runs/diffbid_cpa08
# (retrained with cpa_condition_scale=0.8) and runs/diffbid_level2/best_s.pt (level planner).
set -euo pipefail
out=${1:?usage: objectives_std.sh OUT_DIR [WORKERS [SEED...]]}
workers=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
seeds=("${@:-0 1}")
export OMP_NUM_THREADS=1
exec aigb evaluate --periods 5 --slots all --seeds ${seeds[@]} --workers "$workers" --out "$out" --quiet --strategy \
  'diffbid:runs/diffbid_snap/best_4500.pt' \
  'diffbid:runs/diffbid_snap/best_4500.pt?guide=cpa:0.8&mu=0.2' \
  'diffbid:runs/diffbid_cpa08/best.pt' \
  'diffbid:runs/diffbid_snap/best_4500.pt?n=4' \
  'diffbid:runs/diffbid_snap/best_4500.pt?n=16' \
  'diffbid:runs/diffbid_level2/best_s.pt' \
  'diffbid:runs/diffbid_level2/best_s.pt?guide=cpa:0.8&strength=0' \
  'diffbid:runs/diffbid_level2/best_s.pt?guide=cap:0.3@24*4&strength=0'
