"""IMDB reviews from a local csv(.gz) (split,label[,rating,id,orig_path],text, as imdb_50k.csv.gz) or the
Hub's `imdb`, a dev split carved from TRAIN (model selection never sees test), and the truncation of
long reviews.

Truncation (`--truncation`): a review often states its verdict at the end, so cutting only the tail
(`head`, the usual default) loses it. `head_tail` (default) keeps the first `--head_tokens` tokens and
fills the rest of the window with the LAST tokens, the best strategy of Sun et al. (2019, "How to
Fine-Tune BERT for Text Classification?": head 128 + tail 382 for 512). `tail` keeps the end only.
The reviews' `<br />` line-break tags are replaced by spaces first (markup, not text).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distill.batching import TokenizedDataset
from distill.errors import UsageError
from distill.text_files import csv_records, text_lines

LABELS = ("neg", "pos")  # label 0 = negative, 1 = positive (the dataset's own coding)
TRUNCATIONS = ("head", "tail", "head_tail")
REQUIRED_COLUMNS = ("split", "label", "text")


@dataclass
class Reviews:
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows) -> "Reviews":
        return Reviews([self.texts[i] for i in rows], [self.labels[i] for i in rows])

    def sample(self, n: int | None, seed: int) -> "Reviews":
        """A seeded random subset of n reviews (the files are sorted by label: a head would be one class)."""
        if n is None or n >= len(self):
            return self
        return self.select(sorted(np.random.default_rng(seed).permutation(len(self))[:n].tolist()))


SPLITS = ("train", "test")


def read_imdb_csv(path: str) -> dict[str, Reviews]:
    """{"train": ..., "test": ...} from the csv (gzip-compressed when the name ends in .gz). Every row
    has the header's fields, a split of train/test and a label of 0/1; both splits must hold reviews."""
    lines = text_lines(path, not_found=f"IMDB file not found: {path}; pass the path of imdb_50k.csv.gz or of a "
                                       "csv with columns split,label,text")
    records = csv_records(lines, path)
    _, header = next(records, (0, None))
    if header is None:
        raise UsageError(f"{path} is empty; pass the IMDB csv(.gz) with columns split,label,text")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"{path} lacks column(s) {', '.join(missing)} (has {header}); the IMDB csv "
                         "needs split,label,text")
    split_col, label_col, text_col = (header.index(c) for c in REQUIRED_COLUMNS)
    splits: dict[str, Reviews] = {name: Reviews([], []) for name in SPLITS}
    for line, row in records:
        if len(row) != len(header):  # an unquoted comma in a review, or a cut-off row: fields would shift
            raise UsageError(f"{path} line {line}: {len(row)} fields but the header has {len(header)} "
                             f"({', '.join(header)}); quote reviews that contain commas, and give every row every "
                             "column")
        if row[split_col] not in SPLITS:  # e.g. aclImdb's unlabelled 'unsup' reviews, or 'Train'
            raise UsageError(f"{path} line {line}: split {row[split_col]!r} is not train or test; fix the row or "
                             "drop it")
        if row[label_col] not in ("0", "1"):
            raise UsageError(f"{path} line {line}: label {row[label_col]!r} is not 0 (neg) or 1 (pos); fix the "
                             "file")
        part = splits[row[split_col]]
        part.texts.append(row[text_col])
        part.labels.append(int(row[label_col]))
    empty = [name for name in SPLITS if not splits[name]]
    if empty:
        found = sorted(name for name in SPLITS if splits[name])
        raise UsageError(f"{path} needs rows of split 'train' and 'test' (found {found}); add the "
                         f"{' and '.join(empty)} reviews")
    return splits


def load_imdb_hub(cache_dir: str | None = None) -> dict[str, Reviews]:
    from datasets import load_dataset
    try:
        ds = load_dataset("imdb", cache_dir=cache_dir)
    except Exception as e:
        raise UsageError(f"could not load the Hub dataset 'imdb' ({type(e).__name__}); pass --data_file with the "
                         "local csv") from None
    return {split: Reviews(list(ds[split]["text"]), [int(x) for x in ds[split]["label"]])
            for split in ("train", "test")}


def split_dev(train: Reviews, dev_fraction: float, seed: int) -> tuple[Reviews, Reviews]:
    """(train, dev): a seeded, label-stratified `dev_fraction` of TRAIN becomes the dev set."""
    if not 0.0 < dev_fraction < 1.0:
        raise UsageError(f"--dev_fraction must be in (0, 1), got {dev_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(train.labels)
    dev_rows = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        dev_rows += rng.permutation(rows)[:max(1, round(dev_fraction * len(rows)))].tolist()
    dev_set = set(dev_rows)
    rest = train.select([i for i in range(len(train)) if i not in dev_set])
    if not rest:
        raise UsageError(f"the train split has {len(train)} review(s), all taken by the dev split "
                         f"(--dev_fraction {dev_fraction}); add training reviews")
    return rest, train.select(sorted(dev_rows))


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text ([CLS] / [SEP] for BERT)."""
    probe = tokenizer("probe")["input_ids"]
    content = tokenizer("probe", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(probe)) if probe[i:i + len(content)] == content)
    return probe[:start], probe[start + len(content):]


def tokenize_reviews(reviews: Reviews, tokenizer, max_seq_length: int, truncation: str = "head_tail",
                     head_tokens: int = 128) -> TokenizedDataset:
    if truncation not in TRUNCATIONS:
        raise UsageError(f"--truncation {truncation!r}: choose one of {', '.join(TRUNCATIONS)}")
    prefix, suffix = _special_tokens(tokenizer)
    budget = max_seq_length - len(prefix) - len(suffix)
    if budget < 1:
        raise UsageError(f"--max_seq_length {max_seq_length} leaves no room for text; raise it")
    head = min(head_tokens, budget)
    texts = [t.replace("<br />", " ") for t in reviews.texts]
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]  # long reviews are cut below
    input_ids = []
    for seq in ids:
        if len(seq) > budget:
            if truncation == "head":
                seq = seq[:budget]
            elif truncation == "tail":
                seq = seq[-budget:]
            else:
                seq = seq[:head] + seq[len(seq) - (budget - head):] if budget > head else seq[:head]
        input_ids.append(prefix + seq + suffix)
    return TokenizedDataset({"input_ids": input_ids, "attention_mask": [[1] * len(x) for x in input_ids],
                             "token_type_ids": [[0] * len(x) for x in input_ids], "labels": list(reviews.labels)})
