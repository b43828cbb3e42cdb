"""AdamW and the learning-rate schedule, built the same way for the student and a teacher that learns."""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import get_scheduler

from distill.args import TrainingArguments


def make_adamw(model: nn.Module, lr: float, args: TrainingArguments, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; HF convention: no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel is several times faster than the per-tensor loop (CPU and CUDA).
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                             fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, args: TrainingArguments, total_steps: int):
    """The schedule type and warm-up of the command line, over `total_steps` optimizer steps.

    Never passed to accelerate's prepare(): a prepared scheduler steps once per process per step."""
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total_steps)
    return get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
