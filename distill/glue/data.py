"""GLUE examples from a download_glue_data.py folder, the Hub, or the user's csv/tsv/json files.

All three sources give the same `Examples` (texts, label ids in the task's canonical order, and the
index that the test-server submission needs), so everything downstream is source-agnostic.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import os
import sys
from dataclasses import dataclass, field

from distill.errors import UsageError
from distill.glue.tasks import AX_LAYOUT, AX_SUBMISSION, GlueTask, TsvLayout

logger = logging.getLogger(__name__)

# GLUE sentences can be long (QQP, MNLI) and are never quoted; lift the csv field-size cap.
csv.field_size_limit(sys.maxsize)


@dataclass
class Examples:
    """One split: parallel lists. `labels` is None for unlabelled (test) splits."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float] | None
    index: list[str]
    source: str = ""  # file or dataset the examples came from, for error messages

    def __len__(self) -> int:
        return len(self.text_a)

    def head(self, n: int | None) -> "Examples":
        """The first n examples (the HF `--max_*_samples` semantics)."""
        if n is None or n >= len(self):
            return self
        cut = lambda xs: None if xs is None else xs[:n]  # noqa: E731
        return Examples(self.text_a[:n], cut(self.text_b), cut(self.labels), self.index[:n], self.source)

    def select(self, rows: list[int]) -> "Examples":
        """The examples at `rows`, in that order."""
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        return Examples(pick(self.text_a), pick(self.text_b), pick(self.labels), pick(self.index), self.source)


@dataclass
class GlueData:
    train: Examples | None = None
    # metric-key suffix -> examples; "" is the split that selects checkpoints (MNLI: "_mm" too)
    eval_sets: dict[str, Examples] = field(default_factory=dict)
    # submission file name (e.g. "MNLI-m.tsv", "AX.tsv") -> examples
    test_sets: dict[str, Examples] = field(default_factory=dict)


# --------------------------------------------------------------------------- TSV folders
def read_glue_tsv(path: str, task: GlueTask, layout: TsvLayout) -> Examples:
    """Read one GLUE TSV exactly as download_glue_data.py wrote it.

    QUOTE_NONE because GLUE text is never quoted (a sentence starting with `"` would otherwise
    swallow the following rows); utf-8-sig strips MRPC's BOM; strings like `NA` stay text.
    """
    if not os.path.isfile(path):
        raise UsageError(f"GLUE file not found: {path}; pass --data_dir pointing at the task folder "
                         f"written by download_glue_data.py (e.g. glue_data/{task.name.upper()})")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    first_line = 1
    if layout.has_header:
        rows, first_line = rows[1:], 2
    needed = max(layout.text_columns + ((layout.label_column,) if layout.label_column else ()))
    text_a, text_b, labels, index = [], [], [], []
    for line_no, row in enumerate(rows, start=first_line):
        if not row:  # a trailing blank line
            continue
        if len(row) <= needed:
            raise UsageError(f"{path}:{line_no}: {len(row)} tab-separated columns, task {task.name} needs "
                             f"at least {needed + 1}; is this the right file for --task_name {task.name}?")
        text_a.append(row[layout.text_columns[0]])
        if len(layout.text_columns) > 1:
            text_b.append(row[layout.text_columns[1]])
        index.append(str(len(index)) if layout.index_column is None else row[layout.index_column])
        if layout.label_column is not None:
            labels.append(_parse_label(task, row[layout.label_column], f"{path}:{line_no}"))
    if not text_a:
        raise UsageError(f"{path} has no examples; check the file (it is empty or only has a header)")
    return Examples(text_a, text_b or None, labels if layout.label_column is not None else None, index,
                    source=path)


def _parse_label(task: GlueTask, raw: str, where: str) -> int | float:
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"{where}: label {raw!r} is not a number; {task.name} is a regression task "
                             "with float scores") from None
    try:
        return task.label_id(raw)
    except KeyError as e:
        raise UsageError(f"{where}: {e.args[0]} for task {task.name}; fix the file or the --task_name") from None


def load_glue_folder(data_dir: str, task: GlueTask, ax_file: str | None = None) -> GlueData:
    """All splits present in a download_glue_data.py task folder (missing splits are simply absent)."""
    if not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir {data_dir} is not a folder; point it at e.g. glue_data/RTE")
    data = GlueData()
    train_path = os.path.join(data_dir, "train.tsv")
    if os.path.isfile(train_path):
        data.train = read_glue_tsv(train_path, task, task.train)
    for suffix, name in zip(("", "_mm"), task.dev_files):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            data.eval_sets[suffix] = read_glue_tsv(path, task, task.dev)
    for sub_name, name in zip(task.submission_files, task.test_files):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            data.test_sets[sub_name] = read_glue_tsv(path, task, task.test)
    if task.name == "mnli":
        ax_file = ax_file or os.path.join(os.path.dirname(os.path.normpath(data_dir)), "diagnostic",
                                          "diagnostic.tsv")
        if os.path.isfile(ax_file):
            data.test_sets[AX_SUBMISSION[0]] = read_glue_tsv(ax_file, task, AX_LAYOUT)
    return data


