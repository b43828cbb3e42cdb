"""GLUE test-server files: `<Task>.tsv` with header `index\tprediction`, one row per test example
in test-file order. Digits for CoLA/SST-2/MRPC/QQP/WNLI, label words for MNLI/QNLI/RTE/AX,
STS-B scores clipped to [0, 5] with 3 decimals."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from distill.io_utils import atomic_write_text
from glue.tasks import AX_SUBMISSION, GLUE_TASKS, GlueTask

SUBMISSION_HEADER = "index\tprediction"


def format_predictions(task: GlueTask, preds: np.ndarray) -> list[str]:
    """The `prediction` column: clipped floats, label words or digits as the server expects."""
    preds = np.asarray(preds)
    if not np.all(np.isfinite(preds)):
        raise ValueError(f"{task.name}: {int((~np.isfinite(preds)).sum())} predictions are not finite numbers")
    if not task.is_regression and preds.size and (preds.min() < 0 or preds.max() >= task.num_labels):
        raise ValueError(f"{task.name}: class ids must be in 0..{task.num_labels - 1}")
    if task.is_regression:
        # `+ 0.0` turns -0.0 (max(-0.0, 0.0) keeps it) into 0.0, which prints "0.000" not "-0.000"
        return [f"{min(max(float(p), 0.0), 5.0) + 0.0:.3f}" for p in preds]
    if task.label_words_in_submission:
        return [task.labels[int(p)] for p in preds]
    return [str(int(p)) for p in preds]


def submission_text(name: str, index: Sequence[str], predictions: Sequence[str]) -> str:
    """The content of the server file `name`: the header, then one `index\tprediction` row per test row."""
    if len(index) != len(predictions):
        raise ValueError(f"{name}: {len(index)} test rows but {len(predictions)} predictions")
    lines = [SUBMISSION_HEADER] + [f"{i}\t{p}" for i, p in zip(index, predictions)]
    return "\n".join(lines) + "\n"


def task_submission_text(file_name: str, task: GlueTask, index: Sequence[str], preds: np.ndarray) -> str:
    return submission_text(file_name, index, format_predictions(task, preds))


def write_submission_file(path: str, index: Sequence[str], predictions: Sequence[str]) -> None:
    atomic_write_text(path, submission_text(path, index, predictions))


def write_task_submission(output_dir: str, file_name: str, task: GlueTask, index: Sequence[str],
                          preds: np.ndarray) -> str:
    path = os.path.join(output_dir, file_name)
    atomic_write_text(path, task_submission_text(path, task, index, preds))
    return path


def expected_submission_files() -> dict[str, tuple[GlueTask, int]]:
    """The eleven GLUE server files in submission order: file name -> (task that predicts it, rows).

    AX is predicted by the MNLI model, so it carries the MNLI task (and its label words).
    """
    files: dict[str, tuple[GlueTask, int]] = {}
    for task in GLUE_TASKS.values():
        for name, rows in zip(task.submission_files, task.submission_rows):
            files[name] = (task, rows)
    files[AX_SUBMISSION[0]] = (GLUE_TASKS["mnli"], AX_SUBMISSION[1])
    return files
