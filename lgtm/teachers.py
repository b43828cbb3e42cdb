"""Teachers that learn: ProKT and LGTM (docs/lgtm.md), as teacher strategies of the shared trainer.

Both update the teacher once per optimizer step of the student, in `before_optimizer_step`, before the
student's own step (which the trainer then makes against the UPDATED teacher, exactly as KD).

Modes: the teacher trains in train mode (dropout, like any fine-tuning); the targets the student
learns from come from the teacher in eval mode (distill/teacher.py); the student's logits the teacher
is pulled toward come from the student in eval mode, without gradient (what the student predicts).
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call

from distill.checkpoint import load_state_checked, load_training_state
from distill.errors import UsageError
from distill.modeling import model_inputs
from distill.objective import weighted_loss, weighted_term_logs
from distill.optim import make_adamw, make_scheduler
from distill.plugins import LabelledObjective, Selection, StepContext, TeacherSetup
from distill.teacher import Teacher
from lgtm.args import TeacherLearningArguments
from lgtm.influence import exact_influence, finite_difference_influence, global_norm, logit_gradient, outputs
from lgtm.objectives import TeacherAuxObjective
from lgtm.quiz import QuizBatches
from lgtm.virtual_step import virtual_adamw_step

logger = logging.getLogger(__name__)
TEACHER_DIR = "teacher"  # the best trained teacher, a plain Hugging Face model dir in the output dir


def all_reduce_sum(tensors) -> None:
    """Sum gradients over processes in place: every process then makes the identical teacher update
    (the teacher is never wrapped in DDP)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.all_reduce(t)


class ProKTTeacher(Teacher):
    """ProKT: before each student step, one teacher step on
    L_T = t_α·KL(p_s‖p_t) + (1 − t_α)·CE(t, y) (lgtm/objectives.py), with its own AdamW and a schedule of
    the student's type, at --t_learning_rate.

    The teacher is selected on its own dev score: at each evaluation it scores itself (teacher_eval_*)
    and keeps its best step (whose checkpoint survives rotation); at the end that step's teacher is
    restored from its checkpoint and saved as teacher/."""

    learns = True

    def __init__(self, model: nn.Module, accelerator, aux_objective: TeacherAuxObjective, learning_rate: float):
        super().__init__(model, accelerator)
        self.model.requires_grad_(True)
        self.aux_objective = aux_objective
        self.learning_rate = learning_rate
        self.optimizer = self.scheduler = None
        self.best_metric: float | None = None  # the teacher's best dev score, and the step it was reached at
        self.best_step: int | None = None

    # ---------------------------------------------------------------- setup and state
    def prepare(self, setup: TeacherSetup) -> None:
        if setup.args.fp16:
            raise UsageError("--fp16 cannot train the teacher (no loss scaling for it); use --bf16 or full precision")
        self.optimizer = make_adamw(self.model, self.learning_rate, setup.args, self.accelerator.device)
        self.scheduler = make_scheduler(self.optimizer, setup.args, setup.total_steps)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "best": {"metric": self.best_metric, "step": self.best_step}}

    def load_state_dict(self, state: dict) -> None:
        if "model" not in state:
            raise UsageError("the checkpoint holds no trained-teacher state (it was made without "
                             "--train_teacher); resume with the flags it was made with, or start over with "
                             "--overwrite_output_dir")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_metric, self.best_step = state["best"]["metric"], state["best"]["step"]

    # ---------------------------------------------------------------- selection: the best teacher
    def after_evaluation(self, evaluate, selection: Selection, step: int) -> bool:
        value = evaluate(self.model, "teacher_eval_")[f"teacher_eval_{selection.metric}"]
        improved = selection.improves(value, self.best_metric)
        if improved:
            self.best_metric, self.best_step = value, step
        logger.info("step %d: teacher %s = %.4f (best %.4f at step %d)", step, selection.metric, value,
                    self.best_metric, self.best_step)
        return improved

    def keep_steps(self) -> tuple[int, ...]:
        return (self.best_step,) if self.best_step is not None else ()

    def record(self) -> dict:
        return {"teacher_best_metric": self.best_metric, "teacher_best_step": self.best_step}

    def finish(self, checkpoint_of, save_dir, selection: Selection) -> None:
        """The best evaluated teacher (as it ended if never scored) restored and saved as teacher/."""
        if self.best_step is not None:
            path = checkpoint_of(self.best_step, "best teacher")
            load_state_checked(self.model, load_training_state(path)[0]["teacher"]["model"], path)
            logger.info("loaded the best teacher (step %d, %s = %.4f)", self.best_step, selection.metric,
                        self.best_metric)
        logger.info("saved the trained teacher to %s", save_dir(self.model, TEACHER_DIR))
        self.accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- one teacher step
    @torch.no_grad()
    def student_logits(self, student: nn.Module, batch: dict, input_names: set[str]) -> torch.Tensor:
        was_training = student.training
        student.eval()
        with self.accelerator.autocast():
            logits = student(**model_inputs(batch, input_names)).logits
        student.train(was_training)
        return logits

    def _forward(self, batch: dict) -> torch.Tensor:
        self.model.train()
        with self.accelerator.autocast():
            return self.model(**model_inputs(batch, self.input_names)).logits

    def before_optimizer_step(self, ctx: StepContext) -> dict[str, float]:
        counts = ctx.counts(self.aux_objective, list(ctx.micro_batches))
        sums = {k: 0.0 for k in self.aux_objective.weights}
        for batch in ctx.micro_batches:
            s = self.student_logits(ctx.unwrapped_student, batch, ctx.student_inputs)
            terms = self.aux_objective.loss_sums(batch, outputs(self._forward(batch)), outputs(s))
            weighted_loss(self.aux_objective.weights, terms, counts).backward()
            for k in sums:
                sums[k] += float(terms[k].detach())
        return self._update(ctx, sums, counts)

    def _update(self, ctx: StepContext, sums: dict[str, float], counts: dict[str, float]) -> dict[str, float]:
        """Sync the gradients over processes, clip, step the teacher's optimizer and schedule once."""
        acc = self.accelerator
        params = [p for p in self.model.parameters() if p.grad is not None]
        all_reduce_sum([p.grad for p in params])
        totals = acc.reduce(torch.tensor(list(sums.values()), device=acc.device, dtype=torch.float64), "sum")
        logs = weighted_term_logs(self.aux_objective.weights, dict(zip(sums, totals.tolist())), counts,
                                  total_name="loss/teacher_aux")
        if not math.isfinite(logs["loss/teacher_aux"]):
            raise UsageError(f"the teacher's loss is {logs['loss/teacher_aux']} at step "
                             f"{ctx.step + 1}; lower --t_learning_rate or check the labels")
        if ctx.max_grad_norm and ctx.max_grad_norm > 0:
            logs["teacher_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, ctx.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logs["teacher_learning_rate"] = self.scheduler.get_last_lr()[0]
        return logs


@contextmanager
def replayed_rng(state: dict):
    """Run a block with the RNG state captured earlier (same dropout masks), then restore the present one."""
    devices = [state["device"]] if "cuda" in state else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], state["device"])
        yield


