#!/usr/bin/env bash
# Trains the three character-level models on the lent GPU in one call (see README.md):
# a smoke run of all three first (tiny sizes, a few steps), then the real runs side by side,
# each for SECONDS of wall clock. Results go to $OUT: one tar per model and the logs.
# Run from the repository root with .devcarry/corpus carried (node apps/training/jamba-chars/prepare-corpus.mjs).
set -euo pipefail
SECONDS_PER_MODEL=${1:-180}
here=apps/training/jamba-chars
corpus=.devcarry/corpus
out=${OUT:-/tmp/jamba-chars-out}
work=$(mktemp -d)
mkdir -p "$out"
nvidia-smi --query-gpu=name --format=csv,noheader || true
if ! python3 "$here/train.py" --smoke --corpus "$corpus" --out "$work/smoke" >"$out/smoke.log" 2>&1; then
  tail -n 60 "$out/smoke.log"
  exit 1
fi
tail -n 3 "$out/smoke.log"
pids=()
for m in jamba mamba transformer; do
  python3 "$here/train.py" --model "$m" --corpus "$corpus" --out "$work/models" --seconds "$SECONDS_PER_MODEL" >"$out/$m.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for m in jamba mamba transformer; do
  tail -n 4 "$out/$m.log"
  [ -d "$work/models/$m" ] && tar -C "$work/models" -cf "$out/$m.tar" "$m"
done
exit $status
