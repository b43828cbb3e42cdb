#!/usr/bin/env python
"""Fine-tune or distil a model on a GLUE task (the flags of Hugging Face's run_glue.py).

Without --teacher_model the student is fine-tuned on the labels (this is how teachers are made);
with one, it is distilled with Hinton KD: L = α_kd·τ²·KL(p_t^τ‖p_s^τ) + (1−α_kd)·CE.

    python run_glue.py --model_name_or_path <student> --teacher_model <teacher> --task_name rte \
        --data_dir glue_data/RTE --do_train --do_eval --output_dir out
"""
from __future__ import annotations

import logging
import os
import sys

from distill.args import DataArguments, DistillationArguments, ModelArguments, TrainingArguments, parse_command_line
from distill.batching import PaddingCollator
from distill.checkpoint import resolve_resume
from distill.errors import UsageError
from distill.glue.pipeline import LabelOrder, load_data, make_compute_metrics, tokenize, write_test_predictions
from distill.modeling import (
    check_max_length,
    load_checked_teacher,
    load_classifier,
    load_tokenizer,
)
from distill.objective import SequenceClassificationObjective
from distill.teacher import FrozenTeacher
from distill.trainer import DistillationTrainer, make_accelerator, seed_everything, setup_logging

logger = logging.getLogger("run_glue")


def run(argv: list[str] | None = None) -> dict:
    model_args, data_args, train_args, kd_args = parse_command_line(
        (ModelArguments, DataArguments, TrainingArguments, DistillationArguments), argv)
    train_args.validate()
    kd_args.validate()
    layer_ids = model_args.layer_ids()
    resume_from = resolve_resume(train_args.output_dir, train_args.do_train, train_args.overwrite_output_dir,
                                 train_args.resume_from_checkpoint)
    accelerator = make_accelerator(train_args)
    seed_everything(train_args.seed)

    # ---- data
    data, task = load_data(data_args, model_args.cache_dir)
    if train_args.do_train and data.train is None:
        raise UsageError("--do_train but no training data (train.tsv in --data_dir, or --train_file)")
    if train_args.do_eval and not data.eval_sets:
        raise UsageError("--do_eval but no dev data (dev.tsv in --data_dir, or --validation_file)")
    if train_args.do_predict and not data.test_sets:
        raise UsageError("--do_predict but no test data (test.tsv in --data_dir, or --test_file)")

    # ---- models
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args.cache_dir,
                               model_args.trust_remote_code)
    student, student_order = load_classifier(model_args.model_name_or_path, task.labels,
                                             config_name=model_args.config_name, cache_dir=model_args.cache_dir,
                                             trust_remote_code=model_args.trust_remote_code, layer_ids=layer_ids)
    check_max_length(student, data_args.max_seq_length, "student")
    teacher = None
    if model_args.teacher_model and train_args.do_train:
        teacher_model = load_checked_teacher(model_args.teacher_model, tokenizer, student_order, task.num_labels,
                                             data_args.max_seq_length, model_args.cache_dir,
                                             model_args.trust_remote_code)
        teacher = FrozenTeacher(teacher_model, accelerator)

    # ---- datasets and trainer
    label_order = LabelOrder(task, student_order)
    encode = lambda ex: tokenize(ex, tokenizer, data_args.max_seq_length, label_order)  # noqa: E731
    train_dataset = encode(data.train) if train_args.do_train else None
    eval_datasets = {k: encode(v) for k, v in data.eval_sets.items()} if train_args.do_eval else {}
    pad_to = data_args.max_seq_length if data_args.pad_to_max_length else None
    os.makedirs(train_args.output_dir, exist_ok=True)
    trainer = DistillationTrainer(
        args=train_args, accelerator=accelerator, student=student,
        objective=SequenceClassificationObjective(task.is_regression, teacher is not None, kd_args.alpha_kd,
                                                  kd_args.temperature),
        collator=PaddingCollator(tokenizer.pad_token_id, pad_to), train_dataset=train_dataset,
        eval_datasets=eval_datasets, teacher=teacher, compute_metrics=make_compute_metrics(task, label_order),
        main_metric=task.main_metric, tokenizer=tokenizer, group_by_length=data_args.group_by_length)

    results = {}
    if train_args.do_train:
        train_metrics = trainer.train(resume_from)
        trainer.save_model()
        trainer.save_metrics("train", train_metrics)
        results.update(train_metrics)
    if train_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.save_metrics("eval", eval_metrics)
        results.update(eval_metrics)
        logger.info("dev results: %s", {k: round(v, 4) for k, v in eval_metrics.items()})
    if train_args.do_predict:
        test_datasets = {k: encode(v) for k, v in data.test_sets.items()}
        written = write_test_predictions(trainer, task, data.test_sets, test_datasets, label_order,
                                         train_args.output_dir)
        results["predict_files"] = written
    return results


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    try:
        run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
