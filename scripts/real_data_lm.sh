#!/usr/bin/env bash
# Real-data causal-LM distillation on Tiny Shakespeare (docs/results.md, "Causal-LM distillation on Tiny Shakespeare").
# A BPE tokenizer and a 4-layer GPT-2 teacher are trained here on the first 90 % of the documents; 2-layer
# students (random init, same seed) are trained with the same budget without KD, with forward KL, reverse KL
# and generalised JSD (β ½); all report perplexity on the last 10 % of the documents.
#   scripts/real_data_lm.sh <out_root> <stage>...    stages: tokenizer teacher nokd fkl rkl jsd
set -euo pipefail
OUT=${1:?out root}; shift
DATA=${DATA:-../shared/data/lm/tinyshakespeare/input.txt}
PY=${PY:-.venv/bin/python}
COMMON=(--train_file "$DATA" --validation_split_percentage 10 --max_seq_length 128 --per_device_train_batch_size 16
        --per_device_eval_batch_size 32 --eval_steps 100 --logging_steps 50 --lr_scheduler_type cosine
        --warmup_ratio 0.05 --weight_decay 0.1 --seed 42 --disable_tqdm --save_total_limit 1
        --data_cache_dir "$OUT/cache" --overwrite_output_dir)
STUDENT=(--student_config "$OUT/student_config.json" --tokenizer_name "$OUT/tokenizer" --max_steps 1000
         --learning_rate 1e-3)
for stage in "$@"; do
  case $stage in
    tokenizer)
      $PY scripts/train_bpe_tokenizer.py --train_file "$DATA" --validation_split_percentage 10 --vocab_size 2048 \
        --output_dir "$OUT/tokenizer"
      $PY - "$OUT" <<'PYEOF'
import json, sys
from transformers import AutoTokenizer
out = sys.argv[1]
tok = AutoTokenizer.from_pretrained(f"{out}/tokenizer")
base = dict(model_type="gpt2", vocab_size=len(tok), n_positions=128, bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
json.dump(base | dict(n_layer=4, n_embd=256, n_head=4), open(f"{out}/teacher_config.json", "w"), indent=1)
json.dump(base | dict(n_layer=2, n_embd=128, n_head=4), open(f"{out}/student_config.json", "w"), indent=1)
PYEOF
      ;;
    teacher)
      $PY train_lm_distill.py "${COMMON[@]}" --student_config "$OUT/teacher_config.json" \
        --tokenizer_name "$OUT/tokenizer" --max_steps 1500 --learning_rate 1e-3 --output_dir "$OUT/teacher" ;;
    nokd)
      $PY train_lm_distill.py "${COMMON[@]}" "${STUDENT[@]}" --output_dir "$OUT/student_nokd" ;;
    fkl|rkl|jsd)  # the same student, distilled with one divergence mixed 50/50 with the LM loss
      case $stage in
        fkl) KD=(--kd_loss forward_kl) ;;
        rkl) KD=(--kd_loss reverse_kl) ;;
        jsd) KD=(--kd_loss jsd --jsd_beta 0.5) ;;
      esac
      $PY train_lm_distill.py "${COMMON[@]}" "${STUDENT[@]}" --teacher_name "$OUT/teacher" "${KD[@]}" \
        --kd_ratio 0.5 --output_dir "$OUT/student_$stage" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
