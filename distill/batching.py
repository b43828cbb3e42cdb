"""Tokenised datasets, padding, and the batch orders the trainer iterates.

The trainer owns batch order itself (rather than a DataLoader sampler hidden behind accelerate) so
that (a) a resumed run replays exactly the same batches, and (b) with W processes each global batch
is the same set of examples as the 1-process batch of W times the size, split W ways.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset


class TokenizedDataset(Dataset):
    """Columns of equal length (input_ids, attention_mask, token_type_ids, labels, ...).

    Each item also carries `example_id` (its row), so predictions can be put back in file order.
    """

    def __init__(self, columns: dict[str, list]):
        self.columns = columns
        self.lengths = [len(ids) for ids in columns["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.columns.items()}
        item["example_id"] = i
        return item


class PaddingCollator:
    """Pads each batch to its longest sequence, or to `pad_to` (the papers' fixed length).

    Per-token columns (lists) are padded; per-example ones (a class label, example_id) are stacked.
    Per-token `labels` (language modelling) pad with -100, the ignored label.
    """

    PAD_VALUES = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1,
                  "labels": -100}

    def __init__(self, pad_token_id: int, pad_to: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = self.pad_to or max(len(it["input_ids"]) for it in items)
        batch = {}
        for key in items[0]:
            values = [it[key] for it in items]
            if key in self.PAD_VALUES and isinstance(values[0], (list, tuple, np.ndarray)):
                pad = self.pad_token_id if key == "input_ids" else self.PAD_VALUES[key]
                batch[key] = torch.tensor([list(v) + [pad] * (width - len(v)) for v in values])  # (B, T)
            else:
                batch[key] = torch.tensor(values)  # labels (B,), example_id (B,)
        return batch


def _split_global_batch(indices: list[int], world_size: int, rank: int) -> list[int]:
    per_rank = math.ceil(len(indices) / world_size)
    return indices[rank * per_rank:(rank + 1) * per_rank]


class TrainBatchOrder:
    """Per-epoch micro-batch index lists for this process.

    `group_by_length`: shuffle, cut into mega-batches of 50 global batches, sort each by length, so a
    batch holds similar lengths and dynamic padding wastes little. The order depends only on
    (seed, epoch), never on global RNG state, so a resumed run sees the same batches.
    """

    MEGABATCH = 50

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 world_size: int = 1, rank: int = 0):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.world_size = world_size
        self.rank = rank

    def num_batches(self) -> int:
        n = len(self.lengths) // self.global_batch
        rest = len(self.lengths) % self.global_batch
        # A last global batch with fewer examples than processes would leave a process without data
        # (a DDP deadlock), so it is dropped; with one process nothing is ever dropped.
        return n + (1 if rest >= self.world_size else 0)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        g = np.random.default_rng([self.seed, epoch])
        perm = g.permutation(len(self.lengths))
        if self.group_by_length:
            mega = self.MEGABATCH * self.global_batch
            chunks = [perm[i:i + mega] for i in range(0, len(perm), mega)]
            perm = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [perm[i:i + self.global_batch].tolist() for i in range(0, len(perm), self.global_batch)]
        batches = batches[:self.num_batches()]
        if self.group_by_length:
            order = g.permutation(len(batches))
            batches = [batches[i] for i in order]
            # Longest batch first: an out-of-memory error shows up at step 1, not hours in.
            longest = max(range(len(batches)), key=lambda i: self.lengths[batches[i]].max())
            batches.insert(0, batches.pop(longest))
        return [_split_global_batch(b, self.world_size, self.rank) for b in batches]


def eval_batches(lengths: list[int], batch_size: int, world_size: int = 1, rank: int = 0) -> list[list[int]]:
    """This process's share of an evaluation set, sorted by length so padding is minimal.

    Every example goes to exactly one process; callers put predictions back in order by example_id.
    """
    mine = [i for i in np.argsort(lengths, kind="stable").tolist() if i % world_size == rank]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


class DatasetBatches:
    """The trainer's default batch source: a fixed dataset in `TrainBatchOrder`'s order.

    A batch source tells the trainer how many optimizer steps an epoch has and yields, per step, the
    list of collated micro-batches (MiniLLM's rollouts are another source: minillm/rollouts.py).
    `epoch_steps(epoch, skip, trainer)` starts after the `skip` steps of the epoch already done (a
    resumed run); `state_dict()` is what a checkpoint must keep for an exact resume (nothing here:
    the order depends on (seed, epoch) only).
    """

    def __init__(self, dataset: TokenizedDataset, collator, order: TrainBatchOrder, accumulation_steps: int):
        self.dataset, self.collator, self.order, self.accumulation = dataset, collator, order, accumulation_steps
        self.num_examples = len(dataset)

    def steps_per_epoch(self) -> int:
        return -(-self.order.num_batches() // self.accumulation)

    def epoch_steps(self, epoch: int, skip: int, trainer=None):
        batches = self.order.epoch_batches(epoch)
        steps = [batches[i:i + self.accumulation] for i in range(0, len(batches), self.accumulation)]
        for step_batches in steps[skip:]:
            yield [self.collator([self.dataset[i] for i in idx]) for idx in step_batches]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
