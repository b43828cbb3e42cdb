#!/usr/bin/env python
"""Train a byte-level BPE tokenizer on the TRAINING part of a corpus (the documents
train_lm_distill.py trains on with the same --validation_split_percentage), so held-out text never
shapes the vocabulary. For causal-LM runs where no pretrained tokenizer can be downloaded.

    python scripts/train_bpe_tokenizer.py --train_file ../shared/data/lm/tinyshakespeare/input.txt \
        --validation_split_percentage 10 --vocab_size 2048 --output_dir real_runs/lm/tokenizer
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distill.toy import build_bpe_tokenizer  # noqa: E402
from lm.data import read_records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_split_percentage", type=float, default=5.0)
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    records = read_records(args.train_file)
    n_train = len(records) - int(round(len(records) * args.validation_split_percentage / 100.0))
    texts = [r.get("text") or r["prompt"] + r["response"] for r in records[:n_train]]
    tokenizer = build_bpe_tokenizer(args.output_dir, texts, args.vocab_size)
    print(f"{len(tokenizer)} tokens, trained on {n_train} of {len(records)} documents -> {args.output_dir}")


if __name__ == "__main__":
    main()
