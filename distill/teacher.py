"""Teacher strategies: how the teacher produces its outputs, and whether it learns.

The trainer calls `before_optimizer_step(...)` once per optimizer step (teachers that learn, such
as ProKT and LGTM, update themselves there) and `outputs(batch)` per micro-batch.
"""
from __future__ import annotations

import torch
from torch import nn

from distill.modeling import forward_input_names, model_inputs


class FrozenTeacher:
    """A fixed teacher: eval mode (no dropout), no gradients, no autograd graph, never wrapped in
    DDP. It gets its own inputs from the batch, e.g. token_type_ids for a BERT teacher even when the
    student (DistilBERT) takes none."""

    def __init__(self, model: nn.Module, accelerator):
        self.model = model.to(accelerator.device).eval()
        self.model.requires_grad_(False)
        self.accelerator = accelerator
        self.input_names = forward_input_names(self.model)

    def before_optimizer_step(self, trainer, micro_batches) -> dict[str, float]:
        return {}  # nothing to learn

    def outputs(self, batch: dict[str, torch.Tensor]):
        with torch.inference_mode(), self.accelerator.autocast():
            out = self.model(**model_inputs(batch, self.input_names))
        # Inference tensors cannot be saved for backward; a clone outside inference mode is an
        # ordinary constant tensor the student's loss can use.
        out.logits = out.logits.clone()
        return out

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
