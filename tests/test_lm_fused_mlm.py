"""Masked LMs through the fused output layer (lm/output_layer.py, lm/objective.py): the head's decoder returns
its input in the training forwards, the loss projects it chunk by chunk. Against the models' own logits: the
same sums and gradients (float64, the objective alone), the same runs of train_lm_distill.py (also under
DDP), the same saved models; and no (B, T, V) tensor in a fused training step."""
from __future__ import annotations

import copy
import json
import os
import re

import pytest
import torch
from conftest import toy_lm_corpus
from safetensors.torch import load_file
from test_fused_vocab import _LargestOutput
from test_train_lm_distill import read_json, run_ok

import losses.fused_vocab as fused_vocab
from distill.objective import weighted_loss
from lm.objective import LMDistillationObjective
from lm.output_layer import OUTPUT_LAYER_INPUT, EmittingLinear, emit_output_layer_input, logits_come_from_output_layer

V, H, B, T = 97, 16, 3, 10  # 97-token vocabulary, output layers padded to 101 rows


def bert(seed, layers=2, vocab=V + 4):
    from transformers import BertConfig, BertForMaskedLM
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=H, num_hidden_layers=layers, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0))


def distilbert(seed, vocab=V + 4):
    from transformers import DistilBertConfig, DistilBertForMaskedLM
    torch.manual_seed(seed)
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=vocab, dim=H, n_layers=2, n_heads=2, hidden_dim=32,
                                                  max_position_embeddings=32, dropout=0.0, attention_dropout=0.0))


def roberta(seed, vocab=V + 4):
    from transformers import RobertaConfig, RobertaForMaskedLM
    torch.manual_seed(seed)
    return RobertaForMaskedLM(RobertaConfig(vocab_size=vocab, hidden_size=H, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, max_position_embeddings=40))


