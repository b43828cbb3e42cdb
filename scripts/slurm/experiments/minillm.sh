# MiniLLM on Dolly (the paper's recipe: SFT student, teacher-mixed rollouts, plain-text LM term).
NODES=${NODES:-1}; GPUS_PER_NODE=${GPUS_PER_NODE:-8}; TIME=${TIME:-24:00:00}
SCRIPT=train_lm_distill.py
ARGS=(--method minillm --teacher_name_or_path "${TEACHER:?set TEACHER to the SFT teacher}"
      --model_name_or_path "${STUDENT:?set STUDENT to the SFT student}" --train_file "${DOLLY:?set DOLLY to dolly.jsonl}"
      --lm_train_file "${LM_CORPUS:?set LM_CORPUS to the plain-text corpus}" --num_rollouts 256
      --per_device_train_batch_size 2 --gradient_accumulation_steps 1 --learning_rate 5e-6 --num_train_epochs 10
      --max_new_tokens 256 --max_prompt_length 256 --max_seq_length 512 --eval_steps 400 --bf16
      --output_dir "${OUT:-runs}/minillm")
