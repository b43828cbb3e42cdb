"""DistilBERT's masking for masked-LM distillation.

Per batch, ⌈mlm_mask_prop · n⌉ of its n real, non-special tokens are chosen without replacement, each
with probability ∝ max(count, 1)^(−mlm_smoothing): frequent tokens ("the", ",") are chosen less often
than their share, rare ones more (smoothing 0 is uniform). Each chosen token becomes [MASK]
(word_mask), stays (word_keep) or becomes a random non-special token (word_rand); its label is the
original id, every other label is -100. Special tokens and padding are never chosen.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from distill.batching import PaddingCollator
from lm.data import IGNORE


def smoothed_token_probs(counts: np.ndarray, smoothing: float, special_ids: list[int]) -> torch.Tensor:
    """(V,) unnormalised weights max(count, 1)^(−smoothing), 0 for special tokens."""
    probs = np.maximum(counts, 1).astype(np.float64) ** (-smoothing)
    probs[list(special_ids)] = 0.0
    return torch.from_numpy(probs)


class MLMMasker:
    def __init__(self, token_probs: torch.Tensor, mask_token_id: int, special_ids: list[int],
                 mask_prop: float = 0.15, word_mask: float = 0.8, word_keep: float = 0.1, word_rand: float = 0.1):
        self.token_probs = token_probs.double()  # (V,)
        self.mask_token_id = mask_token_id
        self.mask_prop = mask_prop
        self.split = torch.tensor([word_mask, word_keep, word_rand], dtype=torch.float64)
        regular = torch.ones(len(token_probs), dtype=torch.bool)
        regular[list(special_ids)] = False
        self.regular_ids = regular.nonzero().squeeze(1)  # random replacements: never a special token

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input_ids, labels), both (B, T). `generator` None: the global RNG (so a resumed run,
        which restores it, masks exactly as the uninterrupted one)."""
        weights = self.token_probs[input_ids] * attention_mask.double()  # (B, T); 0 = never chosen
        flat = weights.flatten()
        n_candidates = int((flat > 0).sum())
        labels = torch.full_like(input_ids, IGNORE)
        if n_candidates == 0:
            return input_ids.clone(), labels
        n_chosen = min(n_candidates, math.ceil(self.mask_prop * n_candidates))
        chosen = torch.multinomial(flat, n_chosen, replacement=False, generator=generator)  # (n,) flat positions
        masked = input_ids.clone().flatten()
        labels = labels.flatten()
        labels[chosen] = masked[chosen]
        action = torch.multinomial(self.split, n_chosen, replacement=True, generator=generator)  # 0 mask 1 keep 2 rand
        random_ids = self.regular_ids[torch.randint(len(self.regular_ids), (n_chosen,), generator=generator)]
        new = torch.where(action == 0, torch.full_like(random_ids, self.mask_token_id),
                          torch.where(action == 1, masked[chosen], random_ids))
        masked[chosen] = new
        return masked.view_as(input_ids), labels.view_as(input_ids)


class MaskingCollator(PaddingCollator):
    """Pads a batch, then masks it afresh (a new masking every time a sequence is seen)."""

    def __init__(self, pad_token_id: int, masker: MLMMasker, pad_to: int | None = None):
        super().__init__(pad_token_id, pad_to)
        self.masker = masker

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(items)
        if "labels" not in batch:  # a pre-masked evaluation batch keeps its fixed masking
            batch["input_ids"], batch["labels"] = self.masker(batch["input_ids"], batch["attention_mask"])
        return batch


def fixed_masking(columns: dict[str, list], masker: MLMMasker, seed: int) -> dict[str, list]:
    """The held-out set masked once, with its own seeded generator: every evaluation (and the teacher's
    reference perplexity) scores the same masked positions."""
    generator = torch.Generator().manual_seed(seed)
    ids_out, labels_out = [], []
    for ids in columns["input_ids"]:
        masked, labels = masker(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), generator)
        ids_out.append(masked[0].tolist())
        labels_out.append(labels[0].tolist())
    return {**columns, "input_ids": ids_out, "labels": labels_out}
