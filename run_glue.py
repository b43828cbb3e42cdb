#!/usr/bin/env python
"""Fine-tune or distil a model on a GLUE task (the flags of Hugging Face's run_glue.py).

Without --teacher_model the student is fine-tuned on the labels (this is how teachers are made);
with one, it is distilled with Hinton KD: L = α_kd·τ²·KL(p_t^τ‖p_s^τ) + (1−α_kd)·CE. With
--train_teacher the teacher learns too (ProKT), and with --use_lgtm it learns from its influence on
the student's quiz loss (LGTM); see lgtm/. --use_opdf over-parameterises the student while it trains
(MPO cores, aligned to the teacher's), on top of any of these; see opdf/. The one-to-one paper's
flags (--alpha_ce --alpha_glue --alpha_corr --alpha_mse --alpha_cos --do_mask) add feature losses on
the last hidden states; see feature_kd/. --ta_models runs any of these as a teacher-assistant chain
(TAKD): teacher -> TA_1 -> ... -> student, one full run per stage; see takd/.

    python run_glue.py --model_name_or_path <student> --teacher_model <teacher> --task_name rte \
        --data_dir glue_data/RTE --do_train --do_eval --output_dir out
"""
from __future__ import annotations

import logging
import os
import sys

from distill.args import (
    DataArguments,
    DistillationArguments,
    ModelArguments,
    ScriptCompatArguments,
    TrainingArguments,
    parse_command_line,
)
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
    load_trainable_teacher,
)
from distill.objective import SequenceClassificationObjective
from distill.sharding import check_fsdp_methods
from distill.teacher_cache import check_cache_request, make_frozen_teacher
from distill.trainer import DistillationTrainer
from feature_kd.args import GlueFeatureArguments
from feature_kd.build import add_feature_terms, glue_loss_weights
from glue.pipeline import LabelOrder, dev_predictions, load_data, make_compute_metrics, test_predictions, tokenize
from glue.submission import expected_submission_files
from lgtm.args import TeacherLearningArguments
from lgtm.build import make_learning_teacher, split_quiz_data, zero_output_layer
from opdf.args import OPDFArguments
from opdf.build import make_opdf
from takd.args import TAKDArguments
from takd.chain import ChainSpec, run_chain

logger = logging.getLogger("run_glue")


FLAGS = (ModelArguments, DataArguments, TrainingArguments, DistillationArguments, TeacherLearningArguments,
         OPDFArguments, GlueFeatureArguments, TAKDArguments, ScriptCompatArguments)
# In a TA chain, an assistant's stage replaces the flags that define the student.
CHAIN = ChainSpec(student_fields=("model_name_or_path", "config_name", "num_layers", "student_layers"))


