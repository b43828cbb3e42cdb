"""What a method may plug into the training loop (distill/trainer.py), and what the loop hands it.

Seven kinds of plug-in, each a `typing.Protocol` below (runtime-checkable: `isinstance(x, BatchSource)`
checks that the methods exist, not their signatures). The loop calls them at fixed moments:

    kind              shipped                                   absent (null object)
    Objective         distill/objective.py, task objectives     (required)
    TeacherStrategy   distill/teacher.py, lgtm/teachers.py,      NoTeacher: outputs None, learns nothing
                      distill/teacher_cache.py
    ModelTransform    opdf/transform.py, feature_kd/projection  IdentityTransform
    ParameterLoss     opdf/align.py                             NoParameterLoss: no terms
    BatchSource       distill/batching.py, sequence_kd/rollouts  (built from the training set)
    Evaluator         sequence_kd/evaluation.py                 the per-example predictions of the dev sets
    SaveHook          lm/pipeline.py                            NoSaveHook

Plug-ins never see the trainer. Once per optimizer step a teacher strategy gets a `StepContext` (the
models, the device, the step's micro-batches and counts, and the backward helper); a batch source gets
the same context, without a step, when it makes an epoch's batches. A teacher's `prepare` gets a
`TeacherSetup`; a teacher that learns is evaluated and selected through a `Selection`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

Batch = dict[str, torch.Tensor]
#: `teacher_outputs(i, batch)`: the teacher's outputs for micro-batch i of the step (None: no teacher)
TeacherOutputs = Callable[[int, Batch], Any]


# ------------------------------------------------------------------ what the loop hands to plug-ins
@dataclass(frozen=True)
class StepContext:
    """One optimizer step, as a teacher strategy sees it in `before_optimizer_step` (and, with no step
    fields, a batch source in `epoch_steps`). Everything a plug-in may read of the run; nothing more."""

    unwrapped_student: nn.Module  # the student itself (not its DDP wrapper): forward, virtual steps
    student_inputs: frozenset[str]  # the argument names of the student's forward
    device: torch.device
    autocast: Callable[[], AbstractContextManager]  # the run's mixed precision, for forwards outside the loop
    optimizer: torch.optim.Optimizer  # the student's AdamW (LGTM's virtual step reads its moments)
    max_grad_norm: float  # 0: no clipping
    to_device: Callable[[Batch], Batch]
    reduce_sum: Callable[[torch.Tensor], torch.Tensor]  # sum over processes
    #: global item counts of any objective's terms over `micro_batches` (all processes)
    counts: Callable[[Any, list[Batch]], dict[str, float]]
    #: the student's forward/backward over micro-batches with the given counts and teacher outputs; .grad
    #: accumulates; returns the per-term sums over all processes (see DistillationTrainer.accumulate_...)
    student_backward: Callable[[list[Batch], dict[str, float], TeacherOutputs], dict[str, float]]
    step: int = 0  # optimizer steps done before this one
    micro_batches: tuple[Batch, ...] = ()  # this process's micro-batches of the step, on the device
    student_counts: dict[str, float] = field(default_factory=dict)  # the student loss's global counts


@dataclass(frozen=True)
class TeacherSetup:
    """What `TeacherStrategy.prepare` gets once, after the student's optimizer exists."""

    args: Any  # TrainingArguments: optimizer, schedule and precision flags
    total_steps: int
    train_dataset: Any  # the fixed training set (TokenizedDataset); None when batches are made while training
    collator: Callable[[list[dict]], Batch]
    forward_kwargs: dict  # the objective's extra arguments of the teacher's forward (e.g. output_hidden_states)
    to_device: Callable[[Batch], Batch]


@dataclass(frozen=True)
class Selection:
    """How a run picks its best model: the main dev metric (no prefix) and its direction."""

    metric: str
    greater_is_better: bool

    def improves(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.greater_is_better else value < best)


# ------------------------------------------------------------------ the seven kinds
@runtime_checkable
class Objective(Protocol):
    """Named loss terms of one micro-batch (base class and why: distill/objective.py)."""

    weights: dict[str, float]  # term -> weight in the total loss
    forward_kwargs: dict  # extra arguments of the student's training forward
    teacher_forward_kwargs: dict  # the teacher's (and the cache's): forward_kwargs, unless the objective says

    def counts(self, batch: Batch) -> dict[str, float]:
        """Per step, for every micro-batch before any forward: the items each term averages over."""

    def loss_sums(self, batch: Batch, student_outputs, teacher_outputs) -> dict[str, torch.Tensor]:
        """Per micro-batch: unweighted per-term sums (scalars; with gradient unless the term's weight is 0:
        distill/objective.logged_term)."""

    def eval_loss(self, predictions: np.ndarray, dataset) -> float | None:
        """Per evaluation of a dev set: its mean task loss from the predictions (None: no labels)."""

    def predictions(self, outputs, batch: Batch) -> torch.Tensor:
        """Per evaluation batch: what evaluation keeps of the model's outputs, (B, ...)."""


