"""The teacher's own loss in ProKT and LGTM:

    L_T = t_α · KL(p_s ‖ p_t) + (1 − t_α) · CE(t, y)                  (classification)
    L_T = t_α · MSE(t, s)     + (1 − t_α) · MSE(t, y)                  (regression, STS-B)

with the student's logits s a target (ProKT computes them without gradient): the teacher is pulled
toward what the student can reach while staying right on the labels. No temperature, as in the
paper (the released code divides both logits by τ without the τ² factor; at the paper's τ = 1 the
two agree).
"""
from __future__ import annotations

from distill.objective import Objective
from losses import get_loss


class TeacherAuxObjective(Objective):
    """An Objective whose trained model is the TEACHER: `loss_sums(batch, teacher_outputs,
    student_outputs)`. Terms are logged as loss/teacher_kd and loss/teacher_ce (total loss/teacher_aux)."""

    def __init__(self, is_regression: bool, t_alpha_kd: float):
        # KL(p_s ‖ p_t) is the "kd" loss with the roles swapped: the student's distribution is the target.
        self.kd_loss = get_loss("kd_mse" if is_regression else "kd")
        self.task_loss = get_loss("mse" if is_regression else "ce")
        self.weights = {"teacher_kd": t_alpha_kd, "teacher_ce": 1.0 - t_alpha_kd}

    def counts(self, batch):
        n = float(batch["labels"].shape[0])
        return {name: n for name in self.weights}

    def loss_sums(self, batch, teacher_outputs, student_outputs):
        t = teacher_outputs.logits  # (B, C), with gradient to the teacher
        # (B, C): ProKT hands in no-grad student logits; LGTM's exact influence differentiates through them
        s = student_outputs.logits
        # A term of weight 0 (--t_alpha_kd 0 or 1) is computed for the logs without autograd.
        return {"teacher_kd": self.term("teacher_kd", lambda t, s: self.kd_loss(t, s, 1.0).sum(), t, s),
                "teacher_ce": self.term("teacher_ce", lambda t, y: self.task_loss(t, y).sum(), t, batch["labels"])}

    def eval_loss_sum(self, logits, labels):
        return self.task_loss(logits, labels).sum()
