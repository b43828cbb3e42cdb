"""OPDF's tensor alignment loss: zero for identical layers, known values, gradient on the student's
auxiliary cores only, finite differences, refusal of different shapes; and the trainer adds it once
per step, so gradient accumulation still equals one big batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import kd_rounding, no_dropout_bert, toy_dataset

from distill.args import TrainingArguments
from distill.batching import PaddingCollator
from distill.errors import UsageError
from distill.objective import SequenceClassificationObjective
from distill.runtime import make_accelerator
from distill.teacher import FrozenTeacher
from distill.trainer import DistillationTrainer
from opdf.align import TensorAlignmentLoss, default_layer_map, parse_layer_map
from opdf.mpo import MPOLinear, mpo_decompose
from opdf.transform import DEFAULT_TARGETS, MPOTransform


def test_default_layer_map_is_evenly_spaced():
    assert default_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]  # 2i+1 for twice the layers
    assert default_layer_map(3, 12) == [3, 7, 11]
    assert default_layer_map(2, 2) == [0, 1]
    assert default_layer_map(4, 2) == [0, 0, 1, 1]
    assert parse_layer_map("0, 2,4", 3, 12) == [0, 2, 4]
    for bad in ("0,2", "0,2,12", "a,b,c"):
        with pytest.raises(UsageError, match="one teacher layer"):
            parse_layer_map(bad, 3, 12)


def _mpo_student(path, **kw):
    return MPOTransform(**kw).apply(no_dropout_bert(path))


def test_a_student_made_from_the_teacher_layers_starts_at_zero_loss(toy):
    teacher = no_dropout_bert(toy["teacher"])
    student = _mpo_student(toy["teacher"])  # the same weights, both layers
    align = TensorAlignmentLoss(student, teacher, DEFAULT_TARGETS, "0,1", weight=1.0)
    assert len(align.pairs) == 12  # 6 targets x 2 layers
    assert align.loss_terms()["opdf_align"].item() == pytest.approx(0.0, abs=1e-12)
    # swapping the layer map aligns each layer with the other one: no longer zero
    assert TensorAlignmentLoss(student, teacher, DEFAULT_TARGETS, "1,0", 1.0).loss_terms()["opdf_align"].item() > 1e-4


def test_known_value_gradient_only_on_auxiliary_cores_and_finite_differences(toy):
    torch.manual_seed(0)
    teacher = no_dropout_bert(toy["teacher"]).double()
    student = _mpo_student(toy["student"]).double()
    align = TensorAlignmentLoss(student, teacher, ("query",), None, weight=1.0)  # default map: layer 0 -> 1
    (module, targets), = align.pairs
    expected_cores = mpo_decompose(teacher.bert.encoder.layer[1].attention.self.query.weight, module.in_shape,
                                   module.out_shape)
    # known value: Σ over auxiliary cores of the mean squared difference, the central core left out
    expected = sum(((module.cores[k] - expected_cores[k].double()) ** 2).mean() for k in range(5) if k != 2)
    loss = align.loss_terms()["opdf_align"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() > 0
    loss.backward()
    assert module.cores[module.central].grad is None  # the central tensor is free
    for k in range(5):
        if k != module.central:
            g = module.cores[k].grad
            assert g is not None and g.abs().sum() > 0
            torch.testing.assert_close(g, 2 * (module.cores[k] - targets[k].double()).detach() / g.numel())
    # nothing else of the student, and nothing of the teacher, gets a gradient
    others = [n for n, p in student.named_parameters() if p.grad is not None and "query.cores" not in n]
    assert others == [] and all(p.grad is None for p in teacher.parameters())
    # central finite difference on one entry of the first core
    core = module.cores[0]
    idx, eps = (0, 1, 2, 0), 1e-6
    with torch.no_grad():
        core[idx] += eps
        plus = align.loss_terms()["opdf_align"].item()
        core[idx] -= 2 * eps
        minus = align.loss_terms()["opdf_align"].item()
        core[idx] += eps
    assert (plus - minus) / (2 * eps) == pytest.approx(core.grad[idx].item(), rel=1e-5)


def test_truncated_bonds_decompose_the_teacher_with_the_same_cap(toy):
    student = _mpo_student(toy["student"], max_bond=3)
    align = TensorAlignmentLoss(student, no_dropout_bert(toy["teacher"]), DEFAULT_TARGETS, None, 1.0)
    for module, targets in align.pairs:
        assert all(targets[k].shape == module.cores[k].shape for k in targets)
        assert max(c.shape[-1] for c in module.cores) == 3


def test_different_shapes_are_refused_with_the_way_out(toy, tmp_path):
    from distill.toy import build_bert, build_tokenizer
    tok = build_tokenizer(str(tmp_path / "tok"))
    wide = build_bert(str(tmp_path / "wide"), tok, layers=2, hidden=48, heads=2, intermediate=96, seed=5)
    with pytest.raises(UsageError, match="same shape.*--opdf_align_weight 0"):
        TensorAlignmentLoss(_mpo_student(toy["student"]), no_dropout_bert(wide), DEFAULT_TARGETS, None, 1.0)


def _one_step(toy, micro_sizes, tmp_path):
    torch.manual_seed(0)
    dataset, tok = toy_dataset(toy, sum(micro_sizes))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, max_grad_norm=0.0)
    acc = make_accelerator(args)
    teacher_model = no_dropout_bert(toy["teacher"])
    student = _mpo_student(toy["student"])
    align = TensorAlignmentLoss(student, teacher_model, DEFAULT_TARGETS, None, weight=3.0)
    trainer = DistillationTrainer(
        args=args, accelerator=acc, student=student,
        objective=SequenceClassificationObjective(False, True, alpha_kd=0.7, temperature=2.0),
        collator=PaddingCollator(tok.pad_token_id), teacher=FrozenTeacher(teacher_model, acc),
        model_transform=MPOTransform(), param_loss=align)
    trainer.create_optimizer(total_steps=10)
    captured = {}
    original_step = trainer.optimizer.step

    def recording_step(*a, **k):
        captured.update({n: p.grad.detach().clone() for n, p in trainer.unwrapped_student.named_parameters()})
        return original_step(*a, **k)

    trainer.optimizer.step = recording_step
    bounds = np.cumsum([0, *micro_sizes])
    micro = [PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:])]
    logs = trainer.optimizer_step(micro)
    return captured, logs, align


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
@pytest.mark.parametrize("micro_sizes", [[4, 4], [3, 5], [2, 2, 2, 2]])
def test_alignment_is_added_once_per_step_so_accumulation_equals_one_big_batch(toy, tmp_path, micro_sizes):
    big, big_logs, align = _one_step(toy, [8], tmp_path / "big")
    acc, acc_logs, _ = _one_step(toy, micro_sizes, tmp_path / "acc")
    assert any(".cores." in n for n in big)
    for name in big:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-4, atol=1e-7, msg=name)
    for key in ("loss/total", "loss/ce", "loss/opdf_align"):
        assert acc_logs[key] == pytest.approx(big_logs[key], rel=1e-5)
    # KD of two untrained heads is ~7e-6: float32 rounding moves it in absolute terms (see kd_rounding)
    assert acc_logs["loss/kd"] == pytest.approx(big_logs["loss/kd"], rel=1e-5, abs=kd_rounding(2.0))
    # the logged term is L_align itself (computed before the step), weighted 3 in the total
    assert big_logs["loss/opdf_align"] > 0
    assert big_logs["loss/total"] == pytest.approx(0.7 * big_logs["loss/kd"] + 0.3 * big_logs["loss/ce"]
                                                   + 3.0 * big_logs["loss/opdf_align"], rel=1e-6)
    assert isinstance(next(m for m in align.pairs)[0], MPOLinear)
