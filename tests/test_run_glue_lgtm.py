"""run_glue.py end to end with teachers that learn: ProKT and LGTM on tiny local models."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_glue
from distill.trainer import DistillationTrainer

FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--max_seq_length", "48",
        "--learning_rate", "2e-3", "--t_learning_rate", "1e-3", "--report_to", "none", "--disable_tqdm",
        "--logging_steps", "1"]


def run_ok(*argv):
    assert run_glue.main([str(a) for a in argv]) == 0


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _dev_accuracy(model_dir, task_dir):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(os.path.join(task_dir, "dev.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    enc = tok([r[0] for r in rows], padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        preds = model(**enc).logits.argmax(-1).numpy()
    return float(np.mean(preds == np.array([int(r[1]) for r in rows])))


@pytest.mark.parametrize("method", ["prokt", "lgtm"])
def test_teacher_that_learns_is_evaluated_selected_saved_and_checkpointed(toy, tmp_path, method):
    out = tmp_path / method
    flags = ["--train_teacher"] + (["--use_lgtm"] if method == "lgtm" else [])
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
           "--data_dir", toy["task"], "--do_train", "--do_eval", "--num_train_epochs", "2", "--eval_steps", "3",
           "--output_dir", out, *flags, *FAST)
    state = read_json(out / "trainer_state.json")
    train_logs = [e for e in state["log_history"] if "loss/total" in e]
    expected = {"loss/teacher_aux", "loss/teacher_kd", "loss/teacher_ce", "loss/teacher_kd_weighted",
                "teacher_learning_rate", "teacher_grad_norm", "loss/kd", "loss/ce"}
    if method == "lgtm":
        expected |= {"lgtm/quiz_loss", "lgtm/eta", "lgtm/influence_norm"}
    assert all(expected <= set(e) for e in train_logs)
    teacher_evals = [e for e in state["log_history"] if "teacher_eval_accuracy" in e]
    assert len(teacher_evals) == len([e for e in state["log_history"] if "eval_accuracy" in e]) > 1
    assert state["teacher_best_metric"] == max(e["teacher_eval_accuracy"] for e in teacher_evals)
    # teacher/ is the best teacher as a plain HF model dir, and teacher_eval_results.json scores it
    results = read_json(out / "teacher_eval_results.json")
    assert results["teacher_eval_accuracy"] == pytest.approx(state["teacher_best_metric"])
    assert _dev_accuracy(out / "teacher", toy["task"]) == pytest.approx(results["teacher_eval_accuracy"])
    assert "teacher_eval_accuracy" in read_json(out / "all_results.json")
    # the teacher's weights, optimizer and schedule are in every checkpoint
    training = torch.load(out / "checkpoint-3" / "training_state.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler"} <= set(training["teacher"])
    assert training["teacher"]["scheduler"]["last_epoch"] == 3
    trained = load_file(out / "teacher" / "model.safetensors")
    original = load_file(os.path.join(toy["teacher"], "model.safetensors"))
    assert any(not torch.equal(trained[k], original[k]) for k in original)  # the teacher did learn


# An LGTM run killed mid-training and started again: test_run_lifecycle.py kills it for real (SIGKILL) at
# every phase and compares the final student AND teacher files byte for byte.


def test_quiz_examples_never_reach_a_student_update(toy, tmp_path, monkeypatch):
    seen, quiz_rows = [], {}
    real_accumulate = DistillationTrainer.accumulate_student_gradients

    def recording(self, micro_batches, counts, teacher_outputs):
        for b in micro_batches:
            seen.extend(tuple(ids[m.bool()].tolist()) for ids, m in zip(b["input_ids"], b["attention_mask"]))
        quiz = self.teacher.quiz.dataset
        quiz_rows["sizes"] = (len(quiz), len(self.train_dataset))
        quiz_rows["quiz"] = {tuple(ids) for ids in quiz.columns["input_ids"]}
        quiz_rows["train"] = {tuple(ids) for ids in self.train_dataset.columns["input_ids"]}
        return real_accumulate(self, micro_batches, counts, teacher_outputs)

    monkeypatch.setattr(DistillationTrainer, "accumulate_student_gradients", recording)
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
           "--data_dir", toy["task"], "--do_train", "--num_train_epochs", "2", "--output_dir", tmp_path / "o",
           "--train_teacher", "--use_lgtm", "--lgtm_quiz_fraction", "0.25", *FAST)
    assert quiz_rows["sizes"] == (24, 72)  # --lgtm_quiz_fraction 0.25 of the 96 training examples, held out
    only_quiz = quiz_rows["quiz"] - quiz_rows["train"]  # toy sentences may repeat across the split
    assert only_quiz and not only_quiz & set(seen)
    assert set(seen) <= quiz_rows["train"]  # virtual and real steps alike train only on training rows


def test_lgtm_released_code_modes_run_and_warn(toy, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run_ok("--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
               "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "3", "--output_dir", tmp_path,
               "--train_teacher", "--use_lgtm", "--lgtm_influence", "teacher_aux", "--lgtm_quiz_source",
               "validation", "--lgtm_exact", *FAST)
    assert any("dev scores are optimistic" in r.getMessage() for r in caplog.records)
    history = read_json(tmp_path / "trainer_state.json")["log_history"]
    # teacher_aux: η is the teacher's learning rate at step 1 (--t_learning_rate 1e-3), not the student's (2e-3)
    lr_logs = [e for e in history if "lgtm/eta" in e]
    assert lr_logs and lr_logs[0]["lgtm/eta"] == pytest.approx(1e-3)


def test_lgtm_paper_command_runs_on_mnli(toy, tmp_path):
    """The LGTM README's MNLI command, unchanged apart from paths (--data_dir: no Hub offline)."""
    mnli = os.path.join(FIXTURES, "MNLI")
    run_ok("--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "mnli",
           "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "32", "--learning_rate", "3e-05",
           "--t_learning_rate", "3e-05", "--alpha_kd", "1.0", "--temperature", "1.0", "--num_train_epochs", "6",
           "--output_dir", tmp_path / "out", "--eval_steps", "1000", "--do_train", "--do_eval", "--train_teacher",
           "--init_classifier_to_zero", "--use_lgtm", "--data_dir", mnli)
    results = read_json(tmp_path / "out" / "teacher_eval_results.json")
    assert {"teacher_eval_accuracy", "teacher_eval_accuracy_mm"} <= set(results)
    assert {"eval_accuracy", "eval_accuracy_mm"} <= set(read_json(tmp_path / "out" / "eval_results.json"))


