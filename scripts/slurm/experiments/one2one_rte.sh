# One-to-one feature mapping on RTE (the paper's RTE command).
NODES=${NODES:-1}; GPUS_PER_NODE=${GPUS_PER_NODE:-1}; TIME=${TIME:-04:00:00}
SCRIPT=run_glue.py
ARGS=(--model_name_or_path "${STUDENT:-distilbert-base-uncased}" --teacher_model "${TEACHER:?set TEACHER to an RTE-fine-tuned BERT-base dir}"
      --task_name rte --data_dir "${GLUE_DIR:-glue_data}/RTE" --do_train --do_eval --do_predict
      --alpha_ce 0 --alpha_glue 0.5 --alpha_corr 0.005 --do_mask --num_train_epochs 3
      --per_device_train_batch_size 32 --learning_rate 5e-5 --output_dir "${OUT:-runs}/one2one_rte")
