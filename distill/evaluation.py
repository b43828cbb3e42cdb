"""The default evaluator: per-example predictions of the dev sets, scored by the task's `compute_metrics`.

A method with its own evaluation (generation metrics: sequence_kd/evaluation.py) replaces it for the
run's dev scoring; labelled test sets are always scored here.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from distill.batching import TokenizedDataset, eval_batches, stack_padded
from distill.modeling import forward_input_names, model_inputs
from distill.sharding import is_sharded


class PredictionEvaluator:
    """`evaluator(model, datasets=None)` -> `<metric><suffix>` for every set of `datasets` (default: the dev
    sets; MNLI: matched "" and mismatched "_mm"): the eval loss, `compute_metrics` and the number of
    examples. Every process takes part (the predictions are gathered)."""

    def __init__(self, accelerator, objective, collator: Callable[[list[dict]], dict],
                 compute_metrics: Callable[[np.ndarray, TokenizedDataset], dict] | None,
                 eval_datasets: dict[str, TokenizedDataset], batch_size: int, show_progress: bool = True):
        self.accelerator, self.objective, self.collator = accelerator, objective, collator
        self.compute_metrics, self.eval_datasets = compute_metrics, eval_datasets
        self.batch_size, self.show_progress = batch_size, show_progress

    def __call__(self, model: torch.nn.Module, datasets: dict[str, TokenizedDataset] | None = None) -> dict:
        metrics = {}
        for suffix, dataset in (self.eval_datasets if datasets is None else datasets).items():
            predictions = self.predict(dataset, model)
            loss = self.objective.eval_loss(predictions, dataset)
            values = ({"loss": loss} if loss is not None else {}) | self.compute_metrics(predictions, dataset)
            metrics.update({f"{k}{suffix}": v for k, v in values.items()})
            metrics[f"samples{suffix}"] = len(dataset)
        return metrics

    @torch.no_grad()
    def predict(self, dataset: TokenizedDataset, model: torch.nn.Module) -> np.ndarray:
        """`objective.predictions` (the logits; QA: start/end logits) of `model` for every example of
        `dataset`, in dataset order, gathered across processes. Per-token outputs of batches padded to
        different lengths are padded to the longest with -1e4."""
        acc = self.accelerator
        input_names, was_training = forward_input_names(model), model.training
        model.eval()
        ids, outputs = [], []
        batches = eval_batches(dataset.lengths, self.batch_size, acc.num_processes, acc.process_index)
        for idx in tqdm(batches, desc="predict", disable=not (self.show_progress and acc.is_local_main_process)):
            batch = {k: v.to(acc.device) for k, v in self.collator([dataset[i] for i in idx]).items()}
            with acc.autocast():
                logits = self.objective.predictions(model(**model_inputs(batch, input_names)), batch)  # (B, ...)
            outputs.extend(logits.float().cpu().numpy())
            ids.extend(idx)
        # A sharded model's forward is a collective: a process with fewer batches (its share is one
        # example shorter) joins the others' last forwards with a batch whose outputs it drops.
        if is_sharded(model) and acc.num_processes > 1:
            for _ in range(max(gather_object([len(batches)])) - len(batches)):
                batch = {k: v.to(acc.device) for k, v in self.collator([dataset[0]]).items()}
                with acc.autocast():
                    model(**model_inputs(batch, input_names))
        model.train(was_training)
        pairs = list(zip(ids, outputs))
        pairs = sorted(gather_object(pairs) if acc.num_processes > 1 else pairs, key=lambda p: p[0])
        assert [p[0] for p in pairs] == list(range(len(dataset))), "every example must be predicted exactly once"
        return stack_padded([p[1] for p in pairs])  # (N, ...)
