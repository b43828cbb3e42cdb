"""The one training loop every method runs on.

Methods plug in through three small interfaces instead of copies of this loop:
- an `Objective` (distill/objective.py): named loss terms from one micro-batch;
- a teacher strategy (distill/teacher.py): the teacher's outputs, and its own update, if it learns,
  once per optimizer step;
- a model transform (optional; OPDF's MPO student): `export(model)` gives the plain model to save and
  to predict with, `load_dense_state(model, state)` loads a saved (plain) state back into the training
  model. Checkpoints then also keep the training model's own state, so a resumed run is exact;
- a parameter loss (optional; OPDF's tensor alignment): `weights` and `loss_terms()`, a loss on the
  student's parameters rather than on a batch, added once per optimizer step;
- a batch source (optional; MiniLLM's rollouts): the micro-batches of each step when they are not a
  fixed dataset's (`DatasetBatches`, the default), see distill/batching.py;
- an evaluator (optional; generation metrics such as Rouge-L): `evaluator(model) -> metrics` replaces
  the per-example predictions of the eval datasets;
- a save hook (optional; the DistilBERT pipeline's per-epoch files): `on_save(epoch, model)` on the main
  process with the plain student at every checkpoint and every epoch end (`epoch`: the 0-based index of
  the epoch that just ended, else None).

accelerate gives devices, DDP, mixed precision and loss scaling; the batch order, gradient
accumulation and loss normalisation are ours (see distill/objective.py for why).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from distill.args import TrainingArguments
from distill.batching import DatasetBatches, PaddingCollator, TokenizedDataset, TrainBatchOrder, eval_batches
from distill.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_model_weights,
    load_state_checked,
    load_training_state,
    rng_state,
    rotate_checkpoints,
    save_checkpoint,
    save_model_files,
    set_rng_state,
)
from distill.errors import UsageError
from distill.io_utils import atomic_write_json, replace_dir, writing
from distill.modeling import forward_input_names, model_inputs
from distill.objective import Objective, weighted_loss
from distill.optim import make_adamw, make_scheduler
from distill.run_dir import RunStart, read_flags
from distill.run_record import run_summary

logger = logging.getLogger(__name__)
TEACHER_DIR = "teacher"  # the best trained teacher (ProKT, LGTM), a plain Hugging Face model dir


def multi_cpu_run() -> bool:
    """Several processes and no CUDA. accelerate only sets up multi-process CPU training (gloo) when told
    the run is on the CPU; otherwise `torchrun --nproc_per_node 2` on a CPU machine gives two unrelated
    runs, each believing it is alone."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state(use_cpu: bool = False) -> PartialState:
    """The process group, made as `make_accelerator` makes it. Code that synchronises processes before
    an accelerator exists (TA chains) must start it here: the first PartialState fixes the group for
    the whole process."""
    return PartialState(cpu=use_cpu or multi_cpu_run())


def make_accelerator(args: TrainingArguments) -> Accelerator:
    if args.fp16 and not torch.cuda.is_available():
        raise UsageError("--fp16 needs a CUDA GPU; on the CPU use --bf16 or full precision")
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "no"
    # accelerate keeps its settings in a process-wide singleton; runs made one after another in one
    # process (the demo, TAKD stages, tests) may differ in precision, so start each from a clean slate.
    # The process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision=precision, cpu=args.use_cpu or multi_cpu_run())
    if not accelerator.is_main_process:  # one copy of the logs, not one per process
        logging.getLogger().setLevel(logging.WARNING)
    return accelerator


