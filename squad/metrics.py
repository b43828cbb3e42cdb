"""The official SQuAD v1.1 evaluation (evaluate-v1.1.py's rules), framework-free."""
from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, replace the articles a/an/the by a space, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token F1 over the normalised whitespace tokens, with multiset overlap."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(gold_answers: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """{"exact_match", "f1"} ×100 over ALL questions of `gold_answers` (unanswered ones score 0); each
    question takes the max over its gold answers."""
    em = f = 0.0
    for qid, golds in gold_answers.items():
        if qid not in predictions:
            continue
        pred = predictions[qid]
        em += max(exact_match(pred, g) for g in golds)
        f += max(f1(pred, g) for g in golds)
    n = max(len(gold_answers), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f / n}
