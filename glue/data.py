"""GLUE examples from a download_glue_data.py folder, the Hub, or the user's csv/tsv/json files.

All three sources give the same `Examples` (texts, label ids in the task's canonical order, and the
index that the test-server submission needs), so everything downstream is source-agnostic.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
from dataclasses import dataclass, field

from distill.errors import UsageError
from distill.text_files import check_is_file, csv_records, json_lines, json_type, read_text, text_lines
from glue.tasks import AX_LAYOUT, AX_SUBMISSION, GlueTask, TsvLayout

logger = logging.getLogger(__name__)


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
    swallow the following rows); a UTF-8 BOM (MRPC's) is dropped; strings like `NA` stay text.
    Every row must have the header's number of columns (CoLA: the layout's): a missing or stray tab
    shifts the columns, and a last-column label would then silently be read from a sentence.
    """
    check_is_file(path, f"GLUE file not found: {path}; pass --data_dir pointing at the task folder written by "
                        f"download_glue_data.py (e.g. glue_data/{task.name.upper()})")
    records = list(csv_records(text_lines(path), path, delimiter="\t", quoting=csv.QUOTE_NONE))
    minimum, expected = layout.min_columns(), layout.columns
    if layout.has_header and records:
        header = records.pop(0)[1]
        expected = len(header) if len(header) >= minimum else None  # a short header: the wrong file, below
    text_a, text_b, labels, index = [], [], [], []
    for line_no, row in records:
        if len(row) < minimum or (expected is not None and len(row) < expected):
            need = f"at least {minimum}" if expected is None else str(expected)
            raise UsageError(f"{path}:{line_no}: {len(row)} tab-separated columns, task {task.name} needs {need}; "
                             + ("is this the right file for --task_name " + task.name + "?" if expected is None else
                                "fill in the missing column(s) of this row (a lost tab?) or remove the row"))
        if expected is not None and len(row) > expected:
            raise UsageError(f"{path}:{line_no}: {len(row)} tab-separated columns but task {task.name}'s file has "
                             f"{expected}; a tab inside a sentence shifts the columns: replace it with a space")
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
    """A label id (classification) or a finite score (regression); an empty label is refused rather than
    read as a class of its own (a custom task would otherwise grow a '' class)."""
    if not raw.strip():
        raise UsageError(f"{where}: the label is empty; give every row of a labelled file its label (a file "
                         "without labels is a test file: --test_file or test.tsv)")
    if task.is_regression:
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"{where}: label {raw!r} is not a number; {task.name} is a regression task "
                             "with float scores") from None
        if not math.isfinite(value):  # nan/inf (or 1e999) would make every loss and metric NaN
            raise UsageError(f"{where}: label {raw!r} is not a finite number; {task.name} needs a real-valued "
                             "score on every row: fix the file")
        if task.score_range and not task.score_range[0] <= value <= task.score_range[1]:
            low, high = task.score_range
            raise UsageError(f"{where}: score {raw!r} is outside {task.name}'s range {low:g} to {high:g}; "
                             "fix the file")
        return value
    try:
        return task.label_id(raw)
    except KeyError as e:
        fix = ("the labels of a task without --task_name are those of the training file" if task.name == "custom"
               else "fix the file or the --task_name")
        raise UsageError(f"{where}: {e.args[0]} for task {task.name}; {fix}") from None


def load_glue_folder(data_dir: str, task: GlueTask, ax_file: str | None = None) -> GlueData:
    """All splits present in a download_glue_data.py task folder (missing splits are simply absent)."""
    if not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir {data_dir} is not a folder; point it at e.g. glue_data/RTE")
    data = GlueData()
    train_path = os.path.join(data_dir, "train.tsv")
    if os.path.lexists(train_path):
        data.train = read_glue_tsv(train_path, task, task.train)
    for suffix, name in zip(("", "_mm"), task.dev_files):
        path = os.path.join(data_dir, name)
        if os.path.lexists(path):
            data.eval_sets[suffix] = read_glue_tsv(path, task, task.dev)
    for sub_name, name in zip(task.submission_files, task.test_files):
        path = os.path.join(data_dir, name)
        if os.path.lexists(path):
            data.test_sets[sub_name] = read_glue_tsv(path, task, task.test)
    if task.name == "mnli":
        ax_file = ax_file or os.path.join(os.path.dirname(os.path.normpath(data_dir)), "diagnostic",
                                          "diagnostic.tsv")
        if os.path.lexists(ax_file):
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
@dataclass
class UserRows:
    """The rows of a --train_file/--validation_file/--test_file as dicts of strings, with the line
    each row starts on (for messages)."""

    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]

    def where(self, path: str, i: int) -> str:
        return f"{path}:row {i + 1} (line {self.lines[i]})"


