"""run_glue.py end to end on tiny local models: fine-tuning, KD, predict, resume, seed commands, errors."""
from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest
import torch
from conftest import FIXTURES, assert_same_run, crash_at_step
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_glue

FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--max_seq_length", "48",
        "--learning_rate", "2e-3", "--report_to", "tensorboard", "--disable_tqdm", "--logging_steps", "2"]


def run_ok(*argv):
    assert run_glue.main([str(a) for a in argv]) == 0


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def finetuned(toy, tmp_path_factory):
    """A teacher fine-tuned on the toy task with run_glue.py (also the fine-tuning test)."""
    out = tmp_path_factory.mktemp("teacher_run")
    run_ok("--model_name_or_path", toy["teacher"], "--task_name", "sst2", "--data_dir", toy["task"],
           "--do_train", "--do_eval", "--do_predict", "--num_train_epochs", "3", "--eval_strategy", "epoch",
           "--output_dir", out, "--overwrite_output_dir", *FAST)
    return str(out)


def test_finetuning_leaves_the_hf_files_and_a_loadable_best_model(finetuned, toy):
    for name in ("all_results.json", "train_results.json", "eval_results.json", "trainer_state.json",
                 "config.json", "model.safetensors", "tokenizer_config.json", "SST-2.tsv"):
        assert os.path.isfile(os.path.join(finetuned, name)), name
    assert glob.glob(os.path.join(finetuned, "checkpoint-*")) and glob.glob(os.path.join(finetuned, "runs", "*", ))
    state = read_json(os.path.join(finetuned, "trainer_state.json"))
    assert os.path.isdir(os.path.join(finetuned, f"checkpoint-{state['best_step']}"))  # the best model is kept
    evals = [e for e in state["log_history"] if "eval_accuracy" in e]
    assert len(evals) == 3 and state["best_metric"] == max(e["eval_accuracy"] for e in evals)
    assert any("loss/ce" in e and "loss/ce_weighted" in e for e in state["log_history"])
    # The saved model is the best one: reloading it with plain transformers reproduces eval_accuracy.
    results = read_json(os.path.join(finetuned, "eval_results.json"))
    assert results["eval_accuracy"] == pytest.approx(state["best_metric"])
    model = AutoModelForSequenceClassification.from_pretrained(finetuned).eval()
    tok = AutoTokenizer.from_pretrained(finetuned)
    rows = read_tsv(os.path.join(toy["task"], "dev.tsv"))[1:]
    enc = tok([r[0] for r in rows], padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        preds = model(**enc).logits.argmax(-1).numpy()
    assert np.mean(preds == np.array([int(r[1]) for r in rows])) == pytest.approx(results["eval_accuracy"])
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_kd_run_logs_every_term_and_predict_only_reuses_a_checkpoint(finetuned, toy, tmp_path):
    out = tmp_path / "kd"
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", finetuned, "--task_name", "sst2",
           "--data_dir", toy["task"], "--do_train", "--do_eval", "--num_train_epochs", "2", "--alpha_kd", "0.5",
           "--temperature", "2.0", "--output_dir", out, *FAST)
    history = read_json(out / "trainer_state.json")["log_history"]
    train_logs = [e for e in history if "loss/total" in e]
    for key in ("loss/kd", "loss/kd_weighted", "loss/ce", "loss/ce_weighted", "learning_rate", "grad_norm"):
        assert all(key in e for e in train_logs), key
    assert all(e["loss/total"] == pytest.approx(e["loss/kd_weighted"] + e["loss/ce_weighted"], abs=1e-5)
               for e in train_logs)
    events = glob.glob(str(out / "runs" / "events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(events[0]).Reload().Tags()["scalars"]
    assert {"loss/kd", "loss/ce", "loss/total", "eval_accuracy"} <= set(tags)

    # The second seed command shape: predict with a saved checkpoint, nothing else.
    pred = tmp_path / "pred"
    run_ok("--model_name_or_path", out, "--task_name", "sst2", "--data_dir", toy["task"],
           "--per_device_eval_batch_size", "7", "--output_dir", pred, "--do_predict")
    rows = read_tsv(pred / "SST-2.tsv")
    test_rows = read_tsv(os.path.join(toy["task"], "test.tsv"))[1:]
    assert rows[0] == ["index", "prediction"] and [r[0] for r in rows[1:]] == [r[0] for r in test_rows]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok([r[1] for r in test_rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits.argmax(-1).tolist()
    assert [int(r[1]) for r in rows[1:]] == expected


def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(toy, tmp_path, monkeypatch):
    argv = ["--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "9", "--eval_steps", "3",
            "--gradient_accumulation_steps", "2", "--per_device_train_batch_size", "8", "--warmup_ratio", "0.2",
            "--max_seq_length", "48", "--disable_tqdm", "--report_to", "none", "--alpha_kd", "0.5"]
    run_ok(*argv, "--output_dir", tmp_path / "full")

    crash_at_step(monkeypatch, run_glue.main, [*argv, "--output_dir", tmp_path / "resumed"], step=8)
    assert sorted(os.listdir(tmp_path / "resumed")).count("checkpoint-6") == 1
    run_ok(*argv, "--output_dir", tmp_path / "resumed")  # picks up checkpoint-6 by itself

    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_seed_commands_run_on_mnli_with_matched_mismatched_and_ax(toy, tmp_path):
    mnli = os.path.join(FIXTURES, "MNLI")
    teacher = tmp_path / "mnli_teacher"
    run_ok("--model_name_or_path", toy["teacher"], "--task_name", "mnli", "--data_dir", mnli, "--do_train",
           "--num_train_epochs", "1", "--output_dir", teacher, "--disable_tqdm")
    # Seed command 1, unchanged apart from paths (--data_dir: MNLI is not on the Hub offline).
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", teacher, "--task_name", "mnli",
           "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "32", "--learning_rate", "1e-04",
           "--alpha_kd", "1.0", "--temperature", "1.0", "--num_train_epochs", "6", "--output_dir", tmp_path / "out",
           "--eval_steps", "10000", "--do_train", "--do_eval", "--data_dir", mnli)
    results = read_json(tmp_path / "out" / "eval_results.json")
    assert {"eval_accuracy", "eval_accuracy_mm", "eval_loss", "eval_loss_mm"} <= set(results)
    assert read_json(tmp_path / "out" / "config.json")["id2label"] == {
        "0": "entailment", "1": "neutral", "2": "contradiction"}
    # Seed command 2: predict with the checkpoint; AX comes from the diagnostic folder beside MNLI.
    run_ok("--model_name_or_path", tmp_path / "out", "--task_name", "mnli", "--per_device_eval_batch_size", "32",
           "--output_dir", tmp_path / "pred", "--do_predict", "--data_dir", mnli)
    for name, source in (("MNLI-m.tsv", "MNLI/test_matched.tsv"), ("MNLI-mm.tsv", "MNLI/test_mismatched.tsv"),
                         ("AX.tsv", "diagnostic/diagnostic.tsv")):
        rows = read_tsv(tmp_path / "pred" / name)
        test_rows = read_tsv(os.path.join(FIXTURES, source))[1:]
        assert [r[0] for r in rows[1:]] == [r[0] for r in test_rows if r]
        assert {r[1] for r in rows[1:]} <= {"entailment", "neutral", "contradiction"}


def test_regression_task_distils_with_mse(toy, tmp_path):
    stsb = os.path.join(FIXTURES, "STS-B")
    run_ok("--model_name_or_path", toy["teacher"], "--task_name", "stsb", "--data_dir", stsb, "--do_train",
           "--output_dir", tmp_path / "t", "--num_train_epochs", "1", "--disable_tqdm")
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", tmp_path / "t", "--task_name", "stsb",
           "--pad_to_max_length", "--max_seq_length", "40",
           "--data_dir", stsb, "--do_train", "--do_eval", "--do_predict", "--output_dir", tmp_path / "s",
           "--num_train_epochs", "1", "--alpha_kd", "0.5", "--disable_tqdm")
    results = read_json(tmp_path / "s" / "eval_results.json")
    assert {"eval_pearson", "eval_spearmanr", "eval_combined_score"} <= set(results)
    history = read_json(tmp_path / "s" / "trainer_state.json")["log_history"]
    assert any("loss/kd" in e and "loss/mse" in e for e in history)
    # The server file equals the saved student's own scores on test.tsv, recomputed here from the model dir
    # (clipped to [0, 5], 3 decimals; 1.1e-3: a float difference may flip the rounding of the last digit).
    rows = read_tsv(os.path.join(stsb, "test.tsv"))
    header, test_rows = rows[0], [r for r in rows[1:] if r]
    pairs = [(r[header.index("sentence1")], r[header.index("sentence2")]) for r in test_rows]
    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=40, padding="max_length",
              return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits[:, 0].clamp(0.0, 5.0).tolist()  # (N,)
    written = read_tsv(tmp_path / "s" / "STS-B.tsv")[1:]
    assert [r[0] for r in written] == [r[0] for r in test_rows]
    assert [float(r[1]) for r in written] == pytest.approx(expected, abs=1.1e-3)


def test_json_argument_file_and_student_layers(toy, tmp_path):
    args = {"model_name_or_path": toy["teacher4"], "student_layers": "0,3", "task_name": "sst2",
            "data_dir": toy["task"], "do_train": True, "max_steps": 2, "output_dir": str(tmp_path / "out"),
            "teacher_name_or_path": toy["teacher4"], "report_to": "none", "disable_tqdm": True,
            "bf16": True}  # bf16 autocast also runs on the CPU
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    run_ok(path)
    assert read_json(tmp_path / "out" / "config.json")["num_hidden_layers"] == 2


def test_student_checkpoint_with_another_mnli_label_order_is_reconciled(toy, tmp_path):
    """An MNLI checkpoint whose head is ordered (contradiction, entailment, neutral): training labels
    are mapped to its ids, metrics and submission words come out right, and its order is kept."""
    from transformers import BertForSequenceClassification
    other_order = ["contradiction", "entailment", "neutral"]
    student_dir = tmp_path / "old_mnli_student"
    model = BertForSequenceClassification.from_pretrained(toy["student"], num_labels=3,
                                                          id2label=dict(enumerate(other_order)),
                                                          ignore_mismatched_sizes=True)
    model.save_pretrained(student_dir)
    AutoTokenizer.from_pretrained(toy["student"]).save_pretrained(student_dir)
    mnli = os.path.join(FIXTURES, "MNLI")
    run_ok("--model_name_or_path", student_dir, "--task_name", "mnli", "--data_dir", mnli, "--do_train",
           "--do_eval", "--do_predict", "--num_train_epochs", "3", "--output_dir", tmp_path / "out", *FAST)
    assert read_json(tmp_path / "out" / "config.json")["id2label"] == {str(i): n for i, n in enumerate(other_order)}
    # Reference: the saved model's own predictions, named through its own id2label.
    trained = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    dev = [r for r in read_tsv(os.path.join(mnli, "dev_matched.tsv"))[1:] if r]
    enc = tok([r[8] for r in dev], [r[9] for r in dev], padding=True, truncation=True, max_length=48,
              return_tensors="pt")
    with torch.no_grad():
        names = [trained.config.id2label[i] for i in trained(**enc).logits.argmax(-1).tolist()]
    accuracy = np.mean([n == r[-1] for n, r in zip(names, dev)])
    assert read_json(tmp_path / "out" / "eval_results.json")["eval_accuracy"] == pytest.approx(accuracy)
    test = [r for r in read_tsv(os.path.join(mnli, "test_matched.tsv"))[1:] if r]
    enc = tok([r[8] for r in test], [r[9] for r in test], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = [trained.config.id2label[i] for i in trained(**enc).logits.argmax(-1).tolist()]
    assert [r[1] for r in read_tsv(tmp_path / "out" / "MNLI-m.tsv")[1:]] == expected


def test_kd_with_length_grouping_is_the_same_for_any_split_of_the_optimizer_step(toy, tmp_path):
    """16×1 and 8×2 (per-device batch × accumulation) are one optimizer step of 16 examples. Length grouping
    (on by default) cuts the data into optimizer steps, not micro-batches, so both train on the same
    examples step by step and end with the same student."""
    from conftest import no_dropout_bert, no_gradient
    from safetensors.torch import load_file
    paths = {}
    for name in ("student", "teacher"):  # without dropout: every split computes the same function
        paths[name] = str(tmp_path / name)
        no_dropout_bert(toy[name]).save_pretrained(paths[name])
        AutoTokenizer.from_pretrained(toy[name]).save_pretrained(paths[name])
    lengths = {len(r[0].split()) for r in read_tsv(os.path.join(toy["task"], "train.tsv"))[1:]}
    assert len(lengths) > 5  # sentences of many lengths: grouping has something to sort
    common = ["--model_name_or_path", paths["student"], "--teacher_model", paths["teacher"], "--task_name", "sst2",
              "--data_dir", toy["task"], "--do_train", "--max_steps", "4", "--learning_rate", "1e-3",
              "--alpha_kd", "0.5", "--max_seq_length", "48", "--disable_tqdm", "--report_to", "none",
              "--logging_steps", "1"]
    weights, logs = {}, {}
    for per_device, accumulation in ((16, 1), (8, 2)):
        out = tmp_path / f"{per_device}x{accumulation}"
        run_ok(*common, "--per_device_train_batch_size", per_device, "--gradient_accumulation_steps", accumulation,
               "--output_dir", out)
        weights[out.name] = load_file(out / "model.safetensors")
        logs[out.name] = [e["loss/ce"] for e in read_json(out / "trainer_state.json")["log_history"] if "loss/ce" in e]
    start = load_file(os.path.join(paths["student"], "model.safetensors"))
    ref = weights["16x1"]
    assert max(float((ref[k] - start[k]).abs().max()) for k in start) > 1e-3  # the student moved
    assert len(logs["16x1"]) == 4 and logs["8x2"] == pytest.approx(logs["16x1"], rel=1e-5)  # each step's batch
    for key, value in weights["8x2"].items():
        if no_gradient(key):  # float noise through AdamW (tests/conftest.py: KEY_BIAS)
            continue
        # The same examples summed in another order (8 vs 16 rows a pass, padded to other widths): float32
        # rounding of ~1e-7 relative a reduction, carried through 4 AdamW steps of lr 1e-3, stays ~1e-7
        # absolute; a different example set moves weights by the order of the update itself (~1e-3).
        torch.testing.assert_close(value, ref[key], rtol=1e-5, atol=1e-6, msg=key)
