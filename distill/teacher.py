"""Teacher strategies: how the teacher produces its outputs, and whether (and how) it learns.

The contract and when the trainer calls each method: `TeacherStrategy` in distill/plugins.py. Here: the
fixed teacher. Teachers that learn (ProKT, LGTM) are in lgtm/teachers.py, the cached one in
distill/teacher_cache.py.
"""
from __future__ import annotations

import torch
from torch import nn

from distill.modeling import forward_input_names, model_inputs
from distill.plugins import FixedTeacherHooks
from distill.sharding import is_sharded


class Teacher(FixedTeacherHooks):
    """A teacher model, with the behaviour of a fixed teacher: eval mode (no dropout), no gradients, no
    autograd graph, never wrapped in DDP; nothing to learn, select or save (FixedTeacherHooks). It gets
    its own inputs from the batch, e.g. token_type_ids for a BERT teacher even when the student
    (DistilBERT) takes none."""

    def __init__(self, model: nn.Module, accelerator):
        self.model = model.to(accelerator.device).eval()
        self.accelerator = accelerator
        self.input_names = forward_input_names(self.model)

    def outputs(self, batch: dict[str, torch.Tensor], **forward_kwargs):
        """The teacher's outputs as constants: eval mode, no graph (also for a teacher that learns:
        the student's targets carry no dropout noise). `forward_kwargs`: e.g. output_hidden_states=True,
        which returns `hidden_states` = (last layer,)."""
        was_training = self.model.training
        self.model.eval()
        # A sharded teacher (--fsdp) gathers its weights into buffers that later forwards reuse, also outside
        # inference mode (its dev evaluation), which an inference tensor cannot be: no_grad there.
        no_graph = torch.no_grad if is_sharded(self.model) else torch.inference_mode
        with no_graph(), self.accelerator.autocast():
            out = self.model(**model_inputs(batch, self.input_names), **forward_kwargs)
        self.model.train(was_training)
        # Inference tensors cannot be saved for backward; clones made outside inference mode are
        # ordinary constant tensors the student's loss can use. Of the hidden states only the last
        # layer is kept (what the feature losses read): no copy of every layer per step.
        for key, value in list(out.items()):
            if key == "hidden_states":
                out[key] = (value[-1].clone(),)
            elif isinstance(value, torch.Tensor):
                out[key] = value.clone()
            else:  # e.g. a KV cache: nothing a loss reads
                del out[key]
        return out


class FrozenTeacher(Teacher):
    """A teacher fine-tuned beforehand and kept fixed (Hinton KD)."""

    def __init__(self, model: nn.Module, accelerator):
        super().__init__(model, accelerator)
        self.model.requires_grad_(False)
