"""OPDF's tensor alignment loss: the student's auxiliary MPO cores are pulled toward the teacher's.

    L_align = Σ_(student layer i, target)  Σ_(k ≠ central)  MSE(C_k^S, C_k^T)

over the over-parameterised layers of each student layer i and the same layer of teacher layer m(i),
the teacher's weight decomposed with the student layer's shapes and bond cap (so the cores have the
same shapes). The central core, which carries the singular values, stays free. The student's cores
are the live parameters, so the loss reaches them through autograd (the released code read detached
`state_dict()` tensors: no gradient at all).

The teacher is decomposed once, when the loss is built: for a teacher that learns (ProKT, LGTM), the
alignment targets are the teacher as it was loaded. That keeps resumed runs exact and costs no SVDs
per step.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import UsageError
from opdf.mpo import MPOLinear, mpo_decompose
from opdf.transform import named_targets

LAYER_RE = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def default_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Evenly spaced: m(i) = ⌈(i+1)·L_t/L_s⌉ − 1, i.e. 2i+1 for a teacher with twice the layers, the
    last teacher layer for the last student layer, i for equal depths."""
    return [math.ceil((i + 1) * n_teacher / n_student) - 1 for i in range(n_student)]


def parse_layer_map(text: str | None, n_student: int, n_teacher: int) -> list[int]:
    if text is None:
        return default_layer_map(n_student, n_teacher)
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        layers = []
    if len(layers) != n_student or not all(0 <= m < n_teacher for m in layers):
        raise UsageError(f"--opdf_layer_map {text!r}: give one teacher layer (0..{n_teacher - 1}) for each of the "
                         f"student's {n_student} layers, comma-separated, e.g. "
                         f"{','.join(map(str, default_layer_map(n_student, n_teacher)))}")
    return layers


def layer_index(module_name: str) -> int:
    match = LAYER_RE.search(module_name)
    if match is None:
        raise ValueError(f"no layer index in module name {module_name!r}")
    return int(match.group(1))


class TensorAlignmentLoss:
    """A loss on the student's parameters (`ParameterLoss`, distill/plugins.py): added once per optimizer step.
    `weights` names its one term; `loss_terms()` returns {"opdf_align": L_align} with gradient."""

    name = "opdf_align"

    def __init__(self, student: nn.Module, teacher: nn.Module, targets: tuple[str, ...], layer_map: str | None,
                 weight: float):
        self.weights = {self.name: weight}
        self.layer_map = layers = parse_layer_map(layer_map, student.config.num_hidden_layers,
                                                  teacher.config.num_hidden_layers)
        teacher_by_key = {(layer_index(name), target): name for name, target in named_targets(teacher, targets)}
        # (student MPO layer, {core index: teacher core}) for every over-parameterised student layer
        self.pairs: list[tuple[MPOLinear, dict[int, torch.Tensor]]] = []
        for name, target in named_targets(student, targets):
            module = student.get_submodule(name)
            if not isinstance(module, MPOLinear):
                continue
            t_name = teacher_by_key.get((layers[layer_index(name)], target))
            if t_name is None:
                raise UsageError(f"OPDF alignment: the teacher has no {target} layer {layers[layer_index(name)]} for "
                                 f"student layer {name}; check --opdf_layer_map")
            t_weight = teacher.get_submodule(t_name).weight
            if tuple(t_weight.shape) != (module.out_features, module.in_features):
                raise UsageError(
                    f"OPDF alignment needs teacher and student matrices of the same shape, but teacher {t_name} is "
                    f"{tuple(t_weight.shape)} and student {name} is {(module.out_features, module.in_features)}; pass "
                    "--opdf_align_weight 0 to over-parameterise without alignment, or use a student with the "
                    "teacher's hidden sizes")
            cores = mpo_decompose(t_weight, module.in_shape, module.out_shape, module.max_bond)
            dtype = module.cores[0].dtype
            aux = {k: c.to(dtype) for k, c in enumerate(cores) if k != module.central}
            self.pairs.append((module, aux))
        if not self.pairs:
            raise UsageError("OPDF alignment: no over-parameterised student layer to align; check --mpo_targets")

    def loss_terms(self) -> dict[str, torch.Tensor]:
        total = None
        for module, teacher_cores in self.pairs:
            for k, target in teacher_cores.items():
                core = module.cores[k]
                if target.device != core.device:  # the student moved to its device after this was built
                    target = teacher_cores[k] = target.to(core.device)
                term = F.mse_loss(core, target)
                total = term if total is None else total + term
        return {self.name: total}
