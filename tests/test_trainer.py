"""The shared loop: gradient accumulation equals one big batch, batch order, teacher isolation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import kd_rounding, no_dropout_bert, toy_dataset

from distill.args import TrainingArguments
from distill.batching import DatasetBatches, PaddingCollator, TrainBatchOrder, eval_batches
from distill.objective import SequenceClassificationObjective
from distill.runtime import make_accelerator
from distill.teacher import FrozenTeacher
from distill.trainer import DistillationTrainer

_no_dropout = no_dropout_bert
_dataset = toy_dataset


def _gradients_of_one_step(toy, micro_sizes, with_teacher, tmp_path):
    torch.manual_seed(0)
    dataset, tok = _dataset(toy, sum(micro_sizes))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, max_grad_norm=0.0)
    acc = make_accelerator(args)
    teacher = FrozenTeacher(_no_dropout(toy["teacher"]), acc) if with_teacher else None
    trainer = DistillationTrainer(
        args=args, accelerator=acc, student=_no_dropout(toy["student"]),
        objective=SequenceClassificationObjective(False, with_teacher, alpha_kd=0.7, temperature=2.0),
        collator=PaddingCollator(tok.pad_token_id), teacher=teacher)
    trainer.create_optimizer(total_steps=10)
    captured = {}
    original_step = trainer.optimizer.step

    def recording_step(*a, **k):  # grab the gradients the optimizer is about to use
        for name, p in trainer.unwrapped_student.named_parameters():
            captured[name] = p.grad.detach().clone()
        if teacher is not None:
            captured["teacher_grads"] = [p.grad for p in teacher.model.parameters()]
        return original_step(*a, **k)

    trainer.optimizer.step = recording_step
    bounds = np.cumsum([0, *micro_sizes])
    micro = [PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:])]
    logs = trainer.optimizer_step(micro)
    return captured, logs


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # our recorder
@pytest.mark.parametrize("with_teacher", [False, True])
@pytest.mark.parametrize("micro_sizes", [[4, 4], [3, 5], [2, 2, 2, 2]])
def test_accumulation_gives_the_gradient_of_one_big_batch(toy, tmp_path, micro_sizes, with_teacher):
    big, big_logs = _gradients_of_one_step(toy, [8], with_teacher, tmp_path / "big")
    acc, acc_logs = _gradients_of_one_step(toy, micro_sizes, with_teacher, tmp_path / "acc")
    names = [n for n in big if n != "teacher_grads"]
    assert names
    for name in names:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
    for key in ("loss/total", "loss/ce"):
        assert acc_logs[key] == pytest.approx(big_logs[key], rel=1e-5)
    if with_teacher:  # KD of two untrained heads is ~7e-6: float32 rounds it in absolute terms (see kd_rounding)
        assert acc_logs["loss/kd"] == pytest.approx(big_logs["loss/kd"], rel=1e-5, abs=kd_rounding(2.0))
    if with_teacher:  # a frozen teacher never accumulates gradient
        assert all(g is None for g in big["teacher_grads"])
        assert big_logs["loss/total"] == pytest.approx(0.7 * big_logs["loss/kd"] + 0.3 * big_logs["loss/ce"])


def test_frozen_teacher_runs_in_eval_mode_without_graph(toy):
    args = TrainingArguments(output_dir="unused", report_to="none")
    model = _no_dropout(toy["teacher"]).train()
    teacher = FrozenTeacher(model, make_accelerator(args))
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    dataset, tok = _dataset(toy, 3)
    batch = PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(3)])
    out = teacher.outputs({k: v.to(teacher.accelerator.device) for k, v in batch.items()})  # (the trainer's job)
    assert out.logits.grad_fn is None and not out.logits.is_inference()


def test_teacher_gets_token_type_ids_even_when_student_takes_none(toy):
    """A BERT teacher keeps its segment ids although a DistilBERT-like student does not accept them."""
    from distill.modeling import forward_input_names, model_inputs
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3),
             "token_type_ids": torch.zeros(1, 3, dtype=torch.long), "labels": torch.zeros(1),
             "example_id": torch.zeros(1)}
    teacher_keys = model_inputs(batch, forward_input_names(_no_dropout(toy["teacher"])))
    student_keys = model_inputs(batch, {"input_ids", "attention_mask"})  # DistilBERT's forward
    assert "token_type_ids" in teacher_keys and "token_type_ids" not in student_keys
    assert "labels" not in teacher_keys and "example_id" not in teacher_keys


def test_length_grouped_order_covers_every_example_once_and_is_reproducible():
    lengths = np.random.default_rng(0).integers(5, 100, size=203).tolist()
    order = TrainBatchOrder(lengths, batch_size=8, seed=3, group_by_length=True)
    epoch0 = order.epoch_batches(0)
    flat = sorted(i for b in epoch0 for i in b)
    assert flat == list(range(203)) and len(epoch0) == order.num_batches() == 26
    assert epoch0 == order.epoch_batches(0)  # depends only on (seed, epoch)
    assert epoch0 != order.epoch_batches(1)
    # grouping: the mean within-batch length spread is far below that of random batches
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in epoch0])
    random_spread = np.mean([np.ptp([lengths[i] for i in b]) for b in
                             TrainBatchOrder(lengths, 8, 3, group_by_length=False).epoch_batches(0)])
    assert spread < 0.3 * random_spread
    assert max(lengths[i] for i in epoch0[0]) == max(lengths)  # longest batch first


@pytest.mark.parametrize("group", [True, False])
def test_two_process_split_is_the_one_process_batch(group):
    lengths = list(range(1, 43))  # 42 = 5 global batches of 8 + one of 2 (1 per process)
    single = TrainBatchOrder(lengths, batch_size=8, seed=0, group_by_length=group).epoch_batches(2)
    ranks = [TrainBatchOrder(lengths, 4, 0, group, world_size=2, rank=r).epoch_batches(2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for one, a, b in zip(single, *ranks):
        assert sorted(one) == sorted(a + b) and a and b


def _optimizer_steps(lengths, per_device, accumulation, processes, group, epoch, skip=0):
    """Per optimizer step: its micro-batches, each a list of the processes' index lists (rank order)."""
    sources = [DatasetBatches(list(range(len(lengths))), list,
                              TrainBatchOrder(lengths, per_device, 7, group, world_size=processes, rank=r),
                              accumulation) for r in range(processes)]
    n_steps = sources[0].steps_per_epoch()
    per_rank = [list(s.epoch_steps(epoch, skip)) for s in sources]
    assert all(len(steps) == n_steps - skip for steps in per_rank)  # every process runs as many steps
    return [[list(parts) for parts in zip(*(step for step in rank_steps), strict=True)]
            for rank_steps in zip(*per_rank, strict=True)]


