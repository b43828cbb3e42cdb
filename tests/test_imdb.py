"""IMDB: the csv reader, the dev split carved from train, long-review truncation, and
run_imdb_w_distillation.py end to end (teacher fine-tuning, then distillation with the masked
one-to-one loss) on a toy csv in the real file's format."""
from __future__ import annotations

import csv
import gzip
import json
import os
import random
import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_imdb_w_distillation as imdb_script
from imdb.data import Reviews, read_imdb_csv, split_dev, tokenize_reviews

SHARED_IMDB = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb", "imdb_50k.csv.gz")


def write_toy_imdb(path, n_train=120, n_test=40, seed=0):
    """The real file's layout (split,label,rating,id,orig_path,text; sorted by split then label)."""
    from distill.toy import toy_sentence
    rng = random.Random(seed)
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            text, label = toy_sentence(rng)
            rows.append([split, label, 8 if label else 2, i, f"{split}/{i}.txt", text.replace(" and ", " and<br />")])
    rows.sort(key=lambda r: (r[0] != "train", -r[1]))
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "label", "rating", "id", "orig_path", "text"])
        w.writerows(rows)
    return str(path)


def test_dev_split_is_stratified_disjoint_seeded_and_from_train_only():
    train = Reviews([f"r{i}" for i in range(100)], [1] * 60 + [0] * 40)
    rest, dev = split_dev(train, 0.1, seed=3)
    assert len(dev) == 10 and dev.labels.count(1) == 6 and dev.labels.count(0) == 4
    assert set(rest.texts).isdisjoint(dev.texts) and len(rest) + len(dev) == 100
    assert split_dev(train, 0.1, seed=3)[1].texts == dev.texts and split_dev(train, 0.1, seed=4)[1].texts != dev.texts


def test_sampling_a_sorted_file_keeps_both_classes():
    reviews = Reviews([str(i) for i in range(100)], [1] * 50 + [0] * 50)  # sorted by label, as the real csv
    assert set(reviews.sample(10, seed=0).labels) == {0, 1}


@pytest.mark.parametrize("mode,expected", [
    ("head", ["w0", "w1", "w2", "w3", "w4", "w5"]),
    ("tail", ["w6", "w7", "w8", "w9", "w10", "w11"]),
    ("head_tail", ["w0", "w1", "w8", "w9", "w10", "w11"]),
])
def test_truncation_strategies_keep_the_documented_tokens(tmp_path, mode, expected):
    from transformers import BertTokenizerFast
    words = [f"w{i}" for i in range(12)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab))
    ds = tokenize_reviews(Reviews([" ".join(words), "w3<br />w4"], [1, 0]), tok, max_seq_length=8, truncation=mode,
                          head_tokens=2)
    assert tok.convert_ids_to_tokens(ds.columns["input_ids"][0]) == ["[CLS]", *expected, "[SEP]"]
    assert tok.convert_ids_to_tokens(ds.columns["input_ids"][1]) == ["[CLS]", "w3", "w4", "[SEP]"]  # <br /> dropped
    assert ds.columns["labels"] == [1, 0]


