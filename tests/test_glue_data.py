"""GLUE readers: the download_glue_data.py layouts (fixtures in tests/fixtures/glue_tiny), the user's
csv/tsv/json files, custom tasks, the errors users see, and the real files in ../shared/data."""
from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import FIXTURES, REPO_ROOT  # noqa: E402

from distill.errors import UsageError  # noqa: E402
from glue.data import load_glue_files, load_glue_folder, read_glue_tsv, task_from_labels  # noqa: E402
from glue.tasks import AX_LAYOUT, FOLDER_NAMES, GLUE_TASKS, get_task  # noqa: E402

REAL_GLUE = os.path.join(REPO_ROOT, "..", "shared", "data", "glue_data")


def fixture_dir(task: str) -> str:
    return os.path.join(FIXTURES, FOLDER_NAMES[task])


def load(task: str):
    return load_glue_folder(fixture_dir(task), GLUE_TASKS[task])


# --------------------------------------------------------------------------- every layout
# task -> (train rows, dev rows, test rows) of the fixtures
FIXTURE_ROWS = {"cola": (5, 4, 3), "sst2": (5, 4, 4), "mrpc": (4, 3, 3), "stsb": (4, 4, 3), "qqp": (5, 3, 4),
                "mnli": (4, 4, 3), "qnli": (4, 3, 3), "rte": (4, 3, 3), "wnli": (4, 3, 2)}


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_every_fixture_folder_parses(task):
    data = load(task)
    n_train, n_dev, n_test = FIXTURE_ROWS[task]
    assert len(data.train) == n_train and len(data.eval_sets[""]) == n_dev
    first_test = GLUE_TASKS[task].submission_files[0]
    assert len(data.test_sets[first_test]) == n_test
    pair = task not in ("cola", "sst2")
    for ex in [data.train, *data.eval_sets.values(), *data.test_sets.values()]:
        assert (ex.text_b is not None) == pair
        if pair:
            assert len(ex.text_b) == len(ex.text_a)
        assert len(ex.index) == len(ex.text_a)
        assert all(t is not None for t in ex.text_a)
    assert data.train.labels is not None and len(data.train.labels) == n_train
    assert all(ex.labels is None for ex in data.test_sets.values())


def test_cola_no_header_label_column_and_row_number_index():
    data = load("cola")
    assert data.train.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert data.train.labels == [1, 0, 1, 0, 1]  # unacceptable 0 / acceptable 1
    assert data.train.index == ["0", "1", "2", "3", "4"]  # no index column: the row number
    assert data.train.text_a[2] == '"Harry is sick," said Mary.'  # quotes kept verbatim
    assert data.train.text_a[4] == "NA"
    test = data.test_sets["CoLA.tsv"]
    assert test.index == ["0", "1", "2"] and test.text_a[0] == "Bill whistled past the house."


def test_cola_dev_last_line_without_trailing_newline():
    path = os.path.join(fixture_dir("cola"), "dev.tsv")
    with open(path, "rb") as f:
        assert not f.read().endswith(b"\n")  # the fixture keeps the real file's quirk
    dev = read_glue_tsv(path, GLUE_TASKS["cola"], GLUE_TASKS["cola"].dev)
    assert len(dev) == 4
    assert dev.text_a[-1] == "John talked to Bill about himself."
    assert dev.labels == [1, 0, 1, 1]
    assert dev.text_a[2] == "null"


def test_sst2_keeps_trailing_space_and_na_null_as_text():
    data = load("sst2")
    assert data.train.text_a[0] == "hide new secretions from the parental units "
    assert data.train.text_a[3:] == ["NA", "null"]
    assert data.train.labels == [0, 0, 1, 1, 0]
    assert data.eval_sets[""].labels == [1, 0, 1, 0]
    test = data.test_sets["SST-2.tsv"]
    assert test.text_a[1] == '" this is one for the ages' and test.text_a[3] == "NA"
    assert test.index == ["0", "1", "2", "3"]


