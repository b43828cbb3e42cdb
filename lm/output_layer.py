"""The models' side of the fused output layer (lm/objective.fuse_output_layers): what a training forward
returns in place of its (B, T, V) logits, and the check that this is what the model's logits are made from.

- Causal LMs: the forward's own `logits_to_keep=1` (the last position's logits only) with
  `output_hidden_states=True`; the loss projects `hidden_states[-1]`.
- Masked LMs have no `logits_to_keep`. Their head ends with the output layer, a Linear usually tied to the
  input embeddings: BERT's cls.predictions.decoder, DistilBERT's vocab_projector, RoBERTa's lm_head.decoder,
  each after the head's dense + activation + LayerNorm. `emit_output_layer_input` lets that Linear return
  its INPUT (B, T, H): a forward called with `OUTPUT_LAYER_INPUT=True` returns it in `logits`, and the loss
  projects it chunk by chunk. The keyword never reaches the model's own forward (a forward pre-hook takes
  it), so it is per call: only the forwards the objective's `forward_kwargs` reach (the student's and the
  teacher's training forwards, through DDP's wrapper too) emit; evaluation, the teacher's scores and
  anything else still get logits. The layer keeps its parameters (only its class changes, to an nn.Linear
  subclass), so the state dict, its keys and the tied weights are those of the plain model, and a saved
  model dir is a standard one.
"""
from __future__ import annotations

import torch
from torch import nn

OUTPUT_LAYER_INPUT = "output_layer_input"  # the forward keyword: return the output layer's input as `logits`


class EmittingLinear(nn.Linear):
    """An nn.Linear that returns its input while `emit_input` is set (set only during one forward, by the
    hooks of `emit_output_layer_input`); otherwise nn.Linear itself."""

    emit_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.emit_input else super().forward(x)


def _take_keyword(model: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook: `OUTPUT_LAYER_INPUT` switches the output layer to emitting for this forward. (The
    layer is looked up on the model, not captured: a copied model's hooks act on its own layer.)"""
    if kwargs.pop(OUTPUT_LAYER_INPUT, False):
        model.get_output_embeddings().emit_input = True
    return args, kwargs


def _reset(model: nn.Module, args: tuple, kwargs: dict, output) -> None:
    """Forward hook (also when the forward raises): every later forward gets logits again."""
    model.get_output_embeddings().emit_input = False


def emit_output_layer_input(model: nn.Module) -> nn.Linear:
    """Make a masked LM's output layer (an nn.Linear) able to return its input, for the forwards called with
    `OUTPUT_LAYER_INPUT=True` (see the module docstring); returns the layer. Calling it again changes nothing."""
    layer = model.get_output_embeddings()
    if type(layer) is nn.Linear:
        layer.__class__ = EmittingLinear  # same object, parameters and state-dict keys
    if not isinstance(layer, EmittingLinear):
        raise TypeError(f"{type(model).__name__}'s output layer is a {type(layer).__name__}, not an nn.Linear")
    if not getattr(model, "_emits_output_layer_input", False):
        model.register_forward_pre_hook(_take_keyword, with_kwargs=True)
        model.register_forward_hook(_reset, with_kwargs=True, always_call=True)
        model._emits_output_layer_input = True
    return layer


@torch.no_grad()
def logits_come_from_output_layer(model: nn.Module, mlm: bool) -> bool:
    """Whether the model's logits are exactly its output layer (`get_output_embeddings()`) applied to what
    the fused loss reads instead: a masked LM's output-layer input (what an emitting forward returns), a
    causal LM's `hidden_states[-1]`. A model that scales, caps or shifts its logits after that layer
    (Gemma 2's soft-capping, Cohere's logit scale), or whose last hidden state is not the layer's input,
    would otherwise be distilled on other logits than its own. Tried once on a 4-token input, in eval mode
    and without touching the random state (a fused and a plain run draw the same masks and dropout)."""
    layer = model.get_output_embeddings()
    seen = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append((args[0], out)))
    was_training = model.training
    ids = torch.arange(4, device=layer.weight.device)[None]  # (1, 4)
    kwargs = {} if mlm else {"output_hidden_states": True, "logits_to_keep": 1, "use_cache": False}
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]):
            out = model(input_ids=ids, **kwargs)
    finally:
        handle.remove()
        model.train(was_training)
    if len(seen) != 1:
        return False
    x, y = seen[0]  # the layer's input and output
    logits_are_its_output = out.logits.shape == y.shape and torch.equal(out.logits, y)
    if mlm:
        return logits_are_its_output
    last = out.hidden_states[-1][:, -1:]  # (1, 1, H): the kept position
    return logits_are_its_output and x.shape == last.shape and torch.equal(x, last)


def fused_output_layer(model: nn.Module, mlm: bool) -> nn.Linear:
    """The output layer the fused loss projects through: a causal LM's as it is, a masked LM's made able to
    emit its input (`emit_output_layer_input`)."""
    return emit_output_layer_input(model) if mlm else model.get_output_embeddings()
