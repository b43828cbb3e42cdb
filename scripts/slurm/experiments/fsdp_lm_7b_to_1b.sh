# Token-level KD of a causal LM with FSDP, 2 nodes x 8 GPUs: Qwen2.5-7B teacher -> Qwen2.5-1.5B student (one
# tokenizer family), forward KL mixed 50/50 with the LM loss. --fsdp full_shard shards the student (weights,
# gradients, AdamW moments) and the frozen teacher over all 16 processes, one unit per decoder layer; bf16 weights,
# float32 gradient reduction and losses. Hub ids must already be in the HF cache (compute nodes are offline).
NODES=${NODES:-2}; GPUS_PER_NODE=${GPUS_PER_NODE:-8}; TIME=${TIME:-48:00:00}
SCRIPT=train_lm_distill.py
ARGS=(--teacher_name_or_path "${TEACHER:-Qwen/Qwen2.5-7B}" --model_name_or_path "${STUDENT:-Qwen/Qwen2.5-1.5B}"
      --train_file "${LM_CORPUS:?set LM_CORPUS to the plain-text training corpus}" --validation_split_percentage 1
      --kd_loss forward_kl --kd_ratio 0.5 --max_seq_length 2048 --per_device_train_batch_size 2
      --gradient_accumulation_steps 8 --learning_rate 1e-5 --lr_scheduler_type cosine --warmup_ratio 0.01
      --num_train_epochs 1 --eval_steps 1000 --save_steps 1000 --save_total_limit 3 --bf16
      --fsdp full_shard --output_dir "${OUT:-runs}/fsdp_lm_7b_to_1b")
# global batch 256 sequences = 2 per GPU x 16 GPUs x 8 accumulation steps