def test_mrpc_bom_header_is_skipped_and_label_is_first_column():
    path = os.path.join(fixture_dir("mrpc"), "train.tsv")
    with open(path, "rb") as f:
        assert f.read(3) == b"\xef\xbb\xbf"
    data = load("mrpc")
    assert data.train.labels == [1, 0, 1, 0]
    assert data.train.text_a[0].startswith("Amrozi accused his brother")
    assert data.train.text_b[0].startswith("Referring to him as only")
    assert data.eval_sets[""].text_b[0] == '" The foodservice pie business does not fit our long-term growth strategy .'
    test = data.test_sets["MRPC.tsv"]
    assert test.index == ["0", "1", "2"]
    assert (test.text_a[2], test.text_b[2]) == ("NA", "null")


def test_stsb_float_scores_and_nine_column_test():
    data = load("stsb")
    assert GLUE_TASKS["stsb"].is_regression
    assert data.train.labels == [5.0, 3.8, 0.6, 0.0]
    assert all(isinstance(y, float) for y in data.train.labels)
    assert data.eval_sets[""].labels == [5.0, 4.75, 5.0, 2.4]
    assert data.train.text_a[2] == '"Obama signs the bill.' and data.train.text_b[2] == "Obama vetoes the bill."
    assert (data.train.text_a[3], data.train.text_b[3]) == ("NA", "null")
    test = data.test_sets["STS-B.tsv"]
    assert test.text_a[0] == "A girl is styling her hair." and test.text_b[0] == "A girl is brushing her hair."
    assert test.index == ["0", "1", "2"]


def test_qqp_train_and_three_column_test():
    data = load("qqp")
    assert data.train.labels == [0, 1, 0, 1, 0]
    assert data.train.index[:2] == ["133273", "402555"]  # the id column
    assert data.train.text_a[2] == '"What causes stool color to change to yellow?'
    assert data.train.text_b[3] == "null" and data.train.text_a[4] == "NA"
    test = data.test_sets["QQP.tsv"]
    assert test.index == ["0", "1", "2", "3"]
    assert test.text_a[0] == "How does the Surface Pro himself 4 compare with iPad Pro?"
    assert (test.text_a[3], test.text_b[3]) == ("null", "NA")