def make_batch(seed=0, b=B, t=T):
    """input_ids, attention_mask (the last row padded after 6 tokens) and MLM labels at some real tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[-1, 6:] = 0
    masked = (torch.rand(b, t, generator=g) < 0.3) & mask.bool()
    masked[0, 1] = True
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    return {"input_ids": ids.masked_fill(~mask.bool(), 0), "attention_mask": mask, "labels": labels}


def objective_step(objective, student, teacher, batch):
    """One micro-batch's sums and the student's gradients of Σ w_k·sum_k/count_k, as the trainer computes them."""
    student.zero_grad()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        t_out = teacher(**inputs, **objective.teacher_forward_kwargs)
    s_out = student(**inputs, **objective.forward_kwargs)
    sums = objective.loss_sums(batch, s_out, t_out)
    weighted_loss(objective.weights, sums, objective.counts(batch)).backward()
    return ({k: v.item() for k, v in sums.items()},
            {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None})


WEIGHTS = {"kd": 0.7, "mlm": 1.3, "mse": 0.05, "cos": 0.4}


@pytest.mark.parametrize("student_kind", ["bert", "distilbert"])
@pytest.mark.parametrize("restrict", [False, True])
@pytest.mark.parametrize("weights", [WEIGHTS, {"kd": 1.0, "mlm": 0.0, "cos": 1.0}], ids=["all", "mlm_logged"])
def test_fused_masked_lm_sums_and_gradients_equal_the_models_logits(student_kind, restrict, weights, monkeypatch):
    """Two fused calls (KD + MSE over every real token, MLM over the masked ones; one call with
    restrict_ce_to_mask), each with its terms' weights as grad_ratios: the sums and every parameter's gradient
    (the decoder bias and the tied embedding included) equal those of the models' own logits, to float64
    rounding, and the backward only scales what the forwards computed (no sweep over the vocabulary again)."""
    student = (bert(1) if student_kind == "bert" else distilbert(1)).double()
    teacher = bert(2, layers=3).double().eval().requires_grad_(False)
    batch = make_batch()
    options = dict(mlm=True, vocab_size=V, kd_loss="jsd", temperature=2.0, restrict_ce_to_mask=restrict, chunk_size=4)
    want, want_grads = objective_step(LMDistillationObjective(weights, **options), student, teacher, batch)

    sweeps = []
    real_sweep = fused_vocab._sweep
    monkeypatch.setattr(fused_vocab, "_sweep", lambda *a, **k: sweeps.append(a[2]) or real_sweep(*a, **k))
    objective = LMDistillationObjective(weights, **options)
    objective.fuse_output_layers(emit_output_layer_input(student), emit_output_layer_input(teacher))
    got, got_grads = objective_step(objective, student, teacher, batch)

    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-9, atol=1e-12, msg=name)
    # the forwards' sweeps only: one per call (KD + MSE and MLM, or all three together)
    teacher_terms = tuple(k for k in ("kd", "mse") if k in weights)
    assert sweeps == ([("ce", *teacher_terms)] if restrict else [("ce",), teacher_terms])


def test_causal_lm_calls_whose_terms_all_weigh_zero_are_only_logged():
    """--alpha_ce 0 --alpha_clm 0 --alpha_cos 1: the fused call is made for the logs, without a graph."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=V, n_embd=H, n_layer=1, n_head=2, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    student, teacher = (GPT2LMHeadModel(config).double() for _ in range(2))
    teacher.eval().requires_grad_(False)
    batch = make_batch()
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    weights = {"kd": 0.0, "clm": 0.0, "cos": 1.0}
    options = dict(mlm=False, vocab_size=V, temperature=2.0)
    want, want_grads = objective_step(LMDistillationObjective(weights, **options), student, teacher, batch)
    objective = LMDistillationObjective(weights, **options)
    objective.fuse_output_layers(student.get_output_embeddings(), teacher.get_output_embeddings())
    got, got_grads = objective_step(objective, student, teacher, batch)
    assert got == pytest.approx(want, rel=1e-10)
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("build", [bert, distilbert, roberta])
def test_the_emitting_output_layer_changes_only_the_forwards_that_ask(build, tmp_path):
    """The keyword's forward returns the decoder's input (B, T, H), every other forward the logits; the state
    dict, the tied weights and the saved model dir are the plain model's; a copied model's forwards switch its
    own layer; the switch is off again after a forward that raises."""
    from transformers import AutoModelForMaskedLM
    model = build(3).eval()
    ids = make_batch()["input_ids"]
    keys, want = list(model.state_dict()), model(input_ids=ids).logits  # (B, T, V')
    assert logits_come_from_output_layer(model, mlm=True)
    layer = emit_output_layer_input(model)
    assert isinstance(layer, EmittingLinear) and emit_output_layer_input(model) is layer  # (a second call: no-op)
    assert layer.weight is model.get_input_embeddings().weight  # still tied
    emitted = model(input_ids=ids, **{OUTPUT_LAYER_INPUT: True}).logits  # (B, T, H)
    assert emitted.shape == (B, T, H)
    torch.testing.assert_close(torch.nn.functional.linear(emitted, layer.weight, layer.bias), want)
    torch.testing.assert_close(model(input_ids=ids).logits, want)  # the next plain forward: logits again
    assert list(model.state_dict()) == keys
    model.save_pretrained(tmp_path / "saved")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded.get_output_embeddings()) is torch.nn.Linear
    torch.testing.assert_close(loaded(input_ids=ids).logits, want)
    twin = copy.deepcopy(model)
    assert twin(input_ids=ids, **{OUTPUT_LAYER_INPUT: True}).logits.shape == (B, T, H)
    assert not layer.emit_input and not twin.get_output_embeddings().emit_input
    with pytest.raises(IndexError):  # a token past the embedding
        model(input_ids=torch.full_like(ids, 10_000), **{OUTPUT_LAYER_INPUT: True})
    assert not layer.emit_input


def test_logits_changed_after_the_output_layer_are_not_fused():
    """A head that scales its logits after the decoder (as Gemma 2 caps and Cohere scales a causal LM's): the
    fused loss would read other logits than the model's, so it does not apply."""
    model = bert(4)
    model.cls.register_forward_hook(lambda module, args, out: out * 2.0)
    assert not logits_come_from_output_layer(model, mlm=True)
    from transformers import GPT2Config, GPT2LMHeadModel
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=H, n_layer=1, n_head=2, n_positions=32, bos_token_id=0,
                                      eos_token_id=0))
    assert logits_come_from_output_layer(gpt2, mlm=False)
    gpt2.lm_head.register_forward_pre_hook(lambda module, args: (args[0] + 1.0,))  # not hidden_states[-1]
    assert not logits_come_from_output_layer(gpt2, mlm=False)
    from transformers import Gemma2Config, Gemma2ForCausalLM
    gemma2 = Gemma2ForCausalLM(Gemma2Config(vocab_size=V, hidden_size=H, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                            max_position_embeddings=32))
    assert gemma2.config.final_logit_softcapping and not logits_come_from_output_layer(gemma2, mlm=False)


@pytest.mark.parametrize("fused", [True, False])
def test_no_batch_by_length_by_vocabulary_tensor_in_a_fused_training_step(fused):
    """The student's and the teacher's forwards, the loss and the backward of one fused step make no tensor
    of B·T·V elements (the models' own logits path does: the check can see one)."""
    vocab = 2000
    student, teacher = bert(5, vocab=vocab), bert(6, vocab=vocab).eval().requires_grad_(False)
    batch = make_batch(b=4, t=12)
    objective = LMDistillationObjective(WEIGHTS, mlm=True, vocab_size=vocab, temperature=2.0, chunk_size=8)
    if fused:
        objective.fuse_output_layers(emit_output_layer_input(student), emit_output_layer_input(teacher))
    with _LargestOutput() as mode:
        objective_step(objective, student, teacher, batch)
    n = 4 * 12
    if fused:  # at most a chunk's logits (8 × V), the embedding (V × H) or its gradient
        assert mode.largest <= max(8 * vocab, vocab * H) < n * vocab
    else:
        assert mode.largest >= n * vocab


