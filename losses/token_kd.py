"""Token-level divergences between a teacher's and a student's next-token distributions.

Each divergence takes student and teacher logits of shape (N, V) (N positions) and returns one value
per position, (N,). With p = softmax(t/τ) the teacher's and q = softmax(s/τ) the student's:

    forward_kl         KL(p ‖ q)                          (Hinton KD per token; mode-covering)
    reverse_kl         KL(q ‖ p)                          (mode-seeking; MiniLLM's objective)
    jsd                D_β = [β KL(p‖m) + (1−β) KL(q‖m)] / (β(1−β)),  m = β p + (1−β) q
    skew_forward_kl    KL(p ‖ λ p + (1−λ) q)              (DistiLLM's α-SKL)
    skew_reverse_kl    KL(q ‖ λ q + (1−λ) p)              (DistiLLM's α-SRKL)
    tvd                ½ Σ |p − q|
    logit_mse          Σ (s − t)²                         (DistilBERT's --alpha_mse; τ does not apply)

Generalised JSD: the β-skewed Jensen-Shannon divergence vanishes at both ends (m → q as β → 0), so a
popular trainer special-cases β = 0 and β = 1, which makes the loss jump there. Dividing by β(1−β)
makes D_β tend to KL(p‖q) as β → 0 and to KL(q‖p) as β → 1, so the β = 0 and β = 1 cases are the limits
of the same curve (tested for continuity). At β = ½, D_β is 4·JS(p, q). Near the ends the division
magnifies float32 rounding unless each KL term is computed from m/a − 1 itself (see
_kl_to_mix_over_weight): float32 then agrees with float64 across β (tested down to 1e-7 from either end).

`chunked_divergence_sum` sums a divergence over chosen positions of (B, T, V) logits a chunk of
positions at a time, computing the student's gradient in the same pass, so the float32 (B, T, V)
temporaries of a full-tensor computation (both softmaxes, their logs, the products and their
gradients) never exist at once: the extra memory is one gradient the size of the student's logits.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from losses.numerics import upcast
from losses.registry import get_loss, register_loss

TOKEN_DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "skew_forward_kl", "skew_reverse_kl", "tvd")


def _log_probs(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    s, t = upcast(student_logits), upcast(teacher_logits)
    if temperature != 1.0:  # (no copies of the logits at τ = 1)
        s, t = s / temperature, t / temperature
    return F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)  # log q, log p: (N, V)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) per row from log-probabilities (of finite logits: mask a vocabulary with a large negative
    logit, not -inf). kl_div's one kernel keeps the temporaries of a chunk few."""
    return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)  # (N,)


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w·a + (1−w)·b) computed in log space (no underflow for tiny probabilities)."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


@register_loss("forward_kl")
def forward_kl(student_logits, teacher_logits, temperature: float = 1.0, **_) -> torch.Tensor:
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _kl(log_p, log_q)


@register_loss("reverse_kl")
def reverse_kl(student_logits, teacher_logits, temperature: float = 1.0, **_) -> torch.Tensor:
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _kl(log_q, log_p)


@register_loss("jsd")
def generalized_jsd(student_logits, teacher_logits, temperature: float = 1.0, beta: float = 0.5,
                    **_) -> torch.Tensor:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    if beta == 0.0:  # the limits of the normalised curve, not special cases of another loss
        return _kl(log_p, log_q)
    if beta == 1.0:
        return _kl(log_q, log_p)
    # D_β = KL(p‖m)/(1−β) + KL(q‖m)/β: each KL divided by the weight of the other distribution in m
    return _kl_to_mix_over_weight(log_p, log_q, 1.0 - beta) + _kl_to_mix_over_weight(log_q, log_p, beta)


def _kl_to_mix_over_weight(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """KL(a ‖ m) / w with m = (1−w)·a + w·b, accurate in float32 for any w in (0, 1].

    KL(a‖m) shrinks like w² as w → 0, and dividing the difference log a − log m of two float32 logs
    (absolute error ~1e-7·|log a|, not shrinking with w) by w would blow their rounding up: 0.05 per token
    at w = 1e-6 over 32,000 tokens. With x = m/a − 1 = w·(b/a − 1) and Σ a·x = w(Σb − Σa) = 0,
    KL(a‖m) = −Σ a·log1p(x) = Σ a·(x − log1p(x)): non-negative terms, each of order a·x², computed from
    x itself, so no cancellation is left to magnify. Away from x = 0 (x > 1: b ≫ a, where x would
    overflow; x < −½: m ≪ a, where 1 + x would lose m's digits) the term is taken as
    a·x − a·log(m/a) = w(b − a) − a·(log m − log a) instead, which is well conditioned there."""
    d = log_b - log_a
    cap = math.log1p(1.0 / w)  # d <= cap  <=>  x <= 1
    x = w * torch.expm1(d.clamp(max=cap))  # (the clamp only keeps the unused branch finite)
    use_small = (d <= cap) & (x >= -0.5)
    x = torch.where(use_small, x, torch.zeros_like(x))  # (log1p(−1) in the unused branch would NaN the gradient)
    a = log_a.exp()
    small = a * (x - torch.log1p(x)) / w
    log_m = _log_mix(log_b, log_a, w)
    large = (log_b.exp() - a) - a * (log_m - log_a) / w
    return torch.where(use_small, small, large).sum(-1)  # (N,)


def _skew_kl(log_a: torch.Tensor, log_b: torch.Tensor, skew_lambda: float) -> torch.Tensor:
    """KL(a ‖ λa + (1−λ)b); at λ = 0 exactly KL(a ‖ b)."""
    return _kl(log_a, log_b if skew_lambda == 0.0 else _log_mix(log_a, log_b, skew_lambda))


@register_loss("skew_forward_kl")
def skew_forward_kl(student_logits, teacher_logits, temperature: float = 1.0, skew_lambda: float = 0.1,
                    **_) -> torch.Tensor:
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _skew_kl(log_p, log_q, skew_lambda)  # KL(p ‖ λp + (1−λ)q)


@register_loss("skew_reverse_kl")
def skew_reverse_kl(student_logits, teacher_logits, temperature: float = 1.0, skew_lambda: float = 0.1,
                    **_) -> torch.Tensor:
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _skew_kl(log_q, log_p, skew_lambda)  # KL(q ‖ λq + (1−λ)p)


@register_loss("tvd")
def total_variation(student_logits, teacher_logits, temperature: float = 1.0, **_) -> torch.Tensor:
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)