def capture_rng(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"], state["device"] = torch.cuda.get_rng_state(device), device
    return state


class LGTMTeacher(ProKTTeacher):
    """LGTM: the teacher's gradient is ∇_φ L_T − η·h, with h the distillation influence of this batch on
    the student's quiz loss after the student's update (lgtm/influence.py). Per optimizer step:

    1. teacher logits t (train mode, no graph; the RNG state is kept to replay the same dropout);
    2. virtual student step θ' = θ − U(∇_θ L_S) with the student's real AdamW state (lgtm/virtual_step.py);
    3. quiz gradient v = ∇_θ' task loss of the student at θ' on a quiz batch;
    4. G = the influence in logit space (finite difference at θ ± εv, or exact), and ∂L_T/∂t;
    5. one teacher forward/backward with gradient Jᵀ(∂L_T/∂t − η·G), then the teacher's optimizer step.
    The trainer then makes the real student step against the updated teacher.
    """

    def __init__(self, model: nn.Module, accelerator, aux_objective: TeacherAuxObjective, learning_rate: float, *,
                 student_objective: LabelledObjective, quiz: QuizBatches, influence: str = "student_kd",
                 fd_radius: float = TeacherLearningArguments.lgtm_fd_radius,
                 exact: bool = False):
        super().__init__(model, accelerator, aux_objective, learning_rate)
        self.student_objective = student_objective
        self.quiz = quiz
        self.influence = influence
        self.fd_radius = fd_radius
        self.exact = exact

    def before_optimizer_step(self, ctx: StepContext) -> dict[str, float]:
        acc, student, micro_batches = self.accelerator, ctx.unwrapped_student, list(ctx.micro_batches)
        # 1. the teacher's logits for this step, and the RNG state that reproduces their dropout masks
        self.model.train()
        rng, t_logits = [], []
        for batch in micro_batches:
            rng.append(capture_rng(acc.device))
            with torch.no_grad():
                t_logits.append(self._forward(batch))

        # 2. virtual student step: the real accumulation loop fills .grad, the optimizer is only read
        s_counts = ctx.student_counts
        ctx.student_backward(micro_batches, s_counts, lambda i, b: outputs(t_logits[i]))
        theta_prime = virtual_adamw_step(student, ctx.optimizer, ctx.max_grad_norm)
        ctx.optimizer.zero_grad(set_to_none=True)
        student_lr = ctx.optimizer.param_groups[0]["lr"]

        # 3. quiz gradient at θ'
        v, quiz_loss = self._quiz_gradient(student, theta_prime, ctx)

        # 4. influence and the teacher's own loss, both as gradients with respect to the logits
        a_counts = ctx.counts(self.aux_objective, micro_batches)
        student.eval()
        influence_loss, eta = self._influence_loss(s_counts, a_counts, student_lr)
        theta = {n: p for n, p in student.named_parameters() if n in v}
        compute = exact_influence if self.exact else finite_difference_influence
        # the finite difference reuses the memory of θ' for θ ± εv: no new parameter-sized buffer per step
        extra = {} if self.exact else {"radius": self.fd_radius, "buffer": theta_prime}
        influence = compute(student, theta, v, batches=micro_batches, teacher_logits=t_logits, loss=influence_loss,
                            input_names=ctx.student_inputs, autocast=acc.autocast, **extra)
        del v, theta_prime
        sums = {k: 0.0 for k in self.aux_objective.weights}

        def aux_loss(batch, s, t):
            terms = self.aux_objective.loss_sums(batch, outputs(t), outputs(s))
            for k in sums:
                sums[k] += float(terms[k].detach())
            return weighted_loss(self.aux_objective.weights, terms, a_counts)
        grads = [logit_gradient(aux_loss, b, self.student_logits(student, b, ctx.student_inputs), t)
                 for b, t in zip(micro_batches, t_logits)]

        # 5. one teacher backward carries both: Jᵀ(∂L_T/∂t − η·G), with the dropout masks of step 1
        for batch, state, g_aux, g_inf in zip(micro_batches, rng, grads, influence):
            with replayed_rng(state):
                logits = self._forward(batch)
            logits.backward((g_aux - eta * g_inf).to(logits.dtype))
        logs = self._update(ctx, sums, a_counts)
        logs["lgtm/quiz_loss"] = quiz_loss
        logs["lgtm/eta"] = eta
        # ‖η·G‖ over the whole step (all processes): how strongly the quiz feedback moves the teacher
        sq = acc.reduce(global_norm(influence).double() ** 2, "sum")
        logs["lgtm/influence_norm"] = float(eta * sq.sqrt())
        return logs

    def _influence_loss(self, s_counts: dict, a_counts: dict, student_lr: float):
        """(L_I(batch, s, t), η): the paper's (student_kd: the student's distillation loss, the student's
        learning rate) or the released code's (teacher_aux: the teacher's loss, the teacher's rate)."""
        if self.influence == "student_kd":
            def loss(batch, s, t):
                terms = self.student_objective.loss_sums(batch, outputs(s), outputs(t))
                return weighted_loss(self.student_objective.weights, terms, s_counts)
            return loss, student_lr

        def loss(batch, s, t):
            terms = self.aux_objective.loss_sums(batch, outputs(t), outputs(s))
            return weighted_loss(self.aux_objective.weights, terms, a_counts)
        return loss, self.optimizer.param_groups[0]["lr"]

    def _quiz_gradient(self, student: nn.Module, theta_prime: dict[str, torch.Tensor], ctx: StepContext):
        """v = ∇_θ' of the task loss (mean over the step's global quiz batch) of the student at θ' (train
        mode). The quiz batch belongs to the optimizer step (lgtm/quiz.py); this process's share is
        summed over its micro-batches, then over processes, so any split gives the same v."""
        acc = self.accelerator
        batches = [ctx.to_device(b) for b in self.quiz.micro_batches(ctx.step)]
        local = sum(float(b["labels"].shape[0]) for b in batches)
        n_quiz = acc.reduce(torch.tensor(local, device=acc.device), "sum")
        params = {n: p.requires_grad_(True) for n, p in theta_prime.items()}
        student.train()
        v = {n: torch.zeros_like(p) for n, p in params.items()}
        loss_total = torch.zeros((), device=acc.device, dtype=torch.float64)
        for batch in batches:
            with acc.autocast():
                inputs = model_inputs(batch, ctx.student_inputs)
                logits = functional_call(student, params, args=(), kwargs=inputs).logits
            loss_sum = self.student_objective.eval_loss_sum(logits, batch["labels"])
            grads = torch.autograd.grad(loss_sum / n_quiz, list(params.values()), allow_unused=True)
            for (n, acc_v), g in zip(v.items(), grads):
                if g is not None:
                    acc_v.add_(g)
            loss_total += loss_sum.detach().double()
        all_reduce_sum(list(v.values()))
        quiz_loss = float(acc.reduce(loss_total, "sum") / n_quiz)
        return v, quiz_loss
