"""`--feature_projection linear`: a learned map of the student's last hidden state to the teacher's width.

The projection trains with the student (same optimizer, same DDP wrapper: it is part of the training
module) but is not part of the student: what is saved and evaluated is the student alone. It plugs
into the trainer as a model transform, around any other transform (OPDF's MPO student).
"""
from __future__ import annotations

from torch import nn

from distill.checkpoint import load_state_checked
from distill.modeling import forward_input_names


class ProjectedStudent(nn.Module):
    """The training module: `model` (the student) + `projection` (Linear d_student -> d_teacher).
    Its outputs are the student's, plus `projected_features` (B, T, d_teacher) when hidden states
    were asked for."""

    def __init__(self, model: nn.Module, student_dim: int, teacher_dim: int):
        super().__init__()
        self.model = model
        self.projection = nn.Linear(student_dim, teacher_dim)
        self.accepted_inputs = forward_input_names(model)  # the student's own inputs, not **kwargs

    def forward(self, **inputs):
        out = self.model(**inputs)
        if getattr(out, "hidden_states", None) is not None:
            out["projected_features"] = self.projection(out.hidden_states[-1])  # (B, T, d_teacher)
        return out


class ProjectionTransform:
    """export: the student without the projection (through `inner`'s export when there is one);
    load_dense_state: a saved student state into the wrapped student."""

    def __init__(self, inner=None):
        self.inner = inner

    def export(self, model: ProjectedStudent) -> nn.Module:
        return self.inner.export(model.model) if self.inner is not None else model.model

    def load_dense_state(self, model: ProjectedStudent, state: dict) -> None:
        if self.inner is not None:
            self.inner.load_dense_state(model.model, state)
            return
        load_state_checked(model.model, state, "the saved student")
