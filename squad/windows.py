"""SQuAD examples -> model features: long contexts are cut into windows of `max_seq_length` tokens that
overlap by `doc_stride` tokens (Hugging Face run_qa.py's meaning), question first.

Training features carry `labels` = (start, end) token positions of the first gold answer, or (0, 0)
(the [CLS] token) when the answer is not entirely inside the window. Evaluation features keep, outside
the tensors, the example each came from and the character offsets of its context tokens (None for
question and special tokens), which post-processing maps spans back with.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from distill.batching import TokenizedDataset
from distill.errors import UsageError
from squad.data import SquadExample

logger = logging.getLogger(__name__)


@dataclass
class EvalFeatureMap:
    example_index: list[int]  # feature -> example
    offsets: list[list[tuple[int, int] | None]]  # feature -> token -> (char start, char end) in the context, or None


def truncate_question(question: str, tokenizer, max_query_length: int) -> str:
    """The question cut after its first `max_query_length` tokens (leading whitespace removed: some
    SQuAD questions have it, and it would only waste the window)."""
    question = question.lstrip()
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_query_length:
        return question
    return question[:enc["offset_mapping"][max_query_length - 1][1]]


def check_window_room(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """A window holds the question, 3 special tokens and context; consecutive windows share `doc_stride`
    context tokens, so the stride must be below the context part or the window cannot move."""
    context_room = max_seq_length - max_query_length - 3
    if doc_stride >= context_room:
        fix = "lower --doc_stride" if context_room > 1 else "lower --max_query_length or raise --max_seq_length"
        raise UsageError(f"--doc_stride {doc_stride} leaves no room to move the window: --max_seq_length "
                         f"{max_seq_length} minus --max_query_length {max_query_length} and 3 special tokens leaves "
                         f"{context_room} context tokens; {fix}")


def _encode(examples: list[SquadExample], tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int):
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError("SQuAD features need a fast tokenizer (character offsets); pass a model dir with "
                         "tokenizer.json or --tokenizer_name of a fast tokenizer")
    check_window_room(max_seq_length, doc_stride, max_query_length)
    questions = [truncate_question(ex.question, tokenizer, max_query_length) for ex in examples]
    padding_side_right = tokenizer.padding_side == "right"
    first, second = (questions, [ex.context for ex in examples]) if padding_side_right else \
        ([ex.context for ex in examples], questions)
    enc = tokenizer(first, second, truncation="only_second" if padding_side_right else "only_first",
                    max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, return_token_type_ids=True)
    context_id = 1 if padding_side_right else 0
    return enc, context_id


def train_features(examples: list[SquadExample], tokenizer, max_seq_length: int, doc_stride: int,
                   max_query_length: int) -> TokenizedDataset:
    enc, context_id = _encode(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    labels, located = [], set()
    for i, offsets in enumerate(enc["offset_mapping"]):
        ex = examples[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        cls = enc["input_ids"][i].index(tokenizer.cls_token_id) if tokenizer.cls_token_id in enc["input_ids"][i] else 0
        if not ex.answers:
            labels.append([cls, cls])
            continue
        start_char = ex.answer_starts[0]
        end_char = start_char + len(ex.answers[0])
        ctx = [t for t, s in enumerate(seq) if s == context_id]
        lo, hi = ctx[0], ctx[-1]
        if not (offsets[lo][0] <= start_char and offsets[hi][1] >= end_char):
            labels.append([cls, cls])  # the answer is not (entirely) in this window
            continue
        start = next(t for t in range(lo, hi + 1) if offsets[t][1] > start_char)
        end = next(t for t in range(hi, lo - 1, -1) if offsets[t][0] < end_char)
        labels.append([start, end])
        located.add(enc["overflow_to_sample_mapping"][i])
    unlocated = sum(1 for i, ex in enumerate(examples) if ex.answers and i not in located)
    if unlocated:
        # As in HF run_qa.py (and the legacy script), such a question still trains, every window pointing
        # at [CLS] ("not here"); counted so that a window too short for the answers does not go unnoticed.
        logger.warning("%d of %d training questions have their answer in no window (longer than the context part "
                       "of --max_seq_length %d?); all their windows are labelled [CLS]", unlocated, len(examples),
                       max_seq_length)
    columns = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return TokenizedDataset({**columns, "labels": labels})


def eval_features(examples: list[SquadExample], tokenizer, max_seq_length: int, doc_stride: int,
                  max_query_length: int) -> tuple[TokenizedDataset, EvalFeatureMap]:
    enc, context_id = _encode(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    offsets = []
    for i, token_offsets in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(i)
        offsets.append([tuple(o) if s == context_id else None for o, s in zip(token_offsets, seq)])
    columns = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return TokenizedDataset(columns), EvalFeatureMap(list(enc["overflow_to_sample_mapping"]), offsets)
