"""θ' = θ − U(g): what ONE step of the student's real AdamW would do, without doing it.

LGTM needs the student's parameters after the update it is about to make, to ask how the teacher
could have made that update better. The released code deep-copied the optimizer state and the whole
model (and applied weight decay to the already-updated parameter). Here torch's own AdamW kernel
(`torch.optim.adamw.adamw`, with the optimizer's fused/foreach setting, so the same arithmetic as the
real step) is run on a copy of the parameters and of the two moment tensors, with the optimizer's
current step counts, lr, betas, eps and weight decay. The optimizer and the model are not touched;
the student is then evaluated at θ' with `torch.func.functional_call`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.adamw import adamw


def clip_coefficient(grads: list[torch.Tensor], max_norm: float | None) -> float:
    """The factor `torch.nn.utils.clip_grad_norm_` multiplies the gradients by (1.0: no clipping)."""
    if not max_norm or max_norm <= 0 or not grads:
        return 1.0
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return min(1.0, max_norm / (float(total) + 1e-6))


@torch.no_grad()
def virtual_adamw_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                       max_grad_norm: float | None = None) -> dict[str, torch.Tensor]:
    """name -> θ' for every parameter of `model` that has a `.grad`: the parameters `optimizer.step()`
    would produce from the current gradients (clipped to `max_grad_norm` first, as the trainer does).

    Nothing is mutated (parameters, gradients, optimizer state). New memory: θ' plus, while this
    runs, copies of the two moment tensors.
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    if not isinstance(optimizer, torch.optim.AdamW):
        raise TypeError(f"LGTM's virtual step implements AdamW, not {type(optimizer).__name__}")
    names = {p: n for n, p in model.named_parameters()}
    with_grad = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    scale = clip_coefficient([p.grad for p in with_grad], max_grad_norm)
    new_params = {}
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        if group.get("amsgrad") or group.get("maximize") or group.get("capturable") or group.get("differentiable"):
            raise ValueError("LGTM's virtual step supports plain AdamW (no amsgrad/maximize/capturable)")
        fused = bool(group.get("fused"))
        grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
        for p in params:
            state = optimizer.state.get(p, {})
            if state:
                exp_avgs.append(state["exp_avg"].clone())
                exp_avg_sqs.append(state["exp_avg_sq"].clone())
                steps.append(state["step"].clone())
            else:  # the optimizer's first step: zero moments, step 0 (as AdamW initialises them)
                exp_avgs.append(torch.zeros_like(p))
                exp_avg_sqs.append(torch.zeros_like(p))
                steps.append(torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu"))
            # clipping: the fused kernel divides by grad_scale (no gradient copy); the others need one
            grads.append(p.grad if fused or scale == 1.0 else p.grad * scale)
        new = [p.detach().clone() for p in params]
        grad_scale = torch.tensor(1.0 / scale, device=params[0].device) if fused and scale != 1.0 else None
        adamw(new, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group.get("foreach"), fused=fused,
              grad_scale=grad_scale, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
              lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        new_params.update({names[p]: x for p, x in zip(params, new)})
    return new_params
