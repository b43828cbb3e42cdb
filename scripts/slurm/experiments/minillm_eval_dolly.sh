# MiniLLM's evaluation job (the paper's eval_main_dolly): Rouge-L F (x100) of responses sampled at temperature 1,
# top-p 1, on Dolly's held-out test prompts, averaged over the seeds 10..50; for a MiniLLM student, a baseline
# (SFT, KD, SeqKD) or the teacher alike. One GPU: the evaluation samples on one process.
#   MODEL=runs/minillm DOLLY_TEST=data/dolly/test.jsonl scripts/slurm/submit.sh scripts/slurm/experiments/minillm_eval_dolly.sh
NODES=${NODES:-1}; GPUS_PER_NODE=${GPUS_PER_NODE:-1}; TIME=${TIME:-4:00:00}
SCRIPT=train_lm_distill.py
ARGS=(--do_eval --model_name_or_path "${MODEL:?set MODEL to the model dir to evaluate}"
      --validation_file "${DOLLY_TEST:?set DOLLY_TEST to the Dolly test jsonl (prompt, response)}"
      --eval_metric rougeL --eval_seeds 10,20,30,40,50 --gen_temperature 1.0 --top_p 1.0
      --max_prompt_length 256 --max_new_tokens 256 --max_seq_length 512 --per_device_eval_batch_size 16 --bf16
      --output_dir "${OUT:-runs}/eval_dolly/$(basename "${MODEL}")")
