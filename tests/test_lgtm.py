"""ProKT and LGTM pieces against references: the virtual AdamW step, the influence (finite difference vs
double backward), the teacher's loss, dropout replay, quiz data, accumulation, head zeroing."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import no_dropout_bert, toy_dataset
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from distill.args import TrainingArguments
from distill.batching import PaddingCollator
from distill.objective import SequenceClassificationObjective, weighted_loss
from distill.optim import make_adamw
from distill.runtime import make_accelerator
from distill.trainer import DistillationTrainer
from lgtm.build import zero_output_layer
from lgtm.influence import exact_influence, finite_difference_influence, outputs
from lgtm.objectives import TeacherAuxObjective
from lgtm.quiz import QuizBatches, split_quiz_indices
from lgtm.teachers import LGTMTeacher, ProKTTeacher, capture_rng, replayed_rng
from lgtm.virtual_step import virtual_adamw_step


def _batch(toy, n=8, seed=0):
    dataset, tok = toy_dataset(toy, n, seed)
    return PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(n)]), dataset, tok


def _inputs(model, batch):
    from distill.modeling import forward_input_names, model_inputs
    return model_inputs(batch, forward_input_names(model))


# ---------------------------------------------------------------- the virtual step
@pytest.mark.parametrize("impl", ["fused", "single_tensor"])
@pytest.mark.parametrize("prior_steps", [0, 3])
def test_virtual_step_equals_one_real_step_and_mutates_nothing(toy, impl, prior_steps):
    torch.manual_seed(0)
    model = no_dropout_bert(toy["student"])
    args = TrainingArguments(output_dir="unused", weight_decay=0.05, learning_rate=3e-3)
    if impl == "fused":
        opt = make_adamw(model, args.learning_rate, args, torch.device("cpu"))
    else:
        opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.05},
                                 {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                                lr=3e-3, foreach=False)
    for _ in range(prior_steps):  # real history: moments and step counts
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 3  # large enough that clipping to 1.0 matters
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state_before = copy.deepcopy(opt.state_dict())

    virtual = virtual_adamw_step(model, opt, max_grad_norm=1.0)

    for n, p in model.named_parameters():  # nothing mutated: parameters, gradients, optimizer state
        assert torch.equal(p, params_before[n]), n
    state_after = opt.state_dict()
    for key, st in state_before["state"].items():
        for name, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_after["state"][key][name]))
    assert len(state_after["state"]) == len(state_before["state"])
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the trainer's real step: clip, then AdamW
    opt.step()
    assert virtual.keys() == dict(model.named_parameters()).keys()
    for n, p in model.named_parameters():
        torch.testing.assert_close(virtual[n], p.detach(), rtol=1e-5, atol=1e-7, msg=n)


# ---------------------------------------------------------------- the influence
def _reference_influence(student, teacher, batch, v, loss):
    """h = ∇_φ[(∇_θ L_I(θ, φ)) · v] by double backward through BOTH models, in parameter space."""
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in student.named_parameters()}
    phi = list(teacher.parameters())
    with sdpa_kernel(SDPBackend.MATH):  # the only attention kernel with a double backward
        t = teacher(**_inputs(teacher, batch)).logits
        s = functional_call(student, theta, args=(), kwargs=_inputs(student, batch)).logits
    grads = torch.autograd.grad(loss(batch, s, t), list(theta.values()), create_graph=True)
    dot = sum((g * v[n]).sum() for n, g in zip(theta, grads))
    return torch.cat([g.flatten() for g in torch.autograd.grad(dot, phi)])


def _teacher_backward(teacher, batch, logit_grad):
    t = teacher(**_inputs(teacher, batch)).logits
    return torch.cat([g.flatten() for g in torch.autograd.grad(t, list(teacher.parameters()), logit_grad)])


def _loss_fns(batch):
    kd = SequenceClassificationObjective(False, True, alpha_kd=0.7, temperature=2.0)
    aux = TeacherAuxObjective(False, t_alpha_kd=0.4)
    n = {k: float(batch["labels"].shape[0]) for k in ("kd", "ce", "teacher_kd", "teacher_ce")}
    return {
        "student_kd": lambda b, s, t: weighted_loss(kd.weights, kd.loss_sums(b, outputs(s), outputs(t)), n),
        "teacher_aux": lambda b, s, t: weighted_loss(aux.weights, aux.loss_sums(b, outputs(t), outputs(s)), n),
    }


@pytest.mark.parametrize("mode", ["student_kd", "teacher_aux"])
def test_finite_difference_influence_agrees_with_the_exact_hessian_vector_product(toy, mode):
    torch.manual_seed(0)
    batch, _, _ = _batch(toy)
    student, teacher = no_dropout_bert(toy["student"]).eval(), no_dropout_bert(toy["teacher"]).eval()
    v = {n: torch.randn_like(p) * 1e-2 for n, p in student.named_parameters()}  # a quiz-gradient-sized direction
    loss = _loss_fns(batch)[mode]
    reference = _reference_influence(student, teacher, batch, v, loss)
    with torch.no_grad():
        t_logits = teacher(**_inputs(teacher, batch)).logits
    theta = dict(student.named_parameters())
    names = set(_inputs(student, batch)) | {"labels"}
    autocast = torch.autocast("cpu", enabled=False)
    fd = finite_difference_influence(student, theta, v, 0.01, [batch], [t_logits], loss, names, lambda: autocast)
    exact = exact_influence(student, theta, v, [batch], [t_logits], loss, names, lambda: autocast)
    buffer = {n: torch.empty_like(p) for n, p in theta.items()}  # LGTM passes θ''s memory to reuse
    fd_in_buffer = finite_difference_influence(student, theta, v, 0.01, [batch], [t_logits], loss, names,
                                               lambda: autocast, buffer=buffer)
    torch.testing.assert_close(fd_in_buffer[0], fd[0], rtol=0, atol=0)
    h_fd, h_exact = _teacher_backward(teacher, batch, fd[0]), _teacher_backward(teacher, batch, exact[0])
    assert reference.norm() > 0
    assert torch.nn.functional.cosine_similarity(h_fd, reference, dim=0) >= 0.99
    assert (h_fd - reference).norm() / reference.norm() < 0.01
    # the logit-space exact mode is the parameter-space product, rearranged (Jᵀ does not depend on θ)
    torch.testing.assert_close(h_exact, reference, rtol=1e-4, atol=1e-7)


def test_influence_is_zero_when_the_direction_is_zero(toy):
    batch, _, _ = _batch(toy, 4)
    student = no_dropout_bert(toy["student"]).eval()
    v = {n: torch.zeros_like(p) for n, p in student.named_parameters()}
    t = torch.randn(4, 2)
    fd = finite_difference_influence(student, dict(student.named_parameters()), v, 0.01, [batch], [t],
                                     _loss_fns(batch)["student_kd"], {"input_ids", "attention_mask"},
                                     lambda: torch.autocast("cpu", enabled=False))
    assert torch.equal(fd[0], torch.zeros_like(t))


# ---------------------------------------------------------------- the teacher's loss and its steps
def _trainer(toy, tmp_path, teacher_kind, *, quiz=None, accumulation_batches=None, **teacher_kw):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=True, learning_rate=1e-3,
                             max_grad_norm=1.0)
    acc = make_accelerator(args)
    objective = SequenceClassificationObjective(False, True, alpha_kd=0.7, temperature=2.0)
    teacher_model = no_dropout_bert(toy["teacher"])
    aux = TeacherAuxObjective(False, teacher_kw.pop("t_alpha_kd", 0.4))
    if teacher_kind == "prokt":
        teacher = ProKTTeacher(teacher_model, acc, aux, 1e-3)
    else:
        teacher = LGTMTeacher(teacher_model, acc, aux, 1e-3, student_objective=objective, quiz=quiz, **teacher_kw)
    _, tok = toy_dataset(toy, 1)
    trainer = DistillationTrainer(args=args, accelerator=acc, student=no_dropout_bert(toy["student"]),
                                  objective=objective, collator=PaddingCollator(tok.pad_token_id), teacher=teacher)
    trainer.create_optimizer(total_steps=20)
    return trainer


def _kl_student_to_teacher(trainer, batch):
    with torch.no_grad():
        s = trainer.unwrapped_student.eval()(**_inputs(trainer.unwrapped_student, batch)).logits
        t = trainer.teacher.model.eval()(**_inputs(trainer.teacher.model, batch)).logits
    log_ps, log_pt = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
    return float((log_ps.exp() * (log_ps - log_pt)).sum(-1).mean())


def test_prokt_teacher_step_pulls_the_teacher_toward_the_student_and_leaves_the_student(toy, tmp_path):
    batch, _, _ = _batch(toy)
    trainer = _trainer(toy, tmp_path, "prokt", t_alpha_kd=1.0)  # the pull alone
    with torch.no_grad():  # a student with confident, different predictions: a clear gap to close
        trainer.unwrapped_student.classifier.weight.mul_(300.0)
    student_before = {n: p.detach().clone() for n, p in trainer.unwrapped_student.named_parameters()}
    gaps = [_kl_student_to_teacher(trainer, batch)]
    for _ in range(3):
        logs = trainer.teacher.before_optimizer_step(trainer.step_context([batch]))
        gaps.append(_kl_student_to_teacher(trainer, batch))
    assert gaps[0] > 0 and all(b < a for a, b in zip(gaps, gaps[1:])), gaps
    assert logs["loss/teacher_kd"] == pytest.approx(gaps[-2], rel=1e-4)  # the logged term is KL(p_s ‖ p_t)
    for n, p in trainer.unwrapped_student.named_parameters():
        assert torch.equal(p, student_before[n]) and p.grad is None, n


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_prokt_teacher_gradient_is_p_t_minus_p_s(toy, tmp_path):
    """d/dt KL(p_s ‖ p_t) = p_t − p_s per example (mean over the batch), with t_α = 1."""
    batch, _, _ = _batch(toy, 4)
    trainer = _trainer(toy, tmp_path, "prokt", t_alpha_kd=1.0)
    teacher = trainer.teacher.model
    captured = {}
    real_step = trainer.teacher.optimizer.step

    def recording_step(*a, **k):
        captured["grads"] = torch.cat([p.grad.flatten() for p in teacher.parameters()])
        return real_step(*a, **k)
    trainer.teacher.optimizer.step = recording_step
    trainer.args.max_grad_norm = 0.0
    expected_logit_grad = None
    with torch.no_grad():
        s = trainer.unwrapped_student.eval()(**_inputs(trainer.unwrapped_student, batch)).logits
    t = teacher.train()(**_inputs(teacher, batch)).logits
    expected_logit_grad = (torch.softmax(t.detach(), -1) - torch.softmax(s, -1)) / 4
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(t, list(teacher.parameters()),
                                                                    expected_logit_grad)])
    trainer.teacher.before_optimizer_step(trainer.step_context([batch]))
    torch.testing.assert_close(captured["grads"], expected, rtol=1e-4, atol=1e-7)


def _quiz(toy, n=6):
    dataset, tok = toy_dataset(toy, n, seed=5)
    return QuizBatches(dataset, 3, seed=0, collator=PaddingCollator(tok.pad_token_id))


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
@pytest.mark.parametrize("kind", ["prokt", "lgtm"])
def test_teacher_update_under_accumulation_equals_one_big_batch(toy, tmp_path, kind):
    """The teacher steps once per optimizer step, with the gradient of the whole step's batch."""
    dataset, tok = toy_dataset(toy, 8)
    collate = PaddingCollator(tok.pad_token_id)
    runs = {}
    for split in ([8], [4, 4], [3, 5]):
        trainer = _trainer(toy, tmp_path / str(split), kind, quiz=_quiz(toy))
        steps = {"n": 0}
        real_step = trainer.teacher.optimizer.step

        def counting_step(*a, _real=real_step, _t=trainer, **k):
            steps["n"] += 1
            steps["grads"] = torch.cat([p.grad.flatten() for p in _t.teacher.model.parameters()])
            return _real(*a, **k)
        trainer.teacher.optimizer.step = counting_step
        bounds = np.cumsum([0, *split])
        micro = [collate([dataset[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:])]
        logs = trainer.optimizer_step(micro)
        assert steps["n"] == 1 and trainer.teacher.scheduler.last_epoch == 1
        runs[str(split)] = (steps["grads"], logs)
    big_grads, big_logs = runs["[8]"]
    for key in ("[4, 4]", "[3, 5]"):
        grads, logs = runs[key]
        torch.testing.assert_close(grads, big_grads, rtol=1e-4, atol=1e-7)
        assert logs["loss/teacher_aux"] == pytest.approx(big_logs["loss/teacher_aux"], rel=1e-5)
        assert logs["loss/total"] == pytest.approx(big_logs["loss/total"], rel=1e-5)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_lgtm_step_changes_the_teacher_by_the_influence_and_the_student_like_kd(toy, tmp_path):
    """LGTM's teacher gradient differs from ProKT's exactly by −η·h; the student step that follows
    is the KD step against the updated teacher (the virtual step leaves no trace)."""
    batch, _, _ = _batch(toy)
    grads = {}
    for kind in ("prokt", "lgtm"):
        trainer = _trainer(toy, tmp_path / kind, kind, quiz=_quiz(toy), exact=True)
        trainer.args.max_grad_norm = 0.0
        real_step = trainer.teacher.optimizer.step

        def recording(*a, _real=real_step, _t=trainer, _k=kind, **k):
            grads[_k] = torch.cat([p.grad.flatten() for p in _t.teacher.model.parameters()])
            return _real(*a, **k)
        trainer.teacher.optimizer.step = recording
        logs = trainer.optimizer_step([batch])
        grads[kind + "_logs"] = logs
    lgtm_logs = grads["lgtm_logs"]
    assert {"lgtm/quiz_loss", "lgtm/eta", "lgtm/influence_norm", "loss/teacher_aux"} <= set(lgtm_logs)
    assert lgtm_logs["lgtm/influence_norm"] > 0 and not torch.equal(grads["lgtm"], grads["prokt"])
    # same teacher-aux loss (same starting point), different gradient: the influence term
    assert lgtm_logs["loss/teacher_aux"] == pytest.approx(grads["prokt_logs"]["loss/teacher_aux"], rel=1e-6)


def test_replayed_dropout_gives_the_same_teacher_logits(toy):
    from transformers import BertForSequenceClassification
    teacher = BertForSequenceClassification.from_pretrained(toy["teacher"], hidden_dropout_prob=0.3,
                                                            attention_probs_dropout_prob=0.3).train()
    batch, _, _ = _batch(toy)
    state = capture_rng(torch.device("cpu"))
    with torch.no_grad():
        first = teacher(**_inputs(teacher, batch)).logits
    after_first = torch.get_rng_state()
    with replayed_rng(state):
        again = teacher(**_inputs(teacher, batch)).logits
    assert again.requires_grad and torch.equal(again.detach(), first)
    assert torch.equal(torch.get_rng_state(), after_first)  # the replay does not disturb the RNG stream
    with torch.no_grad():
        assert not torch.equal(teacher(**_inputs(teacher, batch)).logits, first)  # dropout is really on


# ---------------------------------------------------------------- quiz data and head zeroing
def test_quiz_split_is_disjoint_seeded_and_complete():
    train, quiz = split_quiz_indices(103, 0.1, seed=7)
    assert len(quiz) == 10 and sorted(train + quiz) == list(range(103)) and not set(train) & set(quiz)
    assert (train, quiz) == split_quiz_indices(103, 0.1, seed=7)
    assert quiz != split_quiz_indices(103, 0.1, seed=8)[1]
    assert len(split_quiz_indices(5, 0.01, 0)[1]) == 1 and len(split_quiz_indices(2, 0.9, 0)[0]) == 1


def test_quiz_batches_are_a_pure_function_of_the_step(toy):
    quiz = _quiz(toy, 7)  # 7 examples, batches of 3: the stream wraps from one shuffle into the next
    first = [quiz.indices(s) for s in range(7)]
    stream = [i for b in first for i in b]
    assert sorted(stream[:7]) == sorted(stream[7:14]) == list(range(7))  # each pass covers every example
    assert stream[:7] != stream[7:14]  # and each pass is a new shuffle
    fresh = _quiz(toy, 7)
    assert [fresh.indices(s) for s in (4, 0, 5)] == [first[4], first[0], first[5]]  # any order, same batches


def test_quiz_batches_keep_their_size_when_the_set_is_not_a_multiple_of_it(toy):
    """20 quiz examples, quiz batches of 16: 16, 16, 16, ... (wrapping into the next shuffle), never the
    16, 4, 16, 4 of cutting each pass. The quiz gradient is a mean, but its norm, and with it the influence
    (linear in it), carries noise ∝ 1/√B: a batch of 4 would roughly double the influence every other step."""
    dataset, tok = toy_dataset(toy, 20, seed=5)
    quiz = QuizBatches(dataset, 16, seed=0, collator=PaddingCollator(tok.pad_token_id))
    batches = [quiz.indices(s) for s in range(10)]
    assert [len(b) for b in batches] == [16] * 10
    counts = np.bincount([i for b in batches for i in b], minlength=20)
    assert counts.tolist() == [8] * 20  # 160 draws = 8 passes: every example equally often
    # micro-batches and processes split the same global batch; their union is the 1-process batch
    shares = [QuizBatches(dataset, 16, 0, PaddingCollator(tok.pad_token_id), world_size=2, rank=r,
                          micro_batch_size=3) for r in (0, 1)]
    for step in (0, 1, 7):
        assert shares[0].indices(step) + shares[1].indices(step) == batches[step]
        rows = [m["labels"].shape[0] for r in shares for m in r.micro_batches(step)]
        assert rows == [3, 3, 2] * 2
    # a quiz set smaller than the batch: the whole set each step, still one size
    small = QuizBatches(toy_dataset(toy, 5)[0], 16, 0, PaddingCollator(tok.pad_token_id))
    assert [sorted(small.indices(s)) for s in range(3)] == [list(range(5))] * 3


def test_zero_output_layer_zeroes_only_the_last_linear():
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )
    small = dict(vocab_size=50, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_labels=3)
    cases = [
        (BertForSequenceClassification(BertConfig(num_hidden_layers=1, **small)), "classifier", None),
        (RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=1, **small)), "classifier.out_proj",
         "classifier.dense"),
        (DistilBertForSequenceClassification(DistilBertConfig(n_layers=1, dim=16, n_heads=2, hidden_dim=32,
                                                              vocab_size=50, num_labels=3)),
         "classifier", "pre_classifier"),
    ]
    for model, expected, untouched in cases:
        assert zero_output_layer(model) == expected
        layer = model.get_submodule(expected)
        assert not layer.weight.any() and not layer.bias.any()
        if untouched:
            assert model.get_submodule(untouched).weight.any()


