"""The precision every loss computes in: half-precision inputs in float32, float64 kept (finite-difference
tests). One definition, imported by each loss module."""
from __future__ import annotations

import torch


def upcast(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or as is when it is already float64."""
    return x if x.dtype == torch.float64 else x.float()
