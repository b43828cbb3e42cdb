"""run_glue.py --use_opdf end to end: on top of KD and LGTM, the saved student is a plain dense model
with the MPO student's function, checkpoints resume exactly, and flag mismatches are refused."""
from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import assert_same_run, crash_at_step
from safetensors.torch import load_file
from test_run_glue_lgtm import _dev_accuracy
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_glue
from distill.trainer import DistillationTrainer
from opdf.mpo import MPOLinear

FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--max_seq_length", "48",
        "--learning_rate", "2e-3", "--report_to", "none", "--disable_tqdm", "--logging_steps", "1"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _sentences(task_dir, n=12):
    with open(os.path.join(task_dir, "dev.tsv"), encoding="utf-8") as f:
        return [line.split("\t")[0] for line in f][1:n + 1]


@pytest.mark.parametrize("method", ["kd", "prokt", "lgtm"])
def test_opdf_trains_an_mpo_student_and_saves_the_same_function_as_a_plain_model(toy, tmp_path, monkeypatch,
                                                                                  method):
    out = tmp_path / method
    texts = _sentences(toy["task"])
    seen = {}
    real_save = DistillationTrainer.save_model

    def recording_save(self, output_dir=None):  # the MPO student's logits at the moment it is saved
        model = self.unwrapped_student.eval()
        seen["mpo_layers"] = sum(isinstance(m, MPOLinear) for m in model.modules())
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            seen["logits"] = model(**enc).logits
        return real_save(self, output_dir)

    monkeypatch.setattr(DistillationTrainer, "save_model", recording_save)
    lgtm = {"kd": [], "prokt": ["--train_teacher", "--t_learning_rate", "1e-3"],
            "lgtm": ["--train_teacher", "--use_lgtm", "--t_learning_rate", "1e-3"]}[method]
    assert run_glue.main([str(a) for a in [
        "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
        "--data_dir", toy["task"], "--do_train", "--do_eval", "--num_train_epochs", "2", "--eval_steps", "3",
        "--output_dir", out, "--use_opdf", "--opdf_align_weight", "10", *lgtm, *FAST]]) == 0
    assert seen["mpo_layers"] == 6  # the 1-layer student trained with its 6 Linears over-parameterised
    # the saved student is plain: no cores, loadable without this project, same logits as the MPO model
    saved = load_file(out / "model.safetensors")
    assert not any("cores" in k for k in saved) and any(k.endswith("query.weight") for k in saved)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        logits = reloaded(**AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits, seen["logits"], rtol=1e-4, atol=1e-5)
    original = load_file(os.path.join(toy["student"], "model.safetensors"))
    assert not torch.allclose(saved["bert.encoder.layer.0.attention.self.query.weight"],
                              original["bert.encoder.layer.0.attention.self.query.weight"])
    # evaluation scored the saved (best) model
    results = read_json(out / "eval_results.json")
    assert _dev_accuracy(out, toy["task"]) == pytest.approx(results["eval_accuracy"])
    logs = [e for e in read_json(out / "trainer_state.json")["log_history"] if "loss/total" in e]
    assert all("loss/opdf_align" in e and e["loss/opdf_align"] > 0 for e in logs)
    assert all(e["loss/total"] == pytest.approx(e["loss/kd_weighted"] + e["loss/ce_weighted"]
                                                + 10 * e["loss/opdf_align"], rel=1e-4) for e in logs)
    if method == "lgtm":
        assert all("lgtm/influence_norm" in e for e in logs) and (out / "teacher" / "model.safetensors").is_file()


def test_opdf_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(toy, tmp_path, monkeypatch):
    argv = ["--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "7", "--eval_steps", "3",
            "--gradient_accumulation_steps", "2", "--per_device_train_batch_size", "8", "--warmup_ratio", "0.2",
            "--max_seq_length", "48", "--disable_tqdm", "--report_to", "none", "--learning_rate", "1e-3",
            "--use_opdf", "--opdf_align_weight", "5"]
    assert run_glue.main([str(a) for a in [*argv, "--output_dir", tmp_path / "full"]]) == 0
    crash_at_step(monkeypatch, run_glue.main, [*argv, "--output_dir", tmp_path / "resumed"], step=5)
    # the checkpoint holds the plain model AND the MPO cores (re-decomposing would change their gauge)
    training = torch.load(tmp_path / "resumed" / "checkpoint-3" / "training_state.pt", weights_only=False)
    assert any(".cores." in k for k in training["student"])
    assert not any("cores" in k for k in load_file(tmp_path / "resumed" / "checkpoint-3" / "model.safetensors"))
    assert run_glue.main([str(a) for a in [*argv, "--output_dir", tmp_path / "resumed"]]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "resumed", result_files=(), state_keys=())


def test_resuming_with_other_opdf_flags_is_refused(toy, tmp_path, capsys):
    argv = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
            "--max_steps", "2", "--save_steps", "1", "--output_dir", tmp_path / "o", *FAST]
    assert run_glue.main([str(a) for a in argv]) == 0  # fine-tuning without OPDF: checkpoint-1, checkpoint-2
    code = run_glue.main([str(a) for a in [*argv, "--resume_from_checkpoint", tmp_path / "o" / "checkpoint-1",
                                          "--use_opdf"]])
    assert code == 2 and "made with other flags: --use_opdf false (now true)" in capsys.readouterr().err


def test_opdf_without_a_teacher_is_over_parameterised_fine_tuning(toy, tmp_path):
    out = tmp_path / "ft"
    assert run_glue.main([str(a) for a in [
        "--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
        "--max_steps", "3", "--output_dir", out, "--use_opdf", "--mpo_targets", "intermediate,output",
        "--mpo_input_shape", "4,2,4", "--mpo_output_shape", "4,2,8", *FAST]]) == 0
    logs = [e for e in read_json(out / "trainer_state.json")["log_history"] if "loss/total" in e]
    assert logs and all("loss/opdf_align" not in e for e in logs)
    assert not any("cores" in k for k in load_file(out / "model.safetensors"))
