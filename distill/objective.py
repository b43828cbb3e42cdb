"""The loss interface between a method and the trainer loop.

An objective turns one micro-batch into *unweighted sums* of named loss terms, and says over how
many items each term is averaged. The trainer adds up the counts of all micro-batches of an
optimizer step (and of all processes) first, then back-propagates Σ_k w_k · sum_k / count_k per
micro-batch. That makes gradient accumulation exactly equal to one big batch, also when micro-batches
differ in size (the last one of an epoch, or token-level losses with varying numbers of tokens).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from losses import get_loss


def weighted_loss(weights: dict[str, float], terms: dict[str, torch.Tensor], counts: dict[str, float]) -> torch.Tensor:
    """Σ_k w_k · sum_k / count_k: one micro-batch's share of the step's loss. Terms of weight 0 are
    skipped: they were computed without a graph (`logged_term`), so nothing back-propagates through them."""
    return sum(w * terms[k] / counts[k] for k, w in weights.items() if w != 0.0)


def _detached(value):
    """`value` with its tensors (also those in a tuple or list) detached; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(v) for v in value)
    return value


def logged_term(weight: float, fn: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
    """fn(*args, **kwargs): one term's unweighted sum. A term of weight 0 is only logged, so it needs its
    value, not its gradient: it is computed under torch.no_grad on detached tensor arguments (the same
    value, no graph, no gradient buffer). Both are needed: no_grad keeps ordinary ops from recording a
    graph, but a custom autograd.Function still sees `needs_input_grad` True for an input that requires
    grad, and the chunked losses (losses/token_kd.py) would build their (B, T, V) gradient buffer during
    the forward. So pass the tensors the term reads as arguments (not inside model outputs)."""
    if weight != 0.0:
        return fn(*args, **kwargs)
    with torch.no_grad():
        return fn(*_detached(args), **{k: _detached(v) for k, v in kwargs.items()})


def weighted_term_logs(weights: dict[str, float], sums: dict[str, float], counts: dict[str, float],
                       total_name: str = "loss/total") -> dict[str, float]:
    """`loss/<term>` (the mean), `loss/<term>_weighted` and the weighted total, for the logs."""
    logs, total = {}, 0.0
    for k, w in weights.items():
        mean = sums[k] / counts[k]
        logs[f"loss/{k}"] = mean
        logs[f"loss/{k}_weighted"] = w * mean
        total += w * mean
    logs[total_name] = total
    return logs


def global_counts(objective: "Objective", micro_batches: list[dict], accelerator) -> dict[str, float]:
    """Items each term of `objective` averages over in one optimizer step: all its micro-batches, all
    processes (so accumulation and DDP equal one big batch); at least 1."""
    per_batch = [objective.counts(b) for b in micro_batches]
    local = {k: sum(c[k] for c in per_batch) for k in objective.weights}
    values = torch.tensor(list(local.values()), device=accelerator.device, dtype=torch.float64)
    return dict(zip(local, accelerator.reduce(values, "sum").clamp(min=1).tolist()))


class Objective:
    """Base class (the contract: `Objective` in distill/plugins.py): subclasses fill `weights` and
    implement `counts` and `loss_sums`."""

    #: term name -> weight in the total loss (terms of weight 0 are still computed, without autograd, and logged)
    weights: dict[str, float]
    #: extra arguments of the student's and the teacher's forward during training (e.g. hidden states)
    forward_kwargs: dict = {}

    @property
    def teacher_forward_kwargs(self) -> dict:
        """Extra arguments of the teacher's forward (live, or building the teacher-output cache): the
        student's, unless the objective reads other outputs of the teacher (lm/objective.py: the teacher's
        top-k cache feeds the fused loss, where the student's forward returns hidden states)."""
        return self.forward_kwargs

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """How many items each term averages over in this micro-batch (known before the forward)."""
        raise NotImplementedError

    def loss_sums(self, batch, student_outputs, teacher_outputs) -> dict[str, torch.Tensor]:
        """Unweighted per-term sums over this micro-batch's items (scalars with gradient; those of terms
        of weight 0 without: compute every term through `term`)."""
        raise NotImplementedError

    def term(self, name: str, fn: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """fn(*args, **kwargs), the unweighted sum of term `name`; without autograd when its weight is 0
        (`logged_term`: e.g. the LM term at --kd_ratio 1 costs no (B, T, V) gradient buffer)."""
        return logged_term(self.weights[name], fn, *args, **kwargs)

    def eval_loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed task loss on gold labels, for `eval_loss` (`logits`: what `predictions` returned)."""
        raise NotImplementedError

    def eval_loss(self, predictions: np.ndarray, dataset) -> float | None:
        """`eval_loss` of a dev set from its predictions: the mean task loss per example (None when the
        set has no labels). Objectives whose loss is not per example (LM: per token) override this."""
        if "labels" not in dataset.columns:
            return None
        labels = torch.from_numpy(np.asarray(dataset.columns["labels"]))
        return self.eval_loss_sum(torch.from_numpy(predictions), labels).item() / len(labels)

    def predictions(self, outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What evaluation keeps of a model's outputs on `batch`, (B, ...): the logits."""
        return outputs.logits


class SequenceClassificationObjective(Objective):
    """Hinton KD for sequence classification and regression:

        L = α_kd · τ² · KL(p_t^τ ‖ p_s^τ) + (1 − α_kd) · CE(s, y)        (classification)
        L = α_kd · MSE(s, t)               + (1 − α_kd) · MSE(s, y)       (regression, STS-B)

    Without a teacher it is plain fine-tuning: L = CE (or MSE). `task_weight` overrides (1 − α_kd) (the
    one-to-one paper weighs both terms independently: --alpha_ce, --alpha_glue).
    """

    def __init__(self, is_regression: bool, has_teacher: bool, alpha_kd: float = 1.0, temperature: float = 1.0,
                 task_weight: float | None = None):
        self.task_term = "mse" if is_regression else "ce"
        self.task_loss = get_loss(self.task_term)
        self.kd_loss = get_loss("kd_mse" if is_regression else "kd")
        self.temperature = temperature
        self.has_teacher = has_teacher
        task_weight = 1.0 - alpha_kd if task_weight is None else task_weight
        self.weights = {self.task_term: task_weight, "kd": alpha_kd} if has_teacher else {self.task_term: 1.0}

    def counts(self, batch):
        n = float(batch["labels"].shape[0])
        return {name: n for name in self.weights}

    def loss_sums(self, batch, student_outputs, teacher_outputs):
        logits = student_outputs.logits  # (B, C)
        sums = {self.task_term: self.term(self.task_term, lambda s, y: self.task_loss(s, y).sum(), logits,
                                          batch["labels"])}
        if self.has_teacher:
            sums["kd"] = self.term("kd", lambda s, t: self.kd_loss(s, t, self.temperature).sum(), logits,
                                   teacher_outputs.logits)
        return sums

    def eval_loss_sum(self, logits, labels):
        return self.task_loss(logits, labels).sum()
