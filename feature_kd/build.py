"""Wiring for the entry scripts: loss weights from the flags, and the feature terms on top of a task
objective (with the student wrapped in a learned projection when asked)."""
from __future__ import annotations

import logging

from torch import nn

from distill.args import DistillationArguments, changed_flags
from distill.errors import UsageError
from feature_kd.args import GLUE_PAPER_DEFAULTS, FeatureOptions, GlueFeatureArguments
from feature_kd.objective import FeatureTerms, WithFeatureTerms
from feature_kd.projection import ProjectedStudent, ProjectionTransform

logger = logging.getLogger(__name__)


def glue_loss_weights(kd_args: DistillationArguments, feat: GlueFeatureArguments) -> dict:
    """run_glue.py's loss weights: our --alpha_kd/--temperature, or, as soon as one of the paper's weights
    is given, the paper's naming with its defaults for the rest. Returns alpha_kd,
    task_weight (None: 1 − alpha_kd), temperature and the feature weights."""
    if not feat.paper_mode():
        weights = {"alpha_kd": kd_args.alpha_kd, "task_weight": None, "temperature": kd_args.resolved_temperature(),
                   "features": {}}
        feat.validate_options({})
        return weights
    if changed_flags(kd_args, ("alpha_kd",)):
        raise UsageError("--alpha_kd and the paper's --alpha_ce/--alpha_glue both weight the KD and task terms; use "
                         "one naming (--alpha_ce is the KD weight, --alpha_glue the cross-entropy weight)")
    features = {"corr": feat.resolved("alpha_corr"), "hidden_mse": feat.resolved("alpha_mse"),
                "hidden_cos": feat.resolved("alpha_cos")}
    weights = {"alpha_kd": feat.resolved("alpha_ce"), "task_weight": feat.resolved("alpha_glue"),
               "temperature": kd_args.resolved_temperature(default=GLUE_PAPER_DEFAULTS["temperature"]),
               "features": features}
    for name in ("alpha_kd", "task_weight"):
        if weights[name] < 0:
            raise UsageError(f"--alpha_ce and --alpha_glue must be >= 0, got {weights[name]}")
    feat.validate_options(features)
    logger.info("one-to-one paper weights (unset flags take the paper's defaults): alpha_ce %g, alpha_glue %g, "
                "alpha_corr %g, alpha_mse %g, alpha_cos %g, temperature %g, do_mask %s", weights["alpha_kd"],
                weights["task_weight"], features["corr"], features["hidden_mse"], features["hidden_cos"],
                weights["temperature"], feat.do_mask)
    return weights


def hidden_size(model: nn.Module) -> int:
    return model.config.hidden_size


def add_feature_terms(objective, feature_weights: dict[str, float], options: FeatureOptions, student: nn.Module,
                      teacher: nn.Module | None, transform=None):
    """(objective, training student, transform) with the feature terms of non-zero weight added.
    Unchanged when there are none."""
    if not any(w != 0.0 for w in feature_weights.values()):
        return objective, student, transform
    if teacher is None:
        raise UsageError("feature losses (--alpha_corr/--alpha_mse/--alpha_cos) compare the student with a teacher; "
                         "pass --teacher_name_or_path, or set them to 0")
    d_s, d_t = hidden_size(student), hidden_size(teacher)
    if options.feature_projection == "linear":
        student = ProjectedStudent(student, d_s, d_t)
        transform = ProjectionTransform(transform)
        logger.info("feature projection: a learned Linear(%d, %d) maps the student's last hidden state to the "
                    "teacher's (trained with the student, not saved with it)", d_s, d_t)
    elif d_s != d_t:
        raise UsageError(f"feature losses need the same hidden size, but the student has {d_s} and the teacher {d_t}; "
                         "pass --feature_projection linear to learn a projection, or drop the feature losses")
    return WithFeatureTerms(objective, FeatureTerms(feature_weights, options.do_mask)), student, transform
