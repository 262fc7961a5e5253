#!/usr/bin/env bash
# One prepared GPU run for the paper's baselines and tasks (issues #14, #15): train on one GPU, in parallel,
#   1. the Sudoku ARM in the solver's order      (arm-solver,   the shipped MDM's size, 1.3M)
#   2. the Sudoku ARM in row-major order         (arm-rowmajor, 1.3M, digit tokens only)
#   3. the L&O-NAE-SAT MDM                       (nae,   preset cpu, 0.89M, N=25 P=275)
#   4. the Zebra MDM                             (zebra, preset cpu, 1.31M, 5 x 5)
# each for $MINUTES wall minutes (default 5; one process each, 3 CPU threads for its data), then evaluate them on
# the GPU: `sudoku compare` (the shipped MDM beside both ARMs, 1,000 standard + 1,000 hard puzzles),
# `zebra eval` (1,000 test puzzles) and `nae eval` (1,000 test sequences, half the positions given).
# The models keep the CPU presets' sizes: a run on the device machine returns at most 8 files of 16 MiB, so each
# model comes back as one tar of its checkpoint (weights, config, history; no optimizer state), and they stay
# under the ~25 MB a shipped checkpoint may weigh.
#
#   bash benchmarks/gpu_train.sh                  # on the GPU machine: results in $OUT (else runs/gpu-train)
#   SMOKE=1 bash benchmarks/gpu_train.sh /tmp/gt  # on CPU: tiny models, 2 steps, 4 test items (plumbing only)
#
# What comes back: {arm-solver,arm-rowmajor,nae,zebra}.tar and results.tar (the evaluations' md/json/png and every
# log). Each step writes as soon as it ends, so a run cut short keeps what finished. Budget on one H200: about
# 1.5 min to build the native engine, $MINUTES of training, about 2 min of evaluation.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${OUT:-runs/gpu-train}}
MINUTES=${MINUTES:-5}
WORK=${WORK:-/tmp/fastmdm-gpu-train}
mkdir -p "$DEST" "$WORK"
export PYTHONUNBUFFERED=1
log() { echo "[gpu_train $(date +%H:%M:%S)] $*" | tee -a "$WORK/gpu_train.log" >&2; }

if [ -n "${SMOKE:-}" ]; then
    PY=${PYTHON:-python}
    DEV=cpu
    SIZE=(--preset tiny)
    BUDGET=(--steps 2 --eval-every 0 --save-every 1)
    SUDOKU_DATA=(--n-train 256)
    N=4
else
    PY=${PYTHON:-python3}
    DEV=cuda
    SIZE=(--preset cpu)
    BUDGET=(--minutes "$MINUTES" --eval-every 2000 --eval-n 200 --save-every 1000)
    SUDOKU_DATA=(--n-train 100000)
    N=1000
    log "building fastmdm (the native engine) for $($PY --version)"
    $PY -m pip install -q --no-build-isolation --no-deps --no-index -e . >"$WORK/install.log" 2>&1 \
        || { log "install failed"; tail -n 30 "$WORK/install.log" >&2; exit 1; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$WORK/gpu.txt" 2>&1
fi
FM=("$PY" -m fastmdm.cli)

# ---------------------------------------------------------------- training, four processes on one GPU
# The ARMs follow the arm-solver / arm-rowmajor recipes (recipes.py) at a GPU batch; each its own data cache.
train() {   # name, then the command's arguments
    local name=$1; shift
    log "train $name: $*"
    "${FM[@]}" "$@" --out "$WORK/$name" --threads 3 >"$WORK/$name.log" 2>&1
    log "train $name: exit $?"
}
ARM=(sudoku train "${SIZE[@]}" "${BUDGET[@]}" "${SUDOKU_DATA[@]}" --batch-size 512 --lr 2e-3 --warmup-steps 300)
train arm-solver "${ARM[@]}" --arch arm-solver --arm-digits-first 400 --cache-dir "$WORK/data-solver" &
train arm-rowmajor "${ARM[@]}" --arch arm-rowmajor --arm-cell-weight 0 --cache-dir "$WORK/data-rowmajor" &
# NAE with the clause-built positions that left the loss plateau on CPU (docs/nae.md); Zebra with the clue
# positions on puzzles propagation solves, as Shah et al. keep (docs/zebra.md)
train nae nae train "${SIZE[@]}" "${BUDGET[@]}" --positions clauses --batch-size 512 --lr 2e-3 --warmup-steps 300 &
train zebra zebra train "${SIZE[@]}" "${BUDGET[@]}" --positions clues --logic-only --batch-size 512 --lr 2e-3 \
    --warmup-steps 300 &
wait

pack() {   # one tar of a checkpoint directory, without its optimizer state
    local name=$1
    [ -f "$WORK/$name/model.safetensors" ] || { log "no checkpoint in $WORK/$name"; return; }
    tar -C "$WORK" --exclude='trainer*' --exclude='data*' -cf "$DEST/$name.tar" "$name"
    log "packed $DEST/$name.tar ($(du -h "$DEST/$name.tar" | cut -f1))"
}
for m in arm-solver arm-rowmajor nae zebra; do pack "$m"; done

# ---------------------------------------------------------------- evaluation on the GPU
R="$WORK/results"
mkdir -p "$R"
bundle() {   # the results so far and every log, as one tar
    (cd "$WORK" && tar -cf "$DEST/results.tar" results ./*.log $(ls gpu.txt 2>/dev/null))
}
evaluate() {   # name, then the command's arguments
    local name=$1; shift
    log "eval $name: $*"
    "${FM[@]}" "$@" >"$R/$name.txt" 2>"$R/$name.err"
    log "eval $name: exit $?"
    bundle
}
CKS=shipped
for m in arm-solver arm-rowmajor; do [ -f "$WORK/$m/model.safetensors" ] && CKS="$CKS,$WORK/$m"; done
evaluate sudoku_compare sudoku compare --checkpoints "$CKS" --n "$N" --device "$DEV" --batch-size 1000 \
    --json "$R/sudoku_compare.json" --md "$R/sudoku_compare.md" --plot "$R/sudoku_compare.png"
evaluate zebra_eval zebra eval --checkpoint "$WORK/zebra" --n "$N" --device "$DEV" --batch-size 1000 \
    --json "$R/zebra_eval.json" --markdown "$R/zebra_eval.md"
evaluate nae_eval_infill nae eval --checkpoint "$WORK/nae" --n "$N" --given 0.5 --device "$DEV" --batch-size 1000 \
    --token-accuracy "$N" --json "$R/nae_eval_infill.json" --markdown "$R/nae_eval_infill.md"
log "done"
bundle
