# LGTM on MNLI (the LGTM paper's command): BERT-base teacher fine-tuned on MNLI -> 6-layer BERT student.
NODES=${NODES:-1}; GPUS_PER_NODE=${GPUS_PER_NODE:-4}; TIME=${TIME:-48:00:00}
SCRIPT=run_glue.py
ARGS=(--model_name_or_path "${STUDENT:-google/bert_uncased_L-6_H-768_A-12}" --teacher_model "${TEACHER:?set TEACHER to an MNLI-fine-tuned BERT-base dir}"
      --task_name mnli --data_dir "${GLUE_DIR:-glue_data}/MNLI" --per_device_train_batch_size 8
      --per_device_eval_batch_size 32 --learning_rate 3e-05 --t_learning_rate 3e-05 --alpha_kd 1.0
      --temperature 1.0 --num_train_epochs 6 --eval_steps 1000 --do_train --do_eval --do_predict
      --train_teacher --init_classifier_to_zero --use_lgtm --output_dir "${OUT:-runs}/lgtm_mnli")
# global batch 32 = 8 per GPU x 4 GPUs, the paper's batch
