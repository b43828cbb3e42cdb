"""Quiz data: the held-out examples whose loss the student's update is judged on (LGTM).

By default a slice of the TRAINING set is held out and never used for student updates. The released
code quizzed on the GLUE validation set, the same set it then selected checkpoints and reported on,
which leaks dev labels into training; `--lgtm_quiz_source validation` reproduces that, with a warning.
"""
from __future__ import annotations

import numpy as np

from distill.batching import PaddingCollator, TokenizedDataset, TrainBatchOrder


def split_quiz_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, quiz rows) of a training set of n rows: a seeded random `fraction` (at least one
    row, and at least one row left to train on) becomes quiz data. Both lists are sorted."""
    if n < 2:
        raise ValueError(f"cannot hold out quiz data from a training set of {n} example(s)")
    n_quiz = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng([seed, 0x9E1]).permutation(n)
    return sorted(perm[n_quiz:].tolist()), sorted(perm[:n_quiz].tolist())


class QuizBatches:
    """One quiz batch per optimizer step, a pure function of (seed, step): cycling through seeded
    shuffles of the quiz set, so a resumed run draws exactly the quiz batches an uninterrupted one
    would. With W processes each global quiz batch is split W ways, like training batches."""

    def __init__(self, dataset: TokenizedDataset, batch_size: int, seed: int, collator: PaddingCollator,
                 world_size: int = 1, rank: int = 0):
        self.dataset = dataset
        self.collator = collator
        batch_size = min(batch_size, max(1, len(dataset) // world_size))
        self.order = TrainBatchOrder(dataset.lengths, batch_size, seed + 1, group_by_length=False,
                                     world_size=world_size, rank=rank)
        self.num_batches = self.order.num_batches()
        self._epoch, self._batches = None, None

    def indices(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.num_batches)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self.order.epoch_batches(epoch)
        return self._batches[i]

    def batch(self, step: int) -> dict:
        return self.collator([self.dataset[i] for i in self.indices(step)])
