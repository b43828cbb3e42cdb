"""What each GLUE task is: its files, columns, labels, metric and submission format.

Everything task-specific lives in one table so the reader, the metrics and the submission writer
agree. Label ids follow the `datasets` GLUE builder, so Hub data and local TSV folders give the
same ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from distill.errors import UsageError


@dataclass(frozen=True)
class TsvLayout:
    """Where the text and label columns sit in one download_glue_data.py TSV file."""

    text_columns: tuple[int, ...]
    label_column: int | None  # None: the split has no labels (test files); -1: last column
    index_column: int | None = 0  # the column the submission's `index` comes from; None: row number
    has_header: bool = True
    columns: int | None = None  # every row's width when there is no header to give it (CoLA)

    def min_columns(self) -> int:
        """The fewest tab-separated columns a row can have: every column named here, and a last-column
        label (-1) after all of them (else it would be read from a sentence)."""
        named = [*self.text_columns, *(c for c in (self.index_column, self.label_column) if c is not None and c >= 0)]
        return max(named) + 1 + (self.label_column == -1)


@dataclass(frozen=True)
class GlueTask:
    name: str  # lower-case task name as typed on the command line
    labels: tuple[str, ...]  # label names in id order; empty for regression
    main_metric: str  # the metric that selects the best checkpoint
    train: TsvLayout
    dev: TsvLayout
    test: TsvLayout
    dev_files: tuple[str, ...] = ("dev.tsv",)  # MNLI has matched and mismatched
    test_files: tuple[str, ...] = ("test.tsv",)
    submission_files: tuple[str, ...] = ()  # one per test file, in the same order
    submission_rows: tuple[int, ...] = ()  # expected rows of each submission file
    hub_name: str = ""  # config name of the Hub `nyu-mll/glue` dataset
    hub_text_columns: tuple[str, ...] = ()
    label_words_in_submission: bool = False  # MNLI/QNLI/RTE submit words, the others digits
    # Labels as they appear in the TSV files when they are not the label names (CoLA "0"/"1").
    file_label_values: tuple[str, ...] = field(default=())
    score_range: tuple[float, float] | None = None  # regression: the scores a file may hold (STS-B 0 to 5)

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    def label_id(self, raw: str) -> int:
        """Map a label as written in a data file (TSV value, label name or id) to its id.

        Raises KeyError naming the accepted values when the label is unknown.
        """
        raw = raw.strip()
        for values in (self.file_label_values, self.labels):
            if raw in values:
                return values.index(raw)
        if raw.isdigit() and int(raw) < len(self.labels):  # Hub-style integer ids
            return int(raw)
        accepted = self.file_label_values or self.labels
        raise KeyError(f"unknown label {raw!r}; expected one of {', '.join(accepted)}")


_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")
_PAIR_TSV = TsvLayout(text_columns=(1, 2), label_column=-1)
_PAIR_TEST = TsvLayout(text_columns=(1, 2), label_column=None)

GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        name="cola", labels=("unacceptable", "acceptable"), file_label_values=_BINARY,
        main_metric="matthews_correlation",
        train=TsvLayout(text_columns=(3,), label_column=1, index_column=None, has_header=False, columns=4),
        dev=TsvLayout(text_columns=(3,), label_column=1, index_column=None, has_header=False, columns=4),
        test=TsvLayout(text_columns=(1,), label_column=None),
        submission_files=("CoLA.tsv",), submission_rows=(1063,),
        hub_name="cola", hub_text_columns=("sentence",),
    ),
    "sst2": GlueTask(
        name="sst2", labels=("negative", "positive"), file_label_values=_BINARY, main_metric="accuracy",
        train=TsvLayout(text_columns=(0,), label_column=1, index_column=None),
        dev=TsvLayout(text_columns=(0,), label_column=1, index_column=None),
        test=TsvLayout(text_columns=(1,), label_column=None),
        submission_files=("SST-2.tsv",), submission_rows=(1821,),
        hub_name="sst2", hub_text_columns=("sentence",),
    ),
    "mrpc": GlueTask(
        name="mrpc", labels=("not_equivalent", "equivalent"), file_label_values=_BINARY,
        main_metric="combined_score",
        train=TsvLayout(text_columns=(3, 4), label_column=0, index_column=None),
        dev=TsvLayout(text_columns=(3, 4), label_column=0, index_column=None),
        test=TsvLayout(text_columns=(3, 4), label_column=None),
        submission_files=("MRPC.tsv",), submission_rows=(1725,),
        hub_name="mrpc", hub_text_columns=("sentence1", "sentence2"),
    ),
    "stsb": GlueTask(
        name="stsb", labels=(), main_metric="combined_score", score_range=(0.0, 5.0),
        train=TsvLayout(text_columns=(7, 8), label_column=-1),
        dev=TsvLayout(text_columns=(7, 8), label_column=-1),
        test=TsvLayout(text_columns=(7, 8), label_column=None),
        submission_files=("STS-B.tsv",), submission_rows=(1379,),
        hub_name="stsb", hub_text_columns=("sentence1", "sentence2"),
    ),
    "qqp": GlueTask(
        name="qqp", labels=("not_duplicate", "duplicate"), file_label_values=_BINARY,
        main_metric="combined_score",
        train=TsvLayout(text_columns=(3, 4), label_column=5),
        dev=TsvLayout(text_columns=(3, 4), label_column=5),
        test=TsvLayout(text_columns=(1, 2), label_column=None),
        submission_files=("QQP.tsv",), submission_rows=(390965,),
        hub_name="qqp", hub_text_columns=("question1", "question2"),
    ),
    "mnli": GlueTask(
        name="mnli", labels=("entailment", "neutral", "contradiction"), main_metric="accuracy",
        train=TsvLayout(text_columns=(8, 9), label_column=-1),
        dev=TsvLayout(text_columns=(8, 9), label_column=-1),
        test=TsvLayout(text_columns=(8, 9), label_column=None),
        dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
        test_files=("test_matched.tsv", "test_mismatched.tsv"),
        submission_files=("MNLI-m.tsv", "MNLI-mm.tsv"), submission_rows=(9796, 9847),
        hub_name="mnli", hub_text_columns=("premise", "hypothesis"), label_words_in_submission=True,
    ),
    "qnli": GlueTask(
        name="qnli", labels=_NLI, main_metric="accuracy",
        train=_PAIR_TSV, dev=_PAIR_TSV, test=_PAIR_TEST,
        submission_files=("QNLI.tsv",), submission_rows=(5463,),
        hub_name="qnli", hub_text_columns=("question", "sentence"), label_words_in_submission=True,
    ),
    "rte": GlueTask(
        name="rte", labels=_NLI, main_metric="accuracy",
        train=_PAIR_TSV, dev=_PAIR_TSV, test=_PAIR_TEST,
        submission_files=("RTE.tsv",), submission_rows=(3000,),
        hub_name="rte", hub_text_columns=("sentence1", "sentence2"), label_words_in_submission=True,
    ),
    "wnli": GlueTask(
        name="wnli", labels=("not_entailment", "entailment"), file_label_values=_BINARY,
        main_metric="accuracy",
        train=_PAIR_TSV, dev=_PAIR_TSV, test=_PAIR_TEST,
        submission_files=("WNLI.tsv",), submission_rows=(146,),
        hub_name="wnli", hub_text_columns=("sentence1", "sentence2"),
    ),
}

# AX is a test-only diagnostic set predicted by the MNLI model and submitted in MNLI's label words.
AX_LAYOUT = TsvLayout(text_columns=(1, 2), label_column=None)
AX_SUBMISSION = ("AX.tsv", 1104)

# Folder names written by download_glue_data.py, and aliases users type.
TASK_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli"}
FOLDER_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
                "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


def get_task(name: str) -> GlueTask:
    key = TASK_ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        raise UsageError(f"unknown --task_name {name!r}; choose one of {', '.join(GLUE_TASKS)} "
                         "(or omit it and pass --train_file/--validation_file for a custom task)")
    return GLUE_TASKS[key]
