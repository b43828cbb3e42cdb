#!/usr/bin/env python
"""Split a SQuAD v1.1 file by article into train/eval JSON files (no paragraph on both sides).

Offline there is only SQuAD's dev file; the real-data runs train on 80 % of its articles and
evaluate on the other 20 %:  python scripts/split_squad_by_article.py dev-v1.1.json out_dir
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from distill.io_utils import atomic_write_json  # noqa: E402
from squad.data import split_by_article  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad_file")
    parser.add_argument("out_dir")
    parser.add_argument("--eval_fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, evaluation = split_by_article(args.squad_file, args.eval_fraction, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    for name, part in (("train.json", train), ("eval.json", evaluation)):
        atomic_write_json(os.path.join(args.out_dir, name), part)
        questions = sum(len(p["qas"]) for a in part["data"] for p in a["paragraphs"])
        print(f"{name}: {len(part['data'])} articles, {questions} questions")


if __name__ == "__main__":
    main()
