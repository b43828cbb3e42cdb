"""Flags of the teachers that learn, named as in the LGTM paper's run_glue.py so its commands run unchanged."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from distill.args import changed_flags
from distill.errors import UsageError

INFLUENCE_MODES = ("student_kd", "teacher_aux")
QUIZ_SOURCES = ("train", "validation")


@dataclass
class TeacherLearningArguments:
    _argument_group_name = "teachers that learn (ProKT, LGTM)"
    train_teacher: bool = field(
        default=False, metadata={"help": "ProKT: the teacher learns too, one step toward the student before each "
                                         "student step. Needs --teacher_model."})
    t_learning_rate: float = field(default=3e-5,
                                   metadata={"help": "Peak AdamW learning rate of the teacher.", "range": ">= 0"})
    t_alpha_kd: float = field(
        default=0.4,
        metadata={"help": "Teacher loss: t_alpha_kd·KL(p_s‖p_t) + (1 − t_alpha_kd)·CE(t, y).", "range": "[0, 1]"})
    init_classifier_to_zero: bool = field(
        default=False, metadata={"aliases": ["--init_classifier_as_zero"],
                                 "help": "Zero the output layer (weight and bias) of both classifiers at the start "
                                         "(for a teacher that starts from a pretrained, not fine-tuned, model). "
                                         "Also spelled --init_classifier_as_zero, as in the LGTM README's table."})
    use_lgtm: bool = field(
        default=False, metadata={"help": "LGTM: the teacher also learns from its distillation influence on the "
                                         "student's quiz loss. Needs --train_teacher."})
    lgtm_influence: str = field(
        default="student_kd",
        metadata={"help": "Loss whose mixed derivative gives the influence: student_kd (the paper's math: the "
                          "student's distillation loss, η = the student's learning rate) or teacher_aux (the "
                          "released code: the teacher's loss, η = the teacher's learning rate)."})
    lgtm_fd_radius: float = field(
        default=3e-3,
        metadata={"help": "Finite-difference radius r: ε = r / ‖v‖ with v the quiz gradient. 3e-3 was the "
                          "most accurate radius measured (docs/lgtm.md): in float32, 2.9e-6 relative error on a "
                          "MiniLM-size pair and 3.9e-5 on a tiny one (0.01: 1.9e-5 and 3.6e-4); larger radii add "
                          "truncation error (∝ r²), smaller ones rounding. Under --bf16 rounding dominates "
                          "(0.5 %% at 3e-3); 0.03 measured best there (0.1 %%).", "range": "> 0"})
    lgtm_exact: bool = field(
        default=False, metadata={"help": "Exact influence by double backward instead of the finite difference "
                                         "(slower; for checking and small models)."})
    lgtm_quiz_source: str = field(
        default="train",
        metadata={"help": "train: a held-out slice of the training set the student never trains on. validation: "
                          "the dev set, as the released code did (dev scores are then optimistic)."})
    lgtm_quiz_fraction: float = field(
        default=0.1, metadata={"help": "Fraction of the training set held out as quiz data (--lgtm_quiz_source "
                                       "train).", "range": "(0, 1)"})

    def validate(self, has_teacher: bool, alpha_kd: float) -> None:
        """Refuse combinations that cannot mean what the user wants."""
        if self.use_lgtm and not self.train_teacher:
            raise UsageError("--use_lgtm updates the teacher, so it needs --train_teacher too (the LGTM paper's "
                             "commands pass both)")
        if self.train_teacher and not has_teacher:
            raise UsageError("--train_teacher needs a teacher to train: pass --teacher_model (a pretrained or "
                             "fine-tuned model with the student's tokenizer)")
        if self.init_classifier_to_zero and not self.train_teacher:
            raise UsageError("--init_classifier_to_zero zeroes the teacher's head too, which only makes sense when "
                             "the teacher learns; add --train_teacher or drop the flag")
        if self.train_teacher and alpha_kd == 0.0 and self.use_lgtm:
            raise UsageError("--use_lgtm with --alpha_kd 0: the student ignores the teacher, so the teacher has no "
                             "influence to learn from; raise --alpha_kd")
        if self.lgtm_influence not in INFLUENCE_MODES:
            raise UsageError(f"--lgtm_influence {self.lgtm_influence!r}: choose {' or '.join(INFLUENCE_MODES)}")
        if self.lgtm_quiz_source not in QUIZ_SOURCES:
            raise UsageError(f"--lgtm_quiz_source {self.lgtm_quiz_source!r}: choose {' or '.join(QUIZ_SOURCES)}")
        # flags that mean nothing without their method, when set to other than their defaults
        changed = changed_flags(self, ("t_learning_rate", "t_alpha_kd"))
        if changed and not self.train_teacher:
            raise UsageError(f"--{changed[0]} only applies to a teacher that learns; add --train_teacher or drop it")
        changed = changed_flags(self, [f.name for f in fields(self) if f.name.startswith("lgtm_")])
        if changed and not self.use_lgtm:
            raise UsageError(f"--{changed[0]} only applies to LGTM; add --use_lgtm or drop the flag")
