"""A top-k teacher-output cache (--cache_teacher_outputs --teacher_cache_top_k k) feeding the fused LM loss:
the stored ids and log-probabilities go to losses/fused_vocab.py as they are, so neither the teacher's dense
(B, T, V) logits nor the student's exist; the same cache serves a fused and a non-fused run."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from conftest import no_gradient, toy_lm_corpus
from safetensors.torch import load_file
from test_train_lm_distill import read_json, run_ok
from toys import build_gpt2

import losses.fused_vocab as fused_vocab
from distill.objective import weighted_loss
from distill.teacher_cache import TOPK_IDS, TOPK_LOGPROBS, CachedOutputs, CachedTeacher
from lm.models import fused_output_layer_applies
from lm.objective import LMDistillationObjective
from losses.fused_vocab import topk_teacher_logits


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A toy corpus, its BPE tokenizer and a 2-layer GPT-2 teacher (hidden 32)."""
    root = tmp_path_factory.mktemp("topk")
    corpus, bpe = toy_lm_corpus(str(root))
    gpt2 = build_gpt2(str(root / "gpt2"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    return {"corpus": corpus, "gpt2": gpt2, "vocab": len(bpe), "data": str(root / "data")}


def cached_teacher(vocab, temperature):
    teacher = CachedTeacher.__new__(CachedTeacher)  # (the rule only: no model, no cache on disk)
    teacher.top_k, teacher.vocab_size, teacher.temperature = None, vocab, temperature
    return teacher


def topk_outputs(t_logits, k, temperature, vocab):
    """What CachedTeacher.outputs gives for a top-k cache of the teacher logits (B, T, V)."""
    top = torch.log_softmax(t_logits / temperature, -1).topk(k, dim=-1)  # (B, T, k) each
    out = CachedOutputs({TOPK_LOGPROBS: top.values, TOPK_IDS: top.indices.int()})
    out.densify = cached_teacher(vocab, temperature)._dense_logits
    return out


def test_cached_outputs_build_dense_logits_only_when_read():
    g = torch.Generator().manual_seed(0)
    out = topk_outputs(torch.randn(2, 5, 11, generator=g), k=3, temperature=2.0, vocab=11)
    ids, logp = out.logits_topk  # (2, 5, 3) each: as stored
    assert ids.shape == logp.shape == (2, 5, 3) and "logits" not in out
    dense = out.logits  # (2, 5, 11): the rule of losses/fused_vocab.topk_teacher_logits
    torch.testing.assert_close(dense, topk_teacher_logits(logp, ids, 11, 2.0), rtol=0, atol=0)
    assert out["logits"] is dense  # built once
    assert CachedOutputs({"logits": dense}).logits_topk is None  # a full-logit cache
    with pytest.raises(AttributeError):
        CachedOutputs({}).logits


@pytest.mark.parametrize("divergence", ["forward_kl", "jsd"])
def test_fused_loss_on_the_caches_top_k_equals_the_chunked_loss_on_its_dense_logits(divergence):
    """The objective, float64: the fused loss on the stored top-k rows against the chunked loss on the dense
    logits the cache rebuilds (a causal GPT-2 student with a tied output layer; KD, CLM and cosine terms): the
    same sums and gradients; the teacher's forward keeps the plain arguments (the cache's key)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    vocab, tau = 40, 2.0
    torch.manual_seed(0)
    student = GPT2LMHeadModel(GPT2Config(vocab_size=vocab + 3, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                                         eos_token_id=0)).double()
    ids = torch.randint(0, vocab, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    t_logits = 3 * torch.randn(3, 9, vocab, dtype=torch.float64)  # (B, T, V)
    t_hidden = torch.randn(3, 9, 16, dtype=torch.float64)  # (B, T, H): the cosine term's
    weights = {"kd": 0.6, "clm": 0.4, "cos": 0.3}

    def step(fused: bool):
        objective = LMDistillationObjective(weights, mlm=False, vocab_size=vocab, kd_loss=divergence,
                                            temperature=tau, chunk_size=4)
        plain = objective.forward_kwargs
        if fused:
            objective.fuse_output_layers(student.get_output_embeddings(), None, teacher_topk=True)
            assert objective.teacher_forward_kwargs == plain and "logits_to_keep" in objective.forward_kwargs
        teacher = topk_outputs(t_logits, 5, tau, vocab)
        teacher["hidden_states"] = (t_hidden,)
        student.zero_grad()
        s_out = student(input_ids=ids, attention_mask=mask, **objective.forward_kwargs)
        sums = objective.loss_sums(batch, s_out, teacher)
        assert ("logits" in teacher) != fused  # the fused loss never reads the dense logits
        weighted_loss(weights, sums, objective.counts(batch)).backward()
        return {k: v.item() for k, v in sums.items()}, {n: p.grad.clone() for n, p in student.named_parameters()}

    (got, got_grads), (want, want_grads) = step(True), step(False)
    assert got == pytest.approx(want, rel=1e-10)
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-9, atol=1e-12, msg=name)


def test_only_a_top_k_cache_is_fused():
    """A full-logit cache keeps the chunked path (it stores (B, T, V) logits); a top-k cache is fused, and its
    teacher's output layer is not needed (the cache stands in for it)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    student = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=8, n_layer=1, n_head=2, n_positions=16,
                                         bos_token_id=0, eos_token_id=0))
    no_layer = SimpleNamespace(get_output_embeddings=lambda: None)  # a teacher the fused loss could not read
    loss_args = SimpleNamespace(fused_output_layer=True)
    cache = lambda k: SimpleNamespace(cache_teacher_outputs=True, teacher_cache_top_k=k)  # noqa: E731
    assert not fused_output_layer_applies(loss_args, cache(None), False, student, student)
    assert fused_output_layer_applies(loss_args, cache(4), False, student, no_layer)
    assert not fused_output_layer_applies(loss_args, SimpleNamespace(cache_teacher_outputs=False), False, student,
                                          no_layer)


