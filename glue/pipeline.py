"""GLUE glue code between the data, the models and the trainer: which data source, tokenisation,
label-order reconciliation, metrics and the submission files. Framework-free where possible."""
from __future__ import annotations

import logging

import numpy as np

from distill.args import DataArguments
from distill.batching import TokenizedDataset
from distill.errors import UsageError
from glue.data import Examples, GlueData, load_glue_files, load_glue_folder, load_glue_hub
from glue.metrics import glue_metrics, predictions_from_logits
from glue.submission import task_submission_text
from glue.tasks import GlueTask, get_task

logger = logging.getLogger(__name__)


def load_data(data_args: DataArguments, cache_dir: str | None = None) -> tuple[GlueData, GlueTask]:
    """(a) --data_dir folder, (b) --train_file/--validation_file/--test_file, (c) the Hub."""
    task = get_task(data_args.task_name) if data_args.task_name else None
    user_files = data_args.train_file or data_args.validation_file or data_args.test_file
    if data_args.data_dir and user_files:
        raise UsageError("--data_dir and --train_file/--validation_file/--test_file both given; pass one source")
    if data_args.data_dir:
        if task is None:
            raise UsageError("--data_dir needs --task_name to know the folder's TSV layout")
        data = load_glue_folder(data_args.data_dir, task, data_args.ax_file)
    elif user_files:
        data, task = load_glue_files(data_args.train_file, data_args.validation_file, data_args.test_file, task)
    elif task is not None:
        data = load_glue_hub(task, cache_dir, data_args.overwrite_cache)
    else:
        raise UsageError("no data: pass --task_name (Hub), --data_dir glue_data/<TASK>, or --train_file/"
                         "--validation_file")
    if data.train is not None:
        data.train = data.train.head(data_args.max_train_samples)
    data.eval_sets = {k: v.head(data_args.max_eval_samples) for k, v in data.eval_sets.items()}
    data.test_sets = {k: v.head(data_args.max_predict_samples) for k, v in data.test_sets.items()}
    return data, task


class LabelOrder:
    """The student's label order vs the task's canonical one (an MNLI checkpoint may differ).

    Training labels are converted to the student's ids; evaluation logits are converted back to the
    canonical order, so metrics and submission files never see the student's order.
    """

    def __init__(self, task: GlueTask, student_order: list[str]):
        self.student_order = list(student_order)
        if task.is_regression:
            self.to_student = None
        else:
            self.to_student = np.array([self.student_order.index(name) for name in task.labels])  # canonical -> student

    def labels_for_student(self, labels):
        return labels if self.to_student is None else [int(self.to_student[y]) for y in labels]

    def canonical_logits(self, logits: np.ndarray) -> np.ndarray:
        return logits if self.to_student is None else logits[:, self.to_student]  # (N, C) canonical

    def canonical_labels(self, student_labels: np.ndarray) -> np.ndarray:
        if self.to_student is None:
            return student_labels
        inverse = np.argsort(self.to_student)  # student id -> canonical id
        return inverse[np.asarray(student_labels, dtype=int)]


def tokenize(examples: Examples, tokenizer, max_seq_length: int, label_order: LabelOrder) -> TokenizedDataset:
    """Token ids for every model the run uses: token_type_ids always (a BERT teacher needs them even
    when the student ignores them); truncation to max_seq_length (longest sequence first)."""
    encoded = tokenizer(examples.text_a, examples.text_b, truncation=True, max_length=max_seq_length,
                        return_token_type_ids=True)
    columns = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
    if examples.labels is not None:
        columns["labels"] = label_order.labels_for_student(examples.labels)
    return TokenizedDataset(columns)


def make_compute_metrics(task: GlueTask, label_order: LabelOrder):
    def compute_metrics(logits: np.ndarray, dataset: TokenizedDataset) -> dict:
        logits = label_order.canonical_logits(logits)
        labels = label_order.canonical_labels(np.asarray(dataset.columns["labels"]))
        return glue_metrics(task, predictions_from_logits(task, logits), labels)
    return compute_metrics


def test_predictions(trainer, task: GlueTask, test_sets: dict[str, Examples],
                     datasets: dict[str, TokenizedDataset], label_order: LabelOrder) -> dict[str, str]:
    """{server file name: its content}, one GLUE server file per test set (AX uses the MNLI model and MNLI's
    label words); for distill.entry.finish_run to write. Runs on every process (prediction is collective)."""
    files = {}
    for file_name, dataset in datasets.items():
        logits = label_order.canonical_logits(trainer.predict(dataset))
        preds = predictions_from_logits(task, logits)
        files[file_name] = task_submission_text(file_name, task, test_sets[file_name].index, preds)
    return files


def dev_predictions(trainer, task: GlueTask, datasets: dict[str, TokenizedDataset],
                    label_order: LabelOrder) -> dict[str, dict]:
    """{eval_predictions<suffix>.json: the dev set's per-example predictions and gold labels}, in the task's
    canonical label order (class ids; scores for STS-B), with what a paired comparison needs to recompute the
    metric: the task, its main metric, whether it is a regression. For distill.entry.finish_run to write
    (`eval_files`); runs on every process (prediction is collective)."""
    files = {}
    for suffix, dataset in datasets.items():
        logits = label_order.canonical_logits(trainer.predict(dataset))
        labels = label_order.canonical_labels(np.asarray(dataset.columns["labels"]))
        files[f"eval_predictions{suffix}.json"] = {
            "task": task.name, "main_metric": task.main_metric, "regression": task.is_regression,
            "predictions": predictions_from_logits(task, logits).tolist(), "labels": labels.tolist()}
    return files
