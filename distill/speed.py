"""Memory and speed flags: `--gradient_checkpointing` (student) and `--torch_compile` (student and teacher).

Both change how a step is computed, never what: gradient checkpointing recomputes each layer's forward
in the backward (the same ops on the same inputs, dropout included: the non-reentrant checkpoint
restores the RNG state), and a compiled forward runs the same math as fused kernels, which may round
in another order. The trainer applies them once, before the student is wrapped for DDP.
"""
from __future__ import annotations

import logging

from torch import nn
from transformers import PreTrainedModel

from distill.errors import UsageError

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_backends() -> list[str]:
    """The torch.compile backends this torch has, debugging ones (aot_eager, eager) included."""
    import torch._dynamo  # slow to import: only when the flag is used
    return torch._dynamo.list_backends(exclude_tags=())


def prepare_models(student: nn.Module, teacher: nn.Module | None, args) -> None:
    """Apply the flags of `args` (TrainingArguments) to the student and the teacher's model, in place."""
    if args.gradient_checkpointing:
        apply_gradient_checkpointing(student)
    if args.torch_compile:
        backend, mode = args.torch_compile_backend or "inductor", args.torch_compile_mode
        for model in (student, teacher):
            if model is not None:
                compile_in_place(model, backend, mode)
        logger.info("torch.compile: student%s, backend %s%s", " and teacher" if teacher is not None else "",
                    backend, f", mode {mode}" if mode else "")


def _pretrained(model: nn.Module) -> PreTrainedModel | None:
    """The outermost Hugging Face model in `model`: itself, or the student a training wrapper holds
    (feature_kd's ProjectedStudent). modules() walks parents before children."""
    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def apply_gradient_checkpointing(student: nn.Module) -> None:
    """Keep only each layer's inputs in the forward and recompute the layer in the backward. Non-reentrant
    checkpointing: it works when the layer's inputs need no gradient, saves and restores the RNG state
    (dropout masks are the same in the recomputation) and is the one torch recommends."""
    model = _pretrained(student)
    if model is None or not model.supports_gradient_checkpointing:
        name = type(model if model is not None else student).__name__
        raise UsageError(f"--gradient_checkpointing: {name} does not support gradient checkpointing; drop the "
                         "flag (or lower --per_device_train_batch_size and raise --gradient_accumulation_steps)")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    logger.info("gradient checkpointing: on for %s", type(model).__name__)


def compile_in_place(model: nn.Module, backend: str, mode: str | None) -> None:
    """`nn.Module.compile`: the module's own `__call__` runs compiled, so it stays the same object, with
    the same class, forward signature (forward_input_names) and state_dict keys (no `_orig_mod.` prefix
    that torch.compile's wrapper would add to checkpoints and the saved model dir).

    Inductor draws dropout masks from its own generator unless `fallback_random`: then they are torch's,
    the masks of an uncompiled run, so a compiled run trains the same model (and resumes exactly: the
    checkpoint's RNG state is torch's). The mode is passed as its inductor options, which `options`
    replaces (torch.compile takes one or the other)."""
    if backend != "inductor":
        model.compile(backend=backend)
        return
    import torch._inductor
    options = {**torch._inductor.list_mode_options(mode or "default"), "fallback_random": True}
    model.compile(backend=backend, options=options)
