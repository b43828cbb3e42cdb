"""--gradient_checkpointing and --torch_compile change how a step is computed, not what: the same losses,
gradients and weights as without them, through the real entry scripts; the refusals are one line."""
from __future__ import annotations

import copy
import json
import logging
import os

import pytest
import torch
from conftest import crash_at_step, no_gradient, toy_dataset, toy_lm_corpus
from safetensors.torch import load_file
from torch import nn
from toys import build_gpt2
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

import run_glue
import train_lm_distill
from distill import speed
from distill.args import TrainingArguments
from distill.batching import PaddingCollator
from distill.modeling import forward_input_names
from distill.objective import SequenceClassificationObjective
from distill.runtime import make_accelerator
from distill.teacher import FrozenTeacher
from distill.trainer import DistillationTrainer

# The toy models keep their dropout (0.1): both flags must reproduce the masks of a plain run too.
COMMON = ["--do_train", "--per_device_train_batch_size", "8", "--learning_rate", "2e-3", "--logging_steps", "1",
          "--disable_tqdm", "--report_to", "none"]


def glue_args(toy, out, *extra):
    return [str(a) for a in ("--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name",
                             "sst2", "--data_dir", toy["task"], "--alpha_kd", "0.5", "--max_seq_length", "32",
                             "--output_dir", out, *COMMON, *extra)]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def losses(out) -> list[dict]:
    return [e for e in read_json(os.path.join(out, "trainer_state.json"))["log_history"] if "loss/total" in e]


# ---------------------------------------------------------------------------- gradient checkpointing
def _one_step_gradients(toy, tmp_path, checkpointing: bool, seed: int = 0):
    """The student's gradients and logs of one KD step (two micro-batches), dropout on."""
    dataset, tok = toy_dataset(toy, 8)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, max_grad_norm=0.0,
                             gradient_checkpointing=checkpointing)
    acc = make_accelerator(args)
    student = AutoModelForSequenceClassification.from_pretrained(toy["student"])
    assert student.config.hidden_dropout_prob > 0
    trainer = DistillationTrainer(
        args=args, accelerator=acc, student=student, collator=PaddingCollator(tok.pad_token_id),
        objective=SequenceClassificationObjective(False, True, alpha_kd=0.5, temperature=2.0),
        teacher=FrozenTeacher(AutoModelForSequenceClassification.from_pretrained(toy["teacher"]), acc))
    trainer.create_optimizer(total_steps=10)
    # A checkpointed layer's insides start twice: in the forward and again in the backward (a pre-hook: the
    # recomputation stops early, once it has remade the last tensor the backward needs)
    layer_calls = []
    student.bert.encoder.layer[0].attention.register_forward_pre_hook(lambda *_: layer_calls.append(1))
    micro = [PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(a, a + 4)]) for a in (0, 4)]
    ctx = trainer.step_context(micro)
    torch.manual_seed(seed)
    sums = trainer.accumulate_student_gradients(list(ctx.micro_batches), ctx.student_counts,
                                                lambda i, batch: trainer.teacher.outputs(batch))
    grads = {name: p.grad.clone() for name, p in student.named_parameters()}
    return grads, sums, len(layer_calls)


def test_gradient_checkpointing_gives_the_same_gradients_with_dropout_on(toy, tmp_path):
    plain, plain_sums, plain_calls = _one_step_gradients(toy, tmp_path / "a", checkpointing=False)
    checkpointed, sums, calls = _one_step_gradients(toy, tmp_path / "b", checkpointing=True)
    assert (plain_calls, calls) == (2, 4)  # it was on: each micro-batch's layer ran again in the backward
    # The recomputation runs the same kernels on the same inputs with the RNG state restored (the same
    # dropout masks), so the gradients are bit for bit those of the plain backward.
    assert sums == plain_sums
    for name, grad in plain.items():
        assert torch.equal(checkpointed[name], grad), name
    other_seed, _, _ = _one_step_gradients(toy, tmp_path / "c", checkpointing=True, seed=1)
    assert not torch.equal(other_seed["classifier.weight"], plain["classifier.weight"])  # dropout was on