@pytest.mark.parametrize("group", [True, False])
def test_each_optimizer_step_has_the_same_examples_for_any_split_of_the_global_batch(group):
    """The global batch of an optimizer step (per-device batch × accumulation × processes = 32 here) is
    what length grouping cuts, so every split trains on the same examples step by step; only their
    division into micro-batches and processes differs. 203 = 6 × 32 + 11: the last, partial step (11
    examples) is the same too, and every micro-batch gives every process at least one example and at
    most its per-device batch."""
    lengths = np.random.default_rng(5).integers(3, 120, size=203).tolist()
    splits = [(32, 1, 1), (16, 2, 1), (8, 4, 1), (4, 8, 1), (16, 1, 2), (8, 2, 2), (4, 4, 2), (8, 1, 4), (2, 4, 4)]
    for epoch in (0, 1):
        reference = None
        for per_device, accumulation, processes in splits:
            steps = _optimizer_steps(lengths, per_device, accumulation, processes, group, epoch)
            for step in steps:
                assert len(step) <= accumulation
                assert all(len(part) == processes and all(0 < len(idx) <= per_device for idx in part)
                           for part in step)
            step_sets = [sorted(i for part in step for idx in part for i in idx) for step in steps]
            assert sorted(i for s in step_sets for i in s) == list(range(203))  # each example once
            assert sorted(len(s) for s in step_sets) == [11] + [32] * 6
            reference = reference or step_sets
            assert step_sets == reference, (per_device, accumulation, processes)
            # a resumed run (skip the steps already done) sees the rest of the same steps
            tail = _optimizer_steps(lengths, per_device, accumulation, processes, group, epoch, skip=4)
            assert tail == steps[4:]
        if group:  # the longest example is in the first step
            assert max(lengths) == max(lengths[i] for i in reference[0])


def test_eval_batches_split_every_example_exactly_once():
    lengths = np.random.default_rng(1).integers(1, 50, size=37).tolist()
    shards = [i for r in range(3) for b in eval_batches(lengths, 5, world_size=3, rank=r) for i in b]
    assert sorted(shards) == list(range(37))