def run(argv: list[str] | None = None) -> dict:
    parsed = parse_command_line(FLAGS, argv)
    model_args, data_args, train_args, kd_args, teacher_args, opdf_args, feature_args, takd_args, compat = parsed
    train_args.default_actions()
    if takd_args.ta_models:  # teacher -> assistants -> student: this function once per stage
        return run_chain(run, parsed, CHAIN)
    train_args.validate()
    kd_args.validate()
    opdf_args.validate()
    weights = glue_loss_weights(kd_args, feature_args)
    teacher_args.validate(has_teacher=bool(model_args.teacher_model), alpha_kd=weights["alpha_kd"])
    if teacher_args.use_lgtm and any(weights["features"].values()):
        raise UsageError("--use_lgtm with feature losses is not supported: LGTM's teacher learns from its influence "
                         "through its logits only; drop --alpha_corr/--alpha_mse/--alpha_cos or --use_lgtm")
    check_cache_request(train_args, has_teacher=bool(model_args.teacher_model),
                        teacher_learns=teacher_args.train_teacher)
    check_fsdp_methods(train_args, teacher_learns=teacher_args.train_teacher, use_opdf=opdf_args.use_opdf)
    layer_ids = model_args.layer_ids()
    start, accelerator = start_run(train_args, parsed, script=__file__, task_files=tuple(expected_submission_files()))

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
    check_lower_case(tokenizer, compat.do_lower_case)
    check_model_type(student, compat.model_type, "--model_type")
    compat.log_ignored(train_args.output_dir)
    check_max_length(student, data_args.max_seq_length, "student")
    check_vocab_fits(student, tokenizer, "student")
    teacher_model = None
    if model_args.teacher_model and train_args.do_train:
        if teacher_args.train_teacher:
            teacher_model = load_trainable_teacher(model_args.teacher_model, tokenizer, student_order, task.labels,
                                                   data_args.max_seq_length, model_args.cache_dir,
                                                   model_args.trust_remote_code)
        else:
            teacher_model = load_checked_teacher(model_args.teacher_model, tokenizer, student_order,
                                                 task.num_labels, data_args.max_seq_length, model_args.cache_dir,
                                                 model_args.trust_remote_code, task_labels=task.labels)
        check_model_type(teacher_model, compat.teacher_type, "--teacher_type")
        if teacher_args.init_classifier_to_zero:
            for model in (student, teacher_model):
                logger.info("zeroed %s of %s", zero_output_layer(model), type(model).__name__)
    transform = align_loss = None
    if opdf_args.use_opdf and train_args.do_train:  # the MPO student trains; what is saved is dense
        transform, align_loss = make_opdf(opdf_args, student, teacher_model)

    # ---- datasets and trainer
    label_order = LabelOrder(task, student_order)
    encode = lambda ex: tokenize(ex, tokenizer, data_args.max_seq_length, label_order)  # noqa: E731
    train_examples = data.train if train_args.do_train else None
    quiz_examples = None
    if train_examples is not None and teacher_args.use_lgtm:  # LGTM's held-out quiz data
        train_examples, quiz_examples = split_quiz_data(train_examples, data.eval_sets.get(""), teacher_args,
                                                        train_args.seed)
    train_dataset = encode(train_examples) if train_examples is not None else None
    eval_datasets = {k: encode(v) for k, v in data.eval_sets.items()} if train_args.do_eval else {}
    pad_to = data_args.max_seq_length if data_args.pad_to_max_length else None
    collator = PaddingCollator(tokenizer.pad_token_id, pad_to)
    objective = SequenceClassificationObjective(task.is_regression, teacher_model is not None, weights["alpha_kd"],
                                                weights["temperature"], task_weight=weights["task_weight"])
    if train_args.do_train:
        objective, student, transform = add_feature_terms(objective, weights["features"], feature_args, student,
                                                          teacher_model, transform)
    teacher = None
    if teacher_model is not None and teacher_args.train_teacher:
        teacher = make_learning_teacher(
            teacher_args, teacher_model, accelerator, is_regression=task.is_regression, student_objective=objective,
            quiz_dataset=encode(quiz_examples) if quiz_examples is not None else None, collator=collator,
            per_device_batch_size=train_args.per_device_train_batch_size,
            accumulation_steps=train_args.gradient_accumulation_steps, seed=train_args.seed)
    elif teacher_model is not None:
        teacher = make_frozen_teacher(teacher_model, accelerator, train_args)
    os.makedirs(train_args.output_dir, exist_ok=True)
    trainer = DistillationTrainer(
        args=train_args, accelerator=accelerator, student=student, objective=objective, collator=collator,
        train_dataset=train_dataset, eval_datasets=eval_datasets, teacher=teacher,
        compute_metrics=make_compute_metrics(task, label_order), main_metric=task.main_metric, tokenizer=tokenizer,
        model_transform=transform, param_loss=align_loss, group_by_length=data_args.group_by_length)

    predict = None
    if train_args.do_predict:  # the GLUE server files
        predict = lambda: test_predictions(  # noqa: E731
            trainer, task, data.test_sets, {k: encode(v) for k, v in data.test_sets.items()}, label_order)
    eval_files = None
    if data_args.save_eval_predictions:  # per-example dev predictions, for paired comparisons between runs
        eval_files = lambda: dev_predictions(trainer, task, eval_datasets, label_order)  # noqa: E731
    # the teacher is scored on the same dev set (a teacher that learns: its best version, saved in teacher/)
    return finish_run(trainer, start, predict=predict, eval_files=eval_files)


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
