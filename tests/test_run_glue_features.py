"""Feature losses in the trainer and in run_glue.py: accumulation, the paper's flags and defaults, the
learned projection (trained, never saved), exact resume, and every misuse refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import crash_at_step, kd_rounding, no_dropout_bert, toy_dataset
from safetensors.torch import load_file
from test_run_glue_lgtm import _dev_accuracy
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_glue
from distill.args import TrainingArguments
from distill.batching import PaddingCollator
from distill.objective import SequenceClassificationObjective
from distill.runtime import make_accelerator
from distill.teacher import FrozenTeacher
from distill.trainer import DistillationTrainer
from feature_kd.objective import FeatureTerms, WithFeatureTerms
from losses import get_loss

FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--max_seq_length", "48",
        "--learning_rate", "2e-3", "--report_to", "none", "--disable_tqdm", "--logging_steps", "1"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _one_step(toy, micro_sizes, weights, tmp_path):
    """(student gradients, logs, micro-batches) of one optimizer step with feature terms."""
    torch.manual_seed(0)
    dataset, tok = toy_dataset(toy, sum(micro_sizes))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, max_grad_norm=0.0)
    acc = make_accelerator(args)
    teacher = FrozenTeacher(no_dropout_bert(toy["teacher"]), acc)
    objective = WithFeatureTerms(SequenceClassificationObjective(False, True, alpha_kd=0.5, temperature=2.0),
                                 FeatureTerms(weights))
    trainer = DistillationTrainer(args=args, accelerator=acc, student=no_dropout_bert(toy["student"]),
                                  objective=objective, collator=PaddingCollator(tok.pad_token_id), teacher=teacher)
    trainer.create_optimizer(total_steps=10)
    bounds = np.cumsum([0, *micro_sizes])
    micro = [PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:])]
    grads = {}

    def recording_step(*a, **k):  # the gradients the optimizer would use; the weights stay as they were
        grads.update({n: p.grad.clone() for n, p in trainer.unwrapped_student.named_parameters()
                      if p.grad is not None})
    trainer.optimizer.step = recording_step
    logs = trainer.optimizer_step(micro)
    return grads, logs, micro, trainer


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
@pytest.mark.parametrize("micro_sizes", [[4, 4], [3, 5]])
def test_token_level_feature_losses_accumulate_like_one_big_batch(toy, tmp_path, micro_sizes):
    weights = {"corr": 0.0, "hidden_mse": 0.7, "hidden_cos": 0.3}
    big, big_logs, _, _ = _one_step(toy, [8], weights, tmp_path / "big")
    acc, acc_logs, _, _ = _one_step(toy, micro_sizes, weights, tmp_path / "acc")
    assert set(big) == set(acc) and big
    for name in big:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
    for key in ("loss/total", "loss/hidden_mse", "loss/hidden_cos"):
        assert acc_logs[key] == pytest.approx(big_logs[key], rel=1e-5)
    # KD of two untrained heads is ~7e-6: float32 rounds it in absolute terms (see kd_rounding)
    assert acc_logs["loss/kd"] == pytest.approx(big_logs["loss/kd"], rel=1e-5, abs=kd_rounding(2.0))
    assert "loss/corr" not in big_logs  # a weight-0 feature term is not computed


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_correlation_term_is_the_mean_of_its_micro_batch_values(toy, tmp_path):
    _, logs, micro, trainer = _one_step(toy, [3, 5], {"corr": 1.0, "hidden_mse": 0.0, "hidden_cos": 0.0}, tmp_path)
    student = trainer.unwrapped_student
    values = []
    with torch.no_grad():
        for batch in micro:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            real = batch["attention_mask"].bool()
            z_s = student(**inputs, output_hidden_states=True).hidden_states[-1][real]
            z_t = trainer.teacher.model(**inputs, output_hidden_states=True).hidden_states[-1][real]
            values.append(float(get_loss("corr")(z_s, z_t)))
    assert logs["loss/corr"] == pytest.approx(np.mean(values), rel=1e-5)
    expected = 0.5 * logs["loss/kd"] + 0.5 * logs["loss/ce"] + logs["loss/corr"]
    assert logs["loss/total"] == pytest.approx(expected, rel=1e-6)


def _base(toy, out):
    return ["--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--do_eval", "--output_dir", out, *FAST]


def test_paper_rte_command_runs_with_the_paper_defaults_for_unset_weights(toy, tmp_path):
    out = tmp_path / "paper"
    assert run_glue.main([str(a) for a in _base(toy, out)] + [
        "--num_train_epochs", "1", "--alpha_ce", "0", "--alpha_glue", "0.5", "--alpha_corr", "0.005",
        "--do_mask"]) == 0
    logs = [e for e in read_json(out / "trainer_state.json")["log_history"] if "loss/total" in e]
    assert logs
    for e in logs:  # alpha_mse and alpha_cos unset: the paper's 0.5 each; KD weight 0 but still logged
        expected = (0.0 * e["loss/kd"] + 0.5 * e["loss/ce"] + 0.005 * e["loss/corr"] + 0.5 * e["loss/hidden_mse"]
                    + 0.5 * e["loss/hidden_cos"])
        assert e["loss/total"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert e["loss/corr_weighted"] == pytest.approx(0.005 * e["loss/corr"], rel=1e-4)
    # the evaluation scored the saved student (the projection and mask are training-only)
    assert read_json(out / "eval_results.json")["eval_accuracy"] == pytest.approx(_dev_accuracy(out, toy["task"]))


def _narrow_student(toy, tmp_path):
    from distill.toy import build_bert
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    return build_bert(str(tmp_path / "narrow"), tok, layers=1, hidden=16, heads=2, intermediate=32, seed=5)


def test_projection_trains_with_the_student_and_is_not_saved(toy, tmp_path, monkeypatch):
    narrow = _narrow_student(toy, tmp_path)
    out = tmp_path / "proj"
    seen = {}
    real_save = DistillationTrainer.save_model

    def recording_save(self, output_dir=None):
        model = self.unwrapped_student
        seen["projection"] = model.projection.weight.detach().clone()
        enc = self.tokenizer(["good fine film", "bad dull plot not great"], padding=True, return_tensors="pt")
        with torch.no_grad():
            seen["logits"] = model.model.eval()(**enc).logits
        return real_save(self, output_dir)

    monkeypatch.setattr(DistillationTrainer, "save_model", recording_save)
    argv = [str(a) for a in _base(toy, out)] + ["--model_name_or_path", narrow, "--num_train_epochs", "1",
                                                 "--alpha_corr", "0.5", "--alpha_mse", "0", "--alpha_cos", "0",
                                                 "--feature_projection", "linear"]
    torch.manual_seed(123)
    initial = torch.nn.Linear(16, 32).weight  # not the trained one: the projection must have moved
    assert run_glue.main(argv) == 0
    assert seen["projection"].shape == (32, 16) and not torch.allclose(seen["projection"], initial)
    saved = load_file(out / "model.safetensors")
    assert not any("projection" in k for k in saved)
    assert saved["bert.embeddings.word_embeddings.weight"].shape[1] == 16
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    enc = AutoTokenizer.from_pretrained(out)(["good fine film", "bad dull plot not great"], padding=True,
                                             return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, seen["logits"], rtol=1e-5, atol=1e-6)


def test_projection_run_resumes_exactly(toy, tmp_path, monkeypatch):
    narrow = _narrow_student(toy, tmp_path)
    argv = [str(a) for a in _base(toy, "OUT")] + [
        "--model_name_or_path", narrow, "--max_steps", "6", "--eval_steps", "2", "--per_device_train_batch_size", "8",
        "--alpha_corr", "0.5", "--do_mask", "--feature_projection", "linear"]
    full = [str(tmp_path / "full") if a == "OUT" else a for a in argv]
    resumed = [str(tmp_path / "resumed") if a == "OUT" else a for a in argv]
    assert run_glue.main(full) == 0
    crash_at_step(monkeypatch, run_glue.main, resumed, step=5)
    assert run_glue.main(resumed) == 0  # from checkpoint-4: projection, mask RNG and optimizer restored
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    logs = lambda d: read_json(tmp_path / d / "trainer_state.json")["log_history"]  # noqa: E731
    assert logs("resumed") == logs("full")


def test_features_on_top_of_prokt_and_opdf(toy, tmp_path):
    out = tmp_path / "prokt_opdf"
    assert run_glue.main([str(a) for a in _base(toy, out)] + [
        "--num_train_epochs", "1", "--alpha_corr", "0.01", "--train_teacher", "--t_learning_rate", "1e-3",
        "--use_opdf"]) == 0
    last = [e for e in read_json(out / "trainer_state.json")["log_history"] if "loss/total" in e][-1]
    for key in ("loss/corr", "loss/hidden_mse", "loss/hidden_cos", "loss/opdf_align", "loss/teacher_aux"):
        assert np.isfinite(last[key]), key


def _error(capsys, argv):
    assert run_glue.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_feature_flag_misuse_is_refused_in_one_line(toy, tmp_path, capsys):
    base = _base(toy, tmp_path / "x")
    narrow = _narrow_student(toy, tmp_path)
    assert "--feature_projection linear" in _error(capsys, [*base, "--model_name_or_path", narrow,
                                                            "--alpha_corr", "0.1"])
    assert "one naming" in _error(capsys, [*base, "--alpha_kd", "0.3", "--alpha_ce", "0.5"])
    assert "--use_lgtm" in _error(capsys, [*base, "--train_teacher", "--use_lgtm", "--alpha_corr", "0.1"])
    assert "--alpha_corr" in _error(capsys, [*base, "--alpha_ce", "0.5", "--alpha_corr", "0", "--do_mask"])
    assert "none or linear" in _error(capsys, [*base, "--alpha_corr", "0.1", "--feature_projection", "mlp"])
    no_teacher = [a for a in base if a not in ("--teacher_model", toy["teacher"])]
    assert "teacher" in _error(capsys, [*no_teacher, "--alpha_mse", "0.1"])
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_projection_composes_with_opdf(toy, tmp_path):
    narrow = _narrow_student(toy, tmp_path)
    out = tmp_path / "proj_opdf"
    assert run_glue.main([str(a) for a in _base(toy, out)] + [
        "--model_name_or_path", narrow, "--num_train_epochs", "1", "--alpha_corr", "0.5", "--feature_projection",
        "linear", "--use_opdf", "--opdf_align_weight", "0"]) == 0
    saved = load_file(out / "model.safetensors")  # dense, without the projection or MPO cores
    assert not any("projection" in k or "cores" in k for k in saved)
    assert saved["bert.encoder.layer.0.attention.self.query.weight"].shape == (16, 16)