def test_padding_collator_dynamic_and_fixed_length():
    items = [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0], "labels": 1},
             {"input_ids": [2, 3], "attention_mask": [1, 1], "token_type_ids": [0, 0], "labels": 0}]
    dynamic = PaddingCollator(pad_token_id=0)(items)
    assert dynamic["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert dynamic["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]] and dynamic["labels"].tolist() == [1, 0]
    fixed = PaddingCollator(pad_token_id=0, pad_to=6)(items)  # --pad_to_max_length
    assert fixed["input_ids"].shape == (2, 6) and fixed["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0]


# ---------------------------------------------------------------- the plug-in contracts (distill/plugins.py)
def _protocol_methods(protocol) -> dict:
    """The methods a protocol declares (its own, not object's), by name."""
    return {name: value for name, value in vars(protocol).items()
            if callable(value) and (not name.startswith("_") or name == "__call__")}


def _positional(fn, required: bool = False) -> list[str]:
    import inspect
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"  # (static methods)
            and not (required and p.default is not p.empty)]


def _shipped_plugin_classes():
    from distill import plugins
    from distill.batching import DatasetBatches
    from distill.evaluation import PredictionEvaluator
    from distill.objective import Objective
    from distill.teacher import FrozenTeacher, Teacher
    from distill.teacher_cache import CachedTeacher
    from feature_kd.objective import WithFeatureTerms
    from feature_kd.projection import ProjectionTransform
    from lgtm.objectives import TeacherAuxObjective
    from lgtm.teachers import LGTMTeacher, ProKTTeacher
    from lm.objective import LMDistillationObjective
    from opdf.align import TensorAlignmentLoss
    from opdf.transform import MPOTransform
    from sequence_kd.evaluation import GenerationEvaluator
    from sequence_kd.minillm import MiniLLMObjective
    from sequence_kd.rollouts import RolloutSource
    from squad.objective import QuestionAnsweringObjective
    return {
        plugins.Objective: [Objective, SequenceClassificationObjective, TeacherAuxObjective, QuestionAnsweringObjective,
                            LMDistillationObjective, MiniLLMObjective, WithFeatureTerms],
        plugins.TeacherStrategy: [Teacher, FrozenTeacher, CachedTeacher, ProKTTeacher, LGTMTeacher, plugins.NoTeacher],
        plugins.ModelTransform: [MPOTransform, ProjectionTransform, plugins.IdentityTransform],
        plugins.ParameterLoss: [TensorAlignmentLoss, plugins.NoParameterLoss],
        plugins.BatchSource: [DatasetBatches, RolloutSource],
        plugins.Evaluator: [GenerationEvaluator, PredictionEvaluator],
        plugins.SaveHook: [plugins.NoSaveHook],
    }


def test_every_shipped_plugin_has_the_methods_of_its_protocol_with_its_arguments():
    """A plug-in whose method is missing or still takes the old arguments (the trainer instead of a
    StepContext, say) fails here, not in the middle of a run."""
    wrong = []
    for protocol, classes in _shipped_plugin_classes().items():
        for cls in classes:
            for name, declared in _protocol_methods(protocol).items():
                method = getattr(cls, name, None)
                if not callable(method):
                    wrong.append(f"{cls.__name__}.{name} is missing")
                elif not len(_positional(method, required=True)) <= len(_positional(declared)) <= len(
                        _positional(method)):  # takes the protocol's arguments, needs no others
                    wrong.append(f"{cls.__name__}.{name}{_positional(method)} != {protocol.__name__}.{name}"
                                 f"{_positional(declared)}")
    assert wrong == []


