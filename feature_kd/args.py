"""The one-to-one paper's loss flags, under the paper's names so its commands run.

Naming (as in the paper's scripts and Hugging Face's distillation scripts): `--alpha_ce` weights the
KD term τ²·KL(p_t^τ‖p_s^τ), `--alpha_glue` / `--alpha_squad` / `--alpha_imdb` the task's cross-entropy
with the gold labels, `--alpha_corr` the cross-correlation loss, `--alpha_mse` / `--alpha_cos` the
hidden-state MSE and cosine losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from distill.errors import UsageError

# The paper's GLUE defaults, applied to the flags a paper-style command leaves out.
GLUE_PAPER_DEFAULTS = {"alpha_ce": 0.5, "alpha_glue": 0.5, "alpha_corr": 0.005, "alpha_mse": 0.5, "alpha_cos": 0.5,
                       "temperature": 2.0}
PROJECTIONS = ("none", "linear")


@dataclass
class FeatureOptions:
    do_mask: bool = field(
        default=False, metadata={"help": "Masked one-to-one loss: each step keeps a random half of the features and "
                                         "the loss of that sub-matrix REPLACES the full one."})
    feature_projection: str = field(
        default="none", metadata={"help": "none, or linear: a learned map of the student's last hidden state to the "
                                          "teacher's width, for feature losses between models of different widths."})

    def validate_options(self, feature_weights: dict[str, float]) -> None:
        if self.feature_projection not in PROJECTIONS:
            raise UsageError(f"--feature_projection {self.feature_projection!r}: choose none or linear")
        active = any(w != 0.0 for w in feature_weights.values())
        if self.do_mask and feature_weights.get("corr", 0.0) == 0.0:
            raise UsageError("--do_mask masks the one-to-one (correlation) loss, whose weight is 0; pass --alpha_corr")
        if self.feature_projection != "none" and not active:
            raise UsageError("--feature_projection without a feature loss; pass --alpha_corr, --alpha_mse or "
                             "--alpha_cos, or drop it")
        for name, w in feature_weights.items():
            if w < 0:
                raise UsageError(f"feature loss weight for {name} must be >= 0, got {w}")


@dataclass
class GlueFeatureArguments(FeatureOptions):
    """run_glue.py: unset (None) unless the paper's flags are used; then the paper's defaults fill the rest."""
    _argument_group_name = "feature losses (one-to-one paper)"
    alpha_ce: float | None = field(default=None, metadata={"help": "Paper name of the KD-term weight (0.5 in paper "
                                                                    "mode); use instead of --alpha_kd.",
                                                            "range": ">= 0"})
    alpha_glue: float | None = field(default=None, metadata={"help": "Weight of the task cross-entropy (0.5 in "
                                                                      "paper mode).", "range": ">= 0"})
    alpha_corr: float | None = field(default=None, metadata={"help": "Weight of the one-to-one cross-correlation "
                                                                     "loss (0.005 in paper mode).", "range": ">= 0"})
    alpha_mse: float | None = field(default=None, metadata={"help": "Weight of the last-hidden-state MSE (0.5 in "
                                                                    "paper mode).", "range": ">= 0"})
    alpha_cos: float | None = field(default=None, metadata={"help": "Weight of the last-hidden-state cosine loss "
                                                                    "(0.5 in paper mode).", "range": ">= 0"})

    def paper_mode(self) -> bool:
        """Any of the paper's weights given: the run follows the paper's loss (and its defaults)."""
        return any(getattr(self, k) is not None for k in ("alpha_ce", "alpha_glue", "alpha_corr", "alpha_mse",
                                                           "alpha_cos"))

    def resolved(self, name: str) -> float:
        value = getattr(self, name)
        return GLUE_PAPER_DEFAULTS[name] if value is None else value


@dataclass
class TaskLossArguments(FeatureOptions):
    """run_squad_w_distillation.py / run_imdb_w_distillation.py: Hugging Face's distillation-script
    defaults (alpha_ce 0.5, task 0.5, temperature 2.0); feature losses off unless asked for."""
    _argument_group_name = "loss: KD and feature losses (one-to-one paper)"
    alpha_ce: float = field(default=0.5, metadata={"help": "Weight of the KD term τ²·KL(p_t^τ‖p_s^τ) "
                                                           "(ignored without a teacher)."})
    alpha_corr: float = field(default=0.0, metadata={"help": "Weight of the one-to-one cross-correlation loss."})
    alpha_mse: float = field(default=0.0, metadata={"help": "Weight of the last-hidden-state MSE."})
    alpha_cos: float = field(default=0.0, metadata={"help": "Weight of the last-hidden-state cosine loss."})
    temperature: float = field(default=2.0,
                               metadata={"help": "Softmax temperature of the KD term (τ² scaled).",
                                         "range": "[0.01, 1000]"})

    def feature_weights(self) -> dict[str, float]:
        """{"corr", "hidden_mse", "hidden_cos"} -> weight, after checking them with the feature options."""
        weights = {"corr": self.alpha_corr, "hidden_mse": self.alpha_mse, "hidden_cos": self.alpha_cos}
        self.validate_options(weights)
        return weights
