"""DistilBERT-style masking (lm/masking.py): proportion, 80/10/10, specials, smoothing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lm.masking import MaskingCollator, MLMMasker, fixed_masking, smoothed_token_probs

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = [PAD, CLS, SEP, MASK]
V = 40


def masker(counts=None, smoothing=0.0, **kw):
    counts = np.ones(V, dtype=np.int64) if counts is None else counts
    return MLMMasker(smoothed_token_probs(counts, smoothing, SPECIAL), MASK, SPECIAL, **kw)


def batch(rows, width):
    ids = torch.full((len(rows), width), PAD)
    att = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
    return ids, att


def test_masks_the_proportion_of_real_regular_tokens_and_labels_them():
    torch.manual_seed(0)
    rows = [[CLS, *range(4, 24), SEP], [CLS, *range(10, 17), SEP]]  # 27 regular tokens
    ids, att = batch(rows, 22)
    masked, labels = masker(mask_prop=0.15)(ids, att)
    chosen = labels != -100
    assert chosen.sum().item() == math.ceil(0.15 * 27)
    assert torch.equal(labels[chosen], ids[chosen])  # the label is the original token
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes


def test_special_tokens_and_padding_are_never_chosen_and_random_tokens_are_regular():
    torch.manual_seed(1)
    ids, att = batch([[CLS, 5, 6, SEP, 7, SEP], [CLS, 8, SEP]], 8)
    m = masker(mask_prop=0.9, word_mask=0.0, word_keep=0.0, word_rand=1.0)
    for _ in range(200):
        masked, labels = m(ids, att)
        chosen = labels != -100
        assert not chosen[(att == 0) | (ids < 4)].any()
        assert (masked[chosen] >= 4).all()  # random replacements are never special tokens


def test_eighty_ten_ten_split():
    torch.manual_seed(2)
    ids, att = batch([[CLS, *range(4, 40), SEP]] * 20, 38)
    m = masker(mask_prop=0.5)
    kinds = np.zeros(3)
    for _ in range(50):
        masked, labels = m(ids, att)
        chosen = labels != -100
        new, old = masked[chosen], labels[chosen]
        is_mask = new == MASK
        kinds += [is_mask.sum().item(), ((new == old) & ~is_mask).sum().item(), ((new != old) & ~is_mask).sum().item()]
    frac = kinds / kinds.sum()
    # a random token equals the original 1/36 of the time and then counts as "kept": 0.1 + 0.1/36
    assert frac == pytest.approx([0.8, 0.1 + 0.1 / 36, 0.1 - 0.1 / 36], abs=0.01)


def test_smoothing_prefers_rare_tokens_and_zero_smoothing_is_uniform():
    counts = np.ones(V, dtype=np.int64)
    counts[4] = 10_000  # frequent
    counts[5] = 1  # rare
    ids, att = batch([[CLS] + [4, 5] * 10 + [SEP]] * 8, 22)

    def rate(smoothing):
        torch.manual_seed(3)
        m, hits = masker(counts, smoothing, mask_prop=0.15), np.zeros(2)
        for _ in range(200):
            labels = m(ids, att)[1]
            hits += [(labels == 4).sum().item(), (labels == 5).sum().item()]
        return hits / hits.sum()

    frequent, rare = rate(0.7)
    assert rare > 0.9 and frequent < 0.1  # weights 1 vs 10000^-0.7 ≈ 0.0016 per occurrence
    assert rate(0.0) == pytest.approx([0.5, 0.5], abs=0.03)


def test_fixed_masking_is_reproducible_and_the_collator_keeps_it():
    m = masker(mask_prop=0.3)
    cols = {"input_ids": [[CLS, *range(4, 14), SEP], [CLS, 7, 8, 9, SEP]], "attention_mask": [[1] * 12, [1] * 5]}
    a, b = fixed_masking(cols, m, seed=5), fixed_masking(cols, m, seed=5)
    assert a == b and a["input_ids"] != cols["input_ids"]
    collate = MaskingCollator(PAD, m)
    items = [{k: v[i] for k, v in a.items()} for i in range(2)]
    out = collate(items)
    assert out["input_ids"][0].tolist() == a["input_ids"][0]
    assert out["labels"][1, 5:].eq(-100).all()  # padding labels are ignored
    fresh = collate([{k: v[i] for k, v in cols.items()} for i in range(2)])  # training: masked afresh
    assert (fresh["labels"] != -100).any()