# --------------------------------------------------------------------------- the Hub
def load_glue_hub(task: GlueTask, cache_dir: str | None = None, overwrite_cache: bool = False) -> GlueData:
    """The Hub's `nyu-mll/glue` dataset (needs the network or a warm cache)."""
    import datasets  # imported here: only this path needs it

    mode = "force_redownload" if overwrite_cache else None
    load_dataset = functools.partial(datasets.load_dataset, cache_dir=cache_dir, download_mode=mode)
    try:
        raw = load_dataset("nyu-mll/glue", task.hub_name)
    except Exception as e:  # offline, or the Hub is unreachable
        raise UsageError(f"could not load GLUE {task.name} from the Hub ({type(e).__name__}); "
                         "offline, pass --data_dir glue_data/<TASK> or --train_file/--validation_file") from None

    def convert(split) -> Examples:
        cols = task.hub_text_columns
        labels = list(split["label"])
        labelled = any(lab != -1 for lab in labels)
        return Examples(list(split[cols[0]]), list(split[cols[1]]) if len(cols) > 1 else None,
                        labels if labelled else None, [str(i) for i in split["idx"]], source="hub")

    data = GlueData(train=convert(raw["train"]))
    suffixes = {"validation": "", "validation_matched": "", "validation_mismatched": "_mm"}
    for split, suffix in suffixes.items():
        if split in raw:
            data.eval_sets[suffix] = convert(raw[split])
    test_splits = [s for s in ("test", "test_matched", "test_mismatched") if s in raw]
    for sub_name, split in zip(task.submission_files, test_splits):
        data.test_sets[sub_name] = convert(raw[split])
    if task.name == "mnli":
        data.test_sets[AX_SUBMISSION[0]] = convert(load_dataset("nyu-mll/glue", "ax")["test"])
    return data


# --------------------------------------------------------------------------- user files
def read_user_file(path: str) -> list[dict[str, str]]:
    """Rows of a csv, tsv, json-lines or json file as dicts of strings."""
    if not os.path.isfile(path):
        raise UsageError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8-sig", newline="") as f:
        if ext in (".csv", ".tsv"):
            kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if ext == ".tsv" else {}
            rows = list(csv.DictReader(f, **kwargs))
        elif ext in (".json", ".jsonl"):
            text = f.read()
            try:
                obj = json.loads(text)
                rows = obj["data"] if isinstance(obj, dict) and "data" in obj else obj
            except json.JSONDecodeError:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if isinstance(rows, dict):
                rows = [rows]
        else:
            raise UsageError(f"{path}: unsupported extension {ext!r}; use .csv, .tsv, .json or .jsonl")
    if not rows:
        raise UsageError(f"{path} has no rows; check the file")
    return [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]


def _text_columns(columns: list[str], task: GlueTask | None, path: str) -> list[str]:
    """The HF run_glue rule: the task's own column names, else sentence1/sentence2, else the
    first one or two non-label columns."""
    candidates = [list(task.hub_text_columns)] if task else []
    # pairs before ["sentence"]: a question/sentence file must not lose its question
    candidates += [["sentence1", "sentence2"], ["question1", "question2"], ["premise", "hypothesis"],
                   ["question", "sentence"], ["sentence"]]
    for cand in candidates:
        if cand and all(c in columns for c in cand):
            return cand
    rest = [c for c in columns if c not in ("label", "idx", "index", "id")]
    if not rest:
        raise UsageError(f"{path}: no text column (columns are {columns}); name them sentence1/sentence2")
    return rest[:2]


def examples_from_rows(rows: list[dict[str, str]], task: GlueTask, path: str, labelled: bool) -> Examples:
    columns = list(rows[0].keys())
    text_cols = _text_columns(columns, task, path)
    if labelled and "label" not in columns:
        raise UsageError(f"{path}: no 'label' column (columns are {columns}); add one, or pass the "
                         "file as --test_file if it is unlabelled")
    labels = None
    if labelled:
        labels = [_parse_label(task, row["label"], f"{path}:row {i + 1}") for i, row in enumerate(rows)]
    id_col = next((c for c in ("idx", "index", "id") if c in columns), None)
    return Examples(
        text_a=[row[text_cols[0]] for row in rows],
        text_b=[row[text_cols[1]] for row in rows] if len(text_cols) > 1 else None,
        labels=labels,
        index=[row[id_col] if id_col else str(i) for i, row in enumerate(rows)],
        source=path,
    )


def task_from_labels(raw_labels: list[str]) -> GlueTask:
    """A custom task (no --task_name): float labels with a decimal point mean regression, anything
    else classification over the sorted label values (the HF run_glue rule)."""
    values = sorted({v.strip() for v in raw_labels})

    def is_float(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False

    regression = all(is_float(v) for v in values) and any("." in v for v in values)
    plain = TsvLayout(text_columns=(0,), label_column=None)
    return GlueTask(name="custom", labels=() if regression else tuple(values),
                    main_metric="combined_score" if regression else "accuracy",
                    train=plain, dev=plain, test=plain, submission_files=("predictions.tsv",))


def load_glue_files(train_file: str | None, validation_file: str | None, test_file: str | None,
                    task: GlueTask | None) -> tuple[GlueData, GlueTask]:
    """--train_file/--validation_file/--test_file; the task is inferred from the labels when not given."""
    rows = {name: read_user_file(path) for name, path in
            (("train", train_file), ("validation", validation_file), ("test", test_file)) if path}
    if task is None:
        labelled = rows.get("train") or rows.get("validation")
        if not labelled or "label" not in labelled[0]:
            raise UsageError("without --task_name the labels come from --train_file or --validation_file, "
                             "which need a 'label' column")
        task = task_from_labels([r["label"] for r in labelled])
    data = GlueData()
    if "train" in rows:
        data.train = examples_from_rows(rows["train"], task, train_file, labelled=True)
    if "validation" in rows:
        data.eval_sets[""] = examples_from_rows(rows["validation"], task, validation_file, labelled=True)
    if "test" in rows:
        labelled = "label" in rows["test"][0] and any(r["label"].strip() not in ("", "-1") for r in rows["test"])
        data.test_sets[task.submission_files[0]] = examples_from_rows(rows["test"], task, test_file, labelled)
    return data, task