class DistillationTrainer:
    def __init__(self, *, args: TrainingArguments, accelerator: Accelerator, student: torch.nn.Module,
                 objective: Objective, collator: PaddingCollator, train_dataset: TokenizedDataset | None = None,
                 eval_datasets: dict[str, TokenizedDataset] | None = None, teacher=None,
                 compute_metrics: Callable[[np.ndarray, TokenizedDataset], dict] | None = None,
                 main_metric: str = "accuracy", greater_is_better: bool = True, tokenizer=None,
                 model_transform=None, param_loss=None, group_by_length: bool = True, batch_source=None,
                 evaluator: Callable[[torch.nn.Module], dict] | None = None,
                 on_save: Callable[[int | None, torch.nn.Module], None] | None = None):
        self.args = args
        self.accelerator = accelerator
        self.objective = objective
        self.collator = collator
        self.train_dataset = train_dataset
        self.eval_datasets = eval_datasets or {}
        self.teacher = teacher
        self.compute_metrics = compute_metrics
        self.main_metric = main_metric
        self.greater_is_better = greater_is_better
        self.tokenizer = tokenizer
        self.model_transform = model_transform
        self.param_loss = param_loss
        self.group_by_length = group_by_length
        self.batch_source = batch_source
        self.evaluator = evaluator
        self.on_save = on_save
        self.state = TrainerState()
        self.student = student.to(accelerator.device)
        self.student_inputs = forward_input_names(student)
        self.optimizer = self.scheduler = None
        self.tb_writer = None
        self.start: RunStart | None = None  # how this run starts in its output dir (distill/run_dir.py)
        self._claimed = False
        self.resumed_from: str | None = None
        self._clock = (time.time(), 0.0)  # (session start, train_runtime before it)
        self._first_step = 1  # the first step this session trains

    # ------------------------------------------------------------------ setup
    def create_optimizer(self, total_steps: int) -> None:
        """AdamW + the LR schedule; wraps the student for DDP / mixed precision; lets a teacher that
        learns make its own optimizer for the same number of steps. Call once."""
        if self.optimizer is not None:
            raise RuntimeError("create_optimizer() was already called for this trainer")
        optimizer = make_adamw(self.student, self.args.learning_rate, self.args, self.accelerator.device)
        self.student, self.optimizer = self.accelerator.prepare(self.student, optimizer)
        self.scheduler = make_scheduler(self.optimizer, self.args, total_steps)
        if self.teacher is not None:
            self.teacher.prepare(self, total_steps)

    def _claim_output_dir(self) -> None:
        """Before training's first write: make the output dir this run's (a fresh start clears what an
        earlier run left there). Not earlier: a run that fails first (bad input, a NaN at step 1) must
        leave the dir as it was, also under --overwrite_output_dir."""
        if not self._claimed and self.start is not None and self.accelerator.is_main_process:
            self.start.claim()
        self._claimed = True

    def _log(self, logs: dict, step: int) -> None:
        # 6 significant digits: small quantities (LGTM's influence, learning rates) keep their value
        entry = {**{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in logs.items()}, "step": step}
        self.state.log_history.append(entry)
        self._claim_output_dir()
        if self.accelerator.is_main_process and self.args.report_to == "tensorboard" and self.tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter
            # A resumed run drops the events a killed attempt logged after its checkpoint.
            self.tb_writer = SummaryWriter(self.args.logging_dir or os.path.join(self.args.output_dir, "runs"),
                                           purge_step=self._first_step if self._first_step > 1 else None)
        if self.tb_writer is not None:
            for key, value in logs.items():
                if isinstance(value, (int, float)):
                    self.tb_writer.add_scalar(key, value, step)

    @property
    def unwrapped_student(self):
        return self.accelerator.unwrap_model(self.student)

    def _model_to_save(self):
        model = self.unwrapped_student
        return self.model_transform.export(model) if self.model_transform is not None else model

    # ------------------------------------------------------------------ one optimizer step
    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def global_counts(self, objective: Objective, micro_batches: list[dict]) -> dict[str, float]:
        """Items each term of `objective` averages over in this optimizer step: all micro-batches,
        all processes (so accumulation and DDP equal one big batch)."""
        acc = self.accelerator
        per_batch = [objective.counts(b) for b in micro_batches]
        local = {k: sum(c[k] for c in per_batch) for k in objective.weights}
        counts = acc.reduce(torch.tensor(list(local.values()), device=acc.device, dtype=torch.float64), "sum")
        return dict(zip(local, counts.clamp(min=1).tolist()))

    @property
    def term_weights(self) -> dict[str, float]:
        """Every term of the student's loss: the objective's, then the parameter loss's."""
        return self.objective.weights | (self.param_loss.weights if self.param_loss is not None else {})

    def step_counts(self, micro_batches: list[dict]) -> dict[str, float]:
        """`global_counts` of the student's objective, plus the parameter-loss terms: each process adds
        those once per step, so their count is the number of processes (the mean is the loss itself)."""
        counts = self.global_counts(self.objective, micro_batches)
        if self.param_loss is not None:
            counts.update({k: float(self.accelerator.num_processes) for k in self.param_loss.weights})
        return counts

    def accumulate_student_gradients(self, micro_batches: list[dict], counts: dict[str, float],
                                     teacher_outputs: Callable[[int, dict], object] | None) -> dict[str, float]:
        """Forward/backward of the student over the micro-batches of one step (and the parameter loss,
        with the last one); gradients accumulate in `.grad`. `counts` come from `step_counts`.
        `teacher_outputs(i, batch)` gives the teacher's outputs for micro-batch i. Returns the per-term
        sums over the step (all processes)."""
        acc = self.accelerator
        self.student.train()
        sums = {k: torch.zeros((), device=acc.device, dtype=torch.float64) for k in self.term_weights}
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            # Skip DDP's gradient all-reduce on all but the last micro-batch.
            sync = contextlib.nullcontext() if last else acc.no_sync(self.student)
            with sync:
                # Teacher first: its inference-mode activations are freed before the student's
                # forward holds its own for the backward (lower peak memory, warmer allocator).
                teacher_out = teacher_outputs(i, batch) if teacher_outputs is not None else None
                student_out = self.student(**model_inputs(batch, self.student_inputs),
                                           **self.objective.forward_kwargs)
                terms = self.objective.loss_sums(batch, student_out, teacher_out)
                loss = weighted_loss(self.objective.weights, terms, counts)
                if last and self.param_loss is not None:  # inside the synced backward, so DDP reduces it
                    param_terms = self.param_loss.loss_terms()
                    loss = loss + weighted_loss(self.param_loss.weights, param_terms, counts)
                    terms = terms | param_terms
                # DDP averages gradients over processes; the counts are global, so scale back up.
                acc.backward(loss * acc.num_processes)
            for k, value in terms.items():
                sums[k] += value.detach().double()
        totals = acc.reduce(torch.stack(list(sums.values())), "sum").tolist()
        return dict(zip(sums, totals))

    def optimizer_step(self, micro_batches: list[dict]) -> dict[str, float]:
        """Forward/backward over the micro-batches of one optimizer step, then one update.

        Each term is divided by its item count over the WHOLE step (all micro-batches, all
        processes), so accumulation equals one big batch. A teacher that learns updates itself
        first, once per optimizer step. Returns the step's logs.
        """
        micro_batches = [self._to_device(b) for b in micro_batches]
        counts = self.step_counts(micro_batches)
        logs = self.teacher.before_optimizer_step(self, micro_batches) if self.teacher is not None else {}
        kwargs = self.objective.forward_kwargs
        outputs = (lambda i, batch: self.teacher.outputs(batch, **kwargs)) if self.teacher is not None else None
        sums = self.accumulate_student_gradients(micro_batches, counts, outputs)
        logs.update(weighted_term_logs(self.term_weights, sums, counts))
        total = logs["loss/total"]
        if not math.isfinite(total):  # refuse to write NaN into the weights (and every later checkpoint)
            bad = [k for k in self.term_weights if not math.isfinite(logs[f"loss/{k}"])]
            raise UsageError(f"loss {'/'.join(bad)} is {total} at step {self.state.global_step + 1}; lower "
                             "--learning_rate, check the labels, or use --bf16 instead of --fp16")
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(self.student.parameters(), self.args.max_grad_norm)
            logs["grad_norm"] = float(grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logs["learning_rate"] = self.scheduler.get_last_lr()[0]
        return logs

    # ------------------------------------------------------------------ training
    def train(self, start: RunStart | None = None) -> dict:
        """Train to the end (resuming from `start.resume_from` if set), then load the best evaluated
        weights. `start.claim()` makes the output dir this run's just before training's first write
        (see _claim_output_dir). A run resumed at its last step (rerun of a finished command) trains
        nothing and returns the metrics the finished run returned."""
        args, acc = self.args, self.accelerator
        if self.batch_source is None:
            order = TrainBatchOrder(self.train_dataset.lengths, args.per_device_train_batch_size, args.seed,
                                    group_by_length=self.group_by_length, world_size=acc.num_processes,
                                    rank=acc.process_index)
            self.batch_source = DatasetBatches(self.train_dataset, self.collator, order,
                                               args.gradient_accumulation_steps)
        source = self.batch_source
        steps_per_epoch = source.steps_per_epoch()
        if args.max_steps > 0:
            total_steps = args.max_steps
        else:
            total_steps = max(1, math.ceil(args.num_train_epochs * steps_per_epoch))
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        self.create_optimizer(total_steps)
        if start is not None and start.resume_from:
            self._resume(start.resume_from, total_steps)
        self.start = start
        logger.info("\n%s", run_summary(self, source.num_examples, num_epochs, total_steps))
        if self.state.global_step < total_steps:
            self._train_steps(source, steps_per_epoch, num_epochs, total_steps)
        self._finish_training()
        return {"train_runtime": round(self.state.train_runtime, 3), "train_samples": source.num_examples,
                "train_steps_per_second": round(self.state.global_step / max(self.state.train_runtime, 1e-9), 3),
                "train_loss": self.state.train_loss_sum / max(self.state.global_step, 1),
                "epoch": round(self.state.epoch, 4), "total_optimizer_steps": self.state.global_step}

    def _train_steps(self, source, steps_per_epoch: int, num_epochs: int, total_steps: int) -> None:
        """The loop, from the current step to `total_steps`."""
        args, acc = self.args, self.accelerator
        self._first_step = self.state.global_step + 1
        bar = tqdm(total=total_steps, initial=self.state.global_step, desc="train",
                   disable=args.disable_tqdm or not acc.is_local_main_process)
        # train_runtime counts every session's training time up to the last checkpoint (see _save_checkpoint)
        self._clock = (time.time(), self.state.train_runtime)
        first_epoch = self.state.global_step // steps_per_epoch
        for epoch in range(first_epoch, num_epochs):
            done_in_epoch = self.state.global_step - epoch * steps_per_epoch
            for micro in source.epoch_steps(epoch, done_in_epoch, self):
                if self.state.global_step >= total_steps:
                    break
                logs = self.optimizer_step(micro)
                self.state.global_step += 1
                self.state.epoch = self.state.global_step / steps_per_epoch
                self.state.train_loss_sum += logs["loss/total"]
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
                self._after_step(logs, steps_per_epoch, total_steps)
        bar.close()
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None

    def _after_step(self, logs: dict, steps_per_epoch: int, total_steps: int) -> None:
        """Logging (averaged over the steps since the last log), evaluation and checkpoints."""
        args, step = self.args, self.state.global_step
        window = self.state.log_window
        for key, value in logs.items():
            window[key] = window.get(key, 0.0) + value
        window["_n"] = window.get("_n", 0) + 1
        last = step == total_steps
        if step % args.logging_steps == 0 or last:
            n = window.pop("_n")
            self._log({k: v / n for k, v in window.items()} | {"epoch": round(self.state.epoch, 4)}, step)
            self.state.log_window = {}
        end_of_epoch = step % steps_per_epoch == 0
        strategy = args.resolved_eval_strategy()
        due = last or (step % args.eval_steps == 0 if strategy == "steps" else end_of_epoch)
        new_best = False
        if strategy != "no" and (self.eval_datasets or self.evaluator is not None) and due:
            new_best = self._evaluate_and_track_best()
        save_every = args.save_steps or (args.eval_steps if strategy == "steps" else None)
        # The best model is kept as the checkpoint of its step (written whenever a dev score improves,
        # never rotated away): one atomic unit with the state that names it, whatever a kill interrupts.
        save = last or new_best or (step % save_every == 0 if save_every else end_of_epoch)
        if self.on_save is not None and (save or end_of_epoch):
            # (before the step's checkpoint: a run killed in between redoes the step and its call)
            self._claim_output_dir()
            if self.accelerator.is_main_process:
                self.on_save(step // steps_per_epoch - 1 if end_of_epoch else None, self._model_to_save())
        if save:
            self._save_checkpoint()

    def _evaluate_and_track_best(self) -> bool:
        """Evaluate the student (and a teacher that learns); True when either improved its best."""
        metrics = self.evaluate(self._model_to_save())  # one export through a transform for every eval set
        self._log(metrics, self.state.global_step)
        value = metrics[f"eval_{self.main_metric}"]
        improved = self._improves(value, self.state.best_metric)
        if improved:
            self.state.best_metric, self.state.best_step = value, self.state.global_step
        logger.info("step %d: %s = %.4f (best %.4f at step %d)", self.state.global_step, self.main_metric, value,
                    self.state.best_metric, self.state.best_step)
        if self.teacher is not None and self.teacher.learns:
            # A teacher that learns is evaluated alongside; its best version is kept on its own metric.
            t_metrics = self.evaluate(self.teacher.model, prefix="teacher_eval_")
            self._log(t_metrics, self.state.global_step)
            t_value = t_metrics[f"teacher_eval_{self.main_metric}"]
            if self._improves(t_value, self.state.teacher_best_metric):
                self.state.teacher_best_metric, self.state.teacher_best_step = t_value, self.state.global_step
                improved = True
            logger.info("step %d: teacher %s = %.4f (best %.4f at step %d)", self.state.global_step,
                        self.main_metric, t_value, self.state.teacher_best_metric, self.state.teacher_best_step)
        return improved

    def _improves(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.greater_is_better else value < best)

    def _save_model_dir(self, model, dir_name: str) -> None:
        """`model` (plus the tokenizer) to output_dir/dir_name, replacing an earlier copy atomically."""
        if self.accelerator.is_main_process:
            tmp = os.path.join(self.args.output_dir, dir_name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with writing(os.path.join(self.args.output_dir, dir_name), cleanup=tmp):
                save_model_files(tmp, model, self.tokenizer)
                replace_dir(tmp, os.path.join(self.args.output_dir, dir_name))

    def _save_checkpoint(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        started, runtime_before = self._clock
        self.state.train_runtime = runtime_before + time.time() - started
        self._claim_output_dir()
        # A batch source's state (MiniLLM's rollout buffer) differs per process: keep every process's.
        source_states = [self.batch_source.state_dict()] if self.batch_source is not None else []
        if acc.num_processes > 1:
            source_states = gather_object(source_states)
        if acc.is_main_process:
            path = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
            save_checkpoint(path, model=self._model_to_save(), tokenizer=self.tokenizer, optimizer=self.optimizer,
                            scheduler=self.scheduler, state=self.state,
                            teacher_state=self.teacher.state_dict() if self.teacher is not None else {},
                            process_rng=rng_state(), student_state=self._training_model_state(),
                            source_state=source_states, run_flags=self.start.flags if self.start else None)
            rotate_checkpoints(self.args.output_dir, self.args.save_total_limit,
                               keep=(self.state.best_step, self.state.teacher_best_step))
        acc.wait_for_everyone()

    def _training_model_state(self) -> dict | None:
        """The training model's own state when it differs from the saved plain model (a transform's,
        e.g. MPO cores: re-decomposing the dense weights would change their gauge and break the
        optimizer's moments), else None."""
        if self.model_transform is None:
            return None
        return {k: v.detach().cpu() for k, v in self.unwrapped_student.state_dict().items()}

    def _load_saved_student(self, model_dir: str) -> None:
        """Load a saved plain model (the best step's checkpoint) into the training student."""
        path = os.path.join(model_dir, "model.safetensors")
        if self.model_transform is None:
            load_model_weights(self.unwrapped_student, path)
            return
        from safetensors.torch import load_file
        self.model_transform.load_dense_state(self.unwrapped_student, load_file(path))

    def _resume(self, path: str, total_steps: int) -> None:
        training, state = load_training_state(path)
        if state.global_step > total_steps:
            raise UsageError(f"{path} is at step {state.global_step}, beyond this run's {total_steps} steps; resume "
                             "with the flags that made it, or start over with --overwrite_output_dir")
        raw = training.get("student")
        if (raw is None) != (self.model_transform is None):
            made = "with" if raw is not None else "without"
            raise UsageError(f"{path} was written {made} a model transform (--use_opdf); resume with the flags of "
                             "that run, or start over with --overwrite_output_dir")
        if raw is None:
            load_model_weights(self.unwrapped_student, os.path.join(path, "model.safetensors"))
        else:
            self.unwrapped_student.load_state_dict(raw)
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if self.teacher is not None:
            self.teacher.load_state_dict(training["teacher"])
        set_rng_state(training["rng"])
        if training.get("source"):
            self.batch_source.load_state_dict(training["source"][self.accelerator.process_index])
        self.state = state
        self.resumed_from = path
        logger.info("resumed from %s at step %d", path, state.global_step)

    def _finish_training(self) -> None:
        """Load the best evaluated weights back into the student, and into a teacher that learned (from
        the checkpoints of their steps); the teacher is saved as teacher/ (as it ended if never scored)."""
        self._claim_output_dir()  # (a resumed run that had nothing left to train has not written yet)
        self.accelerator.wait_for_everyone()
        if self.state.best_step is not None:
            self._load_saved_student(self._checkpoint_of(self.state.best_step, "best model"))
            logger.info("loaded the best model (step %d, %s = %.4f)", self.state.best_step, self.main_metric,
                        self.state.best_metric)
        if self.teacher is not None and self.teacher.learns:
            if self.state.teacher_best_step is not None:
                path = self._checkpoint_of(self.state.teacher_best_step, "best teacher")
                load_state_checked(self.teacher.model, load_training_state(path)[0]["teacher"]["model"], path)
                logger.info("loaded the best teacher (step %d, %s = %.4f) into %s", self.state.teacher_best_step,
                            self.main_metric, self.state.teacher_best_metric,
                            os.path.join(self.args.output_dir, TEACHER_DIR))
            self._save_model_dir(self.teacher.model, TEACHER_DIR)
            self.accelerator.wait_for_everyone()

    def _checkpoint_of(self, step: int, what: str) -> str:
        """checkpoint-<step> of this run (made with its flags): in the output dir, or beside the checkpoint
        it resumed from."""
        places = [self.args.output_dir] + ([os.path.dirname(self.resumed_from)] if self.resumed_from else [])
        for place in places:
            path = os.path.join(place, f"checkpoint-{step}")
            if os.path.isdir(path) and (self.start is None or read_flags(path) == self.start.flags):
                return path
        raise UsageError(f"the {what} of this run is checkpoint-{step}, which is missing from {places[0]}; restore it, "
                         "or start over with --overwrite_output_dir")

    # ------------------------------------------------------------------ evaluation and saving
    @torch.no_grad()
    def predict(self, dataset: TokenizedDataset, model: torch.nn.Module | None = None) -> np.ndarray:
        """`objective.predictions` (the logits; QA: start/end logits) of `model` (default: the student)
        for every example of `dataset`, in dataset order, gathered across processes. Per-token outputs
        of batches padded to different lengths are padded to the longest with -1e4."""
        acc = self.accelerator
        if model is None:  # the student; through a transform, its plain form (e.g. dense, not MPO: faster)
            model = self.student if self.model_transform is None else self._model_to_save()
        input_names = forward_input_names(model)
        was_training = model.training
        model.eval()
        ids, outputs = [], []
        args = self.args
        batches = eval_batches(dataset.lengths, args.per_device_eval_batch_size, acc.num_processes, acc.process_index)
        for idx in tqdm(batches, desc="predict", disable=args.disable_tqdm or not acc.is_local_main_process):
            batch = self._to_device(self.collator([dataset[i] for i in idx]))
            with acc.autocast():
                logits = self.objective.predictions(model(**model_inputs(batch, input_names)), batch)
            outputs.extend(logits.float().cpu().numpy())
            ids.extend(idx)
        model.train(was_training)
        local = list(zip(ids, outputs))
        pairs = gather_object(local) if acc.num_processes > 1 else local
        pairs.sort(key=lambda p: p[0])
        assert [p[0] for p in pairs] == list(range(len(dataset))), "every example must be predicted exactly once"
        return stack_padded([p[1] for p in pairs])

    def evaluate(self, model: torch.nn.Module | None = None, prefix: str = "eval_",
                 datasets: dict[str, TokenizedDataset] | None = None) -> dict[str, float]:
        """`<prefix><metric><suffix>` for every eval set (MNLI: matched "" and mismatched "_mm"), or for
        `datasets` (e.g. a labelled test set, prefix "test_"), of the student or of `model` (a teacher
        that learns, with prefix "teacher_eval_")."""
        metrics = {}
        if model is None and self.model_transform is not None:
            model = self._model_to_save()  # export once for every eval set
        if self.evaluator is not None and datasets is None:
            values = self.evaluator(model if model is not None else self.unwrapped_student)
            return {f"{prefix}{k}": v for k, v in values.items()}
        for suffix, dataset in (self.eval_datasets if datasets is None else datasets).items():
            predictions = self.predict(dataset, model)
            values = {}
            loss = self.objective.eval_loss(predictions, dataset)
            if loss is not None:
                values["loss"] = loss
            values.update(self.compute_metrics(predictions, dataset))
            metrics.update({f"{prefix}{k}{suffix}": v for k, v in values.items()})
            metrics[f"{prefix}samples{suffix}"] = len(dataset)
        return metrics

    def save_model(self, output_dir: str | None = None) -> None:
        """The student as a plain Hugging Face model dir (plus tokenizer), and trainer_state.json."""
        output_dir = output_dir or self.args.output_dir
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            tmp = os.path.join(output_dir, ".model.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with writing(f"the final model to {output_dir}", cleanup=tmp):
                save_model_files(tmp, self._model_to_save(), self.tokenizer)
                for name in os.listdir(tmp):  # file by file rename: each file is either old or new
                    os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
                os.rmdir(tmp)
            self.state.save(os.path.join(output_dir, "trainer_state.json"))

    def log_once(self, metrics: dict, step: int = 0) -> None:
        """Metrics measured once outside training (a fixed teacher's perplexity): to TensorBoard."""
        if self.accelerator.is_main_process and self.args.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            with SummaryWriter(self.args.logging_dir or os.path.join(self.args.output_dir, "runs")) as writer:
                for key, value in metrics.items():
                    writer.add_scalar(key, value, step)

    def save_metrics(self, split: str, metrics: dict) -> None:
        """`<split>_results.json`, merged into `all_results.json` (HF layout)."""
        if not self.accelerator.is_main_process:
            return
        atomic_write_json(os.path.join(self.args.output_dir, f"{split}_results.json"), metrics)
        all_path = os.path.join(self.args.output_dir, "all_results.json")
        merged = {}
        if os.path.isfile(all_path):
            with open(all_path, encoding="utf-8") as f:
                merged = json.load(f)
        atomic_write_json(all_path, merged | metrics)


def stack_padded(arrays: list[np.ndarray], fill: float = -1e4) -> np.ndarray:
    """(N, ...) from per-example arrays whose shapes may differ (per-token outputs of differently
    padded batches): each is padded at the end of every axis to the largest size, with `fill`."""
    shape = tuple(max(sizes) for sizes in zip(*(a.shape for a in arrays)))
    if all(a.shape == shape for a in arrays):
        return np.stack(arrays)
    out = np.full((len(arrays), *shape), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return out


def weighted_term_logs(weights: dict[str, float], sums: dict[str, float], counts: dict[str, float],
                       total_name: str = "loss/total") -> dict[str, float]:
    """`loss/<term>` (the mean), `loss/<term>_weighted` and the weighted total, for the logs."""
    logs, total = {}, 0.0
    for k, w in weights.items():
        mean = sums[k] / counts[k]
        logs[f"loss/{k}"] = mean
        logs[f"loss/{k}_weighted"] = w * mean
        total += w * mean
    logs[total_name] = total
    return logs


def seed_everything(seed: int) -> None:
    set_seed(seed)


def setup_logging() -> None:
    """Our INFO logs; transformers' own chatter (weight-loading bars, notices) only when it matters."""
    import transformers
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()


__all__ = ["DistillationTrainer", "make_accelerator", "seed_everything", "list_checkpoints"]
