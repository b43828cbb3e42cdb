"""Terms of weight 0 are computed for the logs only: the same value, but no graph and no gradient pass
(distill/objective.py `logged_term`), in every objective and through the LM entry script."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import toy_lm_corpus
from safetensors.torch import load_file
from toys import build_gpt2

import distill.objective
import lm.objective
import train_lm_distill
from distill.objective import SequenceClassificationObjective, weighted_loss
from feature_kd.objective import FeatureTerms, WithFeatureTerms
from lgtm.objectives import TeacherAuxObjective
from lm.objective import LMDistillationObjective
from sequence_kd.minillm import MiniLLMObjective
from squad.objective import QuestionAnsweringObjective

TINY = 1e-3


def with_autograd(monkeypatch):
    """Every term computed as before: with autograd, whatever its weight."""
    monkeypatch.setattr(distill.objective, "logged_term", lambda weight, fn, *args, **kwargs: fn(*args, **kwargs))


# ------------------------------------------------------------------ inputs: (batch, student, teacher, leaves)
def classification_inputs(regression=False):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 1 if regression else 3, generator=g, requires_grad=True)  # (B, C)
    t = torch.randn(s.shape, generator=g)  # (B, C)
    labels = torch.randn(4, generator=g) if regression else torch.tensor([0, 2, 1, 2])
    return {"labels": labels}, SimpleNamespace(logits=s), SimpleNamespace(logits=t), [s]


def feature_inputs():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 3, generator=g, requires_grad=True), torch.randn(2, 3, generator=g)  # (B, C)
    h_s = torch.randn(2, 4, 5, generator=g, requires_grad=True)  # (B, T, d)
    h_t = torch.randn(2, 4, 5, generator=g)
    batch = {"labels": torch.tensor([1, 0]), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    return batch, SimpleNamespace(logits=s, hidden_states=(h_s,)), SimpleNamespace(logits=t, hidden_states=(h_t,)), [
        s, h_s]


def squad_inputs():
    g = torch.Generator().manual_seed(2)
    s0, s1 = (torch.randn(2, 5, generator=g, requires_grad=True) for _ in range(2))  # (B, T)
    t0, t1 = (torch.randn(2, 5, generator=g) for _ in range(2))
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), "labels": torch.tensor([[1, 3],
                                                                                                         [0, 2]])}
    out = lambda a, b: SimpleNamespace(start_logits=a, end_logits=b)  # noqa: E731
    return batch, out(s0, s1), out(t0, t1), [s0, s1]


def teacher_aux_inputs():
    # the trained model is the teacher: "student" outputs are its; both sides differentiable (LGTM's exact influence)
    batch, t, s, leaves = classification_inputs()
    s.logits = s.logits.clone().requires_grad_(True)
    return batch, t, s, leaves + [s.logits]


def lm_inputs(mlm=False):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 6, 12, generator=g, requires_grad=True)  # (B, T, V'): a padded vocabulary of 10
    t = torch.randn(2, 6, 12, generator=g)
    h_s, h_t = torch.randn(2, 6, 4, generator=g, requires_grad=True), torch.randn(2, 6, 4, generator=g)  # (B, T, d)
    labels = (torch.tensor([[-100, 4, -100, 7, -100, -100], [3, -100, -100, -100, 2, -100]]) if mlm else
              torch.tensor([[5, 6, 7, 8, 9, 1], [1, 2, 3, 4, -100, -100]]))
    batch = {"labels": labels, "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 1, 1, 0]])}
    return batch, SimpleNamespace(logits=s, hidden_states=(h_s,)), SimpleNamespace(logits=t, hidden_states=(h_t,)), [
        s, h_s]


def minillm_inputs():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(3, 5, 8, generator=g, requires_grad=True)  # (B, T, V'): rows 0-1 rollouts, row 2 plain text
    t = torch.randn(3, 5, 8, generator=g)
    batch = {"labels": torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, 6, -100], [1, 2, 3, 4, 5]]),
             "rollout": torch.tensor([1.0, 1.0, 0.0]),
             "old_logprobs": -torch.rand(3, 5, generator=g, dtype=torch.float64),
             "log_w": torch.zeros(3, 5, dtype=torch.float64),
             "advantages": torch.randn(3, 5, generator=g, dtype=torch.float64)}
    return batch, SimpleNamespace(logits=s), SimpleNamespace(logits=t), [s]


def lm_objective(weights, **kwargs):
    return LMDistillationObjective(weights, vocab_size=10, temperature=2.0, chunk_size=3, **kwargs)


def minillm(term, w):
    objective = MiniLLMObjective(vocab_size=7, single_step_reg=term != "reg", kd_ratio=1.0 if term == "lm" else 0.5,
                                 chunk_size=2)
    objective.weights[term] = w  # (0 already: reg without --single_step_reg, lm at --kd_ratio 1)
    return objective


# term -> (objective whose weight for that term is w, inputs)
CASES = {
    "glue_ce": ("ce", lambda w: SequenceClassificationObjective(False, True, alpha_kd=0.7, temperature=2.0,
                                                                task_weight=w), classification_inputs),
    "glue_kd": ("kd", lambda w: SequenceClassificationObjective(False, True, alpha_kd=w, temperature=2.0),
                classification_inputs),
    "stsb_mse": ("mse", lambda w: SequenceClassificationObjective(True, True, alpha_kd=1.0 - w),
                 lambda: classification_inputs(regression=True)),
    "features_ce": ("ce", lambda w: WithFeatureTerms(SequenceClassificationObjective(False, True, alpha_kd=1.0 - w),
                                                     FeatureTerms({"hidden_mse": 1.0, "hidden_cos": 0.5})),
                    feature_inputs),
    "squad": ("squad", lambda w: QuestionAnsweringObjective(True, alpha_squad=w, alpha_ce=0.5), squad_inputs),
    "squad_kd": ("kd", lambda w: QuestionAnsweringObjective(True, alpha_squad=0.5, alpha_ce=w), squad_inputs),
    "teacher_kd": ("teacher_kd", lambda w: TeacherAuxObjective(False, t_alpha_kd=w), teacher_aux_inputs),
    "teacher_ce": ("teacher_ce", lambda w: TeacherAuxObjective(False, t_alpha_kd=1.0 - w), teacher_aux_inputs),
    "clm": ("clm", lambda w: lm_objective({"kd": 1.0, "clm": w, "mse": 0.3, "cos": 0.2}, mlm=False), lm_inputs),
    "mlm": ("mlm", lambda w: lm_objective({"kd": 1.0, "mlm": w, "cos": 0.2}, mlm=True),
            lambda: lm_inputs(mlm=True)),
    "lm_kd": ("kd", lambda w: lm_objective({"kd": w, "clm": 1.0, "cos": 0.2}, mlm=False), lm_inputs),
    "lm_mse": ("mse", lambda w: lm_objective({"kd": 1.0, "mlm": 1.0, "mse": w}, mlm=True, restrict_ce_to_mask=True),
               lambda: lm_inputs(mlm=True)),
    "lm_cos": ("cos", lambda w: lm_objective({"kd": 1.0, "clm": 0.5, "cos": w}, mlm=False), lm_inputs),
    "minillm_reg": ("reg", lambda w: minillm("reg", w), minillm_inputs),
    "minillm_lm": ("lm", lambda w: minillm("lm", w), minillm_inputs),
}


def sums_and_grads(objective, inputs):
    """(the term sums, the gradient of the weighted loss w.r.t. every differentiable input)."""
    batch, student, teacher, leaves = inputs()
    sums = objective.loss_sums(batch, student, teacher)
    loss = weighted_loss(objective.weights, sums, objective.counts(batch))
    return sums, torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("case", list(CASES))
def test_a_zero_weight_term_is_logged_without_a_graph_and_leaves_the_gradient_unchanged(case, monkeypatch):
    term, make, inputs = CASES[case]
    objective = make(0.0)
    assert objective.weights[term] == 0.0
    sums, grads = sums_and_grads(objective, inputs)
    assert not sums[term].requires_grad and sums[term].grad_fn is None
    assert all(v.requires_grad for k, v in sums.items() if objective.weights[k] != 0.0)  # the others still learn

    # the logged value: that of the same term with a tiny weight, which is computed with autograd
    tiny_sums, _ = sums_and_grads(make(TINY), inputs)
    assert tiny_sums[term].requires_grad
    assert sums[term].item() == pytest.approx(tiny_sums[term].item(), rel=1e-6)

    # the gradient: that of the old way (the term computed with autograd, then dropped from the sum) ...
    with monkeypatch.context() as m:
        with_autograd(m)
        old_sums, old_grads = sums_and_grads(make(0.0), inputs)
    assert old_sums[term].requires_grad
    assert old_sums.keys() == sums.keys()
    for k in sums:  # every logged value as before (a chunked loss without a gradient sums its rows in float64)
        assert sums[k].item() == pytest.approx(old_sums[k].item(), rel=1e-6, abs=0), k
    for g, old in zip(grads, old_grads):
        assert (g is None and old is None) or torch.equal(g, old)
    # ... and that of the loss without the term at all
    batch, student, teacher, leaves = inputs()
    full = make(TINY).loss_sums(batch, student, teacher)
    without = {k: w for k, w in objective.weights.items() if k != term}
    reference = torch.autograd.grad(weighted_loss(without, full, objective.counts(batch)), leaves, allow_unused=True)
    for g, ref in zip(grads, reference):
        assert (g is None and ref is None) or torch.allclose(g, ref, rtol=1e-6, atol=1e-9)


def test_a_zero_weight_chunked_term_makes_no_gradient_pass(monkeypatch):
    """The chunked losses compute their gradient during the forward (losses/token_kd.py): a logged-only
    LM term must not (no_grad alone would not stop it: its input still requires grad)."""
    calls = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or grad(*a, **k))
    batch, student, teacher, _ = lm_inputs()
    assert lm_objective({"kd": 1.0, "clm": 1.0}, mlm=False).counts(batch)["clm"] == 8.0  # scored positions: 5 + 3
    n_chunks = math.ceil(8 / 3)  # chunks of 3 positions
    lm_objective({"kd": 1.0, "clm": 1.0}, mlm=False).loss_sums(batch, student, teacher)
    assert len(calls) == 2 * n_chunks  # both terms: one autograd pass per chunk
    calls.clear()
    lm_objective({"kd": 1.0, "clm": 0.0}, mlm=False).loss_sums(batch, student, teacher)
    assert len(calls) == n_chunks  # the KD term's only


def test_the_kd_only_lm_script_logs_the_lm_term_and_trains_as_before(tmp_path, monkeypatch):
    """train_lm_distill.py --kd_ratio 1.0: loss/clm is logged (finite), computed without autograd, and the
    run ends with the same weights and logs as one that computes it with autograd."""
    corpus, bpe = toy_lm_corpus(str(tmp_path), n_docs=40)
    teacher = build_gpt2(str(tmp_path / "gpt2"), bpe, layers=2, hidden=16, heads=2, max_positions=32, seed=1)
    seen = []
    chunked_ce = lm.objective.chunked_cross_entropy_sum

    def spy(logits, *args):
        seen.append((logits.requires_grad, torch.is_grad_enabled()))
        return chunked_ce(logits, *args)
    monkeypatch.setattr(lm.objective, "chunked_cross_entropy_sum", spy)

    def run(out):
        code = train_lm_distill.main([str(a) for a in (
            "--train_file", corpus, "--output_dir", out, "--max_seq_length", 24, "--max_steps", 2,
            "--per_device_train_batch_size", 4, "--validation_split_percentage", 10, "--data_cache_dir",
            tmp_path / "cache", "--disable_tqdm", "--report_to", "none", "--logging_steps", 1, "--learning_rate",
            1e-3, "--teacher_name_or_path", teacher, "--student_layers", "1", "--kd_ratio", "1.0", "--seed", 3,
            "--no_fused_output_layer")])  # (the logits path; the fused one: tests/test_train_lm_distill.py)
        assert code == 0

    run(tmp_path / "new")
    assert seen and all(flags == (False, False) for flags in seen)  # logged only: no graph, no gradient
    seen.clear()
    with monkeypatch.context() as m:
        with_autograd(m)
        run(tmp_path / "old")
    assert seen and all(flags == (True, True) for flags in seen)

    logs = {name: json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
            for name in ("new", "old")}
    steps = [entry for entry in logs["new"] if "loss/clm" in entry]
    assert len(steps) == 2 and all(math.isfinite(e["loss/clm"]) and e["loss/clm_weighted"] == 0.0 for e in steps)
    assert len(logs["new"]) == len(logs["old"])
    for entry, old_entry in zip(logs["new"], logs["old"]):  # (clm's value to rounding: see the test above)
        assert entry == pytest.approx(old_entry, rel=1e-6)
    new, old = load_file(tmp_path / "new" / "model.safetensors"), load_file(tmp_path / "old" / "model.safetensors")
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)
