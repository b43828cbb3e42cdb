#!/usr/bin/env bash
# Real-data MiniLLM vs SFT vs KD vs SeqKD on a Tiny Shakespeare continuation task (docs/results.md,
# "MiniLLM and SeqKD on a Tiny Shakespeare continuation task"). Uses the tokenizer, 4-layer teacher and 2-layer LM student of scripts/real_data_lm.sh
# (run its stages tokenizer teacher nokd first, into $LM). Every method starts from that student, with the
# same budget of optimizer steps; MiniLLM starts from the SFT student, as in the paper.
#   scripts/real_data_minillm.sh <out_root> <stage>...
#   stages: data teacher_sft sft kd seqkd minillm test (test: Rouge-L of every model on test.jsonl)
set -euo pipefail
OUT=${1:?out root}; shift
LM=${LM:-real_runs/lm}
SHAKESPEARE=${DATA:-../shared/data/lm/tinyshakespeare/input.txt}
PY=${PY:-.venv/bin/python}
D=$OUT/data
GEN=(--max_new_tokens 32 --max_prompt_length 96 --eval_seeds 10,20,30 --per_device_eval_batch_size 100)
COMMON=(--train_file "$D/train.jsonl" --validation_file "$D/valid.jsonl" --max_seq_length 128
        --per_device_train_batch_size 16 --logging_steps 50 --lr_scheduler_type cosine --warmup_ratio 0.05
        --weight_decay 0.1 --seed 42 --disable_tqdm --save_total_limit 1 --data_cache_dir "$OUT/cache"
        --overwrite_output_dir --eval_metric rougeL "${GEN[@]}")
STEPS=(--max_steps 800 --eval_steps 200 --learning_rate 5e-4)
for stage in "$@"; do
  case $stage in
    data)
      $PY scripts/make_continuation_data.py --input "$SHAKESPEARE" --output_dir "$D" --num_valid 100 --num_test 604 ;;
    teacher_sft)
      $PY train_lm_distill.py "${COMMON[@]}" "${STEPS[@]}" --model_name_or_path "$LM/teacher" \
        --output_dir "$OUT/teacher_sft" ;;
    sft)
      $PY train_lm_distill.py "${COMMON[@]}" "${STEPS[@]}" --model_name_or_path "$LM/student_nokd" \
        --output_dir "$OUT/sft" ;;
    kd)
      $PY train_lm_distill.py "${COMMON[@]}" "${STEPS[@]}" --model_name_or_path "$LM/student_nokd" \
        --teacher_name_or_path "$OUT/teacher_sft" --kd_ratio 0.5 --output_dir "$OUT/kd" ;;
    seqkd)
      $PY train_lm_distill.py "${COMMON[@]}" "${STEPS[@]}" --method seqkd --model_name_or_path "$LM/student_nokd" \
        --teacher_name_or_path "$OUT/teacher_sft" --chunk_size 64 --output_dir "$OUT/seqkd" ;;
    minillm)  # 10 collections of 256 rollouts, 4 PPO passes each: 640 steps of 16 rollouts + 16 LM sequences
      $PY train_lm_distill.py "${COMMON[@]}" --method minillm --model_name_or_path "$OUT/sft" \
        --teacher_name_or_path "$OUT/teacher_sft" --lm_train_file "$D/lm_train.txt" --num_rollouts 256 \
        --ppo_epochs 4 --chunk_size 64 --max_steps 640 --eval_steps 128 --learning_rate 5e-5 \
        --output_dir "$OUT/minillm" ;;
    test)
      for model in teacher_sft sft kd seqkd minillm; do
        $PY train_lm_distill.py --do_eval --model_name_or_path "$OUT/$model" --validation_file "$D/test.jsonl" \
          --eval_metric rougeL --max_seq_length 128 "${GEN[@]}" --output_dir "$OUT/test_$model" --overwrite_output_dir --report_to none
      done ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
