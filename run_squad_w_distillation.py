#!/usr/bin/env python
"""Fine-tune or distil a question-answering model on SQuAD v1.1 (the flags of Hugging Face's legacy
run_squad_w_distillation.py, plus the one-to-one paper's feature losses).

Without a teacher the student is fine-tuned on the gold spans (this is how teachers are made); with
one, L = alpha_squad·span CE + alpha_ce·τ²·KL on the start/end distributions (squad/objective.py)
+ alpha_corr/alpha_mse/alpha_cos feature losses (feature_kd/). Evaluation: n-best span post-processing
and the official EM/F1; the answers go to predictions.json.

    python run_squad_w_distillation.py --model_type distilbert --model_name_or_path distilbert-base-uncased \
        --teacher_type bert --teacher_name_or_path <teacher> --output_dir out --train_file train-v1.1.json \
        --predict_file dev-v1.1.json --do_train --do_eval --do_lower_case --alpha_ce 0.0 --alpha_squad 0.5 \
        --alpha_corr 0.5 --alpha_cos 0.0 --num_train_epochs 3
"""
from __future__ import annotations

import logging
import os
import sys

from transformers import AutoModelForQuestionAnswering

from distill.args import ModelArguments, ScriptCompatArguments, TrainingArguments, parse_command_line
from distill.batching import PaddingCollator
from distill.entry import cli_main, finish_run, start_run
from distill.errors import UsageError
from distill.modeling import (
    check_lower_case,
    check_max_length,
    check_model_type,
    check_same_vocabulary,
    check_vocab_fits,
    load_pretrained,
    load_teacher_tokenizer,
    load_tokenizer,
)
from distill.teacher_cache import check_cache_request, make_frozen_teacher
from distill.trainer import DistillationTrainer
from feature_kd.build import add_feature_terms
from squad.args import SquadDataArguments, SquadLossArguments
from squad.data import load_squad_hub, read_squad_json
from squad.objective import QuestionAnsweringObjective
from squad.postprocess import SquadEvaluator
from squad.windows import check_window_room, eval_features, train_features

logger = logging.getLogger("run_squad_w_distillation")


def load_examples(path: str | None, hub_split: str, limit: int | None, cache_dir: str | None):
    examples = read_squad_json(path) if path else load_squad_hub(hub_split, cache_dir)
    return examples[:limit] if limit is not None else examples


FLAGS = (ModelArguments, SquadDataArguments, TrainingArguments, SquadLossArguments, ScriptCompatArguments)


def run(argv: list[str] | None = None) -> dict:
    parsed = parse_command_line(FLAGS, argv)
    model_args, data_args, train_args, loss_args, compat = parsed
    train_args.default_actions()
    train_args.validate()
    if train_args.do_predict:
        raise UsageError("--do_predict: SQuAD answers are written by --do_eval (predictions.json for --predict_file)")
    data_args.resolve_paths()
    check_window_room(data_args.max_seq_length, data_args.doc_stride, data_args.max_query_length)  # before loading
    weights = loss_args.feature_weights()
    check_cache_request(train_args, has_teacher=model_args.teacher_model is not None)
    start, accelerator = start_run(train_args, parsed, script=__file__)

    # ---- models
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args.cache_dir,
                               model_args.trust_remote_code)
    check_lower_case(tokenizer, compat.do_lower_case)
    compat.log_ignored(train_args.output_dir)
    load = dict(cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code)
    student = load_pretrained(AutoModelForQuestionAnswering, model_args.model_name_or_path, what="the student",
                              layer_ids=model_args.layer_ids(), **load)
    check_model_type(student, compat.model_type, "--model_type")
    check_max_length(student, data_args.max_seq_length, "student")
    check_vocab_fits(student, tokenizer, "student")
    teacher_model = None
    if model_args.teacher_model and train_args.do_train:
        teacher_model = load_pretrained(AutoModelForQuestionAnswering, model_args.teacher_model, what="the teacher",
                                        complete=True, **load)
        check_model_type(teacher_model, compat.teacher_type, "--teacher_type")
        check_same_vocabulary(tokenizer, load_teacher_tokenizer(model_args.teacher_model, **load),
                              model_args.teacher_model)
        check_max_length(teacher_model, data_args.max_seq_length, "teacher")
        check_vocab_fits(teacher_model, tokenizer, "teacher")

    # ---- data, objective, trainer
    window = dict(max_seq_length=data_args.max_seq_length, doc_stride=data_args.doc_stride,
                  max_query_length=data_args.max_query_length)
    train_dataset = eval_dataset = evaluator = None
    if train_args.do_train:
        train_examples = load_examples(data_args.train_file, "train", data_args.max_train_samples,
                                       model_args.cache_dir)
        train_dataset = train_features(train_examples, tokenizer, **window)
        logger.info("training: %d questions -> %d windows", len(train_examples), len(train_dataset))
    if train_args.do_eval:
        eval_examples = load_examples(data_args.predict_file, "validation", data_args.max_eval_samples,
                                      model_args.cache_dir)
        eval_dataset, feature_map = eval_features(eval_examples, tokenizer, **window)
        evaluator = SquadEvaluator(eval_examples, feature_map, data_args.n_best_size, data_args.max_answer_length)
        logger.info("evaluation: %d questions -> %d windows", len(eval_examples), len(eval_dataset))
    objective = QuestionAnsweringObjective(teacher_model is not None, loss_args.alpha_squad, loss_args.alpha_ce,
                                           loss_args.temperature)
    transform = None
    if train_args.do_train:
        objective, student, transform = add_feature_terms(objective, weights, loss_args, student, teacher_model)
    os.makedirs(train_args.output_dir, exist_ok=True)
    trainer = DistillationTrainer(
        args=train_args, accelerator=accelerator, student=student, objective=objective,
        collator=PaddingCollator(tokenizer.pad_token_id), train_dataset=train_dataset,
        eval_datasets={"": eval_dataset} if eval_dataset is not None else {},
        teacher=make_frozen_teacher(teacher_model, accelerator, train_args) if teacher_model is not None else None,
        compute_metrics=evaluator, main_metric="f1", tokenizer=tokenizer, model_transform=transform,
        group_by_length=data_args.group_by_length)

    # the final evaluation's answers go to predictions.json; the teacher is scored on the same questions
    return finish_run(trainer, start, eval_files=lambda: {"predictions.json": evaluator.predictions})


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
