"""Per-token log-probabilities of given tokens, log q(y_i) = log softmax(h_i · Wᵀ + b)[y_i], computed from
final hidden states a chunk of positions at a time: the fused counterpart of sequence_kd/minillm.token_logprobs
for losses that are not a sum over the vocabulary but a function of log q per token (MiniLLM's clipped policy
term: its weight on each token depends on log q itself, through the PPO ratio, so it cannot be announced
up front like losses/fused_vocab.py's `grad_ratios`).

Forward, per chunk of n positions: s = h·W[:V]ᵀ + b[:V] (n, V), keep lse = logsumexp(s) (n,), return
s[y] − lse. Backward, with the incoming g (n,) per token:

    ∂/∂s = g · (onehot(y) − softmax(s))          (n, V), softmax recomputed from s and the saved lse
    ∂h   = ∂s · W[:V]       ∂W[:V] += ∂sᵀ · h       ∂b[:V] += Σ_rows ∂s

so the only (n, V) blocks are one chunk's, and the backward pays one extra logit product per chunk. The
dtypes follow losses/fused_vocab.py: products in the dtype autocast (or the inputs) give, the softmax in
float32 (float64 for float64 inputs), gradients accumulated in float32 and cast to the inputs' dtypes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from losses.fused_vocab import _matmul_dtype
from losses.numerics import upcast


def _sliced(weight, bias, vocab_size: int, dtype: torch.dtype):
    return weight[:vocab_size].to(dtype), None if bias is None else bias[:vocab_size].to(dtype)  # (V, H), (V,)


class _FusedTokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, vocab_size, chunk_size, matmul_dtype, device_type):
        out_dtype = upcast(hidden).dtype
        lse = torch.empty(hidden.shape[0], dtype=out_dtype, device=hidden.device)  # (n,)
        picked = torch.empty_like(lse)  # (n,) the target's logit
        with torch.autocast(device_type, enabled=False):
            w, b = _sliced(weight, bias, vocab_size, matmul_dtype)
            for start in range(0, hidden.shape[0], chunk_size):
                s = F.linear(hidden[start:start + chunk_size].to(matmul_dtype), w, b).to(out_dtype)  # (c, V)
                lse[start:start + chunk_size] = torch.logsumexp(s, dim=-1)
                picked[start:start + chunk_size] = s.gather(1, targets[start:start + chunk_size, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.settings = (vocab_size, chunk_size, matmul_dtype, device_type)
        return picked - lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        vocab_size, chunk_size, matmul_dtype, device_type = ctx.settings
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = lambda x, need: torch.zeros(x.shape, dtype=upcast(x).dtype, device=x.device) if need else None  # noqa: E731
        grad_h, grad_w = acc(hidden, need_h), acc(weight, need_w)
        grad_b = acc(bias, need_b) if bias is not None else None
        with torch.autocast(device_type, enabled=False):
            w, b = _sliced(weight, bias, vocab_size, matmul_dtype)
            for start in range(0, hidden.shape[0], chunk_size):
                stop = min(start + chunk_size, hidden.shape[0])
                h_c, g = hidden[start:stop].to(matmul_dtype), grad_out[start:stop].to(lse.dtype)  # (c, H), (c,)
                s = F.linear(h_c, w, b).to(lse.dtype)  # (c, V)
                d = -g[:, None] * torch.exp(s - lse[start:stop, None])  # (c, V): −g·softmax
                d.scatter_add_(1, targets[start:stop, None], g[:, None])  # + g at the target
                d = d.to(matmul_dtype)
                if grad_h is not None:
                    grad_h[start:stop] = d @ w  # (c, H)
                if grad_w is not None:
                    grad_w[:vocab_size] += d.T @ h_c  # (V, H)
                if grad_b is not None:
                    grad_b[:vocab_size] += d.sum(0).to(grad_b.dtype)  # (V,)
        cast = lambda x, ref: None if x is None else x.to(ref.dtype)  # noqa: E731
        return cast(grad_h, hidden), cast(grad_w, weight), cast(grad_b, bias), None, None, None, None, None


def fused_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, vocab_size: int | None = None, chunk_size: int = 64) -> torch.Tensor:
    """log softmax(hidden · weight[:V]ᵀ + bias[:V])[targets], (N,), from hidden states (N, H) at the scored
    positions and the output layer (weight (V_w, H), bias (V_w,) or None), differentiable w.r.t. all three;
    no (N, V) tensor is made. `vocab_size`: the tokenizer's (rows of the weight past it are padding)."""
    n, width = hidden.shape
    v = vocab_size or weight.shape[0]
    if weight.shape[1] != width or v > weight.shape[0] or (bias is not None and bias.shape != (weight.shape[0],)):
        raise ValueError(f"output layer {tuple(weight.shape)} does not fit hidden states {(n, width)} and vocab {v}")
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},), got {tuple(targets.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _FusedTokenLogProbs.apply(hidden, weight, bias, targets.long(), v, chunk_size,
                                     _matmul_dtype(hidden, weight), hidden.device.type)
