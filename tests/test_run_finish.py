"""How every run finishes (distill/entry.py: finish_run), through the four real entry scripts: the same result
file names everywhere, and teacher_eval_results.json holds the teacher's own score on the same dev data (equal
to what an evaluation-only run of that teacher reports). Also: the one cache root ($XDG_CACHE_HOME/distill,
read when a run starts) and the one way a shared cache dir is published (distill/io_utils.py)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_imdb import write_toy_imdb
from test_squad import qa_models, squad_files  # noqa: F401  (fixtures)
from test_train_lm_distill import lm  # noqa: F401  (fixture)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation
import train_lm_distill
from distill import io_utils

# every script with a teacher, --do_train and --do_eval writes these; the student's dev scores in eval_results.json
COMMON = {"train_results.json", "eval_results.json", "teacher_eval_results.json", "all_results.json"}
TINY = ["--max_steps", "2", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
        "--report_to", "none", "--disable_tqdm", "--learning_rate", "1e-3"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_ok(script, *argv):
    assert script.main([str(a) for a in argv]) == 0


def result_files(out) -> set[str]:
    return {n for n in os.listdir(out) if n.endswith("_results.json")}


def assert_teacher_scored_as_itself(out, teacher_only):
    """teacher_eval_* of the distillation run == eval_* of an evaluation-only run of the teacher, key by key;
    eval_results.json holds the student's scores only, and all_results.json merges both."""
    student, teacher = read_json(out / "eval_results.json"), read_json(out / "teacher_eval_results.json")
    alone = read_json(teacher_only / "eval_results.json")
    assert student and all(k.startswith("eval_") for k in student)
    assert set(teacher) == {"teacher_" + k for k in alone}
    for key, value in alone.items():
        assert teacher["teacher_" + key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert read_json(out / "all_results.json").items() >= (student | teacher).items()


# ---------------------------------------------------------------------------------------------- the four scripts
def test_glue_finishes_with_the_common_files_the_server_file_and_the_teachers_real_score(toy, tmp_path):
    common = ["--task_name", "sst2", "--data_dir", toy["task"], "--max_seq_length", "48", *TINY]
    out = tmp_path / "kd"
    run_ok(run_glue, "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--alpha_kd", "0.5",
           "--do_train", "--do_eval", "--do_predict", "--output_dir", out, *common)
    assert result_files(out) == COMMON and (out / "SST-2.tsv").is_file()
    alone = tmp_path / "teacher_only"
    run_ok(run_glue, "--model_name_or_path", toy["teacher"], "--do_eval", "--output_dir", alone, *common)
    assert result_files(alone) == {"eval_results.json", "all_results.json"}  # no teacher: no teacher scores
    assert_teacher_scored_as_itself(out, alone)
    # and that score is the teacher's, recomputed with plain transformers on dev.tsv
    model = AutoModelForSequenceClassification.from_pretrained(toy["teacher"]).eval()
    tok = AutoTokenizer.from_pretrained(toy["teacher"])
    with open(os.path.join(toy["task"], "dev.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    import torch
    with torch.no_grad():
        enc = tok([r[0] for r in rows], padding=True, truncation=True, max_length=48, return_tensors="pt")
        predicted = model(**enc).logits.argmax(-1).numpy()
    accuracy = float((predicted == np.array([int(r[1]) for r in rows])).mean())
    assert read_json(out / "teacher_eval_results.json")["teacher_eval_accuracy"] == pytest.approx(accuracy)


def test_squad_finishes_with_the_common_files_predictions_and_the_teachers_real_score(qa_models, squad_files,  # noqa: F811
                                                                                      tmp_path):
    common = ["--predict_file", squad_files["dev"], "--max_seq_length", "48", "--doc_stride", "16",
              "--max_query_length", "12", *TINY]
    out = tmp_path / "kd"
    run_ok(run_squad_w_distillation, "--model_name_or_path", qa_models["distilbert"], "--teacher_name_or_path",
           qa_models["bert"], "--train_file", squad_files["train"], "--alpha_ce", "0.5", "--alpha_squad", "0.5",
           "--do_train", "--do_eval", "--output_dir", out, *common)
    assert result_files(out) == COMMON
    # predictions.json: the student's answers (scored in eval_results.json), not the teacher's, evaluated after it
    from squad.data import read_squad_json
    from squad.metrics import squad_scores
    gold = {e.id: e.answers for e in read_squad_json(squad_files["dev"])}
    scores = squad_scores(gold, read_json(out / "predictions.json"))
    assert read_json(out / "eval_results.json")["eval_f1"] == pytest.approx(scores["f1"])
    alone = tmp_path / "teacher_only"
    run_ok(run_squad_w_distillation, "--model_name_or_path", qa_models["bert"], "--do_eval", "--output_dir", alone,
           *common)
    assert_teacher_scored_as_itself(out, alone)


def test_imdb_finishes_with_the_common_files_test_scores_and_the_teachers_real_score(toy, tmp_path):
    data = write_toy_imdb(tmp_path / "imdb.csv.gz", n_train=80, n_test=16)
    common = ["--data_file", data, "--max_seq_length", "32", *TINY]
    out = tmp_path / "kd"
    run_ok(run_imdb_w_distillation, "--model_name_or_path", toy["student"], "--teacher_name_or_path",
           toy["teacher"], "--alpha_ce", "0.5", "--alpha_imdb", "0.5", "--do_train", "--do_eval", "--do_predict",
           "--output_dir", out, *common)
    assert result_files(out) == COMMON | {"test_results.json"}
    test = read_json(out / "test_results.json")
    assert test["test_samples"] == 16 and "test_accuracy" in read_json(out / "all_results.json")
    alone = tmp_path / "teacher_only"
    run_ok(run_imdb_w_distillation, "--model_name_or_path", toy["teacher"], "--do_eval", "--output_dir", alone,
           *common)
    assert_teacher_scored_as_itself(out, alone)


def test_lm_finishes_with_the_common_files_and_the_teachers_real_score(lm, tmp_path):  # noqa: F811
    common = ["--train_file", lm["corpus"], "--max_seq_length", 32, "--validation_split_percentage", 20,
              "--data_cache_dir", lm["cache"], *TINY]
    out = tmp_path / "kd"
    run_ok(train_lm_distill, "--teacher_name_or_path", lm["gpt2"], "--student_layers", "1", "--kd_ratio", "0.5",
           "--do_train", "--do_eval", "--output_dir", out, *common)
    assert result_files(out) == COMMON
    alone = tmp_path / "teacher_only"
    run_ok(train_lm_distill, "--model_name_or_path", lm["gpt2"], "--do_eval", "--output_dir", alone, *common)
    assert_teacher_scored_as_itself(out, alone)


# ---------------------------------------------------------------------------------------------- one cache root
def test_the_cache_root_is_read_when_a_run_starts(toy, lm, tmp_path, monkeypatch):  # noqa: F811
    """XDG_CACHE_HOME set after every module was imported still moves both default caches: the teacher
    outputs and the LM's tokenised data (no --teacher_cache_dir, no --data_cache_dir)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert io_utils.cache_root("lm_data") == str(tmp_path / "xdg" / "distill" / "lm_data")
    run_ok(run_glue, "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
           "--data_dir", toy["task"], "--alpha_kd", "0.5", "--cache_teacher_outputs", "--do_train",
           "--output_dir", tmp_path / "glue", "--max_seq_length", "48", *TINY)
    teacher_outputs = tmp_path / "xdg" / "distill" / "teacher_outputs"
    assert [n for n in os.listdir(teacher_outputs) if ".partial-" not in n] and \
        (teacher_outputs / os.listdir(teacher_outputs)[0] / "meta.json").is_file()
    run_ok(train_lm_distill, "--model_name_or_path", lm["gpt2"], "--train_file", lm["corpus"], "--max_seq_length", 32,
           "--validation_split_percentage", 20, "--do_train", "--output_dir", tmp_path / "lm", *TINY)
    assert any(n.startswith("docs-") for n in os.listdir(tmp_path / "xdg" / "distill" / "lm_data"))


def test_publish_dir_keeps_the_first_complete_copy(tmp_path):
    final = str(tmp_path / "entry")
    first, second = io_utils.partial_dir_name(final), io_utils.partial_dir_name(final)
    assert first != second and os.path.basename(first).startswith("entry.partial-")
    for partial, text in ((first, "first"), (second, "second")):
        os.makedirs(partial)
        with open(os.path.join(partial, "meta.json"), "w", encoding="utf-8") as f:
            f.write(text)
    assert io_utils.publish_dir(first, final) is True
    assert io_utils.publish_dir(second, final) is False  # another run was first: its copy stays, this one goes
    assert sorted(os.listdir(tmp_path)) == ["entry"]
    assert open(os.path.join(final, "meta.json"), encoding="utf-8").read() == "first"
