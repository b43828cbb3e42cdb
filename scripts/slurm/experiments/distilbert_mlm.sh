# DistilBERT's MLM distillation (its README recipe, with the original pipeline's flag names), 2 nodes x 8 GPUs.
NODES=${NODES:-2}; GPUS_PER_NODE=${GPUS_PER_NODE:-8}; TIME=${TIME:-72:00:00}
SCRIPT=train_lm_distill.py
ARGS=(--student_type distilbert --teacher_type bert --teacher_name "${TEACHER:-bert-base-uncased}"
      --student_config "${STUDENT_CONFIG:?set STUDENT_CONFIG to distilbert-base-uncased.json}" --student_layers 0,2,4,7,9,11
      --alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --alpha_clm 0.0 --mlm --batch_size 5
      --gradient_accumulation_steps 50 --n_epoch 3 --data_file "${CORPUS:?set CORPUS to the text corpus}"
      --dump_path "${OUT:-runs}/distilbert_mlm" --bf16)
