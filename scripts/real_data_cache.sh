#!/usr/bin/env bash
# Real-data check of --cache_teacher_outputs for docs/results.md ("Teacher-output caching"): RTE KD from the fine-tuned all-MiniLM-L6-v2
# teacher (real_runs/rte/teacher, made by scripts/real_data_minilm.sh) into a 2-layer student (its layers 0
# and 5), once with the live teacher and once with the cache (built by that run, in <out>/rte/teacher_cache),
# then a second cached run that only reads it. Prints dev accuracy, training time and the largest weight
# difference between the live and cached students.
# Usage: OMP_NUM_THREADS=1 scripts/real_data_cache.sh [out_dir]     knobs: EPOCHS (3), SEED (42)
set -euo pipefail
OUT=${1:-real_runs}
PY=${PY:-.venv/bin/python}
GLUE=${GLUE:-../shared/data/glue_data}
export HF_HUB_OFFLINE=1
ARGS=(--model_name_or_path "$OUT/rte/teacher" --teacher_model "$OUT/rte/teacher" --student_layers 0,5 --task_name rte
      --data_dir "$GLUE/RTE" --do_train --do_eval --per_device_train_batch_size 16 --per_device_eval_batch_size 128
      --max_seq_length 128 --warmup_ratio 0.1 --eval_strategy epoch --report_to none --seed "${SEED:-42}"
      --overwrite_output_dir --disable_tqdm --alpha_kd 0.5 --temperature 2.0 --learning_rate 1e-4
      --num_train_epochs "${EPOCHS:-3}")
rm -rf "$OUT/rte/teacher_cache"
CACHE=(--cache_teacher_outputs --teacher_cache_dir "$OUT/rte/teacher_cache")
for RUN in live cached cached_again; do
  FLAGS=(); [ "$RUN" = live ] || FLAGS=("${CACHE[@]}")
  START=$(date +%s.%N)
  $PY run_glue.py "${ARGS[@]}" "${FLAGS[@]}" --output_dir "$OUT/rte/cache_$RUN"
  echo "$RUN wall_s $(echo "$(date +%s.%N) - $START" | bc)" | tee -a "$OUT/rte/cache_wall.txt"
done
$PY - "$OUT/rte" <<'PY'
import json, os, sys
from safetensors.torch import load_file
root = sys.argv[1]
live = load_file(os.path.join(root, "cache_live", "model.safetensors"))
for run in ("live", "cached", "cached_again"):
    d = os.path.join(root, f"cache_{run}")
    acc = json.load(open(os.path.join(d, "eval_results.json")))["eval_accuracy"]
    train_s = json.load(open(os.path.join(d, "train_results.json")))["train_runtime"]
    w = load_file(os.path.join(d, "model.safetensors"))
    diff = max((w[k] - live[k]).abs().max().item() for k in live)
    print(f"{run:<13} dev acc {acc:.4f}  train_runtime {train_s:7.1f} s  max |w - w_live| {diff:.2e}")
PY
