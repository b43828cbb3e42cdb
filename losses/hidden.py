"""Feature (hidden-state) distillation losses.

All take features already gathered at the real (non-padding) tokens, shape (N, d), student first.

- `corr`: the one-to-one cross-correlation loss of Saadi et al. (2023) with Barlow-Twins
  normalisation. Each feature is standardised over the N tokens, C = z_sᵀ z_t / N, so identical
  features give C_ii = 1 exactly (the released code divided by N·d: C_ii ≈ 1/768, an unreachable
  target). It is a statistic of the whole token set, so it returns ONE value (not one per token).
- `hidden_mse`: squared error per token, averaged over the d features; one value per token.
- `hidden_cos`: 1 − cos(h_s, h_t) per token (DistilBERT's cosine loss); one value per token.

The per-token losses are summed and divided by the real tokens of the whole optimizer step by the
trainer, so gradient accumulation equals one big batch. The correlation loss depends on the batch's
statistics, so it is defined per micro-batch and averaged over the micro-batches of a step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from losses.numerics import upcast
from losses.registry import register_loss

LAMBDA_OFF = 0.005  # Barlow Twins' weight of the off-diagonal (redundancy) terms
KEEP_PROB = 0.5  # --do_mask: probability that a feature takes part in a step's loss


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each column (feature) of z (N, d) to mean 0 and std 1 over the N rows (population std)."""
    z = z.float() if z.dtype != torch.float64 else z
    centred = z - z.mean(dim=0, keepdim=True)  # (N, d)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0, keepdim=True) + eps)


def cross_correlation(z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """C = standardize(z_s)ᵀ standardize(z_t) / N, shape (d, d); C_ij in [-1, 1]."""
    n = z_s.shape[0]
    return standardize(z_s).T @ standardize(z_t) / n  # (d, d)


@register_loss("corr")
def cross_correlation_loss(z_s: torch.Tensor, z_t: torch.Tensor, lambda_off: float = LAMBDA_OFF,
                           keep: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i (1 − C_ii)² + λ_off Σ_{i≠j} C_ij², a scalar.

    `keep` (bool (d,)), the masked variant: the loss of the kept features' sub-matrix C[keep][:, keep]
    only, which REPLACES the full loss (the released code added it on top)."""
    if z_s.shape != z_t.shape:
        raise ValueError(f"student features {tuple(z_s.shape)} and teacher features {tuple(z_t.shape)} differ")
    if keep is not None:
        z_s, z_t = z_s[:, keep], z_t[:, keep]  # (N, k): standardising per feature commutes with the selection
    c = cross_correlation(z_s, z_t)  # (d, d)
    diag = torch.diagonal(c)
    on = (1.0 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on + lambda_off * off


@register_loss("hidden_mse")
def hidden_mse_loss(h_s: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
    """Mean over features of (h_s − h_t)², one value per token: (N,)."""
    return (upcast(h_s) - upcast(h_t)).pow(2).mean(dim=-1)


@register_loss("hidden_cos")
def hidden_cosine_loss(h_s: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
    """1 − cos(h_s, h_t), one value per token: (N,). Zero when the vectors point the same way."""
    return 1.0 - F.cosine_similarity(upcast(h_s), upcast(h_t), dim=-1)


def random_feature_mask(d: int, keep_prob: float = KEEP_PROB, generator: torch.Generator | None = None,
                        device=None) -> torch.Tensor:
    """bool (d,): each feature kept with probability keep_prob; at least one is always kept."""
    keep = torch.rand(d, generator=generator, device=device) < keep_prob
    if not keep.any():
        keep[torch.randint(d, (1,), generator=generator, device=device)] = True
    return keep