@runtime_checkable
class LabelledObjective(Objective, Protocol):
    """An objective with a per-example task loss on gold labels (classification and regression), which
    LGTM's quiz step differentiates."""

    def eval_loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed task loss of `logits` (what `predictions` returns) on `labels`, with gradient."""


@runtime_checkable
class TeacherStrategy(Protocol):
    """How the teacher produces the student's targets, and whether (and how) it learns."""

    learns: bool  # a teacher that learns is evaluated, selected and saved alongside the student
    model: nn.Module | None

    def prepare(self, setup: TeacherSetup) -> None:
        """Once, after the student's optimizer exists (a teacher that learns makes its own here)."""

    def before_optimizer_step(self, ctx: StepContext) -> dict[str, float]:
        """Once per optimizer step, before the student's forward/backward; returns logs."""

    def outputs(self, batch: Batch, **forward_kwargs):
        """Per training micro-batch: the targets the student learns from (constants)."""

    def state_dict(self) -> dict:
        """At every checkpoint: tensors, numbers, strings and containers only."""

    def load_state_dict(self, state: dict) -> None:
        """On resume, after `prepare`."""

    def after_evaluation(self, evaluate: Callable[[nn.Module, str], dict], selection: Selection, step: int) -> bool:
        """After each evaluation of the student at `step`: a teacher that learns scores itself
        (`evaluate(model, prefix)` evaluates and logs) and keeps its best; True when it improved."""

    def keep_steps(self) -> tuple[int, ...]:
        """At every checkpoint: steps whose checkpoints must survive rotation (its best)."""

    def record(self) -> dict:
        """After each evaluation: entries for trainer_state.json (e.g. its best step)."""

    def finish(self, checkpoint_of: Callable[[int, str], str], save_dir: Callable[[nn.Module, str], str],
               selection: Selection) -> None:
        """Once, at the end of training, on every process: a teacher that learns restores its best
        version (`checkpoint_of(step, what)` finds that step's checkpoint) and saves it (`save_dir`)."""


@runtime_checkable
class ModelTransform(Protocol):
    """The training model differs from the saved one (OPDF's MPO student, a feature projection)."""

    def export(self, model: nn.Module) -> nn.Module:
        """At every evaluation, save and checkpoint: the plain model (`model` itself when nothing differs;
        then checkpoints keep no separate training state)."""

    def load_dense_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """At the end of training: a saved plain state (the best step's) loaded into the training model."""


@runtime_checkable
class ParameterLoss(Protocol):
    """A loss on the student's parameters, not on a batch (OPDF's tensor alignment)."""

    weights: dict[str, float]

    def loss_terms(self) -> dict[str, torch.Tensor]:
        """Once per optimizer step, with its last micro-batch: the terms (with gradient)."""


@runtime_checkable
class BatchSource(Protocol):
    """The micro-batches of each optimizer step."""

    num_examples: int
    dataset: Any  # the fixed training set the batches come from; None when they are made while training

    def steps_per_epoch(self) -> int:
        """Once, before training: optimizer steps per epoch."""

    def epoch_steps(self, epoch: int, skip: int, ctx: StepContext) -> Iterator[list[Batch]]:
        """Per epoch: the steps' micro-batches (this process's, on the CPU), from step `skip` of the epoch."""

    def state_dict(self) -> dict:
        """At every checkpoint, on every process (each process's state is kept)."""

    def load_state_dict(self, state: dict) -> None:
        """On resume: this process's state."""


@runtime_checkable
class Evaluator(Protocol):
    def __call__(self, model: nn.Module) -> dict[str, float]:
        """At every evaluation (and the final one): metrics of `model`, the plain student or a teacher
        that learns, without prefix. Replaces the per-example predictions of the dev sets."""


@runtime_checkable
class SaveHook(Protocol):
    def __call__(self, epoch: int | None, model: nn.Module) -> None:
        """On the main process, before every checkpoint and at every epoch end, with the plain student
        (`epoch`: the 0-based index of the epoch that just ended, else None)."""


# ------------------------------------------------------------------ null objects for absent plug-ins
class FixedTeacherHooks:
    """The learning and selection hooks of a teacher that does not learn: all no-ops."""

    learns = False

    def prepare(self, setup: TeacherSetup) -> None:
        pass

    def before_optimizer_step(self, ctx: StepContext) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def after_evaluation(self, evaluate, selection: Selection, step: int) -> bool:
        return False

    def keep_steps(self) -> tuple[int, ...]:
        return ()

    def record(self) -> dict:
        return {}

    def finish(self, checkpoint_of, save_dir, selection: Selection) -> None:
        pass


class NoTeacher(FixedTeacherHooks):
    """No teacher (fine-tuning): the objective gets None as the teacher's outputs."""

    model = None

    def outputs(self, batch: Batch, **forward_kwargs) -> None:
        return None


class IdentityTransform:
    """The student trains as it is saved."""

    def export(self, model: nn.Module) -> nn.Module:
        return model

    def load_dense_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        from distill.checkpoint import load_state_checked
        load_state_checked(model, state, "the saved student")


class NoParameterLoss:
    weights: dict[str, float] = {}

    def loss_terms(self) -> dict[str, torch.Tensor]:
        return {}


class NoSaveHook:
    def __call__(self, epoch: int | None, model: nn.Module) -> None:
        pass