def test_mnli_matched_mismatched_dev_and_test_sets_and_ax():
    data = load("mnli")
    assert data.train.labels == [1, 0, 2, 0]  # entailment 0 / neutral 1 / contradiction 2 (gold_label)
    assert data.train.text_a[0].startswith("Conceptually cream skimming")
    assert data.train.text_b[0] == "Product and geography are what make cream skimming work."
    assert (data.train.text_a[3], data.train.text_b[3]) == ("NA", "null")
    assert set(data.eval_sets) == {"", "_mm"}
    assert data.eval_sets[""].labels == [1, 2, 2, 0]  # gold_label, not label1
    assert data.eval_sets["_mm"].labels == [2, 0, 1]
    assert data.eval_sets["_mm"].text_a[0].startswith("Your contribution helped")
    assert set(data.test_sets) == {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"}  # AX from ../diagnostic
    assert len(data.test_sets["MNLI-m.tsv"]) == 3 and len(data.test_sets["MNLI-mm.tsv"]) == 2
    assert data.test_sets["MNLI-m.tsv"].text_a[2] == '"Timing is everything.'
    assert data.test_sets["MNLI-mm.tsv"].text_b[1] == "Funding has gone down."
    ax = data.test_sets["AX.tsv"]
    assert len(ax) == 5 and ax.labels is None
    assert ax.index == ["0", "1", "2", "3", "4"]
    assert (ax.text_a[3], ax.text_b[3]) == ("NA", "null")
    assert ax.text_b[-1] == "A general artificial intelligence should always come with an off switch."


def test_ax_comes_only_with_mnli_and_only_when_the_diagnostic_folder_exists(tmp_path):
    assert "AX.tsv" not in load("rte").test_sets
    mnli = tmp_path / "glue_data" / "MNLI"
    mnli.mkdir(parents=True)
    for name in ("dev_matched.tsv", "test_matched.tsv"):
        (mnli / name).write_bytes(open(os.path.join(fixture_dir("mnli"), name), "rb").read())
    data = load_glue_folder(str(mnli), GLUE_TASKS["mnli"])
    assert set(data.eval_sets) == {""} and set(data.test_sets) == {"MNLI-m.tsv"} and data.train is None
    # an explicit ax_file works without the sibling folder
    ax_file = os.path.join(FIXTURES, "diagnostic", "diagnostic.tsv")
    data = load_glue_folder(str(mnli), GLUE_TASKS["mnli"], ax_file=ax_file)
    assert len(data.test_sets["AX.tsv"]) == 5


def test_ax_file_has_no_trailing_newline_and_reads_with_mnli_layout():
    path = os.path.join(FIXTURES, "diagnostic", "diagnostic.tsv")
    with open(path, "rb") as f:
        assert not f.read().endswith(b"\n")
    ax = read_glue_tsv(path, GLUE_TASKS["mnli"], AX_LAYOUT)
    assert len(ax) == 5 and ax.text_a[2].startswith('"When you')


@pytest.mark.parametrize("task,labels,dev_labels", [
    ("qnli", [1, 1, 0, 0], [0, 1, 1]),  # entailment 0 / not_entailment 1
    ("rte", [1, 0, 0, 1], [1, 0, 0]),
    ("wnli", [1, 1, 1, 0], [0, 1, 0]),  # file values 0/1 are the ids (not_entailment 0 / entailment 1)
])
def test_pair_tasks_labels(task, labels, dev_labels):
    data = load(task)
    assert data.train.labels == labels
    assert data.eval_sets[""].labels == dev_labels
    assert data.train.index == [str(i) for i in range(len(labels))]


def test_pair_tasks_quirks():
    qnli, rte, wnli = load("qnli"), load("rte"), load("wnli")
    assert qnli.train.text_b[3] == "NA"
    assert qnli.test_sets["QNLI.tsv"].text_a[2] == '"What is the null hypothesis?'
    assert qnli.test_sets["QNLI.tsv"].text_b[2] == "null"
    assert rte.train.text_a[3].startswith('"Judie Vivian') and rte.train.text_b[3] == "NA"
    assert rte.test_sets["RTE.tsv"].text_b[2] == '"Quoted start.'
    assert wnli.eval_sets[""].text_a[2].startswith('"Sam took French classes')
    assert wnli.test_sets["WNLI.tsv"].index == ["0", "1"]


def test_quote_none_is_what_keeps_rows_apart():
    """The fixtures really exercise the quirk: a default csv reader merges rows after a leading quote."""
    path = os.path.join(fixture_dir("cola"), "test.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        default_rows = list(csv.reader(f, delimiter="\t"))
    assert len(default_rows) < 4
    test = load("cola").test_sets["CoLA.tsv"]
    assert test.text_a == ["Bill whistled past the house.", '"Is it raining?', "The car honked its way down the road."]


def test_task_aliases():
    assert get_task("SST-2") is GLUE_TASKS["sst2"] and get_task("STS-B") is GLUE_TASKS["stsb"]
    assert get_task("MNLI-mm") is GLUE_TASKS["mnli"]
    with pytest.raises(ValueError, match="unknown --task_name"):
        get_task("nope")


# --------------------------------------------------------------------------- errors on folders
def test_missing_file_and_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_glue_tsv(str(tmp_path / "train.tsv"), GLUE_TASKS["rte"], GLUE_TASKS["rte"].train)
    with pytest.raises(UsageError, match="is not a folder"):
        load_glue_folder(str(tmp_path / "nope"), GLUE_TASKS["rte"])


def test_wrong_file_for_the_task_names_file_line_and_task():
    path = os.path.join(fixture_dir("sst2"), "train.tsv")  # 2 columns, RTE needs 4
    with pytest.raises(UsageError) as e:
        read_glue_tsv(path, GLUE_TASKS["rte"], GLUE_TASKS["rte"].train)
    msg = str(e.value)
    assert f"{path}:2:" in msg and "2 tab-separated columns" in msg and "rte" in msg
    # an RTE folder read as MNLI (needs 10 columns)
    with pytest.raises(UsageError, match=r"train\.tsv:2: 4 tab-separated columns"):
        load_glue_folder(fixture_dir("rte"), GLUE_TASKS["mnli"])


def test_unknown_label_names_file_line_and_value(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n", encoding="utf-8")
    with pytest.raises(UsageError) as e:
        read_glue_tsv(str(path), GLUE_TASKS["rte"], GLUE_TASKS["rte"].train)
    msg = str(e.value)
    assert f"{path}:3:" in msg and "'maybe'" in msg and "not_entailment" in msg
    # a non-numeric STS-B score
    sts = tmp_path / "sts.tsv"
    sts.write_text("\t".join("abcdefghij") + "\n" + "\t".join(list("012345678") + ["high"]) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"sts\.tsv:2: label 'high' is not a number"):
        read_glue_tsv(str(sts), GLUE_TASKS["stsb"], GLUE_TASKS["stsb"].train)


def test_header_only_file_is_an_error(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no examples"):
        read_glue_tsv(str(path), GLUE_TASKS["rte"], GLUE_TASKS["rte"].dev)


@pytest.mark.parametrize("task,split,width", [("rte", "train", 4), ("rte", "test", 3), ("stsb", "train", 10),
                                              ("stsb", "test", 9), ("mnli", "train", 11), ("cola", "train", 4),
                                              ("cola", "test", 2), ("sst2", "train", 2), ("mrpc", "train", 5),
                                              ("qqp", "train", 6), ("qqp", "test", 3)])
def test_min_columns_counts_a_last_column_label_as_its_own_column(task, split, width):
    """A 4-column RTE row needs 4 columns, not 3: its label is the last one, after both sentences."""
    assert getattr(GLUE_TASKS[task], split).min_columns() == width


def test_rows_must_have_the_header_s_width(tmp_path):
    rte = GLUE_TASKS["rte"]
    path = tmp_path / "train.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tc\tentailment\n")
    with pytest.raises(UsageError, match=r"train\.tsv:3: 5 tab-separated columns but task rte's file has 4"):
        read_glue_tsv(str(path), rte, rte.train)
    # MNLI dev has 16 columns: a row of 12 would take its label from the wrong column
    mnli_dev = os.path.join(fixture_dir("mnli"), "dev_matched.tsv")
    lines = open(mnli_dev, encoding="utf-8").read().splitlines()
    path.write_text("\n".join([lines[0], lines[1], "\t".join(lines[2].split("\t")[:12])]) + "\n")
    with pytest.raises(UsageError, match=r"train\.tsv:3: 12 tab-separated columns, task mnli needs 16"):
        read_glue_tsv(str(path), GLUE_TASKS["mnli"], GLUE_TASKS["mnli"].dev)


@pytest.mark.parametrize("raw,words", [("nan", "not a finite number"), ("-inf", "not a finite number"),
                                       ("1e999", "not a finite number"), ("", "the label is empty"),
                                       ("5.5", "outside stsb's range 0 to 5"), ("high", "not a number")])
def test_regression_scores_must_be_finite_and_in_range(tmp_path, raw, words):
    path = write_csv(tmp_path / "train.csv", ["sentence1", "sentence2", "label"], [["a", "b", "5"], ["c", "d", raw]])
    with pytest.raises(UsageError, match=f"row 2 \\(line 3\\): .*{words}"):
        load_glue_files(path, None, None, GLUE_TASKS["stsb"])


def test_an_empty_label_is_never_a_class(tmp_path):
    assert task_from_labels(["pos", "", "neg"]).labels == ("neg", "pos")
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [["good", "pos"], ["meh", ""], ["bad", "neg"]])
    with pytest.raises(UsageError, match="row 2 \\(line 3\\): the label is empty"):
        load_glue_files(train, None, None, None)


def test_user_json_rows_must_be_objects_with_the_same_fields(tmp_path):
    for name, text, words in (("a.json", '{"data": 3}', "holds an integer, not a list"),
                              ("b.json", '[{"sentence": "a", "label": 1}, 7]', "row 2 is an integer"),
                              ("c.jsonl", '{"sentence": "a", "label": 1}\n"b"\n', "line 2 is a string"),
                              ("d.json", '[{"sentence": "a", "label": 1},]', "is not valid JSON")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(UsageError, match=words):
            load_glue_files(str(tmp_path / name), None, None, GLUE_TASKS["sst2"])


# --------------------------------------------------------------------------- user files
def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_user_csv_with_label_names_and_ids(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sentence1", "sentence2", "label"],
                      [["a", "b", "entailment"], ["NA", "null", "contradiction"], ["e", "f", "neutral"]])
    dev = write_csv(tmp_path / "dev.csv", ["idx", "premise", "hypothesis", "label"],
                    [["7", "p", "h", "2"], ["9", "q", "i", "0"]])  # Hub-style integer ids
    data, task = load_glue_files(train, dev, None, GLUE_TASKS["mnli"])
    assert task is GLUE_TASKS["mnli"]
    assert data.train.labels == [0, 2, 1]
    assert data.train.text_a == ["a", "NA", "e"] and data.train.text_b == ["b", "null", "f"]
    assert data.train.index == ["0", "1", "2"]
    assert data.eval_sets[""].labels == [2, 0] and data.eval_sets[""].index == ["7", "9"]
    assert data.eval_sets[""].text_a == ["p", "q"]


def test_user_tsv_keeps_quotes(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\n"starts with a quote\t1\nplain\t0\n', encoding="utf-8")
    data, _ = load_glue_files(str(path), None, None, GLUE_TASKS["sst2"])
    assert data.train.text_a == ['"starts with a quote', "plain"] and data.train.labels == [1, 0]


def test_user_json_list_and_jsonl(tmp_path):
    rows = [{"sentence1": "a", "sentence2": "b", "label": 1}, {"sentence1": "c", "sentence2": "d", "label": 0}]
    (tmp_path / "train.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text(json.dumps({"sentence1": "x", "sentence2": "y", "idx": 5}) + "\n",
                                         encoding="utf-8")
    data, task = load_glue_files(str(tmp_path / "train.json"), str(tmp_path / "dev.jsonl"),
                                 str(tmp_path / "test.jsonl"), GLUE_TASKS["wnli"])
    assert data.train.labels == [1, 0] and data.eval_sets[""].labels == [1, 0]
    assert data.train.text_b == ["b", "d"]
    test = data.test_sets["WNLI.tsv"]
    assert test.labels is None and test.index == ["5"] and test.text_a == ["x"]


def test_user_json_with_data_key(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": [{"sentence": "s", "label": "positive"}]}), encoding="utf-8")
    data, _ = load_glue_files(str(path), None, None, GLUE_TASKS["sst2"])
    assert data.train.labels == [1] and data.train.text_a == ["s"]


def test_custom_task_inferred_from_labels(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [["good", "pos"], ["bad", "neg"], ["meh", "neutral"]])
    dev = write_csv(tmp_path / "dev.csv", ["text", "label"], [["fine", "pos"]])
    test = write_csv(tmp_path / "test.csv", ["text"], [["what"], ["ever"]])
    data, task = load_glue_files(train, dev, test, None)
    assert task.name == "custom" and task.labels == ("neg", "neutral", "pos") and not task.is_regression
    assert task.num_labels == 3 and task.main_metric == "accuracy"
    assert data.train.labels == [2, 0, 1] and data.eval_sets[""].labels == [2]
    assert data.train.text_a == ["good", "bad", "meh"] and data.train.text_b is None
    assert data.test_sets["predictions.tsv"].labels is None and len(data.test_sets["predictions.tsv"]) == 2


def test_custom_pair_task_uses_both_text_columns(tmp_path):
    """HF run_glue rule: without sentence1/sentence2 the first two non-label columns are the pair."""
    train = write_csv(tmp_path / "train.csv", ["question", "sentence", "label"],
                      [["q1", "s1", "yes"], ["q2", "s2", "no"]])
    data, task = load_glue_files(train, None, None, None)
    assert data.train.text_a == ["q1", "q2"] and data.train.text_b == ["s1", "s2"]


def test_regression_inferred_from_float_labels(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["sentence1", "sentence2", "label"],
                      [["a", "b", "4.5"], ["c", "d", "1"], ["e", "f", "0.25"]])
    data, task = load_glue_files(train, None, None, None)
    assert task.is_regression and task.num_labels == 1 and task.main_metric == "combined_score"
    assert data.train.labels == [4.5, 1.0, 0.25]
    # integer labels are classes, not scores
    assert not task_from_labels(["0", "1", "2"]).is_regression
    assert task_from_labels(["0", "1", "2"]).labels == ("0", "1", "2")
    assert task_from_labels(["0.5", "3"]).is_regression


def test_user_file_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_glue_files(str(tmp_path / "nope.csv"), None, None, GLUE_TASKS["rte"])
    nolabel = write_csv(tmp_path / "train.csv", ["sentence1", "sentence2"], [["a", "b"]])
    with pytest.raises(UsageError, match="no 'label' column"):
        load_glue_files(nolabel, None, None, GLUE_TASKS["rte"])
    with pytest.raises(UsageError, match="need a 'label' column"):
        load_glue_files(nolabel, None, None, None)
    bad = write_csv(tmp_path / "bad.csv", ["sentence1", "sentence2", "label"],
                    [["a", "b", "entailment"], ["c", "d", "maybe"]])
    with pytest.raises(UsageError) as e:
        load_glue_files(bad, None, None, GLUE_TASKS["rte"])
    assert bad in str(e.value) and "row 2" in str(e.value) and "'maybe'" in str(e.value)
    txt = tmp_path / "train.txt"
    txt.write_text("x\n", encoding="utf-8")
    with pytest.raises(UsageError, match="unsupported extension"):
        load_glue_files(str(txt), None, None, GLUE_TASKS["rte"])
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no rows"):
        load_glue_files(str(empty), None, None, GLUE_TASKS["sst2"])


def test_unlabelled_test_file_with_placeholder_labels(tmp_path):
    test = write_csv(tmp_path / "test.csv", ["sentence1", "sentence2", "label"], [["a", "b", "-1"], ["c", "d", "-1"]])
    data, _ = load_glue_files(None, None, test, GLUE_TASKS["rte"])
    assert data.test_sets["RTE.tsv"].labels is None


# --------------------------------------------------------------------------- the real files
# (train, dev, test) rows from ../shared/data/README.md; None: that split is not available
REAL_ROWS = {"cola": (8551, 1043, 1063), "sst2": (67349, 872, 1821), "mrpc": (3668, 408, 1725),
             "stsb": (5749, 1500, 1379), "qnli": (None, 5463, 5463), "rte": (2490, 277, 3000),
             "wnli": (635, 71, 146)}


def test_real_glue_files_row_counts():
    if not os.path.isdir(REAL_GLUE):
        pytest.skip(f"{REAL_GLUE} not present")
    for name, (n_train, n_dev, n_test) in REAL_ROWS.items():
        task = GLUE_TASKS[name]
        data = load_glue_folder(os.path.join(REAL_GLUE, FOLDER_NAMES[name]), task)
        assert (len(data.train) if data.train else None) == n_train, name
        assert len(data.eval_sets[""]) == n_dev, name
        test = data.test_sets[task.submission_files[0]]
        assert len(test) == n_test and test.labels is None, name
        assert test.index == [str(i) for i in range(n_test)], name  # submission index = test file's index
        assert task.submission_rows[0] == n_test, name
    ax = read_glue_tsv(os.path.join(REAL_GLUE, "diagnostic", "diagnostic.tsv"), GLUE_TASKS["mnli"], AX_LAYOUT)
    assert len(ax) == 1104
    # label distributions from the README
    cola = load_glue_folder(os.path.join(REAL_GLUE, "CoLA"), GLUE_TASKS["cola"])
    assert sum(cola.train.labels) == 6023 and sum(cola.eval_sets[""].labels) == 721
    qnli = load_glue_folder(os.path.join(REAL_GLUE, "QNLI"), GLUE_TASKS["qnli"])
    assert qnli.eval_sets[""].labels.count(0) == 2702  # entailment
    wnli = load_glue_folder(os.path.join(REAL_GLUE, "WNLI"), GLUE_TASKS["wnli"])
    assert sum(wnli.train.labels) == 312
    stsb = load_glue_folder(os.path.join(REAL_GLUE, "STS-B"), GLUE_TASKS["stsb"])
    assert min(stsb.train.labels) == 0.0 and max(stsb.train.labels) == 5.0