def test_bad_csv_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("split,score,text\ntrain,1,good\n")
    assert imdb_script.main(["--model_name_or_path", "x", "--data_file", str(bad), "--do_train", "--output_dir",
                             str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lacks column(s) label" in err[0]


def test_rows_splits_and_labels_are_checked_with_their_line(tmp_path):
    from distill.errors import UsageError
    header = "split,label,text\n"
    for body, words in (("train,1,good\ntest,0,bad\nunsup,0,meh\n", "line 4: split 'unsup' is not train or test"),
                        ('train,1,good\ntest,0,"bad\nfilm"\ntest,neg,x\n', "line 5: label 'neg' is not 0"),
                        ("train,1,good\ntest,0\n", "line 3: 2 fields but the header has 3"),
                        ("test,0,bad\n", "found ['test']")):
        (tmp_path / "d.csv").write_text(header + body, encoding="utf-8")
        with pytest.raises(UsageError, match=words.replace("[", r"\[").replace("]", r"\]")):
            read_imdb_csv(str(tmp_path / "d.csv"))


@pytest.mark.skipif(not os.path.isfile(SHARED_IMDB), reason="../shared/data/imdb not present")
def test_real_imdb_file_has_the_official_splits():
    splits = read_imdb_csv(SHARED_IMDB)
    for name in ("train", "test"):
        assert len(splits[name]) == 25000 and sum(splits[name].labels) == 12500


FAST = ["--max_seq_length", "32", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
        "--learning_rate", "2e-3", "--report_to", "none", "--disable_tqdm", "--logging_steps", "1"]


def test_teacher_then_masked_one_to_one_student_end_to_end(toy, tmp_path):
    data = write_toy_imdb(tmp_path / "imdb.csv.gz")
    teacher = tmp_path / "teacher"
    assert imdb_script.main([str(a) for a in [
        "--model_name_or_path", toy["teacher"], "--data_file", data, "--do_train", "--do_eval", "--do_predict",
        "--num_train_epochs", "3", "--output_dir", teacher, *FAST]]) == 0
    out = tmp_path / "student"
    assert imdb_script.main([str(a) for a in [
        "--model_name_or_path", toy["student"], "--teacher_name_or_path", teacher, "--data_file", data,
        "--do_train", "--do_eval", "--do_predict", "--num_train_epochs", "2", "--alpha_ce", "0.5", "--alpha_imdb",
        "0.5", "--alpha_corr", "0.5", "--do_mask", "--output_dir", out, *FAST]]) == 0
    results = json.load(open(out / "all_results.json"))
    assert results["eval_samples"] == 12 and results["test_samples"] == 40  # dev = 10 % of TRAIN; test untouched
    # test accuracy equals the saved student's, recomputed here from the model dir on the 40 test reviews
    # (max_seq_length 32 < head_tokens 128: head_tail keeps the first 30 tokens; <br /> becomes a space)
    with gzip.open(data, "rt", encoding="utf-8", newline="") as f:
        test_rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    enc = tok([r["text"].replace("<br />", " ") for r in test_rows], truncation=True, max_length=32, padding=True,
              return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1)  # (40,)
    labels = torch.tensor([int(r["label"]) for r in test_rows])
    assert results["test_accuracy"] == pytest.approx((predicted == labels).double().mean().item(), abs=1e-12)
    logs = [e for e in json.load(open(out / "trainer_state.json"))["log_history"] if "loss/total" in e]
    for e in logs:
        assert e["loss/total"] == pytest.approx(0.5 * e["loss/ce"] + 0.5 * e["loss/kd"] + 0.5 * e["loss/corr"],
                                                rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------- label names as other scripts saved them
def relabelled(source, target, names) -> str:
    """A copy of the model dir `source` whose config names its labels `names` (id order)."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (target / "config.json").write_text(json.dumps(config))
    return str(target)


@pytest.fixture(scope="module")
def imdb_file(tmp_path_factory):
    return write_toy_imdb(tmp_path_factory.mktemp("imdb") / "imdb.csv.gz", n_train=40, n_test=10)


def distil(student, teacher, data, out):
    return imdb_script.main([str(a) for a in [
        "--model_name_or_path", student, "--teacher_name_or_path", teacher, "--data_file", data, "--do_train",
        "--max_steps", "2", "--alpha_ce", "0.5", "--alpha_imdb", "0.5", "--output_dir", out, *FAST]])


@pytest.mark.parametrize("teacher_names,student_names", [
    (["NEGATIVE", "POSITIVE"], None),  # the papers' IMDB script: its names, our order
    (["negative", "positive"], ["NEG", "POS"]),
    (["0", "1"], ["0", "1"]),  # bare ids: no names, the task's order
])
def test_a_teacher_of_our_order_under_other_names_distils(toy, tmp_path, imdb_file, teacher_names, student_names,
                                                          caplog):
    teacher = relabelled(toy["teacher"], tmp_path / "teacher", teacher_names)
    student = relabelled(toy["student"], tmp_path / "student", student_names) if student_names else toy["student"]
    assert distil(student, teacher, imdb_file, tmp_path / "out") == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    assert "re-labelled" not in caplog.text


@pytest.mark.parametrize("teacher_names,student_names,words", [
    (["POSITIVE", "NEGATIVE"], None, "teacher {t!r} label order ['POSITIVE', 'NEGATIVE'] differs from the "
                                     "student's ['neg', 'pos']; fine-tune the teacher with this script"),
    (["0", "1"], ["pos", "neg"], "the student checkpoint's labels are ordered ['pos', 'neg'], not ['neg', 'pos']"),
])
def test_another_order_is_refused_in_one_line(toy, tmp_path, imdb_file, capsys, teacher_names, student_names, words):
    teacher = relabelled(toy["teacher"], tmp_path / "teacher", teacher_names)
    student = relabelled(toy["student"], tmp_path / "student", student_names) if student_names else toy["student"]
    assert distil(student, teacher, imdb_file, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + words.format(t=teacher)), err
    assert not os.path.exists(tmp_path / "out")
