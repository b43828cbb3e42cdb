"""The one training loop every method runs on.

Methods plug in through seven small contracts (distill/plugins.py) instead of copies of this loop: the
objective (named loss terms of a micro-batch), the teacher strategy, a model transform, a parameter loss,
a batch source, an evaluator and a save hook. Absent ones are null objects, so the loop below has no
branches for them. accelerate gives devices, DDP, mixed precision and loss scaling; batch order, gradient
accumulation and loss normalisation are ours (distill/objective.py says why). The run's files are
distill/run_io.py's; devices, seeds and logging setup distill/runtime.py's.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from distill import plugins
from distill.args import TrainingArguments
from distill.batching import TokenizedDataset, training_set_batches
from distill.checkpoint import TrainerState, restore_checkpoint, rng_state
from distill.errors import UsageError
from distill.evaluation import PredictionEvaluator
from distill.modeling import forward_input_names, model_inputs
from distill.objective import global_counts, weighted_loss, weighted_term_logs
from distill.optim import make_scheduler
from distill.placement import Replicated
from distill.plugins import Objective, Selection, StepContext, TeacherOutputs
from distill.run_dir import RunStart
from distill.run_io import RunFiles
from distill.run_record import run_summary
from distill.sharding import Sharding
from distill.speed import prepare_models

logger = logging.getLogger(__name__)


class DistillationTrainer:
    def __init__(self, *, args: TrainingArguments, accelerator: Accelerator, student: torch.nn.Module,
                 objective: Objective, collator: Callable[[list[dict]], dict],
                 train_dataset: TokenizedDataset | None = None, teacher: plugins.TeacherStrategy | None = None,
                 eval_datasets: dict[str, TokenizedDataset] | None = None,
                 compute_metrics: Callable[[np.ndarray, TokenizedDataset], dict] | None = None,
                 main_metric: str = "accuracy", greater_is_better: bool = True, tokenizer=None,
                 model_transform: plugins.ModelTransform | None = None, param_loss: plugins.ParameterLoss | None = None,
                 group_by_length: bool = True, batch_source: plugins.BatchSource | None = None,
                 evaluator: plugins.Evaluator | None = None, on_save: plugins.SaveHook | None = None):
        """Plug-ins left None take their null object; without a `batch_source` the training set is batched
        in our order (distill/batching.py); a trainer with neither only evaluates."""
        self.args, self.accelerator = args, accelerator
        self.objective, self.collator, self.compute_metrics = objective, collator, compute_metrics
        self.train_dataset, self.eval_datasets = train_dataset, eval_datasets or {}
        self.main_metric, self.greater_is_better, self.tokenizer = main_metric, greater_is_better, tokenizer
        # Absent plug-ins become null objects (distill/plugins.py): no teacher is NoTeacher (model None).
        self.teacher = teacher if teacher is not None else plugins.NoTeacher()
        self.transform = model_transform if model_transform is not None else plugins.IdentityTransform()
        self.param_loss = param_loss if param_loss is not None else plugins.NoParameterLoss()
        self.on_save = on_save if on_save is not None else plugins.NoSaveHook()
        self._predictions = PredictionEvaluator(accelerator, objective, collator, compute_metrics, self.eval_datasets,
                                                args.per_device_eval_batch_size, not args.disable_tqdm)
        self.evaluator = evaluator if evaluator is not None else self._predictions
        self._can_evaluate = bool(self.eval_datasets) or evaluator is not None
        if batch_source is None and train_dataset is not None:  # the default: the training set in our order
            batch_source = training_set_batches(train_dataset, collator, args, accelerator, group_by_length)
        self.batch_source = batch_source
        self.io = RunFiles(args, accelerator, tokenizer)
        # One whole student per process (DDP), or shards of it (--fsdp): distill/placement.py
        self.placement = (Sharding if args.fsdp else Replicated)(args, accelerator, self.transform)
        self.state = TrainerState()
        self.student = student.to(accelerator.device)
        self.student_inputs = forward_input_names(student)
        self.optimizer = self.scheduler = None
        self._clock = (time.time(), 0.0)  # (session start, train_runtime before it)

    @property
    def unwrapped_student(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.student)

    @property
    def term_weights(self) -> dict[str, float]:
        """Every term of the student's loss: the objective's, then the parameter loss's."""
        return self.objective.weights | self.param_loss.weights

    @property
    def selection(self) -> Selection:
        return Selection(self.main_metric, self.greater_is_better)

    def plain_student(self) -> torch.nn.Module | None:
        """The plain student (what is saved) on the main process, None elsewhere. Every process calls it:
        under --fsdp the full weights are gathered from all of them."""
        return self.placement.export(self.student)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def create_optimizer(self, total_steps: int) -> None:
        """AdamW + the LR schedule; wraps the student for DDP / mixed precision; lets the teacher prepare
        (one that learns makes its own optimizer for the same number of steps). Call once."""
        if self.optimizer is not None:
            raise RuntimeError("create_optimizer() was already called for this trainer")
        prepare_models(self.student, self.teacher.model, self.args)  # (before DDP or FSDP wraps them)
        self.student, self.optimizer = self.placement.prepare(self.student, self.teacher)
        self.scheduler = make_scheduler(self.optimizer, self.args, total_steps)
        dataset = self.batch_source.dataset if self.batch_source is not None else None
        self.teacher.prepare(plugins.TeacherSetup(self.args, total_steps, dataset, self.collator,
                                                   dict(self.objective.teacher_forward_kwargs), self._to_device))

    # ------------------------------------------------------------------ training
    def train(self, start: RunStart | None = None) -> dict:
        """Train to the end (resuming from `start.resume_from` if set), then load the best evaluated
        weights. `start.claim()` makes the output dir this run's just before training's first write. A run
        resumed at its last step (rerun of a finished command) trains nothing and returns the metrics the
        finished run returned."""
        args, source = self.args, self.batch_source
        if source is None:
            raise ValueError("train() needs a train_dataset or a batch_source")
        steps_per_epoch = source.steps_per_epoch()
        epochs = args.num_train_epochs
        total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(epochs * steps_per_epoch))
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        self.create_optimizer(total_steps)
        if start is not None and start.resume_from:
            self._resume(start.resume_from, total_steps)
        self.io.start = start
        logger.info("\n%s", run_summary(self, source.num_examples, num_epochs, total_steps))
        if self.state.global_step < total_steps:
            self._train_steps(steps_per_epoch, num_epochs, total_steps)
        self._finish_training()
        return self.state.train_metrics(source.num_examples)

    def _train_steps(self, steps_per_epoch: int, num_epochs: int, total_steps: int) -> None:
        """The loop, from the current step to `total_steps`."""
        state = self.state
        self.io.begin_session(first_step=state.global_step + 1)
        bar = tqdm(total=total_steps, initial=state.global_step, desc="train",
                   disable=self.args.disable_tqdm or not self.accelerator.is_local_main_process)
        # train_runtime counts every session's training time up to the last checkpoint (see _save_checkpoint)
        self._clock = (time.time(), state.train_runtime)
        for epoch in range(state.global_step // steps_per_epoch, num_epochs):
            done_in_epoch = state.global_step - epoch * steps_per_epoch
            for micro in self.batch_source.epoch_steps(epoch, done_in_epoch, self.step_context()):
                if state.global_step >= total_steps:
                    break
                logs = self.optimizer_step(micro)
                state.global_step += 1
                state.epoch = state.global_step / steps_per_epoch
                state.train_loss_sum += logs["loss/total"]
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
                self._after_step(logs, steps_per_epoch, total_steps)
        bar.close()
        self.io.end_session()

    def _after_step(self, logs: dict, steps_per_epoch: int, total_steps: int) -> None:
        """Logging (averaged over the steps since the last log), evaluation, the save hook and checkpoints."""
        args, step = self.args, self.state.global_step
        self.state.add_step_logs(logs)
        last = step == total_steps
        if step % args.logging_steps == 0 or last:
            self._log(self.state.pop_window() | {"epoch": round(self.state.epoch, 4)}, step)
        end_of_epoch = step % steps_per_epoch == 0
        strategy = args.resolved_eval_strategy()
        due = last or (step % args.eval_steps == 0 if strategy == "steps" else end_of_epoch)
        new_best = strategy != "no" and self._can_evaluate and due and self._evaluate_and_track_best()
        save_every = args.save_steps or (args.eval_steps if strategy == "steps" else None)
        # The best model is kept as the checkpoint of its step (written whenever a dev score improves,
        # never rotated away): one atomic unit with the state that names it, whatever a kill interrupts.
        save = last or new_best or (step % save_every == 0 if save_every else end_of_epoch)
        if not (save or end_of_epoch):
            return
        self.io.claim()
        plain = self.plain_student()  # (only the main process writes)
        if plain is not None:  # the hook runs before the step's checkpoint: a kill in between redoes both
            self.on_save(step // steps_per_epoch - 1 if end_of_epoch else None, plain)
        if save:
            self._save_checkpoint(plain)

    def _log(self, logs: dict, step: int) -> None:
        # 6 significant digits: small quantities (LGTM's influence, learning rates) keep their value
        entry = {**{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in logs.items()}, "step": step}
        self.state.log_history.append(entry)
        self.io.claim()
        self.io.scalars(logs, step)

    # ------------------------------------------------------------------ one optimizer step
    def step_context(self, micro_batches: list[dict] = ()) -> StepContext:
        """What plug-ins see of this step: its micro-batches moved to the device and their global counts
        (with no micro-batches: what a batch source sees between steps)."""
        acc = self.accelerator
        batches = [self._to_device(b) for b in micro_batches]
        return StepContext(
            unwrapped_student=self.unwrapped_student, student_inputs=frozenset(self.student_inputs),
            device=acc.device, autocast=acc.autocast, optimizer=self.optimizer, max_grad_norm=self.args.max_grad_norm,
            to_device=self._to_device, reduce_sum=lambda t: acc.reduce(t, "sum"),
            counts=lambda objective, batches: global_counts(objective, batches, acc),
            student_backward=self.accumulate_student_gradients, step=self.state.global_step,
            micro_batches=tuple(batches), student_counts=self.step_counts(batches) if batches else {})

    def optimizer_step(self, micro_batches: list[dict]) -> dict[str, float]:
        """Forward/backward over the micro-batches of one optimizer step, then one update.

        Each term is divided by its item count over the WHOLE step (all micro-batches, all processes), so
        accumulation equals one big batch. A teacher that learns updates itself first, once per optimizer
        step. Returns the step's logs."""
        ctx = self.step_context(micro_batches)
        logs = self.teacher.before_optimizer_step(ctx)
        kwargs = self.objective.teacher_forward_kwargs
        sums = self.accumulate_student_gradients(list(ctx.micro_batches), ctx.student_counts,
                                                 lambda i, batch: self.teacher.outputs(batch, **kwargs))
        logs.update(weighted_term_logs(self.term_weights, sums, ctx.student_counts))
        total = logs["loss/total"]
        if not math.isfinite(total):  # refuse to write NaN into the weights (and every later checkpoint)
            bad = [k for k in self.term_weights if not math.isfinite(logs[f"loss/{k}"])]
            raise UsageError(f"loss {'/'.join(bad)} is {total} at step {self.state.global_step + 1}; lower "
                             "--learning_rate, check the labels, or use --bf16 instead of --fp16")
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            logs["grad_norm"] = self.placement.clip_grad_norm(self.student, self.args.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logs["learning_rate"] = self.scheduler.get_last_lr()[0]
        return logs

    def step_counts(self, micro_batches: list[dict]) -> dict[str, float]:
        """`global_counts` of the student's objective, plus the parameter-loss terms: each process adds
        those once per step, so their count is the number of processes (the mean is the loss itself)."""
        counts = global_counts(self.objective, micro_batches, self.accelerator)
        return counts | {k: float(self.accelerator.num_processes) for k in self.param_loss.weights}

    def accumulate_student_gradients(self, micro_batches: list[dict], counts: dict[str, float],
                                     teacher_outputs: TeacherOutputs) -> dict[str, float]:
        """Forward/backward of the student over the micro-batches of one step (and the parameter loss,
        with the last one); gradients accumulate in `.grad`. `counts` come from `step_counts`.
        `teacher_outputs(i, batch)` gives the teacher's outputs for micro-batch i. Returns the per-term
        sums over the step (all processes)."""
        acc, objective = self.accelerator, self.objective
        self.student.train()
        sums = {k: torch.zeros((), device=acc.device, dtype=torch.float64) for k in self.term_weights}
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            # Skip DDP's gradient all-reduce (FSDP's reduce-scatter) on all but the last micro-batch.
            with self.placement.gradient_sync(self.student, last):
                # Teacher first: its inference-mode activations are freed before the student's
                # forward holds its own for the backward (lower peak memory, warmer allocator).
                teacher_out = teacher_outputs(i, batch)
                student_out = self.student(**model_inputs(batch, self.student_inputs), **objective.forward_kwargs)
                terms = objective.loss_sums(batch, student_out, teacher_out)
                loss = weighted_loss(objective.weights, terms, counts)
                if last:  # inside the synced backward, so DDP reduces it
                    param_terms = self.param_loss.loss_terms()
                    loss = loss + weighted_loss(self.param_loss.weights, param_terms, counts)
                    terms = terms | param_terms
                # DDP (and FSDP's reduce-scatter) averages gradients over processes; the counts are global, so
                # scale back up.
                acc.backward(loss * acc.num_processes)
            for k, value in terms.items():
                sums[k] += value.detach().double()
        totals = acc.reduce(torch.stack(list(sums.values())), "sum").tolist()  # (terms,)
        return dict(zip(sums, totals))

    # ------------------------------------------------------------------ evaluation and the best model
    def _evaluate_and_track_best(self) -> bool:
        """Evaluate the student (and a teacher that learns); True when either improved its best."""
        step = self.state.global_step
        value = self._evaluate_and_log(None, "eval_")[f"eval_{self.main_metric}"]
        improved = self.selection.improves(value, self.state.best_metric)
        if improved:
            self.state.best_metric, self.state.best_step = value, step
        logger.info("step %d: %s = %.4f (best %.4f at step %d)", step, self.main_metric, value,
                    self.state.best_metric, self.state.best_step)
        # A teacher that learns scores itself alongside and keeps its own best (lgtm/teachers.py).
        teacher_improved = self.teacher.after_evaluation(self._evaluate_and_log, self.selection, step)
        self.state.extra.update(self.teacher.record())
        return improved or teacher_improved

    def _evaluate_and_log(self, model: torch.nn.Module | None, prefix: str) -> dict[str, float]:
        metrics = self.evaluate(model, prefix=prefix)
        self._log(metrics, self.state.global_step)
        return metrics

    def evaluate(self, model: torch.nn.Module | None = None, prefix: str = "eval_",
                 datasets: dict[str, TokenizedDataset] | None = None) -> dict[str, float]:
        """`<prefix><metric><suffix>` for every eval set (MNLI: matched "" and mismatched "_mm") or the
        evaluator's metrics; for `datasets` (e.g. a labelled test set, prefix "test_") always per example.
        Of the student (its plain form, exported once for every eval set) or of `model` (a teacher that
        learns, with prefix "teacher_eval_")."""
        model = model if model is not None else self.placement.eval_model(self.student)
        values = self.evaluator(model) if datasets is None else self._predictions(model, datasets)
        return {f"{prefix}{k}": v for k, v in values.items()}

    def predict(self, dataset: TokenizedDataset, model: torch.nn.Module | None = None) -> np.ndarray:
        """Per-example predictions of `model` (default: the plain student) on `dataset`, (N, ...), in
        dataset order (distill/evaluation.py)."""
        model = model if model is not None else self.placement.eval_model(self.student)
        return self._predictions.predict(dataset, model)

    # ------------------------------------------------------------------ checkpoints, resume and the end
    def _save_checkpoint(self, plain: torch.nn.Module | None) -> None:
        """checkpoint-<step> (on every process; `plain`: the exported student, main process only)."""
        started, runtime_before = self._clock
        self.state.train_runtime = runtime_before + time.time() - started
        # Beside the plain model: the training model's own state when it differs (MPO cores), or under
        # --fsdp the training model's and optimizer's shards (distill/placement.py).
        self.io.save_checkpoint(state=self.state, model=plain, optimizer=self.optimizer, scheduler=self.scheduler,
                                teacher_state=self.teacher.state_dict(), process_rng=rng_state(),
                                student_state=self.placement.training_state(self.student, plain),
                                source_state=self.batch_source.state_dict(),
                                shards=self.placement.shard_writer(self.student, self.optimizer),
                                keep=(self.state.best_step, *self.teacher.keep_steps()))

    def _resume(self, path: str, total_steps: int) -> None:
        self.state = restore_checkpoint(path, total_steps, student=self.unwrapped_student,
                                        transformed=self.placement.transformed(self.student),
                                        optimizer=self.optimizer, scheduler=self.scheduler, teacher=self.teacher,
                                        source=self.batch_source, rank=self.accelerator.process_index,
                                        load_shards=self.placement.shard_reader(self.student, self.optimizer))
        self.io.resumed_from = path
        logger.info("resumed from %s at step %d", path, self.state.global_step)

    def _finish_training(self) -> None:
        """Load the best evaluated weights back into the student (from the checkpoint of their step); a
        teacher that learns restores its own best and saves it."""
        self.io.claim()  # (a resumed run that had nothing left to train has not written yet)
        self.accelerator.wait_for_everyone()
        if self.state.best_step is not None:
            from safetensors.torch import load_file
            path = self.io.checkpoint_of(self.state.best_step, "best model")
            self.placement.load_plain_state(self.student, load_file(os.path.join(path, "model.safetensors")))
            logger.info("loaded the best model (step %d, %s = %.4f)", self.state.best_step, self.main_metric,
                        self.state.best_metric)
        self.teacher.finish(self.io.checkpoint_of, self.io.save_model_dir, self.selection)

    # ------------------------------------------------------------------ the run's files (distill/run_io.py)
    def save_model(self, output_dir: str | None = None) -> None:
        """The student as a plain Hugging Face model dir (plus tokenizer), and trainer_state.json."""
        plain = self.plain_student()
        self.io.save_final_model(plain, self.state, output_dir or self.args.output_dir)

    def save_metrics(self, split: str, metrics: dict) -> None:
        """`<split>_results.json`, merged into `all_results.json` (HF layout)."""
        self.io.save_metrics(split, metrics)


__all__ = ["DistillationTrainer"]
