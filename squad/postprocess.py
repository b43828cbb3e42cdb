"""Start/end logits of every window -> one answer text per question (plain numpy).

For each question, over all its windows: the `n_best_size` highest start and end logits are paired;
a pair is a candidate when both tokens are context tokens, end ≥ start and the span has at most
`max_answer_length` tokens; the candidate with the highest start + end logit wins, and its text is
cut from the context with the tokens' character offsets. A question with no candidate gets "".
"""
from __future__ import annotations

import numpy as np

from squad.data import SquadExample
from squad.windows import EvalFeatureMap


def best_spans(examples: list[SquadExample], features: EvalFeatureMap, logits: np.ndarray, n_best_size: int = 20,
               max_answer_length: int = 30) -> dict[str, str]:
    """`logits` (n_features, T, 2): start logits [..., 0], end logits [..., 1] (padding beyond a window's
    tokens is ignored). Returns {question id: answer text}."""
    by_example: dict[int, list[int]] = {}
    for f, e in enumerate(features.example_index):
        by_example.setdefault(e, []).append(f)
    predictions = {}
    for e, ex in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for f in by_example.get(e, []):
            offsets = features.offsets[f]
            start_logits, end_logits = logits[f, :len(offsets), 0], logits[f, :len(offsets), 1]  # (T,)
            starts = np.argsort(start_logits)[::-1][:n_best_size]
            ends = np.argsort(end_logits)[::-1][:n_best_size]
            for s in starts:
                if offsets[s] is None:
                    continue
                for t in ends:
                    if offsets[t] is None or t < s or t - s + 1 > max_answer_length:
                        continue
                    score = start_logits[s] + end_logits[t]
                    if score > best_score:
                        best_score, best_text = score, ex.context[offsets[s][0]:offsets[t][1]]
        predictions[ex.id] = best_text
    return predictions


class SquadEvaluator:
    """The trainer's `compute_metrics` for SQuAD: windows' logits -> answers -> official EM/F1 (×100).
    Keeps the last answers in `.predictions` (written as predictions.json by the script)."""

    def __init__(self, examples: list[SquadExample], features: EvalFeatureMap, n_best_size: int,
                 max_answer_length: int):
        from squad.metrics import squad_scores
        self.examples, self.features = examples, features
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length
        self.gold = {ex.id: ex.answers for ex in examples}
        self.score = squad_scores
        self.predictions: dict[str, str] = {}

    def __call__(self, logits: np.ndarray, dataset) -> dict[str, float]:
        self.predictions = best_spans(self.examples, self.features, logits, self.n_best_size, self.max_answer_length)
        return {**self.score(self.gold, self.predictions), "questions": len(self.examples)}  # samples = windows