def test_finite_difference_at_the_default_radius_is_within_its_truncation_bound(toy):
    """At the default `--lgtm_fd_radius` the central difference is within 2e-4 (relative) of the exact
    influence on the toy pair, with a real quiz gradient as v. Measured here (float32): 6.1e-5 at r = 1e-3,
    3.9e-5 at 3e-3, 3.6e-4 at 0.01, 3.2e-3 at 0.03, 0.40 at 1.0: truncation (∝ r²) above 3e-3, float32
    rounding (∝ u/r²) below. The toy pair has the strongest curvature we measured (~20× a MiniLM-size
    pair's at the same r, docs/lgtm.md), so it bounds the truncation error. 2e-4 leaves 5× margin over
    r = 3e-3 for other CPUs' rounding and fails r = 0.01 (the old default) and anything larger."""
    from distill.modeling import forward_input_names
    from lgtm.args import TeacherLearningArguments
    radius = TeacherLearningArguments().lgtm_fd_radius
    dataset, tok = toy_dataset(toy, 16, 0)
    collate = PaddingCollator(tok.pad_token_id)
    batch, quiz = collate([dataset[i] for i in range(8)]), collate([dataset[i] for i in range(8, 16)])
    student, teacher = no_dropout_bert(toy["student"]).eval(), no_dropout_bert(toy["teacher"]).eval()
    objective = SequenceClassificationObjective(False, True, alpha_kd=0.5, temperature=2.0)
    names = set(forward_input_names(student)) | {"labels"}
    theta = dict(student.named_parameters())
    quiz_loss = objective.eval_loss_sum(student(**_inputs(student, quiz)).logits, quiz["labels"]) / 8
    v = dict(zip(theta, torch.autograd.grad(quiz_loss, list(theta.values()))))  # the quiz gradient
    counts = {k: 8.0 for k in objective.weights}
    loss = lambda b, s, t: weighted_loss(objective.weights, objective.loss_sums(b, outputs(s), outputs(t)), counts)  # noqa: E731
    with torch.no_grad():
        t_logits = teacher(**_inputs(teacher, batch)).logits
    off = torch.autocast("cpu", enabled=False)
    exact = exact_influence(student, theta, v, [batch], [t_logits], loss, names, lambda: off)[0]
    fd = finite_difference_influence(student, theta, v, radius, [batch], [t_logits], loss, names, lambda: off)[0]
    assert exact.norm() > 0
    assert float((fd - exact).norm() / exact.norm()) < 2e-4