def test_mse_with_a_top_k_teacher_is_refused():
    """The cache keeps probabilities, not the raw logits logit MSE compares (the script refuses the flags
    together: tests/test_teacher_cache.py); the fused objective says so too."""
    objective = LMDistillationObjective({"kd": 1.0, "clm": 0.0, "mse": 1.0}, mlm=False, vocab_size=11)
    objective.fuse_output_layers(torch.nn.Linear(4, 11), None, teacher_topk=True)
    h = torch.randn(1, 3, 4)
    batch = {"labels": torch.tensor([[1, 2, 3]])}
    with pytest.raises(ValueError, match="mse compares raw logits"):
        objective.loss_sums(batch, SimpleNamespace(hidden_states=(h,)), topk_outputs(torch.randn(1, 3, 11), 2, 1.0, 11))


@pytest.mark.parametrize("kd_loss, first, extra", [
    ("forward_kl", "fused", ["--teacher_cache_top_k", 4, "--kd_ratio", 0.5]),
    ("jsd", "logits", ["--teacher_cache_top_k", 16, "--alpha_ce", 0.7, "--alpha_clm", 0.3, "--alpha_cos", 0.5]),
])
def test_a_top_k_cache_trains_the_fused_loss_as_the_models_own_logits(lm, tmp_path, monkeypatch, kd_loss, first, extra):
    """The same cache, built once by the first run (fused, or --no_fused_output_layer) and read by the other:
    the fused run reads its top-k rows (no dense teacher logits, no student logits past the last position), the
    other its dense logits; the same logged losses and weights. (τ = 2: the top-k log-probabilities are stored at
    the KD temperature.)"""
    builds, densified, fused_topk = [], [], []
    real_build, real_dense = CachedTeacher._build, CachedTeacher._dense_logits
    monkeypatch.setattr(CachedTeacher, "_build", lambda self, *a: builds.append(1) or real_build(self, *a))
    monkeypatch.setattr(CachedTeacher, "_dense_logits", lambda self, *a: densified.append(1) or real_dense(self, *a))

    def spy(*args, **kwargs):
        fused_topk.append(kwargs.get("teacher_topk") is not None)
        return fused_vocab.fused_vocab_loss_sums(*args, **kwargs)
    monkeypatch.setattr("lm.objective.fused_vocab_loss_sums", spy)
    common = ["--teacher_name_or_path", lm["gpt2"], "--student_layers", 1, "--kd_loss", kd_loss, "--temperature", 2.0,
              "--train_file", lm["corpus"], "--max_seq_length", 32, "--max_steps", 4, "--per_device_train_batch_size",
              4, "--validation_split_percentage", 20, "--data_cache_dir", lm["data"], "--learning_rate", 1e-3,
              "--logging_steps", 1, "--disable_tqdm", "--report_to", "none", "--do_train", "--cache_teacher_outputs",
              "--teacher_cache_dir", tmp_path / "cache", *extra]
    seen = {}
    for name in (first, "logits" if first == "fused" else "fused"):
        densified.clear(), fused_topk.clear()
        run_ok(*common, "--output_dir", tmp_path / name, *(["--no_fused_output_layer"] if name == "logits" else []))
        seen[name] = (len(densified), list(fused_topk))
    assert builds == [1] and len(os.listdir(tmp_path / "cache")) == 1  # one cache, made by the first run
    assert seen["fused"] == (0, [True] * 4)  # every step fused on the stored top-k; no dense logits built
    assert seen["logits"] == (4, [])
    logs = [[e for e in read_json(tmp_path / d / "trainer_state.json")["log_history"] if "loss/total" in e]
            for d in ("fused", "logits")]
    assert len(logs[0]) == len(logs[1]) == 4
    keys = [k for k in logs[0][0] if k.startswith("loss/")]
    for a, b in zip(*logs):
        for key in keys:  # to the 6 significant digits logged (one unit of the last: up to 1e-5 relative)
            assert a[key] == pytest.approx(b[key], rel=2e-5), key
    fused, plain = (load_file(tmp_path / d / "model.safetensors") for d in ("fused", "logits"))
    assert fused.keys() == plain.keys()
    for name in fused:
        if not no_gradient(name):
            torch.testing.assert_close(fused[name], plain[name], rtol=0, atol=1e-5, msg=name)