@register_loss("logit_mse")
def logit_mse(student_logits, teacher_logits, temperature: float = 1.0, **_) -> torch.Tensor:
    return (upcast(student_logits) - upcast(teacher_logits)).pow(2).sum(-1)


def token_divergence(name: str, **options) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The registered divergence `name` with its options bound (temperature, beta, skew_lambda):
    a function (student (N, V), teacher (N, V)) -> (N,)."""
    fn = get_loss(name)
    return lambda student_logits, teacher_logits: fn(student_logits, teacher_logits, **options)


class _ChunkedPositionSum(torch.autograd.Function):
    """Σ over `positions` of row_fn(student row, *rows of the other tensors). The student's gradient is
    computed chunk by chunk during the forward (autograd on each chunk, so it is exactly the gradient
    of the same formula) into one buffer; the backward only scales that buffer by the incoming
    gradient, so nothing of the (B, T, V) computation is kept between the two."""

    @staticmethod
    def forward(ctx, student_logits, positions, row_fn, chunk_size, *others):
        student_rows = student_logits.detach().reshape(-1, student_logits.shape[-1])  # (B*T, V'): a view
        other_rows = [o.reshape(student_rows.shape[0], *o.shape[student_logits.dim() - 1:]) for o in others]
        grad = torch.zeros_like(student_rows) if ctx.needs_input_grad[0] else None  # (B*T, V')
        total = torch.zeros((), dtype=torch.float64, device=student_logits.device)
        for start in range(0, positions.numel(), chunk_size):
            idx = positions[start:start + chunk_size]  # (n,)
            s = student_rows.index_select(0, idx)  # (n, V')
            rest = [o.index_select(0, idx) for o in other_rows]  # (n, V') teacher rows, (n,) targets
            if grad is None:
                total += row_fn(s, *rest).sum().double()  # (summed as the gradient branch sums)
                continue
            with torch.enable_grad():
                s.requires_grad_(True)
                value = row_fn(s, *rest).sum()
                (g,) = torch.autograd.grad(value, s)
            grad.index_copy_(0, idx, g.to(grad.dtype))
            total += value.detach().double()
        ctx.grad, ctx.shape, ctx.num_others = grad, student_logits.shape, len(others)
        return total.to(torch.float64 if student_logits.dtype == torch.float64 else torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        if grad is None:
            raise RuntimeError("a chunked loss was back-propagated twice (its gradient buffer is scaled in place); "
                               "recompute the loss instead of using retain_graph=True")
        return (grad.mul_(grad_output.to(grad.dtype)).view(ctx.shape), None, None, None,
                *([None] * ctx.num_others))


def chunked_position_sum(student_logits: torch.Tensor, positions: torch.Tensor, row_fn, *others: torch.Tensor,
                         chunk_size: int = 64) -> torch.Tensor:
    """Σ_{i ∈ positions} row_fn(student[i], other[i], ...) for (B, T, V) student logits, where `positions`
    are flat indices into B*T and each of `others` is (B, T, ...) (teacher logits, target ids). Gradient
    flows to the student's logits only: the others must be constants."""
    if any(o.requires_grad for o in others):
        raise ValueError("chunked losses do not differentiate the teacher's logits or the targets; pass them "
                         "detached (a frozen teacher) or use the full-tensor loss")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for o in others:
        if o.shape[:student_logits.dim() - 1] != student_logits.shape[:-1]:
            raise ValueError(f"tensor {tuple(o.shape)} does not cover the student's positions "
                             f"{tuple(student_logits.shape[:-1])}")
    return _ChunkedPositionSum.apply(student_logits, positions, row_fn, chunk_size, *others)


def chunked_divergence_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, positions: torch.Tensor,
                           divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           chunk_size: int = 64, vocab_size: int | None = None) -> torch.Tensor:
    """Σ_{i ∈ positions} divergence(student[i], teacher[i]) for (B, T, V) logits. Only the first
    `vocab_size` columns count: a vocabulary padded past the tokenizer's size is sliced, never padded
    (zero logits would give mass to tokens that do not exist)."""
    v = vocab_size or min(student_logits.shape[-1], teacher_logits.shape[-1])
    return chunked_position_sum(student_logits, positions, lambda s, t: divergence(s[:, :v], t[:, :v]),
                                teacher_logits, chunk_size=chunk_size)


def chunked_cross_entropy_sum(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                              chunk_size: int = 64, vocab_size: int | None = None) -> torch.Tensor:
    """Σ_{i ∈ positions} −log softmax(logits[i])[targets[i]], `targets` (B, T) ids, chunk by chunk."""
    v = vocab_size or logits.shape[-1]
    return chunked_position_sum(logits, positions, lambda s, y: F.cross_entropy(upcast(s[:, :v]), y, reduction="none"),
                                targets, chunk_size=chunk_size)
