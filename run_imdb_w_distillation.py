#!/usr/bin/env python
"""Fine-tune or distil a sentiment classifier on IMDB (the one-to-one paper's IMDB script, on the
shared trainer).

Without a teacher the student is fine-tuned (this is how teachers are made); with one,
L = alpha_imdb·CE + alpha_ce·τ²·KL(p_t^τ‖p_s^τ) + alpha_corr/alpha_mse/alpha_cos feature losses. The
best checkpoint is chosen on a dev split carved from TRAIN; --do_predict reports test accuracy with it.
Long reviews: see imdb/data.py (--truncation, default head + tail).

    python run_imdb_w_distillation.py --model_name_or_path <student> --teacher_name_or_path <teacher> \
        --data_file imdb_50k.csv.gz --do_train --do_eval --do_predict \
        --alpha_ce 0.5 --alpha_imdb 0.5 --alpha_corr 0.5 --do_mask --output_dir out
"""
from __future__ import annotations

import logging
import os
import sys

import numpy as np

from distill.args import ModelArguments, ScriptCompatArguments, TrainingArguments, parse_command_line
from distill.batching import PaddingCollator
from distill.entry import cli_main, finish_run, start_run
from distill.errors import UsageError
from distill.modeling import (
    check_lower_case,
    check_max_length,
    check_model_type,
    check_vocab_fits,
    load_checked_teacher,
    load_classifier,
    load_tokenizer,
    saved_label_names,
)
from distill.objective import SequenceClassificationObjective
from distill.teacher_cache import check_cache_request, make_frozen_teacher
from distill.trainer import DistillationTrainer
from feature_kd.build import add_feature_terms
from imdb.args import ImdbDataArguments, ImdbLossArguments
from imdb.data import LABELS, load_imdb_hub, read_imdb_csv, split_dev, tokenize_reviews

logger = logging.getLogger("run_imdb_w_distillation")
TEACHER_ORDER_FIX = "fine-tune the teacher with this script (it saves the neg,pos order)"


def accuracy(logits: np.ndarray, dataset) -> dict[str, float]:
    return {"accuracy": float((logits.argmax(-1) == np.asarray(dataset.columns["labels"])).mean())}


FLAGS = (ModelArguments, ImdbDataArguments, TrainingArguments, ImdbLossArguments, ScriptCompatArguments)


def run(argv: list[str] | None = None) -> dict:
    parsed = parse_command_line(FLAGS, argv)
    model_args, data_args, train_args, loss_args, compat = parsed
    train_args.default_actions(predict=True)
    train_args.validate()
    weights = loss_args.feature_weights()
    check_cache_request(train_args, has_teacher=model_args.teacher_model is not None)
    start, accelerator = start_run(train_args, parsed, script=__file__)

    # ---- data: dev carved from TRAIN; test only for the final report
    splits = read_imdb_csv(data_args.data_file) if data_args.data_file else load_imdb_hub(model_args.cache_dir)
    train, dev = split_dev(splits["train"], data_args.dev_fraction, train_args.seed)
    train = train.sample(data_args.max_train_samples, train_args.seed)
    dev = dev.sample(data_args.max_eval_samples, train_args.seed)
    test = splits["test"].sample(data_args.max_predict_samples, train_args.seed)
    logger.info("IMDB: %d train, %d dev (from train), %d test reviews", len(train), len(dev), len(test))

    # ---- models
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args.cache_dir,
                               model_args.trust_remote_code)
    check_lower_case(tokenizer, compat.do_lower_case)
    compat.log_ignored(train_args.output_dir)
    student, order = load_classifier(model_args.model_name_or_path, LABELS, config_name=model_args.config_name,
                                     cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code,
                                     layer_ids=model_args.layer_ids())
    check_model_type(student, compat.model_type, "--model_type")
    check_max_length(student, data_args.max_seq_length, "student")
    check_vocab_fits(student, tokenizer, "student")
    if order != list(LABELS):  # labels are not re-ordered here: the head must be neg,pos (by meaning: NEGATIVE, ...)
        names = saved_label_names(model_args.config_name or model_args.model_name_or_path, model_args.cache_dir,
                                  model_args.trust_remote_code)
        raise UsageError(f"the student checkpoint's labels are ordered {names}, not {list(LABELS)}; start from a "
                         "checkpoint with generic labels or the neg,pos order")
    teacher_model = None
    if model_args.teacher_model and train_args.do_train:
        teacher_model = load_checked_teacher(model_args.teacher_model, tokenizer, order, len(LABELS),
                                             data_args.max_seq_length, model_args.cache_dir,
                                             model_args.trust_remote_code, order_fix=TEACHER_ORDER_FIX,
                                             task_labels=LABELS)
        check_model_type(teacher_model, compat.teacher_type, "--teacher_type")

    # ---- trainer
    encode = lambda r: tokenize_reviews(r, tokenizer, data_args.max_seq_length, data_args.truncation,  # noqa: E731
                                        data_args.head_tokens)
    objective = SequenceClassificationObjective(False, teacher_model is not None, loss_args.alpha_ce,
                                                loss_args.temperature, task_weight=loss_args.alpha_imdb)
    transform = None
    if train_args.do_train:
        objective, student, transform = add_feature_terms(objective, weights, loss_args, student, teacher_model)
    os.makedirs(train_args.output_dir, exist_ok=True)
    trainer = DistillationTrainer(
        args=train_args, accelerator=accelerator, student=student, objective=objective,
        collator=PaddingCollator(tokenizer.pad_token_id), train_dataset=encode(train) if train_args.do_train else None,
        eval_datasets={"": encode(dev)} if train_args.do_eval else {},
        teacher=make_frozen_teacher(teacher_model, accelerator, train_args) if teacher_model is not None else None,
        compute_metrics=accuracy, main_metric="accuracy", tokenizer=tokenizer, model_transform=transform,
        group_by_length=data_args.group_by_length)

    # the teacher is scored on the same dev reviews; the best (dev-selected) model on the held-out test set, once
    return finish_run(trainer, start, test_datasets={"": encode(test)} if train_args.do_predict else None)


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
