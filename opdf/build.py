"""Wiring for the entry scripts: `--use_opdf` turns a loaded student into the over-parameterised one."""
from __future__ import annotations

import logging

from torch import nn

from distill.errors import UsageError
from opdf.align import TensorAlignmentLoss
from opdf.args import OPDFArguments
from opdf.transform import MPOTransform

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_opdf(args: OPDFArguments, student: nn.Module, teacher: nn.Module | None):
    """(transform, alignment loss or None). Replaces the student's target layers by MPO layers in
    place; the alignment loss needs a teacher and `--opdf_align_weight` > 0."""
    transform = MPOTransform(args.targets(), args.input_shapes(), args.output_shapes(), args.mpo_truncate)
    dense_params = count_parameters(student)
    try:
        transform.apply(student)
    except ValueError as e:  # unknown target, unsupported architecture, shapes that do not factor a layer
        raise UsageError(f"--use_opdf: {e}") from None
    mpo_params = count_parameters(student)
    logger.info("OPDF: %s over-parameterised; trainable parameters %d -> %d (%.2fx)", args.mpo_targets,
                dense_params, mpo_params, mpo_params / dense_params)
    if teacher is None or args.opdf_align_weight == 0.0:
        if teacher is None:
            logger.info("OPDF without a teacher: over-parameterised fine-tuning, no tensor alignment")
        return transform, None
    align = TensorAlignmentLoss(student, teacher, args.targets(), args.opdf_layer_map, args.opdf_align_weight)
    logger.info("OPDF tensor alignment: %d layers aligned to the teacher (student layer i -> teacher layer %s), "
                "weight %g", len(align.pairs), align.layer_map, args.opdf_align_weight)
    return transform, align
