"""What every entry script does after building its trainer, and its `main()` wrapper."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from distill import io_utils
from distill.errors import UsageError
from distill.run_dir import RunStart, lock_dir, plan_start, release_locks, run_flags
from distill.run_record import EVALUATION_RECORD, run_record
from distill.runtime import make_accelerator, seed_everything, setup_logging

logger = logging.getLogger(__name__)


def start_run(train_args, parsed: tuple, script: str, spelling: dict[str, str] | None = None,
              task_files: tuple[str, ...] = ()) -> tuple[RunStart, object]:
    """(how the run starts, accelerator), with every RNG seeded: what each script does once its flags
    are validated. The main process locks the output dir and decides from what it holds whether the
    run resumes, starts over or is refused (distill/run_dir.py); every process gets the same answer.
    The run's record (every resolved flag, a command that reruns it with the flags renamed by
    `spelling`, versions) is written with its first file. `task_files`: see `plan_start`."""
    accelerator = make_accelerator(train_args)

    def plan() -> RunStart:
        lock_dir(train_args.output_dir)
        start = plan_start(train_args.output_dir, run_flags(parsed), do_train=train_args.do_train,
                           overwrite=train_args.overwrite_output_dir,
                           resume_from_checkpoint=train_args.resume_from_checkpoint, task_files=task_files)
        start.record = run_record(os.path.basename(script), parsed, accelerator.num_processes, spelling)
        return start
    start = on_main_process(plan, accelerator)
    seed_everything(train_args.seed)
    return start, accelerator


def on_main_process(fn: Callable[[], object], state) -> object:
    """`fn()` on the main process of `state` (an Accelerator or PartialState), its result (or its
    UsageError) handed to every process."""
    if state.num_processes == 1:
        return fn()
    from accelerate.utils import broadcast_object_list
    outcome = [None]
    if state.is_main_process:
        try:
            outcome[0] = ("ok", fn())
        except UsageError as e:
            outcome[0] = ("error", str(e))
    broadcast_object_list(outcome, from_process=0)
    kind, value = outcome[0]
    if kind == "error":
        raise UsageError(value)
    return value


def finish_run(trainer, start: RunStart, *, teacher_model=None, test_datasets: dict | None = None,
               eval_files: Callable[[], dict[str, object]] | None = None,
               predict: Callable[[], dict[str, object]] | None = None,
               after_save: Callable[[], None] | None = None) -> dict:
    """How every run finishes, the same way and with the same file names in every script:

    - --do_train: train, save the best model (then `after_save()`, e.g. the DistilBERT pipeline's own files),
      train_results.json;
    - --do_eval: the student's dev scores, eval_results.json; the files of that evaluation, `eval_files()`
      (SQuAD's predictions.json, MiniLLM's eval_generations.jsonl); then, when there is a teacher, its scores
      on the same dev data, teacher_eval_results.json (prefix `teacher_eval_`): a teacher that learned is
      scored in its best version, a fixed one as given. `teacher_model` names the teacher when the trainer
      has none (SeqKD's teacher only writes the training data); default: the trainer's teacher;
    - `test_datasets` (labelled test data, IMDB's --do_predict): the selected model's scores, test_results.json
      (prefix `test_`);
    - `predict()` (--do_predict on unlabelled test data: GLUE's server files): its files.

    `eval_files` and `predict` run on every process and return {file name in the output dir: content}
    (a str is written as is, anything else as JSON); the main process writes them, atomically.
    all_results.json merges every `*_results.json`. Returns the metrics, plus what a TA chain reports per
    stage: the metric the model was selected on, its direction, whether the teacher learned (then
    teacher_eval_* scores the trained teacher), and the prediction files written (`predict_files`)."""
    args = trainer.args
    teacher_learns = trainer.teacher.learns
    if teacher_model is None:
        teacher_model = trainer.teacher.model
    results = {"main_metric": trainer.main_metric, "greater_is_better": trainer.greater_is_better,
               "teacher_learns": teacher_learns, "predict_files": []}
    if not args.do_train and trainer.accelerator.is_main_process:  # (training writes it with its first file)
        start.write_record(EVALUATION_RECORD)
    if args.do_train:
        train_metrics = trainer.train(start)
        trainer.save_model()
        if after_save is not None:
            after_save()
        trainer.save_metrics("train", train_metrics)
        results.update(train_metrics)
    if args.do_eval:
        results.update(_scores(trainer, "eval", "eval_", "dev"))
        if eval_files is not None:  # before anything else is evaluated: they are this evaluation's
            results["predict_files"] += _write_files(trainer, eval_files())
        if teacher_model is not None:
            results.update(_scores(trainer, "teacher_eval", "teacher_eval_", "teacher (dev)", model=teacher_model))
    if test_datasets:
        results.update(_scores(trainer, "test", "test_", "test", datasets=test_datasets))
    if predict is not None:
        results["predict_files"] += _write_files(trainer, predict())
    return results


def _scores(trainer, split: str, prefix: str, what: str, model=None, datasets=None) -> dict:
    """Score `model` (default: the student) on `datasets` (default: the dev sets) with `prefix`, write
    `<split>_results.json` and log it."""
    metrics = trainer.evaluate(model=model, prefix=prefix, datasets=datasets)
    trainer.save_metrics(split, metrics)
    logger.info("%s results: %s", what, {k: round(v, 4) for k, v in metrics.items()})
    return metrics


def _write_files(trainer, files: dict[str, object]) -> list[str]:
    """Write {name: content} into the output dir on the main process (str as text, else JSON), atomically;
    the paths written (on every process)."""
    paths = [os.path.join(trainer.args.output_dir, name) for name in files]
    if trainer.accelerator.is_main_process:
        for path, content in zip(paths, files.values()):
            if isinstance(content, str):
                io_utils.atomic_write_text(path, content)
            else:
                io_utils.atomic_write_json(path, content)
            logger.info("wrote %s", path)
    return paths


def cli_main(run: Callable[[list[str] | None], dict], argv: list[str] | None = None) -> int:
    """Run `run(argv)`; a UsageError becomes one line `error: ...` on stderr and exit status 2."""
    setup_logging()
    try:
        run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        release_locks()
        close_process_group()
    return 0


def close_process_group() -> None:
    """Tear a multi-process run's process group down before the interpreter exits: a gloo group left to
    the shutdown can abort a process that finished its work ("terminate called without an active
    exception"), failing the launcher although every result was written."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
