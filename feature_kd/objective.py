"""Feature losses as extra terms of any task objective (classification, regression, question answering).

`FeatureTerms` reads the LAST hidden state of both models at the real tokens (attention_mask = 1):
z_s (N, d) (or its learned projection, feature_kd/projection.py) and z_t (N, d). `WithFeatureTerms`
adds those terms to a task objective and asks both models for their hidden states.
"""
from __future__ import annotations

import torch

from distill.objective import Objective
from losses import get_loss
from losses.hidden import KEEP_PROB, random_feature_mask


def last_hidden_state(outputs) -> torch.Tensor:
    """(B, T, d): the student's projected features when it has a projection, else its last hidden state."""
    projected = outputs.get("projected_features") if hasattr(outputs, "get") else None
    if projected is not None:
        return projected
    if getattr(outputs, "hidden_states", None) is None:
        raise RuntimeError("feature losses need output_hidden_states=True in the model's forward")
    return outputs.hidden_states[-1]


class FeatureTerms:
    """corr (one per micro-batch: a batch statistic), hidden_mse and hidden_cos (one per real token).
    Only terms of non-zero weight are computed."""

    def __init__(self, weights: dict[str, float], do_mask: bool = False, keep_prob: float = KEEP_PROB):
        self.weights = {k: w for k, w in weights.items() if w != 0.0}
        self.do_mask = do_mask
        self.keep_prob = keep_prob

    def counts(self, batch) -> dict[str, float]:
        tokens = float(batch["attention_mask"].sum())
        return {k: 1.0 if k == "corr" else tokens for k in self.weights}

    def loss_sums(self, batch, student_outputs, teacher_outputs) -> dict[str, torch.Tensor]:
        real = batch["attention_mask"].bool()  # (B, T)
        z_s = last_hidden_state(student_outputs)[real]  # (N, d)
        z_t = teacher_outputs.hidden_states[-1][real]  # (N, d)
        sums = {}
        if "corr" in self.weights:
            # The mask is drawn from the global torch RNG (saved in checkpoints: resumed runs are exact).
            keep = random_feature_mask(z_s.shape[-1], self.keep_prob).to(z_s.device) if self.do_mask else None
            sums["corr"] = get_loss("corr")(z_s, z_t, keep=keep)
        if "hidden_mse" in self.weights:
            sums["hidden_mse"] = get_loss("hidden_mse")(z_s, z_t).sum()
        if "hidden_cos" in self.weights:
            sums["hidden_cos"] = get_loss("hidden_cos")(z_s, z_t).sum()
        return sums


class WithFeatureTerms(Objective):
    """A task objective plus feature terms: weights, counts and sums are the union of both."""

    forward_kwargs = {"output_hidden_states": True}

    def __init__(self, task: Objective, features: FeatureTerms):
        self.task = task
        self.features = features
        self.weights = task.weights | features.weights

    def counts(self, batch):
        return self.task.counts(batch) | self.features.counts(batch)

    def loss_sums(self, batch, student_outputs, teacher_outputs):
        return (self.task.loss_sums(batch, student_outputs, teacher_outputs)
                | self.features.loss_sums(batch, student_outputs, teacher_outputs))

    def eval_loss_sum(self, predictions, labels):
        return self.task.eval_loss_sum(predictions, labels)

    def eval_loss(self, predictions, dataset):
        return self.task.eval_loss(predictions, dataset)

    def predictions(self, outputs, batch):
        return self.task.predictions(outputs, batch)
