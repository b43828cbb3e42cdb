"""Quiz data: the held-out examples whose loss the student's update is judged on (LGTM).

By default a slice of the TRAINING set is held out and never used for student updates. The released
code quizzed on the GLUE validation set, the same set it then selected checkpoints and reported on,
which leaks dev labels into training; `--lgtm_quiz_source validation` reproduces that, with a warning.
"""
from __future__ import annotations

import numpy as np

from distill.batching import PaddingCollator, TokenizedDataset


def split_quiz_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, quiz rows) of a training set of n rows: a seeded random `fraction` (at least one
    row, and at least one row left to train on) becomes quiz data. Both lists are sorted."""
    if n < 2:
        raise ValueError(f"cannot hold out quiz data from a training set of {n} example(s)")
    n_quiz = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng([seed, 0x9E1]).permutation(n)
    return sorted(perm[n_quiz:].tolist()), sorted(perm[:n_quiz].tolist())


class QuizBatches:
    """The quiz batch of each optimizer step, a pure function of (seed, step), so a resumed run draws
    exactly the quiz batches an uninterrupted one would.

    `batch_size` is the GLOBAL quiz batch of one optimizer step (run_glue: per-device batch × accumulation
    × processes), so how the step is split into micro-batches and processes does not change what the
    student is quizzed on. The quiz set is read as one endless stream of seeded shuffles (pass 0, pass 1,
    ...) and step s takes the next `batch_size` examples, wrapping into the next pass: every quiz batch has
    the full size. (A short last batch would not change the quiz loss's scale, it is a mean, but it would
    change the influence's: the quiz gradient v of a mean over B examples carries noise of norm ~1/√B on
    top of its expected value, so ‖v‖, and with it h = H·v, grows when B shrinks.) A quiz set smaller
    than `batch_size` gives batches of the whole set, again of one size.

    With W processes each takes a contiguous share of the global batch (sizes differ by at most one); the
    teacher sums the shares' gradients over processes, which equals the 1-process gradient. Each share is
    cut into micro-batches of at most `micro_batch_size` rows, so the quiz pass at θ' holds no more
    activations than a training micro-batch.
    """

    def __init__(self, dataset: TokenizedDataset, batch_size: int, seed: int, collator: PaddingCollator,
                 world_size: int = 1, rank: int = 0, micro_batch_size: int | None = None):
        if len(dataset) == 0:
            raise ValueError("no quiz data")
        self.dataset = dataset
        self.collator = collator
        # at least one example per process (they may repeat within the batch only if the set is that small)
        self.batch_size = max(world_size, min(batch_size, len(dataset)))
        self.seed = seed + 1  # the training order uses `seed`: keep the two streams apart
        self.world_size, self.rank = world_size, rank
        self.micro_batch_size = micro_batch_size or self.batch_size
        self._passes: dict[int, np.ndarray] = {}

    def _pass(self, i: int) -> np.ndarray:
        if i not in self._passes:
            if len(self._passes) > 4:  # steps only move forward: keep a few recent passes
                self._passes.pop(min(self._passes))
            self._passes[i] = np.random.default_rng([self.seed, i]).permutation(len(self.dataset))
        return self._passes[i]

    def global_indices(self, step: int) -> list[int]:
        """The whole quiz batch of optimizer step `step` (all processes)."""
        n = len(self.dataset)
        start = step * self.batch_size
        return [int(self._pass(pos // n)[pos % n]) for pos in range(start, start + self.batch_size)]

    def indices(self, step: int) -> list[int]:
        """This process's share of the quiz batch of step `step`."""
        rows, w, r = self.global_indices(step), self.world_size, self.rank
        return rows[r * len(rows) // w:(r + 1) * len(rows) // w]

    def micro_batches(self, step: int) -> list[dict]:
        rows, m = self.indices(step), self.micro_batch_size
        return [self.collator([self.dataset[i] for i in rows[a:a + m]]) for a in range(0, len(rows), m)]

    def batch(self, step: int) -> dict:
        """This process's share as one batch."""
        return self.collator([self.dataset[i] for i in self.indices(step)])
