"""The OPDF model transform: chosen Linear layers of a Hugging Face student become MPO layers for
training, and `export` contracts them back, so a saved student is a plain dense model.

Targets are named per architecture (`--mpo_targets`, default every one): BERT/RoBERTa-style encoders
and DistilBERT. Each layer's weight (out × in) is factored with `--mpo_input_shape/--mpo_output_shape`
when their products match, else with the paper's 5-core presets (768 = [32,1,1,1,24], 3072 =
[64,1,1,1,48]), else as [a,1,1,1,b] with a·b = dim and a ≥ b as close as possible (e.g. 384 → [24,1,1,1,16]).
"""
from __future__ import annotations

import copy
import math
import re

import torch
from torch import nn

from opdf.mpo import MPOLinear, mpo_decompose

PRESETS = {768: [32, 1, 1, 1, 24], 3072: [64, 1, 1, 1, 48]}

# target name -> regex on module names, per model_type
TARGETS = {
    "bert": {"query": r"layer\.\d+\.attention\.self\.query$", "key": r"layer\.\d+\.attention\.self\.key$",
             "value": r"layer\.\d+\.attention\.self\.value$",
             "attention_output": r"layer\.\d+\.attention\.output\.dense$",
             "intermediate": r"layer\.\d+\.intermediate\.dense$", "output": r"layer\.\d+\.output\.dense$"},
    "distilbert": {"query": r"layer\.\d+\.attention\.q_lin$", "key": r"layer\.\d+\.attention\.k_lin$",
                   "value": r"layer\.\d+\.attention\.v_lin$", "attention_output": r"layer\.\d+\.attention\.out_lin$",
                   "intermediate": r"layer\.\d+\.ffn\.lin1$", "output": r"layer\.\d+\.ffn\.lin2$"},
}
TARGETS["roberta"] = TARGETS["bert"]
DEFAULT_TARGETS = tuple(TARGETS["bert"])


def default_shape(dim: int, n_cores: int = 5) -> list[int]:
    """The paper's preset for 768/3072; otherwise [a, 1, …, 1, b] with a·b = dim, a ≥ b, a/b smallest."""
    if dim in PRESETS and n_cores == 5:
        return list(PRESETS[dim])
    if n_cores == 1:
        return [dim]
    b = max(d for d in range(1, math.isqrt(dim) + 1) if dim % d == 0)
    return [dim // b] + [1] * (n_cores - 2) + [b]


def shape_for(dim: int, user_shapes: list[list[int]], n_cores: int = 5) -> list[int]:
    """The first user shape whose product is `dim`, else the default factorisation with `n_cores` cores."""
    for shape in user_shapes:
        if math.prod(shape) == dim:
            return list(shape)
    return default_shape(dim, n_cores)


def named_targets(model: nn.Module, targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[tuple[str, str]]:
    """(module name, target name) of every Linear the transform replaces, in module order."""
    model_type = getattr(getattr(model, "config", None), "model_type", "bert")
    table = TARGETS.get(model_type)
    if table is None:
        raise ValueError(f"OPDF has no target table for model type {model_type!r} (supported: {sorted(TARGETS)})")
    unknown = [t for t in targets if t not in table]
    if unknown:
        raise ValueError(f"unknown --mpo_targets {unknown}; choose from {', '.join(table)}")
    patterns = {t: re.compile(table[t]) for t in targets}
    found = []
    for name, module in model.named_modules():
        hit = [t for t, p in patterns.items() if p.search(name)]
        if hit and isinstance(module, (nn.Linear, MPOLinear)):
            found.append((name, hit[0]))
    return found


def target_modules(model: nn.Module, targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[str]:
    """Names of the Linear modules the transform replaces."""
    return [name for name, _ in named_targets(model, targets)]


class MPOTransform:
    """The trainer's model transform (`ModelTransform`, distill/plugins.py).
    apply(model): replace the target Linears by MPOLinear in place (the training model).
    export(model): a dense copy with every MPOLinear contracted back to nn.Linear (what is saved)."""

    def __init__(self, targets: tuple[str, ...] = DEFAULT_TARGETS, input_shapes: list[list[int]] | None = None,
                 output_shapes: list[list[int]] | None = None, max_bond: int | None = None):
        self.targets = tuple(targets)
        self.input_shapes = input_shapes or []
        self.output_shapes = output_shapes or []
        self.max_bond = max_bond
        given = {len(s) for s in self.input_shapes + self.output_shapes}
        if len(given) > 1:
            raise ValueError(f"MPO shapes with different numbers of cores: {self.input_shapes} {self.output_shapes}")
        self.n_cores = given.pop() if given else 5

    def apply(self, model: nn.Module) -> nn.Module:
        names = [n for n in target_modules(model, self.targets) if isinstance(model.get_submodule(n), nn.Linear)]
        if not names:
            raise ValueError(f"no Linear layer of {type(model).__name__} matches --mpo_targets "
                             f"{','.join(self.targets)}")
        in_dims = {model.get_submodule(n).in_features for n in names}
        out_dims = {model.get_submodule(n).out_features for n in names}
        for flag, shapes, dims in (("--mpo_input_shape", self.input_shapes, in_dims),
                                   ("--mpo_output_shape", self.output_shapes, out_dims)):
            unused = [s for s in shapes if math.prod(s) not in dims]
            if unused:
                raise ValueError(f"{flag} {','.join(map(str, unused[0]))} (= {math.prod(unused[0])}) factors no "
                                 f"dimension of the target layers ({', '.join(map(str, sorted(dims)))})")
        for name in names:
            linear = model.get_submodule(name)
            mpo = MPOLinear(linear, shape_for(linear.in_features, self.input_shapes, self.n_cores),
                            shape_for(linear.out_features, self.output_shapes, self.n_cores), self.max_bond)
            model.set_submodule(name, mpo.to(linear.weight.device))
        return model

    @staticmethod
    def export(model: nn.Module) -> nn.Module:
        dense = copy.deepcopy(model)
        for name, module in list(dense.named_modules()):
            if isinstance(module, MPOLinear):
                dense.set_submodule(name, module.to_linear())
        return dense

    @staticmethod
    @torch.no_grad()
    def load_dense_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load a dense (exported) state dict into the MPO model: every MPO layer is re-decomposed from
        its dense weight (same matrix; the cores' gauge may differ from the trained ones)."""
        state = dict(state)
        for name, module in model.named_modules():
            if isinstance(module, MPOLinear):
                weight = state.pop(f"{name}.weight")
                # the trained bond dims (a capped MPO has rank ≤ cap at every cut: exact again)
                cap = max(c.shape[-1] for c in module.cores[:-1]) if len(module.cores) > 1 else None
                cores = mpo_decompose(weight, module.in_shape, module.out_shape, max_bond=cap)
                for param, core in zip(module.cores, cores):
                    if param.shape != core.shape:
                        raise ValueError(f"{name}: the dense weight does not decompose to the trained bond dims")
                    param.copy_(core)
        # everything else (biases keep their names, embeddings, LayerNorms, head) loads as usual
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if ".cores." not in k]
        if unexpected or missing:
            raise ValueError(f"dense state does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