def assert_same_weights(dir_a, dir_b, atol=0.0, skip=lambda name: False):
    a, b = load_file(os.path.join(dir_a, "model.safetensors")), load_file(os.path.join(dir_b, "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        if not skip(key):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)


def test_gradient_checkpointing_trains_the_same_glue_student(toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="distill.speed")
    run_glue.main(glue_args(toy, tmp_path / "plain", "--max_steps", "2"))
    assert run_glue.main(glue_args(toy, tmp_path / "gc", "--max_steps", "2", "--gradient_checkpointing")) == 0
    assert "gradient checkpointing: on for BertForSequenceClassification" in caplog.text
    assert losses(tmp_path / "gc") == losses(tmp_path / "plain") and len(losses(tmp_path / "plain")) == 2
    assert_same_weights(tmp_path / "plain", tmp_path / "gc")  # exact: see the gradient test above


def test_gradient_checkpointing_trains_the_same_causal_lm_student(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="distill.speed")
    corpus, bpe = toy_lm_corpus(str(tmp_path))
    gpt2 = build_gpt2(str(tmp_path / "gpt2"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)

    def run(out, *extra):
        argv = ["--train_file", corpus, "--teacher_name_or_path", gpt2, "--student_layers", "1", "--kd_ratio", "0.5",
                "--max_seq_length", "32", "--max_steps", "2", "--validation_split_percentage", "20",
                "--data_cache_dir", tmp_path / "cache", "--output_dir", out, *COMMON, *extra]
        assert train_lm_distill.main([str(a) for a in argv]) == 0

    run(tmp_path / "plain")
    run(tmp_path / "gc", "--gradient_checkpointing")
    assert "gradient checkpointing: on for GPT2LMHeadModel" in caplog.text
    assert losses(tmp_path / "gc") == losses(tmp_path / "plain") and len(losses(tmp_path / "plain")) == 2
    assert_same_weights(tmp_path / "plain", tmp_path / "gc")


# ---------------------------------------------------------------------------- torch.compile
def test_compiling_in_place_keeps_the_module_its_inputs_and_its_keys(toy, tmp_path):
    model = BertForSequenceClassification.from_pretrained(toy["student"])
    inputs, keys = forward_input_names(model), list(model.state_dict())
    speed.compile_in_place(model, "inductor", None)  # compiles lazily, at the first call: nothing to wait for
    assert model._compiled_call_impl is not None
    assert forward_input_names(model) == inputs and list(model.state_dict()) == keys
    model.save_pretrained(tmp_path / "saved")
    assert list(load_file(tmp_path / "saved" / "model.safetensors")) == sorted(keys)


class Tiny(nn.Module):
    """A module of this file: dynamo starts no frame in torch's own modules (nn.Sequential would run eagerly)."""

    def __init__(self):
        super().__init__()
        self.a, self.drop, self.b = nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 2)

    def forward(self, x):
        return self.b(nn.functional.gelu(self.drop(self.a(x))))


def test_inductor_draws_the_dropout_masks_of_an_uncompiled_model():
    """Inductor's own generator would give other masks (outputs off by ~1 here); ours takes torch's."""
    torch.manual_seed(0)
    plain, x = Tiny(), torch.randn(4, 8)
    compiled = copy.deepcopy(plain)
    speed.compile_in_place(compiled, "inductor", None)
    results = []
    for model in (plain, compiled):
        torch.manual_seed(1)
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    (out, grads), (compiled_out, compiled_grads) = results
    # fused float32 kernels round otherwise: ~1e-7 on outputs of size ~1, ~1e-6 on gradients of size ~10
    torch.testing.assert_close(compiled_out, out, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, compiled_grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_a_compiled_run_trains_saves_and_resumes_like_a_plain_one(toy, tmp_path, monkeypatch):
    """Student and teacher compiled, through run_glue.py. The backend is aot_eager: dynamo's capture and
    AOT autograd's graphs, run with eager kernels; inductor's C++ codegen costs 1-2 minutes on a 2-core CPU
    for this run (which it passes: losses equal to the digits logged, weights to 2e-7; its one difference
    in kind, dropout masks, is the test above). Padding to max_seq_length gives one shape, so each model
    compiles once; the resumed run, in this process, reuses the compiled code."""
    compiled = []
    real_compile = speed.compile_in_place
    monkeypatch.setattr(speed, "compile_in_place", lambda model, *a: (compiled.append((type(model).__name__, *a)),
                                                                      real_compile(model, *a)))
    argv = ["--max_steps", "3", "--save_steps", "2", "--pad_to_max_length"]
    assert run_glue.main(glue_args(toy, tmp_path / "plain", *argv)) == 0
    assert not compiled
    argv_compiled = glue_args(toy, tmp_path / "compiled", *argv, "--torch_compile_backend", "aot_eager")
    crash_at_step(monkeypatch, run_glue.main, argv_compiled, step=3)
    assert compiled == [("BertForSequenceClassification", "aot_eager", None)] * 2  # the student and the teacher
    checkpoint = tmp_path / "compiled" / "checkpoint-2"
    assert list(load_file(checkpoint / "model.safetensors")) == list(load_file(tmp_path / "plain" /
                                                                               "checkpoint-2" / "model.safetensors"))
    assert run_glue.main(argv_compiled) == 0  # resumes from checkpoint-2
    assert read_json(tmp_path / "compiled" / "trainer_state.json")["global_step"] == 3

    # Losses to the 6 significant digits logged, up to one unit: compiled kernels may fuse and reorder
    # float32 sums (~1e-7 relative).
    plain, resumed = losses(tmp_path / "plain"), losses(tmp_path / "compiled")
    assert len(plain) == len(resumed) == 3
    for a, b in zip(plain, resumed):
        assert b["loss/total"] == pytest.approx(a["loss/total"], rel=1e-5)
        assert b["loss/kd"] == pytest.approx(a["loss/kd"], rel=1e-5, abs=1e-6)
    # Weights: AdamW's step is lr·m/(√v + ε), about lr·sign(g) early on, so a gradient off by δ relatively
    # moves a weight by far less than lr·δ; 1e-5 is 0.5% of one step. Parameters whose exact gradient is
    # zero are skipped: AdamW turns their float noise into whole steps (conftest.KEY_BIAS).
    assert_same_weights(tmp_path / "plain", tmp_path / "compiled", atol=1e-5, skip=no_gradient)
    model, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "compiled", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("extra, message", [
    (["--gradient_checkpointing"], "--gradient_checkpointing: BertForSequenceClassification does not support"),
    (["--torch_compile_backend", "nope"], "--torch_compile_backend 'nope': choose one of"),
    (["--torch_compile_mode", "fastest"], "--torch_compile_mode 'fastest': choose one of"),
    (["--torch_compile_backend", "aot_eager", "--torch_compile_mode", "max-autotune"], "inductor setting"),
])
def test_refusals_are_one_line(toy, tmp_path, capsys, monkeypatch, extra, message):
    # No architecture that runs a GLUE task lacks checkpointing support: the toy BERT plays one.
    monkeypatch.setattr(BertForSequenceClassification, "supports_gradient_checkpointing", False)
    assert run_glue.main(glue_args(toy, tmp_path / "out", "--max_steps", "1", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err[-1]
