"""What every entry script does after building its trainer, and its `main()` wrapper."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from distill.errors import UsageError
from distill.run_dir import RunStart, lock_dir, plan_start, release_locks, run_flags
from distill.run_record import EVALUATION_RECORD, run_record
from distill.trainer import make_accelerator, seed_everything, setup_logging

logger = logging.getLogger(__name__)


def start_run(train_args, parsed: tuple, script: str, spelling: dict[str, str] | None = None
              ) -> tuple[RunStart, object]:
    """(how the run starts, accelerator), with every RNG seeded: what each script does once its flags
    are validated. The main process locks the output dir and decides from what it holds whether the
    run resumes, starts over or is refused (distill/run_dir.py); every process gets the same answer.
    The run's record (every resolved flag, a command that reruns it with the flags renamed by
    `spelling`, versions) is written with its first file."""
    accelerator = make_accelerator(train_args)

    def plan() -> RunStart:
        lock_dir(train_args.output_dir)
        start = plan_start(train_args.output_dir, run_flags(parsed), do_train=train_args.do_train,
                           overwrite=train_args.overwrite_output_dir,
                           resume_from_checkpoint=train_args.resume_from_checkpoint)
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


def train_and_evaluate(trainer, start: RunStart) -> dict:
    """--do_train: train, save the best model and train_results.json; --do_eval: eval_results.json.
    Returns the metrics, plus what a TA chain reports per stage: the metric the model was selected on,
    its direction, and whether the teacher learned (then teacher_eval_* scores the trained teacher)."""
    args = trainer.args
    results = {"main_metric": trainer.main_metric, "greater_is_better": trainer.greater_is_better,
               "teacher_learns": trainer.teacher is not None and trainer.teacher.learns}
    if not args.do_train and trainer.accelerator.is_main_process:  # (training writes it with its first file)
        start.write_record(EVALUATION_RECORD)
    if args.do_train:
        train_metrics = trainer.train(start)
        trainer.save_model()
        trainer.save_metrics("train", train_metrics)
        results.update(train_metrics)
    if args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.save_metrics("eval", eval_metrics)
        results.update(eval_metrics)
        logger.info("dev results: %s", {k: round(v, 4) for k, v in eval_metrics.items()})
    return results


def evaluate_and_save(trainer, split: str, prefix: str, model=None, datasets=None) -> dict:
    """After training: score `model` (default: the student) on `datasets` (default: the dev sets) with
    `prefix`, write `<split>_results.json` and log it (a teacher on dev, the selected model on test)."""
    metrics = trainer.evaluate(model, prefix=prefix, datasets=datasets)
    trainer.save_metrics(split, metrics)
    logger.info("%s results: %s", split, {k: round(v, 4) for k, v in metrics.items()})
    return metrics


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
