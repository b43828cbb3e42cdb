"""Distillation influence in the space of the teacher's logits.

LGTM's teacher update needs h = ∇_φ∇_θ L_I(θ, φ; x) · v (v: the student's quiz gradient). L_I depends
on the teacher's parameters φ only through its logits t = T_φ(x), so with J = ∂t/∂φ

    ∇_φ L_I(θ, φ; x) = Jᵀ · ∂L_I/∂t (θ, t)         and J does not depend on θ, hence
    h = Jᵀ · G,   G = ∂/∂θ[∂L_I/∂t] · v   ≈   (∂L_I/∂t(θ + εv, t) − ∂L_I/∂t(θ − εv, t)) / 2ε.

G has the shape of the logits (batch × classes), so the influence costs two student forwards (at
θ ± εv) plus one teacher backward that it SHARES with the teacher's own loss: the teacher's gradient
∇_φ L_T − η·h = Jᵀ (∂L_T/∂t − η·G) is one backward pass. This is exactly the central difference
(docs/lgtm.md), computed with one teacher pass instead of two (and with one dropout mask for both
sides of the difference, where two passes would add dropout noise divided by 2ε).
"""
from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from distill.modeling import model_inputs

# L_I(batch, student_logits, teacher_logits) -> scalar, normalised over the whole optimizer step
InfluenceLoss = Callable[[dict, torch.Tensor, torch.Tensor], torch.Tensor]


def outputs(logits: torch.Tensor) -> SimpleNamespace:
    """A stand-in for a model output, for objectives that read `.logits`."""
    return SimpleNamespace(logits=logits)


def logit_gradient(loss: InfluenceLoss, batch: dict, student_logits: torch.Tensor,
                   teacher_logits: torch.Tensor) -> torch.Tensor:
    """∂L/∂t at (s, t): (B, C), the teacher-side gradient for one micro-batch."""
    t = teacher_logits.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(batch, student_logits.detach(), t), t)
    return grad


def global_norm(tensors) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x.float()) for x in tensors]))


@torch.no_grad()
def student_logits_at(student: nn.Module, params: dict[str, torch.Tensor], batch: dict, input_names: set[str],
                      autocast) -> torch.Tensor:
    """Logits of `student` evaluated at `params` (other parameters and buffers: the module's own)."""
    with autocast():
        return functional_call(student, params, args=(), kwargs=model_inputs(batch, input_names)).logits


def finite_difference_influence(student: nn.Module, theta: dict[str, torch.Tensor], v: dict[str, torch.Tensor],
                                radius: float, batches: list[dict], teacher_logits: list[torch.Tensor],
                                loss: InfluenceLoss, input_names: set[str], autocast,
                                buffer: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """G_i ≈ ∂/∂θ[∂L_I/∂t_i]·v for every micro-batch i, by the central difference with ε = radius/‖v‖.

    The student should be in eval mode (the two sides must see the same network). θ + εv and θ − εv
    are written into `buffer` (parameter-shaped tensors no longer needed, e.g. LGTM's θ'), or into
    one new buffer.
    """
    norm = float(global_norm(v.values()))
    if norm == 0.0:
        return [torch.zeros_like(t) for t in teacher_logits]
    eps = radius / norm
    with torch.no_grad():
        if buffer is None:
            shifted = {n: torch.add(theta[n], v[n], alpha=eps) for n in v}  # θ + εv
        else:
            shifted = {n: torch.add(theta[n], v[n], alpha=eps, out=buffer[n].detach()) for n in v}
    plus = [logit_gradient(loss, b, student_logits_at(student, shifted, b, input_names, autocast), t)
            for b, t in zip(batches, teacher_logits)]
    with torch.no_grad():
        for n in v:
            torch.add(theta[n], v[n], alpha=-eps, out=shifted[n])  # θ − εv, in the same buffer
    minus = [logit_gradient(loss, b, student_logits_at(student, shifted, b, input_names, autocast), t)
             for b, t in zip(batches, teacher_logits)]
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def exact_influence(student: nn.Module, theta: dict[str, torch.Tensor], v: dict[str, torch.Tensor],
                    batches: list[dict], teacher_logits: list[torch.Tensor], loss: InfluenceLoss,
                    input_names: set[str], autocast) -> list[torch.Tensor]:
    """G_i = ∂/∂t_i [∇_θ L_I(θ, t) · v] by double backward (a Hessian-vector product): exact, and about
    twice the cost of the finite difference. Used to check it, and usable on small models."""
    result = []
    for batch, t_logits in zip(batches, teacher_logits):
        params = {n: theta[n].detach().requires_grad_(True) for n in v}
        t = t_logits.detach().requires_grad_(True)
        inputs = model_inputs(batch, input_names)
        # Only the math attention kernel has a double backward (the fused CPU/CUDA kernels do not).
        with autocast(), sdpa_kernel(SDPBackend.MATH):
            s = functional_call(student, params, args=(), kwargs=inputs).logits
        grads = torch.autograd.grad(loss(batch, s, t), list(params.values()), create_graph=True, allow_unused=True)
        dot = sum((g * v[n]).sum() for n, g in zip(params, grads) if g is not None)
        if not (isinstance(dot, torch.Tensor) and dot.requires_grad):  # L_I does not couple θ and t
            result.append(torch.zeros_like(t))
            continue
        (g_t,) = torch.autograd.grad(dot, t, allow_unused=True)
        result.append(torch.zeros_like(t) if g_t is None else g_t.detach())
    return result
