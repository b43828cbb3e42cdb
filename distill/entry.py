"""What every entry script does after building its trainer, and its `main()` wrapper."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from distill.errors import UsageError
from distill.trainer import setup_logging

logger = logging.getLogger(__name__)


def train_and_evaluate(trainer, resume_from: str | None) -> dict:
    """--do_train: train, save the best model and train_results.json; --do_eval: eval_results.json."""
    args, results = trainer.args, {}
    if args.do_train:
        train_metrics = trainer.train(resume_from)
        trainer.save_model()
        trainer.save_metrics("train", train_metrics)
        results.update(train_metrics)
    if args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.save_metrics("eval", eval_metrics)
        results.update(eval_metrics)
        logger.info("dev results: %s", {k: round(v, 4) for k, v in eval_metrics.items()})
    return results


def cli_main(run: Callable[[list[str] | None], dict], argv: list[str] | None = None) -> int:
    """Run `run(argv)`; a UsageError becomes one line `error: ...` on stderr and exit status 2."""
    setup_logging()
    try:
        run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
