"""losses/fused_logprobs.py and MiniLLM's fused objective (sequence_kd/minillm.py) against full-logit
references in float64, where the only differences are summation orders (agreement to 1e-10 is ~10⁵ ulps of
slack for sums of at most a few hundred terms of size ≤ 10)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from losses.fused_logprobs import fused_token_logprobs
from sequence_kd.minillm import MiniLLMObjective

TOL = dict(rtol=1e-10, atol=1e-10)


def layer(v_rows: int, width: int, seed: int, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(v_rows, width, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v_rows, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    return w, b


@pytest.mark.parametrize("n,chunk,bias,padded", [(13, 4, True, 3), (13, 64, False, 0), (1, 1, True, 0),
                                                 (0, 8, True, 2)])
def test_token_logprobs_and_their_gradients_equal_the_full_log_softmax(n, chunk, bias, padded):
    """Values and gradients (hidden states, weight, bias) of Σ_i c_i·log q(y_i) with arbitrary c_i (the
    incoming gradient is per token); rows of the weight past the vocabulary are padding and get 0."""
    v, width = 11, 6
    g = torch.Generator().manual_seed(n)
    h = torch.randn(n, width, generator=g, dtype=torch.float64, requires_grad=True)
    w, b = layer(v + padded, width, seed=1, bias=bias)
    y = torch.randint(0, v, (n,), generator=g)
    c = torch.randn(n, generator=g, dtype=torch.float64)
    params = [x for x in (h, w, b) if x is not None]

    fused = fused_token_logprobs(h, w, b, y, vocab_size=v, chunk_size=chunk)  # (n,)
    got = torch.autograd.grad((c * fused).sum(), params, allow_unused=True) if n else None
    logits = F.linear(h, w[:v], None if b is None else b[:v])  # (n, V)
    ref = F.log_softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(fused, ref, **TOL)
    if n:
        expected = torch.autograd.grad((c * ref).sum(), params, allow_unused=True)
        for a, e in zip(got, expected):
            torch.testing.assert_close(a, torch.zeros_like(a) if e is None else e, **TOL)
        assert torch.all(got[1][v:] == 0)


def test_finite_differences_agree_with_the_backward():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w, b = layer(7, 4, seed=4)
    y = torch.randint(0, 7, (5,), generator=g)
    assert torch.autograd.gradcheck(lambda h, w, b: fused_token_logprobs(h, w, b, y, chunk_size=2), (h, w, b))


def test_bad_shapes_are_refused():
    w, b = layer(7, 4, seed=0)
    with pytest.raises(ValueError, match="does not fit"):
        fused_token_logprobs(torch.zeros(3, 5, dtype=torch.float64), w, b, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        fused_token_logprobs(torch.zeros(3, 4, dtype=torch.float64), w, b, torch.zeros(2, dtype=torch.long))


# ------------------------------------------------------------------------------------------- MiniLLM
def minillm_batch(seed: int, b: int = 4, t: int = 7):
    """Two rollout rows (prompt then response) and two plain-text rows, as sequence_kd/rollouts.py stacks them."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 9, (b, t), generator=g)
    labels[0, :3], labels[1, :2], labels[1, -1], labels[3, -2:] = -100, -100, -100, -100
    return {"labels": labels, "rollout": torch.tensor([1.0, 1.0, 0.0, 0.0]),
            "old_logprobs": -torch.rand(b, t, generator=g, dtype=torch.float64),
            "log_w": 0.1 * torch.randn(b, t, generator=g, dtype=torch.float64),
            "advantages": torch.randn(b, t, generator=g, dtype=torch.float64)}


@pytest.mark.parametrize("single_step_reg,kd_ratio", [(True, 0.5), (False, 0.5), (True, 1.0), (True, 0.0)])
def test_fused_minillm_objective_equals_the_full_logit_one(single_step_reg, kd_ratio):
    """Every term's sum and the gradient of the weighted loss reaching the student's hidden states and its
    output layer (padded vocabulary: 9 tokens, 11 rows) are those of the objective scoring full logits."""
    vocab, width = 9, 5
    batch = minillm_batch(seed=int(single_step_reg) + int(10 * kd_ratio))
    g = torch.Generator().manual_seed(7)
    h_s = torch.randn(4, 7, width, generator=g, dtype=torch.float64, requires_grad=True)  # (B, T, H)
    h_t = torch.randn(4, 7, width + 1, generator=g, dtype=torch.float64)  # (B, T, H_t)
    w_s, b_s = layer(vocab + 2, width, seed=8)
    w_t, b_t = layer(vocab + 2, width + 1, seed=9)
    w_t, b_t = w_t.detach(), b_t.detach()
    student_layer, teacher_layer = SimpleNamespace(weight=w_s, bias=b_s), SimpleNamespace(weight=w_t, bias=b_t)

    def run(fused: bool):
        objective = MiniLLMObjective(vocab_size=vocab, single_step_reg=single_step_reg, kd_ratio=kd_ratio,
                                     chunk_size=3)
        if fused:
            objective.fuse_output_layers(student_layer, teacher_layer)
            outputs = SimpleNamespace(hidden_states=(h_s,)), SimpleNamespace(hidden_states=(h_t,))
        else:
            outputs = SimpleNamespace(logits=F.linear(h_s, w_s, b_s)), SimpleNamespace(logits=F.linear(h_t, w_t, b_t))
        sums = objective.loss_sums(batch, *outputs)
        counts = objective.counts(batch)
        loss = sum(w * sums[k] / counts[k] for k, w in objective.weights.items() if w)
        return {k: v.detach() for k, v in sums.items()}, torch.autograd.grad(loss, (h_s, w_s, b_s))

    (fused_sums, fused_grads), (ref_sums, ref_grads) = run(True), run(False)
    assert fused_sums.keys() == ref_sums.keys()
    for k in ref_sums:
        torch.testing.assert_close(fused_sums[k], ref_sums[k], **TOL, msg=k)
    for a, e in zip(fused_grads, ref_grads):
        torch.testing.assert_close(a, e, **TOL)
