#!/usr/bin/env bash
# Real-data TAKD check for docs/results.md ("TAKD"): the real all-MiniLM-L6-v2 teacher fine-tuned by
# scripts/real_data_minilm.sh (real_runs/<task>/teacher, 6 layers) distilled into a 2-layer student made of
# its layers 0 and 5, directly (6 -> 2) or through a 4-layer teacher assistant made of its layers 0,2,3,5
# (6 -> 4 -> 2). Same KD flags as docs/results.md's MiniLM KD run (alpha_kd 0.5, temperature 2, lr 1e-4), the
# same student initialisation, and the same total budget: the chain's two stages get half the epochs each.
# ta_full (after chain) distils the same student from the chain's assistant with the direct run's full budget:
# the chain's second stage with twice the epochs (the assistant's stage would be identical, so it is reused).
# Usage: scripts/real_data_takd.sh [out_dir] [task:variant ...]   variants: direct chain ta_full
#   e.g. OMP_NUM_THREADS=1 scripts/real_data_takd.sh real_runs rte:direct rte:chain
# Knobs (environment): SST2_TRAIN (training subset, default 20000), SST2_EPOCHS (2), RTE_EPOCHS (6), SEED (42;
# another seed writes to takd_<variant>_s<seed>).
set -euo pipefail
OUT=${1:-real_runs}
shift || true
JOBS=("$@")
[ ${#JOBS[@]} -eq 0 ] && JOBS=(rte:direct rte:chain sst2:direct sst2:chain)
PY=${PY:-.venv/bin/python}
GLUE=${GLUE:-../shared/data/glue_data}
export HF_HUB_OFFLINE=1
SEED=${SEED:-42}
SUFFIX=$([ "$SEED" = 42 ] || echo "_s$SEED")
COMMON=(--do_train --do_eval --per_device_eval_batch_size 128 --max_seq_length 128 --warmup_ratio 0.1
        --eval_strategy epoch --report_to tensorboard --seed "$SEED" --overwrite_output_dir --disable_tqdm
        --alpha_kd 0.5 --temperature 2.0 --learning_rate 1e-4 --student_layers 0,5)
for JOB in "${JOBS[@]}"; do
  TASK=${JOB%%:*}; VARIANT=${JOB##*:}
  case $TASK in
    sst2) DIR=$GLUE/SST-2; SUBSET=(--max_train_samples "${SST2_TRAIN:-20000}"); EPOCHS=${SST2_EPOCHS:-2}; BS=32 ;;
    rte)  DIR=$GLUE/RTE;   SUBSET=(); EPOCHS=${RTE_EPOCHS:-6}; BS=16 ;;
    *) echo "unknown task $TASK" >&2; exit 2 ;;
  esac
  HALF=$($PY -c "print($EPOCHS / 2)")
  TEACHER=$OUT/$TASK/teacher
  KD_TEACHER=$TEACHER
  case $VARIANT in
    direct) FLAGS=(--num_train_epochs "$EPOCHS") ;;
    chain) FLAGS=(--ta_models 4 --ta_epochs "$HALF" --num_train_epochs "$HALF") ;;
    ta_full) FLAGS=(--num_train_epochs "$EPOCHS"); KD_TEACHER=$OUT/$TASK/takd_chain$SUFFIX/stage_1_4layers ;;
    *) echo "unknown variant $VARIANT" >&2; exit 2 ;;
  esac
  ARGS=(--model_name_or_path "$TEACHER" --teacher_model "$KD_TEACHER" --task_name "$TASK" --data_dir "$DIR"
        "${SUBSET[@]}" --per_device_train_batch_size $BS "${COMMON[@]}" "${FLAGS[@]}"
        --output_dir "$OUT/$TASK/takd_$VARIANT$SUFFIX")
  echo "+ python run_glue.py ${ARGS[*]}" >&2
  $PY run_glue.py "${ARGS[@]}"
done
$PY - "$OUT" "$SUFFIX" <<'PY'
import json, os, sys
out, suffix = sys.argv[1], sys.argv[2]
print(f"{'task':<6}{'variant':<12}{'TA dev acc':>11}{'student dev acc':>16}{'train s (all stages)':>22}")
for task in ("rte", "sst2"):
    for variant in ("direct", "chain", "ta_full"):
        run = os.path.join(out, task, f"takd_{variant}{suffix}")
        if os.path.isfile(os.path.join(run, "takd_summary.json")):
            rows = json.load(open(os.path.join(run, "takd_summary.json")))["stages"]
            ta, student, seconds = rows[1]["dev_metric"], rows[-1]["dev_metric"], sum(r["train_runtime"] for r in rows[1:])
        elif os.path.isfile(os.path.join(run, "all_results.json")):
            r = json.load(open(os.path.join(run, "all_results.json")))
            ta = r["teacher_eval_accuracy"] if variant == "ta_full" else float("nan")
            student, seconds = r["eval_accuracy"], r["train_runtime"]
        else:
            continue
        print(f"{task:<6}{variant:<12}{ta:>11.4f}{student:>16.4f}{seconds:>22.0f}")
PY
