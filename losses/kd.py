"""Hinton et al. (2015) soft-target distillation and the task losses it is mixed with.

Every function returns one loss per example, shape (B,): the trainer sums them and divides by the
number of examples of the whole optimizer step, so gradient accumulation equals one big batch.

The functions are pure: gradient flows into every tensor argument that requires it. The trainer hands
them constant teacher logits (inference mode), so KD never reaches a frozen teacher; LGTM
differentiates the student's loss with respect to the teacher's logits on purpose (lgtm/influence.py).
Half-precision inputs are computed in float32; float64 stays float64 (finite-difference tests).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from losses.numerics import upcast
from losses.registry import register_loss


@register_loss("kd")
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """τ² · KL(softmax(t/τ) ‖ softmax(s/τ)) per example.

    The τ² factor keeps the gradient magnitude independent of τ (the soft-target gradient scales as
    1/τ²), so α_kd means the same thing at every temperature.
    """
    t_log_p = F.log_softmax(upcast(teacher_logits) / temperature, dim=-1)  # (B, C)
    s_log_p = F.log_softmax(upcast(student_logits) / temperature, dim=-1)  # (B, C)
    kl = (t_log_p.exp() * (t_log_p - s_log_p)).sum(-1)  # (B,)
    return kl * temperature**2


@register_loss("kd_mse")
def kd_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Regression KD (STS-B): squared error to the teacher's score, per example. τ does not apply."""
    diff = upcast(student_logits) - upcast(teacher_logits)  # (B, 1)
    return diff.pow(2).sum(-1)


@register_loss("ce")
def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold labels, per example."""
    return F.cross_entropy(upcast(logits), labels, reduction="none")


@register_loss("mse")
def mse_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error with gold regression targets (STS-B scores), per example."""
    return (upcast(predictions).squeeze(-1) - upcast(targets)).pow(2)