def test_a_teacher_that_learns_keeps_its_own_best_and_its_checkpoint_state(toy, tmp_path):
    """The learning teacher owns its selection: its best step survives rotation, goes into
    trainer_state.json's record and into its checkpoint state (so a resumed run selects the same)."""
    from distill.plugins import Selection
    trainer = _trainer(toy, tmp_path, "prokt")
    teacher, scores, logged = trainer.teacher, iter([0.5, 0.7, 0.6]), []

    def evaluate(model, prefix):
        assert model is teacher.model and prefix == "teacher_eval_"
        logged.append(prefix)
        return {"teacher_eval_accuracy": next(scores)}
    assert teacher.keep_steps() == () and teacher.record()["teacher_best_step"] is None
    improved = [teacher.after_evaluation(evaluate, Selection("accuracy", True), step) for step in (2, 4, 6)]
    assert improved == [True, True, False] and len(logged) == 3
    assert teacher.keep_steps() == (4,)
    assert teacher.record() == {"teacher_best_metric": 0.7, "teacher_best_step": 4}
    fresh = _trainer(toy, tmp_path / "fresh", "prokt").teacher
    fresh.load_state_dict(teacher.state_dict())
    assert fresh.keep_steps() == (4,) and fresh.record() == teacher.record()
    lower = [teacher.after_evaluation(lambda m, p: {"teacher_eval_loss": 0.1}, Selection("loss", False), 8)]
    assert lower == [True] and teacher.keep_steps() == (8,)
