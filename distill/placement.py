"""Where the student's weights live across processes, behind one small interface the trainer calls:

- `Replicated` (the default): every process holds the whole student; with several processes accelerate wraps
  it in DDP, which all-reduces the gradients.
- `Sharding` (`--fsdp`, distill/sharding.py): parameters, gradients and AdamW moments split over the
  processes with FSDP2, and a frozen teacher's parameters too.

Both answer the same questions (how to wrap the models and build the optimizer, how to skip the gradient
sync of a micro-batch, how to clip, what the plain model to save and to evaluate is, what a checkpoint keeps
of the training model), so the loop in distill/trainer.py has no branch for sharding.
"""
from __future__ import annotations

import contextlib

from torch import nn

from distill.optim import make_adamw


class Replicated:
    """One whole copy of the student per process. `transform` maps the training model to the plain one
    (OPDF's MPO cores to dense weights; identity for every other method)."""

    def __init__(self, args, accelerator, transform):
        self.args, self.accelerator, self.transform = args, accelerator, transform

    def prepare(self, student: nn.Module, teacher) -> tuple[nn.Module, object]:
        """The student wrapped for DDP / mixed precision and its AdamW (the teacher stays as it is)."""
        optimizer = make_adamw(student, self.args.learning_rate, self.args, self.accelerator.device)
        return self.accelerator.prepare(student, optimizer)

    def _plain(self, student: nn.Module) -> nn.Module:
        return self.transform.export(self.accelerator.unwrap_model(student))

    def export(self, student: nn.Module) -> nn.Module | None:
        """The plain student on the main process (the one that writes), None elsewhere."""
        return self._plain(student) if self.accelerator.is_main_process else None

    def eval_model(self, student: nn.Module) -> nn.Module:
        """What every process evaluates: its plain student."""
        return self._plain(student)

    def gradient_sync(self, student: nn.Module, sync: bool):
        """Skip DDP's all-reduce on every micro-batch but the step's last."""
        return contextlib.nullcontext() if sync else self.accelerator.no_sync(student)

    def clip_grad_norm(self, student: nn.Module, max_norm: float) -> float:
        return float(self.accelerator.clip_grad_norm_(student.parameters(), max_norm))

    def transformed(self, student: nn.Module) -> bool:
        """Whether the training model differs from the plain one, so that checkpoints keep its own state
        beside the plain model (MPO cores: re-decomposing the dense weights would change their gauge and
        break the optimizer's moments)."""
        return self._plain(student) is not self.accelerator.unwrap_model(student)

    def training_state(self, student: nn.Module, plain: nn.Module | None) -> dict | None:
        trained = self.accelerator.unwrap_model(student)
        if plain is None or plain is trained:
            return None
        return {k: v.detach().cpu() for k, v in trained.state_dict().items()}

    def shard_writer(self, student, optimizer):
        return None  # (the optimizer is saved whole, with the checkpoint's other state)

    def shard_reader(self, student, optimizer):
        return None

    def load_plain_state(self, student: nn.Module, state: dict) -> None:
        """The student takes a saved plain model's weights (the best step's)."""
        self.transform.load_dense_state(self.accelerator.unwrap_model(student), state)