def _no_dropout_copies(toy, root):
    """The toy student and teacher saved without dropout, so that every split computes the same function."""
    from conftest import no_dropout_bert
    paths = {}
    for name in ("student", "teacher"):
        paths[name] = str(root / f"{name}_no_dropout")
        no_dropout_bert(toy[name]).save_pretrained(paths[name])
        AutoTokenizer.from_pretrained(toy[name]).save_pretrained(paths[name])
    return paths


def test_lgtm_is_the_same_for_any_split_of_the_optimizer_step_into_micro_batches(toy, tmp_path):
    """16×1, 8×2 and 4×4 (per-device batch × accumulation) are one optimizer step of 16 examples: the quiz
    batch belongs to the step, so all three end with the same teacher and student. 24 quiz examples
    (--lgtm_quiz_fraction 0.25), not a multiple of 16: the second quiz batch wraps around to full size.
    --no_group_by_length: length grouping sorts within per-device batches, so it orders data by split."""
    from conftest import no_gradient
    models = _no_dropout_copies(toy, tmp_path)
    common = ["--model_name_or_path", models["student"], "--teacher_model", models["teacher"], "--task_name", "sst2",
              "--data_dir", toy["task"], "--do_train", "--max_steps", "3", "--train_teacher", "--use_lgtm",
              "--lgtm_quiz_fraction", "0.25", "--learning_rate", "1e-3", "--t_learning_rate", "1e-3",
              "--alpha_kd", "0.5", "--max_seq_length", "48", "--no_group_by_length", "--disable_tqdm",
              "--report_to", "none", "--logging_steps", "1"]
    weights, logs = {}, {}
    for per_device, accumulation in ((16, 1), (8, 2), (4, 4)):
        out = tmp_path / f"{per_device}x{accumulation}"
        run_ok(*common, "--per_device_train_batch_size", per_device, "--gradient_accumulation_steps", accumulation,
               "--output_dir", out)
        weights[out.name] = {name: load_file(out / name) for name in ("model.safetensors", "teacher/model.safetensors")}
        logs[out.name] = [e for e in read_json(out / "trainer_state.json")["log_history"] if "lgtm/quiz_loss" in e]
    ref = weights["16x1"]
    start = load_file(os.path.join(models["teacher"], "model.safetensors"))
    update = max(float((ref["teacher/model.safetensors"][k] - start[k]).abs().max()) for k in start)
    assert update > 1e-4  # the teacher moved: equality below is not the trivial one
    for split in ("8x2", "4x4"):
        for name, tensors in weights[split].items():
            for key, value in tensors.items():
                if no_gradient(key):  # float noise through AdamW (tests/conftest.py: KEY_BIAS)
                    continue
                # float32 sums in another order (4, 8 or 16 rows a pass, other padding): measured ≤ 1.2e-7
                # after 3 steps (≈ 1 ulp of the weights); a quiz batch of another size moved the teacher by
                # 3e-4 (8×2) of its 2e-3 update. atol 1e-6: 8× the rounding, 300× below that error.
                torch.testing.assert_close(value, ref[name][key], rtol=1e-5, atol=1e-6, msg=f"{split} {name}:{key}")
        for a, b in zip(logs["16x1"], logs[split], strict=True):
            assert b["lgtm/quiz_loss"] == pytest.approx(a["lgtm/quiz_loss"], rel=1e-5)
            assert b["lgtm/influence_norm"] == pytest.approx(a["lgtm/influence_norm"], rel=1e-4)
