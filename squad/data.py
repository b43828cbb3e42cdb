"""SQuAD v1.1 examples from the official nested JSON (`data → paragraphs → qas → answers`) or the Hub."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from distill.errors import UsageError


@dataclass
class SquadExample:
    id: str
    title: str
    context: str
    question: str
    answers: list[str]  # every gold answer text (dev has up to 3+; train has 1)
    answer_starts: list[int]  # character offsets in context, one per answer


def read_squad_json(path: str) -> list[SquadExample]:
    """Flatten the official file. Every answer must lie where its answer_start says (checked)."""
    if not os.path.isfile(path):
        raise UsageError(f"SQuAD file not found: {path}; pass the official train-v1.1.json/dev-v1.1.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); pass the official SQuAD "
                         "v1.1 file") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise UsageError(f"{path} is not in the SQuAD format (no top-level 'data' list of articles); pass the "
                         "official SQuAD v1.1 JSON")
    examples = []
    for article in raw["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                texts = [a["text"] for a in qa.get("answers", [])]
                starts = [int(a["answer_start"]) for a in qa.get("answers", [])]
                for text, start in zip(texts, starts):
                    if context[start:start + len(text)] != text:
                        raise UsageError(f"{path}: question {qa['id']}: answer {text!r} is not at answer_start "
                                         f"{start} of its context; fix the file")
                examples.append(SquadExample(qa["id"], article.get("title", ""), context, qa["question"], texts,
                                             starts))
    if not examples:
        raise UsageError(f"{path} holds no questions; pass a SQuAD v1.1 file with data")
    return examples


def load_squad_hub(split: str, cache_dir: str | None = None) -> list[SquadExample]:
    """The Hub's `squad` dataset (online, or cached), in the same shape."""
    from datasets import load_dataset
    try:
        ds = load_dataset("squad", split=split, cache_dir=cache_dir)
    except Exception as e:
        raise UsageError(f"could not load the Hub dataset 'squad' ({type(e).__name__}); pass --train_file/"
                         "--predict_file with the official JSON files") from None
    return [SquadExample(r["id"], r["title"], r["context"], r["question"], list(r["answers"]["text"]),
                         list(r["answers"]["answer_start"])) for r in ds]


def split_by_article(path: str, eval_fraction: float, seed: int) -> tuple[dict, dict]:
    """(train JSON, eval JSON): whole articles go to one side, so no paragraph is in both."""
    import random
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    articles = list(raw["data"])
    random.Random(seed).shuffle(articles)
    n_eval = max(1, round(eval_fraction * len(articles)))
    version = raw.get("version", "1.1")
    return {"version": version, "data": articles[n_eval:]}, {"version": version, "data": articles[:n_eval]}
