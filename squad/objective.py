"""The SQuAD student loss: span cross-entropy and KD on the start and end distributions.

    L = alpha_squad · ½(CE(start) + CE(end)) + alpha_ce · τ² · ½(KL(start) + KL(end))

over the positions of each window, per window (feature). Padding positions are masked out of both
softmaxes, so a window's loss does not depend on how much padding its batch has (and gradient
accumulation equals one big batch). Without a teacher: fine-tuning, L = ½(CE(start) + CE(end)).
"""
from __future__ import annotations

import torch

from distill.objective import Objective
from losses import get_loss

PAD_LOGIT = -1e4  # exp(-1e4) underflows to 0 in float32 and bf16: a padding position gets no mass


def span_logits(outputs, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) logits, (B, T) each, in float32 with padding positions masked."""
    pad = attention_mask == 0  # (B, T)
    return (outputs.start_logits.float().masked_fill(pad, PAD_LOGIT),
            outputs.end_logits.float().masked_fill(pad, PAD_LOGIT))


class QuestionAnsweringObjective(Objective):
    def __init__(self, has_teacher: bool, alpha_squad: float = 0.5, alpha_ce: float = 0.5, temperature: float = 2.0):
        self.has_teacher = has_teacher
        self.temperature = temperature
        self.weights = {"squad": alpha_squad, "kd": alpha_ce} if has_teacher else {"squad": 1.0}

    def counts(self, batch):
        n = float(batch["labels"].shape[0])
        return {name: n for name in self.weights}

    def loss_sums(self, batch, student_outputs, teacher_outputs):
        mask = batch["attention_mask"]
        s_start, s_end = span_logits(student_outputs, mask)  # (B, T) each
        labels = batch["labels"]  # (B, 2): start and end token positions
        ce, kd = get_loss("ce"), get_loss("kd")

        def span_ce(start, end, y):
            return 0.5 * (ce(start, y[:, 0]) + ce(end, y[:, 1])).sum()

        def span_kd(start, end, t_start, t_end):
            return 0.5 * (kd(start, t_start, self.temperature) + kd(end, t_end, self.temperature)).sum()
        # A term of weight 0 (--alpha_squad 0 or --alpha_ce 0) is computed for the logs without autograd.
        sums = {"squad": self.term("squad", span_ce, s_start, s_end, labels)}
        if self.has_teacher:
            t_start, t_end = span_logits(teacher_outputs, mask)  # (B, T) each
            sums["kd"] = self.term("kd", span_kd, s_start, s_end, t_start, t_end)
        return sums

    def predictions(self, outputs, batch):
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)  # (B, T, 2)

    def eval_loss_sum(self, predictions, labels):
        ce = get_loss("ce")
        return 0.5 * (ce(predictions[..., 0], labels[:, 0]) + ce(predictions[..., 1], labels[:, 1])).sum()
