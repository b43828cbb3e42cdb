#!/usr/bin/env python
"""A prompt -> continuation task from a play (Tiny Shakespeare): the prompt is one speech (its speaker and
at most its last --context_lines lines) plus the next speaker's name, the reference is that speaker's
first line.

    python scripts/make_continuation_data.py --input ../shared/data/lm/tinyshakespeare/input.txt \
        --output_dir data_dir --validation_split_percentage 10 --num_valid 100 --num_test 300

Speeches are the blank-line-separated documents (as train_lm_distill.py reads them). The split is the
LM issue's: the first 90 % of the speeches are training text (prompts of train.jsonl; lm_train.txt, the
plain text of MiniLLM's LM term), the last 10 % held out; held-out pairs never use a training speech.
valid.jsonl (model selection) and test.jsonl (reported) are disjoint, drawn with a fixed seed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from distill.io_utils import atomic_write_text  # noqa: E402
from lm.data import held_out_count, read_records  # noqa: E402


def pairs(speeches: list[str], context_lines: int) -> list[dict]:
    out = []
    for before, speech in zip(speeches, speeches[1:]):
        head, *body = before.split("\n")
        before = "\n".join([head, *body[-context_lines:]])
        lines = speech.split("\n")
        if len(lines) < 2 or not lines[0].endswith(":") or not lines[1].strip():
            continue
        out.append({"prompt": f"{before}\n\n{lines[0]}\n", "response": lines[1]})
    return out


def write_jsonl(path: str, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--validation_split_percentage", type=float, default=10.0)
    parser.add_argument("--num_valid", type=int, default=100)
    parser.add_argument("--num_test", type=int, default=300)
    parser.add_argument("--context_lines", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    speeches = [r["text"] for r in read_records(args.input)]
    n_train = len(speeches) - held_out_count(len(speeches), args.validation_split_percentage)
    train, held_out = pairs(speeches[:n_train], args.context_lines), pairs(speeches[n_train:], args.context_lines)
    random.Random(args.seed).shuffle(held_out)
    if args.num_valid + args.num_test > len(held_out):
        sys.exit(f"error: only {len(held_out)} held-out pairs; lower --num_valid/--num_test")
    os.makedirs(args.output_dir, exist_ok=True)
    write_jsonl(os.path.join(args.output_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(args.output_dir, "valid.jsonl"), held_out[:args.num_valid])
    write_jsonl(os.path.join(args.output_dir, "test.jsonl"), held_out[args.num_valid:args.num_valid + args.num_test])
    atomic_write_text(os.path.join(args.output_dir, "lm_train.txt"), "\n\n".join(speeches[:n_train]) + "\n")
    print(f"{len(train)} training pairs, {args.num_valid} valid, {args.num_test} test (of {len(held_out)} held out)")


if __name__ == "__main__":
    main()
