"""GLUE test-server files: prediction formats per task, header, row order, length checks."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import FIXTURES  # noqa: E402

from glue.data import load_glue_folder  # noqa: E402
from glue.submission import (  # noqa: E402
    SUBMISSION_HEADER,
    expected_submission_files,
    format_predictions,
    write_submission_file,
    write_task_submission,
)
from glue.tasks import AX_SUBMISSION, FOLDER_NAMES, GLUE_TASKS  # noqa: E402


@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "qqp", "wnli"])
def test_digit_tasks(name):
    task = GLUE_TASKS[name]
    assert not task.label_words_in_submission
    assert format_predictions(task, np.array([1, 0, 1])) == ["1", "0", "1"]
    assert format_predictions(task, np.array([1.0, 0.0])) == ["1", "0"]  # float arrays from argmax casts


def test_mnli_words():
    task = GLUE_TASKS["mnli"]
    assert format_predictions(task, np.array([0, 1, 2, 0])) == ["entailment", "neutral", "contradiction", "entailment"]


@pytest.mark.parametrize("name", ["qnli", "rte"])
def test_qnli_rte_words(name):
    got = format_predictions(GLUE_TASKS[name], np.array([0, 1, 1]))
    assert got == ["entailment", "not_entailment", "not_entailment"]


def test_stsb_clipped_three_decimals():
    task = GLUE_TASKS["stsb"]
    got = format_predictions(task, np.array([-0.7, 0.0, 2.34567, 4.9996, 5.8, 3.0, 1e-9, -0.0], dtype=np.float32))
    assert got == ["0.000", "0.000", "2.346", "5.000", "5.000", "3.000", "0.000", "0.000"]  # never -0.000


def test_write_submission_file_header_and_order(tmp_path):
    path = tmp_path / "RTE.tsv"
    write_submission_file(str(path), ["2", "0", "1"], ["entailment", "not_entailment", "entailment"])
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == SUBMISSION_HEADER == "index\tprediction"
    assert lines[1:] == ["2\tentailment", "0\tnot_entailment", "1\tentailment", ""]  # given order, final newline


def test_mismatched_lengths_raise(tmp_path):
    with pytest.raises(ValueError, match="3 test rows but 2 predictions"):
        write_submission_file(str(tmp_path / "CoLA.tsv"), ["0", "1", "2"], ["0", "1"])
    assert not (tmp_path / "CoLA.tsv").exists()


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_task_submission_follows_test_file_order(tmp_path, name):
    task = GLUE_TASKS[name]
    data = load_glue_folder(os.path.join(FIXTURES, FOLDER_NAMES[name]), task)
    for file_name, test in data.test_sets.items():
        n = len(test)
        preds = np.linspace(-1, 6, n) if task.is_regression else np.arange(n) % task.num_labels
        path = write_task_submission(str(tmp_path), file_name, task, test.index, preds)
        assert os.path.basename(path) == file_name
        lines = open(path, encoding="utf-8").read().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == n + 1
        assert [line.split("\t")[0] for line in lines[1:]] == test.index
        assert [line.split("\t")[1] for line in lines[1:]] == format_predictions(task, preds)


def test_expected_submission_files_are_the_eleven_server_files():
    files = expected_submission_files()
    assert list(files) == ["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                           "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"]
    rows = {name: n for name, (_, n) in files.items()}
    assert rows == {"CoLA.tsv": 1063, "SST-2.tsv": 1821, "MRPC.tsv": 1725, "STS-B.tsv": 1379, "QQP.tsv": 390965,
                    "MNLI-m.tsv": 9796, "MNLI-mm.tsv": 9847, "QNLI.tsv": 5463, "RTE.tsv": 3000, "WNLI.tsv": 146,
                    "AX.tsv": 1104}
    assert files["AX.tsv"][0] is GLUE_TASKS["mnli"] and AX_SUBMISSION == ("AX.tsv", 1104)
    words = {name for name, (task, _) in files.items() if task.label_words_in_submission}
    assert words == {"MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "AX.tsv"}