# ---------------------------------------------------------------------- through train_lm_distill.py
@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A toy corpus, the toy word-level tokenizer, a 3-layer BERT MLM teacher (hidden 32) and a DistilBERT
    config of its size (the original pipeline's style: no model_type), as tests/test_train_lm_distill.py's."""
    from transformers import BertConfig, BertForMaskedLM

    from distill.toy import build_tokenizer
    root = tmp_path_factory.mktemp("mlm")
    corpus, _ = toy_lm_corpus(str(root))
    tok = build_tokenizer(str(root / "words"))
    torch.manual_seed(2)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    (root / "distilbert.json").write_text(json.dumps({"vocab_size": len(tok), "dim": 32, "n_layers": 2, "n_heads": 2,
                                                      "hidden_dim": 64, "max_position_embeddings": 64}))
    return {"corpus": corpus, "bert": str(root / "bert"), "distilbert_cfg": str(root / "distilbert.json"),
            "cache": str(root / "cache")}


KEY_BIAS = re.compile(r"attention\.self\.key\.bias$|attention\.k_lin\.bias$")  # exact gradient 0: AdamW noise


def mlm_runs(lm, tmp_path, monkeypatch, student_flags, *extra):
    """The same run fused (the default) and with --no_fused_output_layer: their step logs and saved weights."""
    calls = []
    real = fused_vocab.fused_vocab_loss_sums
    monkeypatch.setattr("lm.objective.fused_vocab_loss_sums", lambda *a, **k: calls.append(1) or real(*a, **k))
    common = ["--teacher_name", lm["bert"], *student_flags, "--mlm", "--alpha_ce", 5.0, "--alpha_mlm", 2.0,
              "--alpha_cos", 1.0, "--alpha_mse", 0.1, "--temperature", 2.0, "--train_file", lm["corpus"],
              "--max_steps", 3, "--per_device_train_batch_size", 4, "--gradient_accumulation_steps", 2,
              "--max_seq_length", 32, "--learning_rate", 1e-3, "--logging_steps", 1, "--data_cache_dir", lm["cache"],
              "--disable_tqdm", "--report_to", "none", "--do_train", "--do_eval", *extra]
    run_ok(*common, "--output_dir", tmp_path / "fused")
    fused_calls = len(calls)
    run_ok(*common, "--output_dir", tmp_path / "logits", "--no_fused_output_layer")
    assert len(calls) == fused_calls > 0  # the plain run never calls the fused loss
    return fused_calls


def assert_same_runs(a, b, keys=("loss/total", "loss/kd", "loss/mlm", "loss/mse", "loss/cos")):
    """The logged terms to 2e-5 relative: they are written to 6 significant digits (one unit of the last is up
    to 1e-5 relative) of float32 sums whose products add up in another order (~1e-7). The KD term to 1e-4: a
    student cut from the teacher starts at KD ≈ 1e-3, the small difference of two cross-entropies of ~ln V each,
    so float32's rounding of the log-probabilities (~1e-7·ln V per token) is ~1e-5 of it (5e-5 measured).
    Weights after 3 AdamW steps to 1e-5 (key biases excepted: their exact gradient is 0, AdamW scales noise)."""
    logs = [[e for e in read_json(d / "trainer_state.json")["log_history"] if "loss/total" in e] for d in (a, b)]
    assert len(logs[0]) == len(logs[1]) == 3
    for x, y in zip(*logs):
        for key in keys:
            assert x[key] == pytest.approx(y[key], rel=1e-4 if key == "loss/kd" else 2e-5), key
    evals = [read_json(d / "eval_results.json")["eval_perplexity"] for d in (a, b)]
    assert evals[0] == pytest.approx(evals[1], rel=1e-5)
    fused, plain = (load_file(d / "model.safetensors") for d in (a, b))
    assert fused.keys() == plain.keys()
    for name in fused:
        if not KEY_BIAS.search(name):
            torch.testing.assert_close(fused[name], plain[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("student, restrict", [("bert", False), ("bert", True), ("distilbert", False),
                                               ("distilbert", True)])
def test_fused_masked_lm_trains_as_the_models_own_logits(lm, tmp_path, monkeypatch, student, restrict):
    """A BERT student cut from the BERT teacher, or a DistilBERT one converted from it, with every term on: the
    fused run and --no_fused_output_layer log the same losses and save the same standard model dir (its logits,
    loaded with AutoModelForMaskedLM, are the plain run's)."""
    from transformers import AutoModelForMaskedLM
    flags = (["--student_layers", "0,2"] if student == "bert" else
             ["--student_type", "distilbert", "--student_config", lm["distilbert_cfg"], "--student_layers", "0,2"])
    calls = mlm_runs(lm, tmp_path, monkeypatch, flags, *(["--restrict_ce_to_mask"] if restrict else []))
    assert calls == 3 * 2 * (1 if restrict else 2)  # per micro-batch: one call, or KD + MSE and MLM
    assert_same_runs(tmp_path / "fused", tmp_path / "logits")
    ids = torch.tensor([[2, 7, 8, 4, 9, 3]])
    logits = [AutoModelForMaskedLM.from_pretrained(tmp_path / d).eval()(input_ids=ids).logits
              for d in ("fused", "logits")]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)
    config = json.loads((tmp_path / "fused" / "config.json").read_text())
    assert config["architectures"] == [f"{'Bert' if student == 'bert' else 'DistilBert'}ForMaskedLM"]


@pytest.mark.parametrize("placement", [[], ["--fsdp", "full_shard"]], ids=["ddp", "fsdp"])
def test_fused_masked_lm_in_two_processes_trains_as_the_models_own_logits(lm, launch, tmp_path, placement):
    """Two processes (gloo), DDP or FSDP2: the keyword reaches the module through DDP's wrapper (or FSDP's
    hooks), the decoder's bias gets its gradient outside the forward, and the run equals the same two-process
    run on the models' logits."""
    common = ["train_lm_distill.py", "--teacher_name", lm["bert"], "--student_layers", "0,2", "--mlm", "--alpha_ce",
              5.0, "--alpha_mlm", 2.0, "--alpha_cos", 1.0, "--temperature", 2.0, "--train_file", lm["corpus"],
              "--max_steps", 3, "--per_device_train_batch_size", 4, "--max_seq_length", 32, "--learning_rate", 1e-3,
              "--logging_steps", 1, "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none",
              "--do_train", "--do_eval", *placement]
    for name, extra in (("fused", []), ("logits", ["--no_fused_output_layer"])):
        results = launch.run_processes([*common, "--output_dir", tmp_path / name, *extra], 2)
        for code, log in results:
            assert code == 0, log[-3000:]
        assert ("fused output layers" in results[0][1]) == (name == "fused")
    assert_same_runs(tmp_path / "fused", tmp_path / "logits", keys=("loss/total", "loss/kd", "loss/mlm", "loss/cos"))


def test_a_masked_lm_without_a_teacher_is_fused_too(lm, tmp_path, monkeypatch):
    """No teacher (how teachers are made): the MLM term alone, through the fused loss."""
    calls = []
    real = fused_vocab.fused_vocab_loss_sums
    monkeypatch.setattr("lm.objective.fused_vocab_loss_sums", lambda *a, **k: calls.append(k["terms"]) or real(*a, **k))
    run_ok("--model_name_or_path", lm["bert"], "--mlm", "--train_file", lm["corpus"], "--output_dir", tmp_path / "o",
           "--max_steps", 2, "--max_seq_length", 32, "--data_cache_dir", lm["cache"], "--disable_tqdm",
           "--report_to", "none", "--do_train")
    assert calls == [("ce",)] * 2
    assert os.path.isfile(tmp_path / "o" / "model.safetensors")


def test_a_killed_two_process_masked_lm_run_resumes_exactly(lm, launch, tmp_path):
    """Each process draws its own masks (and dropout), so a checkpoint keeps every process's RNG state, not only
    the main process's: killed at the start of step 3 (after checkpoint-2), the same command ends exactly like
    the uninterrupted 2-process run."""
    from conftest import assert_same_run
    common = ["train_lm_distill.py", "--teacher_name", lm["bert"], "--student_layers", "0,2", "--mlm", "--alpha_ce",
              5.0, "--alpha_mlm", 2.0, "--temperature", 2.0, "--train_file", lm["corpus"], "--max_steps", 4,
              "--save_steps", 2, "--per_device_train_batch_size", 4, "--max_seq_length", 32, "--learning_rate", 1e-3,
              "--logging_steps", 1, "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none",
              "--do_train", "--do_eval"]
    for name, kill, expect in (("full", None, 0), ("resumed", ("step", 3), -9), ("resumed", None, 0)):
        results = launch.run_processes([*common, "--output_dir", tmp_path / name], 2, kill)
        for code, log in results:
            assert code == expect, log[-3000:]
    assert "resumed from" in results[0][1]
    assert_same_run(str(tmp_path / "full"), str(tmp_path / "resumed"))
