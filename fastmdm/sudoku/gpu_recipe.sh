#!/usr/bin/env bash
# Train the `paper` preset (~6M parameters) on one GPU in about 10 minutes, then write its eval table.
#   bash fastmdm/sudoku/gpu_recipe.sh [OUT_DIR]         (default runs/sudoku-paper)
# Steps: generate 500k standard training puzzles with the native engine (all cores, cached in OUT/data),
# train 7 minutes (bf16 autocast, fused AdamW, batch 1024, lr 2e-3, warmup + cosine sized to the budget),
# then evaluate 1000 standard + 1000 hard test puzzles with each strategy, one cell per step, and with
# the paper's 50-step schedule + Gumbel score noise 0.5, writing eval_k1.{md,json,png} and eval_s50.{md,json}.
# The training settings are the `paper-gpu` recipe of fastmdm/sudoku/recipes.py (MINUTES overrides its budget).
# For several GPUs: replace `fastmdm sudoku train` with `torchrun --nproc_per_node N -m fastmdm.cli sudoku train`.
set -euo pipefail
OUT=${1:-runs/sudoku-paper}
MINUTES=${MINUTES:-7}
mkdir -p "$OUT"
fastmdm sudoku train --recipe paper-gpu --minutes "$MINUTES" --out "$OUT" 2>&1 | tee "$OUT/train.log"
fastmdm sudoku eval --checkpoint "$OUT" --device cuda --split standard,hard --n 1000 --batch-size 1000 \
    --json "$OUT/eval_k1.json" --plot "$OUT/eval_k1.png" --cache-dir "$OUT/data" | tee "$OUT/eval_k1.md"
fastmdm sudoku eval --checkpoint "$OUT" --device cuda --split standard,hard --n 1000 --batch-size 1000 \
    --steps 50 --score-noise 0.5 --json "$OUT/eval_s50.json" --cache-dir "$OUT/data" | tee "$OUT/eval_s50.md"
