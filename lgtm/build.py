"""Wiring for the entry scripts: the teacher strategy from the flags, the quiz split, head zeroing."""
from __future__ import annotations

import logging

import torch
from torch import nn

from distill.batching import PaddingCollator, TokenizedDataset
from distill.errors import UsageError
from lgtm.args import TeacherLearningArguments
from lgtm.objectives import TeacherAuxObjective
from lgtm.quiz import QuizBatches
from lgtm.teachers import LGTMTeacher, ProKTTeacher

logger = logging.getLogger(__name__)


@torch.no_grad()
def zero_output_layer(model: nn.Module) -> str:
    """Zero the weight and bias of the classifier's OUTPUT layer (the last Linear with num_labels outputs)
    and return its name. Only that layer: zeroing a whole two-layer head (RoBERTa's dense + out_proj,
    DistilBERT's pre_classifier, as the released code's `model.classifier` did for those) would leave
    no gradient to its inner layer and the head could never learn."""
    num_labels = model.config.num_labels
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise UsageError(f"--init_classifier_to_zero: no output layer with {num_labels} outputs in "
                         f"{type(model).__name__}; drop the flag for this model")
    name, layer = found[-1]
    layer.weight.zero_()
    if layer.bias is not None:
        layer.bias.zero_()
    return name


def split_quiz_data(train, dev, targs: TeacherLearningArguments, seed: int):
    """(training examples, quiz examples) for LGTM. Default: a seeded `--lgtm_quiz_fraction` of the
    training set becomes quiz data and is removed from training. `--lgtm_quiz_source validation`:
    the dev set, as the released code did (with a warning)."""
    from lgtm.quiz import split_quiz_indices

    if targs.lgtm_quiz_source == "validation":
        logger.warning("--lgtm_quiz_source validation: the teacher learns from the dev set that checkpoints are "
                       "selected and scored on, as in the released LGTM code; dev scores are optimistic")
        if dev is None:
            raise UsageError("--lgtm_quiz_source validation needs a dev set (dev.tsv in --data_dir, or "
                             "--validation_file); or use the default --lgtm_quiz_source train")
        return train, dev
    if len(train) < 2:
        raise UsageError(f"--use_lgtm holds out {targs.lgtm_quiz_fraction:.0%} of the training set as quiz data, "
                         f"but it has {len(train)} example(s); add training data")
    train_rows, quiz_rows = split_quiz_indices(len(train), targs.lgtm_quiz_fraction, seed)
    logger.info("LGTM quiz data: %d training examples held out (never used for student updates), %d left to "
                "train on", len(quiz_rows), len(train_rows))
    return train.select(train_rows), train.select(quiz_rows)


def make_learning_teacher(targs: TeacherLearningArguments, model: nn.Module, accelerator, *, is_regression: bool,
                          student_objective, quiz_dataset: TokenizedDataset | None, collator: PaddingCollator,
                          per_device_batch_size: int, accumulation_steps: int, seed: int):
    """ProKTTeacher (--train_teacher) or LGTMTeacher (--train_teacher --use_lgtm). LGTM's quiz batch is
    the optimizer step's global batch (per device × accumulation × processes), drawn alike for any split
    of it, and read in micro-batches of the training micro-batch's size (lgtm/quiz.py)."""
    aux = TeacherAuxObjective(is_regression, targs.t_alpha_kd)
    if not targs.use_lgtm:
        return ProKTTeacher(model, accelerator, aux, targs.t_learning_rate)
    if quiz_dataset is None or len(quiz_dataset) == 0:
        raise UsageError("--use_lgtm needs quiz data: training data to hold out (--lgtm_quiz_source train) or a dev "
                         "set (--lgtm_quiz_source validation)")
    step_batch = per_device_batch_size * accumulation_steps * accelerator.num_processes
    quiz = QuizBatches(quiz_dataset, step_batch, seed, collator, accelerator.num_processes,
                       accelerator.process_index, micro_batch_size=per_device_batch_size)
    return LGTMTeacher(model, accelerator, aux, targs.t_learning_rate, student_objective=student_objective, quiz=quiz,
                       influence=targs.lgtm_influence, fd_radius=targs.lgtm_fd_radius, exact=targs.lgtm_exact)
