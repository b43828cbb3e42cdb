"""Tokenised datasets, padding, and the batch orders the trainer iterates.

The trainer owns batch order itself (rather than a DataLoader sampler hidden behind accelerate) so
that (a) a resumed run replays exactly the same batches, and (b) each optimizer step trains on the
same set of examples for any split of its global batch into per-device batch × accumulation ×
processes (only how they are divided into micro-batches and processes differs).
"""
from __future__ import annotations

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


def _split_evenly(indices: list[int], parts: int) -> list[list[int]]:
    """`indices` cut into `parts` consecutive pieces whose sizes differ by at most one (larger first)."""
    size, extra = divmod(len(indices), parts)
    bounds = np.cumsum([0] + [size + (k < extra) for k in range(parts)])
    return [indices[bounds[k]:bounds[k + 1]] for k in range(parts)]


class TrainBatchOrder:
    """Per-epoch optimizer steps, and their micro-batch index lists for this process.

    The unit of the order is the optimizer step's global batch, S = batch_size × accumulation ×
    world_size examples (as Hugging Face's `LengthGroupedSampler`): each epoch is a seeded permutation
    cut into steps of S, so every split of S into per-device batch, accumulation and processes trains on
    the same examples step by step; only their division into micro-batches and processes differs.
    `group_by_length`: the permutation is cut into mega-batches of 50 steps, each sorted by length, so a
    step (and each of its micro-batches) holds similar lengths and dynamic padding wastes little; the
    steps are then shuffled, the longest first. The order depends only on (seed, epoch), never on global
    RNG state, so a resumed run sees the same batches.

    A step is split into `accumulation` micro-batches of batch_size × world_size examples, each split
    over the processes. The epoch's last, partial step (r < S examples) is split as evenly: into as
    many micro-batches as its size needs, at most r // world_size so that every process has an example
    in each (only with batch_size 1 and r not a multiple of world_size does a process then get one
    example more than batch_size). With r < world_size it would leave a process without data (a DDP
    deadlock), so it is dropped; with one process nothing is ever dropped.
    """

    MEGABATCH = 50

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 world_size: int = 1, rank: int = 0, accumulation: int = 1):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size  # one micro-batch, all processes
        self.accumulation = accumulation
        self.step_batch = self.global_batch * accumulation  # one optimizer step, all processes
        self.seed = seed
        self.group_by_length = group_by_length
        self.world_size = world_size
        self.rank = rank

    def with_accumulation(self, accumulation: int) -> TrainBatchOrder:
        """The same order with optimizer steps of `accumulation` micro-batches."""
        return TrainBatchOrder(self.lengths, self.batch_size, self.seed, self.group_by_length, self.world_size,
                               self.rank, accumulation)

    def _step_sizes(self) -> list[int]:
        full, rest = divmod(len(self.lengths), self.step_batch)
        return [self.step_batch] * full + ([rest] if rest >= self.world_size else [])

    def _micro_batches(self, size: int) -> int:
        if size == self.step_batch:
            return self.accumulation
        return max(1, min(-(-size // self.global_batch), size // self.world_size))

    def num_steps(self) -> int:
        return len(self._step_sizes())

    def num_batches(self) -> int:
        """Micro-batches per epoch (each process has as many)."""
        return sum(self._micro_batches(n) for n in self._step_sizes())

    def epoch_steps(self, epoch: int) -> list[list[list[int]]]:
        """Per optimizer step of `epoch`, this process's index list of each micro-batch."""
        g = np.random.default_rng([self.seed, epoch])
        perm = g.permutation(len(self.lengths))
        if self.group_by_length:
            mega = self.MEGABATCH * self.step_batch
            chunks = [perm[i:i + mega] for i in range(0, len(perm), mega)]
            perm = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        steps = [perm[i:i + self.step_batch].tolist() for i in range(0, len(perm), self.step_batch)]
        if self.group_by_length:
            order = g.permutation(len(steps))
            steps = [steps[i] for i in order]
        # (dropped only after the shuffle, so that the steps' order does not depend on the processes)
        steps = [step for step in steps if len(step) >= self.world_size]
        if self.group_by_length and steps:
            # Longest step first: an out-of-memory error shows up at step 1, not hours in.
            longest = max(range(len(steps)), key=lambda i: self.lengths[steps[i]].max())
            steps.insert(0, steps.pop(longest))
        return [[_split_evenly(micro, self.world_size)[self.rank]
                 for micro in _split_evenly(step, self._micro_batches(len(step)))] for step in steps]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches of `epoch`, in order (the steps' concatenated)."""
        return [micro for step in self.epoch_steps(epoch) for micro in step]


def eval_batches(lengths: list[int], batch_size: int, world_size: int = 1, rank: int = 0) -> list[list[int]]:
    """This process's share of an evaluation set, sorted by length so padding is minimal.

    Every example goes to exactly one process; callers put predictions back in order by example_id.
    """
    mine = [i for i in np.argsort(lengths, kind="stable").tolist() if i % world_size == rank]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


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


class DatasetBatches:
    """The trainer's default batch source: a fixed dataset in `TrainBatchOrder`'s order.

    A batch source tells the trainer how many optimizer steps an epoch has and yields, per step, the
    list of collated micro-batches (MiniLLM's rollouts are another source: sequence_kd/rollouts.py; the
    contract: `BatchSource` in distill/plugins.py). `epoch_steps(epoch, skip, ctx)` starts after the
    `skip` steps of the epoch already done (a resumed run); `state_dict()` is what a checkpoint must keep
    for an exact resume (nothing here: the order depends on (seed, epoch) only).
    """

    def __init__(self, dataset: TokenizedDataset, collator, order: TrainBatchOrder, accumulation_steps: int):
        # The order is cut into optimizer steps (TrainBatchOrder), whatever accumulation it was made with.
        self.dataset, self.collator, self.accumulation = dataset, collator, accumulation_steps
        self.order = order.with_accumulation(accumulation_steps)
        self.num_examples = len(dataset)

    def steps_per_epoch(self) -> int:
        return self.order.num_steps()

    def epoch_steps(self, epoch: int, skip: int, ctx=None):
        for step_batches in self.order.epoch_steps(epoch)[skip:]:
            yield [self.collator([self.dataset[i] for i in idx]) for idx in step_batches]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def training_set_batches(dataset: TokenizedDataset, collator, args, accelerator,
                         group_by_length: bool = True) -> DatasetBatches:
    """The trainer's default batch source for `dataset`: our order for this process (`args`: the
    TrainingArguments' batch size, seed and accumulation)."""
    order = TrainBatchOrder(dataset.lengths, args.per_device_train_batch_size, args.seed,
                            group_by_length=group_by_length, world_size=accelerator.num_processes,
                            rank=accelerator.process_index)
    return DatasetBatches(dataset, collator, order, args.gradient_accumulation_steps)
