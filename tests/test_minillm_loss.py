"""MiniLLM's pieces against hand computations, and its policy gradient against the exact gradient of
KL(q‖p) over every sequence of a tiny vocabulary."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from sequence_kd.minillm import (
    MiniLLMObjective,
    clipped_policy_loss,
    returns,
    token_logprobs,
    token_rewards,
    whiten,
)
from sequence_kd.sampling import sample


def test_returns_against_hand_computation():
    r = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # R_t = r_t + γ R_{t+1}, γ = ½
    assert returns(r, mask, 0.5, include_current=True).tolist() == [[2.75, 3.5, 3.0, 0.0]]
    # ... divided by the number of tokens summed: 3, 2, 1
    assert returns(r, mask, 0.5, include_current=True, length_norm=True) == pytest.approx(
        torch.tensor([[2.75 / 3, 3.5 / 2, 3.0, 0.0]]))
    # future rewards only (the paper's R_{t+1}, used with the single-step term)
    assert returns(r, mask, 0.5).tolist() == [[3.5, 3.0, 0.0, 0.0]]
    assert returns(r, mask, 0.5, length_norm=True).tolist() == [[1.75, 3.0, 0.0, 0.0]]
    # γ = 1: plain sums
    assert returns(r, mask, 1.0, include_current=True).tolist() == [[6.0, 5.0, 3.0, 0.0]]


def test_rewards_are_scaled_clipped_and_masked():
    logp = torch.tensor([[-1.0, -5.0, -2.0]])
    logq = torch.tensor([[-2.0, -1.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert token_rewards(logp, logq, mask).tolist() == [[1.0, -4.0, 0.0]]
    assert token_rewards(logp, logq, mask, reward_scaling=0.5).tolist() == [[2.0, -8.0, 0.0]]
    assert token_rewards(logp, logq, mask, reward_scaling=0.5, cliprange_reward=3).tolist() == [[2.0, -3.0, 0.0]]


def test_whiten_over_masked_entries():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 0.0, -50.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    w = whiten(x, mask)
    kept = w[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert kept.pow(2).mean().item() == pytest.approx(1.0, rel=1e-6)
    assert (w[~mask.bool()] == 0).all()


def test_clipped_policy_loss_hand_values_and_gradient():
    logq = torch.tensor([math.log(1.5), math.log(1.5), math.log(1.1)], requires_grad=True)
    old = torch.zeros(3)
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss = clipped_policy_loss(logq, old, torch.zeros(3), adv, cliprange=0.2)
    # A > 0 and ρ above 1 + ε: the clipped value −1.2 is the larger; A < 0: −A·ρ = 1.5; inside: −1.1
    assert loss.tolist() == pytest.approx([-1.2, 1.5, -1.1])
    loss.sum().backward()
    assert logq.grad.tolist() == pytest.approx([0.0, 1.5, -1.1])  # no gradient through the clipped branch
    # the importance weight w multiplies the ratio before clipping
    w = torch.tensor([math.log(0.5)] * 3)
    assert clipped_policy_loss(torch.zeros(3), old, w, torch.ones(3), 0.2).tolist() == pytest.approx([-0.5] * 3)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_token_logprobs_value_and_gradient(chunk):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    positions = torch.tensor([0, 3, 4, 7, 9])
    upstream = torch.randn(5, generator=g, dtype=torch.float64)
    got = token_logprobs(logits, positions, targets, chunk, vocab_size=7)  # columns 7, 8: padding
    (got * upstream).sum().backward()
    grad = logits.grad.clone()
    logits.grad = None
    ref = F.log_softmax(logits[..., :7], -1).flatten(0, 1)[positions].gather(
        1, targets.flatten()[positions][:, None]).squeeze(1)
    (ref * upstream).sum().backward()
    assert torch.allclose(got.detach(), ref.detach(), atol=1e-12)
    assert torch.allclose(grad, logits.grad, atol=1e-12)
    assert (grad[..., 7:] == 0).all()


def tiny_gpt2(seed: int, vocab: int = 3, layers: int = 1) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=8, n_embd=8, n_layer=layers, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).double()


def rollout_batch(prompt: list[int], tokens: torch.Tensor, old_logprobs, advantages) -> dict:
    """Rollout rows laid out as RolloutSource lays them out: per-token values aligned with labels."""
    n, t = tokens.shape
    p = len(prompt)
    ids = torch.cat([torch.tensor(prompt).expand(n, p), tokens], dim=1)
    pad = torch.zeros(n, p, dtype=torch.float64)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.cat([torch.full((n, p), -100), tokens], dim=1), "rollout": torch.ones(n),
            "old_logprobs": torch.cat([pad, old_logprobs], 1), "log_w": torch.zeros(n, p + t, dtype=torch.float64),
            "advantages": torch.cat([pad, advantages], 1)}


def test_single_step_term_is_the_exact_token_level_reverse_kl():
    student, teacher = tiny_gpt2(0, vocab=5), tiny_gpt2(1, vocab=5)
    tokens = torch.tensor([[1, 4, 2], [3, 3, 0]])
    batch = rollout_batch([2], tokens, torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    objective = MiniLLMObjective(vocab_size=5, has_lm_data=False)
    s, t = student(input_ids=batch["input_ids"]).logits, teacher(input_ids=batch["input_ids"]).logits.detach()
    reg = objective.loss_sums(batch, type("O", (), {"logits": s}), type("O", (), {"logits": t}))["reg"]
    log_q, log_p = F.log_softmax(s[:, :3], -1), F.log_softmax(t[:, :3], -1)  # positions predicting the response
    exact = (log_q.exp() * (log_q - log_p)).sum()
    assert reg.item() == pytest.approx(exact.item(), rel=1e-9)
    assert objective.counts(batch) == {"pg": 6.0, "reg": 6.0}


def exact_sequence_kl(student, teacher, prompt: list[int], length: int, vocab: int) -> torch.Tensor:
    """KL(q‖p) over all vocab**length continuations, differentiable in the student."""
    seqs = torch.tensor(list(itertools.product(range(vocab), repeat=length)))  # (V^L, L)
    ids = torch.cat([torch.tensor(prompt).expand(len(seqs), len(prompt)), seqs], 1)
    p0 = len(prompt) - 1

    def log_prob(model):  # (V^L,) log-probability of each continuation
        return F.log_softmax(model(input_ids=ids).logits[:, p0:p0 + length], -1).gather(2, seqs[..., None]).sum((1, 2))
    log_q = log_prob(student)
    with torch.no_grad():
        log_p = log_prob(teacher)
    return (log_q.exp() * (log_q - log_p)).sum()


def estimated_gradients(student, teacher, *, single_step_reg: bool, include_current: bool, groups: int,
                        per_group: int, length: int) -> torch.Tensor:
    """(groups, n_params): the MiniLLM loss gradient (× length: the loss averages over tokens) of
    independent groups of student samples (α = 0, γ = 1, nothing normalised, clipped or whitened)."""
    objective = MiniLLMObjective(vocab_size=3, single_step_reg=single_step_reg, cliprange=0.2, has_lm_data=False)
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(groups):
        s = sample(student, [[0]] * per_group, max_new_tokens=length, eos_id=None, pad_id=0, vocab_size=3,
                   generator=generator)
        mask = s.mask.double()
        with torch.no_grad():
            log_p = F.log_softmax(teacher(input_ids=torch.cat([torch.zeros(per_group, 1, dtype=torch.long),
                                                                s.tokens], 1)).logits[:, :length], -1)
        teacher_lp = log_p.gather(2, s.tokens[..., None]).squeeze(2)
        adv = returns(token_rewards(teacher_lp, s.student_logprobs, mask), mask, 1.0, include_current=include_current)
        batch = rollout_batch([0], s.tokens, s.student_logprobs, adv)
        student.zero_grad()
        logits = student(input_ids=batch["input_ids"]).logits
        t_logits = teacher(input_ids=batch["input_ids"]).logits.detach()
        terms = objective.loss_sums(batch, type("O", (), {"logits": logits}), type("O", (), {"logits": t_logits}))
        counts = objective.counts(batch)
        loss = sum(w * terms[k] / counts[k] for k, w in objective.weights.items() if w)
        (loss * length).backward()
        out.append(torch.cat([p.grad.flatten() for p in student.parameters()]))
    return torch.stack(out)


@pytest.mark.parametrize("single_step_reg,include_current,matches", [
    (True, False, True),    # the paper: exact single-step term + future rewards
    (False, True, True),    # plain REINFORCE with R_t
    (True, True, False),    # the released code: r_t counted twice (must NOT match)
])
def test_policy_gradient_matches_exact_reverse_kl_gradient(single_step_reg, include_current, matches):
    student, teacher = tiny_gpt2(0), tiny_gpt2(1)
    student.eval()
    length = 3
    student.zero_grad()
    exact_sequence_kl(student, teacher, [0], length, 3).backward()
    exact = torch.cat([p.grad.flatten() for p in student.parameters()])
    grads = estimated_gradients(student, teacher, single_step_reg=single_step_reg, include_current=include_current,
                                groups=20, per_group=2000, length=length)
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    keep = se > 1e-12  # (parameters the loss does not reach: zero in both)
    z2 = (((mean - exact) / se)[keep] ** 2).mean().item()  # ≈ 1 when the estimate is unbiased
    cos = F.cosine_similarity(mean, exact, dim=0).item()
    if matches:
        assert z2 < 2.0 and cos > 0.98, (z2, cos)
    else:
        assert z2 > 10.0, (z2, cos)
