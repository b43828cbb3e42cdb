"""θ' = θ − U(g): what ONE step of the student's real AdamW would do, without doing it.

LGTM needs the student's parameters after the update it is about to make, to ask how the teacher
could have made that update better. The released code deep-copied the optimizer state and the whole
model; here the new parameters are computed from the optimizer's current moments, step count, lr,
betas, eps and weight decay, and nothing is mutated: the student is then evaluated at θ' with
`torch.func.functional_call`.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def clip_coefficient(grads: list[torch.Tensor], max_norm: float) -> float:
    """The factor `torch.nn.utils.clip_grad_norm_` multiplies the gradients by (1.0: no clipping)."""
    if not max_norm or max_norm <= 0 or not grads:
        return 1.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    return min(1.0, max_norm / (float(total) + 1e-6))


@torch.no_grad()
def virtual_adamw_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                       max_grad_norm: float | None = None) -> dict[str, torch.Tensor]:
    """name -> θ' for every parameter of `model` that has a `.grad`: the parameters `optimizer.step()`
    would produce from the current gradients (clipped to `max_grad_norm` first, as the trainer does).

    The optimizer must be torch's AdamW (any of its implementations: the update is the same math).
    Its state and the model are left untouched; the only new memory is θ' itself plus the moment
    tensors of one parameter at a time.
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    if not isinstance(optimizer, torch.optim.AdamW):
        raise TypeError(f"LGTM's virtual step implements AdamW, not {type(optimizer).__name__}")
    names = {p: n for n, p in model.named_parameters()}
    with_grad = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    scale = clip_coefficient([p.grad for p in with_grad], max_grad_norm)
    new_params = {}
    for group in optimizer.param_groups:
        if group.get("amsgrad") or group.get("maximize"):
            raise ValueError("LGTM's virtual step supports AdamW without amsgrad/maximize")
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        lr = float(lr)  # may be a tensor (capturable/fused setups)
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad * scale if scale != 1.0 else p.grad
            state = optimizer.state.get(p, {})
            step = float(state["step"]) + 1 if "step" in state else 1.0
            exp_avg = torch.lerp(state["exp_avg"], grad, 1 - beta1) if state else grad * (1 - beta1)
            exp_avg_sq = (state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad if state
                          else (1 - beta2) * grad * grad)
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = math.sqrt(1 - beta2**step)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            # Decoupled weight decay shrinks the OLD parameter (torch's order); the released code
            # decayed the already-updated one.
            new = p * (1 - lr * wd) if wd else p.clone()
            new.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
            new_params[names[p]] = new
    return new_params