def read_user_file(path: str) -> UserRows:
    """Rows of a csv, tsv, json-lines or json file as dicts of strings."""
    check_is_file(path, f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".tsv", ".json", ".jsonl"):
        raise UsageError(f"{path}: unsupported extension {ext!r}; use .csv, .tsv, .json or .jsonl")
    if ext in (".csv", ".tsv"):
        rows, lines, columns = _delimited_rows(text_lines(path), path, ext)
    else:
        rows, lines = _json_rows(read_text(path), path, ext)
        columns = list(rows[0]) if rows else []
    if not rows:
        raise UsageError(f"{path} has no rows; check the file")
    rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]
    return UserRows(columns, rows, lines)


def _delimited_rows(text, path: str, ext: str) -> tuple[list[dict], list[int], list[str]]:
    """A header and rows of exactly its width: with a row that is shorter or longer (an unquoted comma,
    a lost or stray tab) every later column would be read from the wrong field."""
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if ext == ".tsv" else {}
    records = csv_records(text, path, **kwargs)
    _, header = next(records, (0, []))
    rows, lines = [], []
    for line, fields in records:
        if len(fields) != len(header):
            sep = "tab-separated" if ext == ".tsv" else "comma-separated"
            fix = ("replace tabs inside the text with spaces, and give every row every column" if ext == ".tsv"
                   else "quote fields that contain commas, and give every row every column")
            raise UsageError(f"{path} line {line}: {len(fields)} {sep} fields but the header has {len(header)} "
                             f"({', '.join(header)}); {fix}")
        rows.append(dict(zip(header, fields)))
        lines.append(line)
    return rows, lines, header


def _json_rows(text: str, path: str, ext: str) -> tuple[list[dict], list[int]]:
    """A JSON list of objects (or {"data": [...]}, or one object), else JSON lines, one object each."""
    try:
        obj = json.loads(text)
        whole = True
    except json.JSONDecodeError as e:
        whole, error = False, e
    if whole:
        rows = obj["data"] if isinstance(obj, dict) and "data" in obj else obj
        rows = [rows] if isinstance(rows, dict) else rows
        if not isinstance(rows, list):
            raise UsageError(f"{path} holds {json_type(rows)}, not a list of row objects; write one "
                             'object per row, e.g. [{"sentence": "...", "label": 1}]')
        lines = [1] * len(rows)  # one document: no line per row
    else:
        first = text.lstrip()[:1]
        if ext == ".json" and first == "[":  # a broken JSON list, not JSON lines: say where it breaks
            raise UsageError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column "
                             f"{error.colno}); fix the file")
        pairs = list(json_lines(text, path))
        rows, lines = [row for _, row in pairs], [n for n, _ in pairs]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            where = f"line {lines[i]}" if not whole else f"row {i + 1}"
            raise UsageError(f"{path} {where} is {json_type(row)}, not an object with column fields; "
                             'write one object per row, e.g. {"sentence": "...", "label": 1}')
    return rows, lines


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


def examples_from_rows(user: UserRows, task: GlueTask, path: str, labelled: bool) -> Examples:
    columns, rows = user.columns, user.rows
    text_cols = _text_columns(columns, task, path)
    if labelled and "label" not in columns:
        raise UsageError(f"{path}: no 'label' column (columns are {columns}); add one, or pass the "
                         "file as --test_file if it is unlabelled")
    needed = [*text_cols, *(["label"] if labelled else [])]
    for i, row in enumerate(rows):  # JSON rows need not share the first row's fields
        missing = [c for c in needed if c not in row]
        if missing:
            raise UsageError(f"{user.where(path, i)} lacks field(s) {', '.join(missing)} that the first row has; "
                             "give every row the same fields")
    labels = None
    if labelled:
        labels = [_parse_label(task, row["label"], user.where(path, i)) for i, row in enumerate(rows)]
    id_col = next((c for c in ("idx", "index", "id") if c in columns), None)
    return Examples(
        text_a=[row[text_cols[0]] for row in rows],
        text_b=[row[text_cols[1]] for row in rows] if len(text_cols) > 1 else None,
        labels=labels,
        index=[row.get(id_col, str(i)) if id_col else str(i) for i, row in enumerate(rows)],
        source=path,
    )


def task_from_labels(raw_labels: list[str]) -> GlueTask:
    """A custom task (no --task_name): float labels with a decimal point mean regression, anything
    else classification over the sorted label values (the HF run_glue rule)."""
    values = sorted({v.strip() for v in raw_labels} - {""})  # an empty label is refused when the rows are read

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
        if not labelled or "label" not in labelled.columns:
            raise UsageError("without --task_name the labels come from --train_file or --validation_file, "
                             "which need a 'label' column")
        task = task_from_labels([r.get("label", "") for r in labelled.rows])
    data = GlueData()
    if "train" in rows:
        data.train = examples_from_rows(rows["train"], task, train_file, labelled=True)
    if "validation" in rows:
        data.eval_sets[""] = examples_from_rows(rows["validation"], task, validation_file, labelled=True)
    if "test" in rows:
        labelled = "label" in rows["test"].columns and any(r.get("label", "").strip() not in ("", "-1")
                                                           for r in rows["test"].rows)
        data.test_sets[task.submission_files[0]] = examples_from_rows(rows["test"], task, test_file, labelled)
    return data, task