def test_shipped_plugins_and_null_objects_are_instances_of_their_protocols(toy):
    from distill import plugins
    from feature_kd.projection import ProjectionTransform
    from lgtm.objectives import TeacherAuxObjective
    from lgtm.teachers import ProKTTeacher
    from opdf.transform import MPOTransform

    args = TrainingArguments(output_dir="unused", report_to="none")
    acc = make_accelerator(args)
    dataset, tok = _dataset(toy, 4)
    collator = PaddingCollator(tok.pad_token_id)
    objective = SequenceClassificationObjective(False, True)
    instances = {
        plugins.Objective: [objective, TeacherAuxObjective(False, 0.5)],
        plugins.TeacherStrategy: [FrozenTeacher(_no_dropout(toy["teacher"]), acc), plugins.NoTeacher(), ProKTTeacher(
            _no_dropout(toy["teacher"]), acc, TeacherAuxObjective(False, 0.5), 1e-3)],
        plugins.ModelTransform: [MPOTransform(), ProjectionTransform(), plugins.IdentityTransform()],
        plugins.ParameterLoss: [plugins.NoParameterLoss()],
        plugins.BatchSource: [DatasetBatches(dataset, collator, TrainBatchOrder(dataset.lengths, 2, 0), 1)],
        plugins.SaveHook: [plugins.NoSaveHook()],
    }
    for protocol, objects in instances.items():
        for obj in objects:
            assert isinstance(obj, protocol), (type(obj).__name__, protocol.__name__)
    # and the null objects are what they stand for: nothing
    student = _no_dropout(toy["student"])
    assert plugins.NoTeacher().outputs({}) is None and not plugins.NoTeacher().learns
    assert plugins.IdentityTransform().export(student) is student
    assert plugins.NoParameterLoss().weights == {} and plugins.NoParameterLoss().loss_terms() == {}
    assert plugins.NoTeacher().keep_steps() == () and plugins.NoTeacher().record() == {}
    trainer = DistillationTrainer(args=args, accelerator=acc, student=student, objective=objective,
                                  collator=collator)
    assert isinstance(trainer.teacher, plugins.NoTeacher) and trainer.teacher.model is None


class _ContextOnlyTeacher:
    """A teacher strategy written against the protocol alone: no base class, never sees the trainer."""

    learns, model = False, None

    def __init__(self, model, accelerator):
        self.inner = FrozenTeacher(model, accelerator)
        self.seen = []

    def prepare(self, setup):
        self.seen.append(("prepare", setup.total_steps, setup.train_dataset))

    def before_optimizer_step(self, ctx):
        self.seen.append(("step", ctx))
        return {"probe/items": sum(float(b["labels"].shape[0]) for b in ctx.micro_batches)}

    def outputs(self, batch, **forward_kwargs):
        return self.inner.outputs(batch, **forward_kwargs)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def after_evaluation(self, evaluate, selection, step):
        return False

    def keep_steps(self):
        return ()

    def record(self):
        return {}

    def finish(self, checkpoint_of, save_dir, selection):
        pass


def test_a_teacher_strategy_gets_a_step_context_not_the_trainer(toy, tmp_path):
    from distill import plugins

    torch.manual_seed(0)
    dataset, tok = _dataset(toy, 6)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, max_grad_norm=0.0)
    acc = make_accelerator(args)
    teacher = _ContextOnlyTeacher(_no_dropout(toy["teacher"]), acc)
    assert isinstance(teacher, plugins.TeacherStrategy)
    objective = SequenceClassificationObjective(False, True, alpha_kd=0.7, temperature=2.0)
    trainer = DistillationTrainer(args=args, accelerator=acc, student=_no_dropout(toy["student"]),
                                  objective=objective, collator=PaddingCollator(tok.pad_token_id), teacher=teacher)
    trainer.create_optimizer(total_steps=10)
    assert teacher.seen == [("prepare", 10, None)]
    collate = PaddingCollator(tok.pad_token_id)
    micro = [collate([dataset[i] for i in range(0, 2)]), collate([dataset[i] for i in range(2, 6)])]
    logs = trainer.optimizer_step(micro)
    (_, ctx), = [s for s in teacher.seen if s[0] == "step"]
    assert type(ctx) is plugins.StepContext and logs["probe/items"] == 6.0 and "loss/kd" in logs
    assert ctx.step == 0 and ctx.unwrapped_student is trainer.unwrapped_student and ctx.optimizer is trainer.optimizer
    assert all(v.device.type == acc.device.type for b in ctx.micro_batches for v in b.values())
    assert ctx.student_counts == {"ce": 6.0, "kd": 6.0} == ctx.counts(objective, list(ctx.micro_batches))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.step = 3


def test_trainer_state_keeps_what_plugins_report_at_the_top_level_of_its_file(tmp_path):
    import json

    from distill.checkpoint import TrainerState
    state = TrainerState(global_step=4, best_step=2, extra={"teacher_best_step": 3, "teacher_best_metric": 0.5})
    state.save(str(tmp_path / "s.json"))
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["teacher_best_step"] == 3 and "extra" not in saved
    assert TrainerState.load(str(tmp_path / "s.json")) == state
