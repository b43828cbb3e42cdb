"""SQuAD v1.1 examples from the official nested JSON (`data → paragraphs → qas → answers`) or the Hub."""
from __future__ import annotations

import json
from dataclasses import dataclass

from distill.errors import UsageError
from distill.text_files import check_is_file, json_type, parse_json, read_text


@dataclass
class SquadExample:
    id: str
    title: str
    context: str
    question: str
    answers: list[str]  # every gold answer text (dev has up to 3+; train has 1)
    answer_starts: list[int]  # character offsets in context, one per answer


def read_squad_json(path: str) -> list[SquadExample]:
    """Flatten the official file, checking its shape on the way: every article, paragraph, question and
    answer is an object with the fields training and scoring read, and every answer lies where its
    answer_start says.

    An answer that is not at its answer_start is refused, not skipped: the legacy HF script dropped
    (with a warning) questions whose whitespace-tokenised answer it could not find, but character
    offsets here are exact and the official files match them everywhere, so a mismatch means a broken
    or edited file, and training on the wrong span would go unnoticed."""
    check_is_file(path, f"SQuAD file not found: {path}; pass the official train-v1.1.json/dev-v1.1.json")
    text = read_text(path)
    if not text.strip():
        raise UsageError(f"{path} is empty; pass the official SQuAD v1.1 JSON")
    raw = parse_json(text, path, "pass the official SQuAD v1.1 file")
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise UsageError(f"{path} is not in the SQuAD format (no top-level 'data' list of articles); pass the "
                         "official SQuAD v1.1 JSON")
    examples, seen = [], {}
    for a, article in enumerate(raw["data"]):
        where = f"data[{a}]"
        _expect(article, dict, path, where, "an article object with 'title' and 'paragraphs'")
        paragraphs = article.get("paragraphs", [])
        _expect(paragraphs, list, path, f"{where}.paragraphs", "a list of paragraph objects")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            _expect(paragraph, dict, path, where, "a paragraph object with 'context' and 'qas'")
            context = _field(paragraph, "context", str, path, where)
            qas = paragraph.get("qas", [])
            _expect(qas, list, path, f"{where}.qas", "a list of question objects")
            for q, qa in enumerate(qas):
                examples.append(_question(qa, context, article.get("title", ""), path, f"{where}.qas[{q}]"))
                qid = examples[-1].id
                if qid in seen:  # predictions and scores are keyed by id: a duplicate would shadow a question
                    raise UsageError(f"{path}: question id {qid!r} is used twice ({seen[qid]} and {where}.qas[{q}]); "
                                     "give every question its own id")
                seen[qid] = f"{where}.qas[{q}]"
    if not examples:
        raise UsageError(f"{path} holds no questions; pass a SQuAD v1.1 file with data")
    return examples


def _expect(value, kind: type, path: str, where: str, what: str) -> None:
    if not isinstance(value, kind):
        raise UsageError(f"{path}: {where} is {json_type(value)}, not {what}; pass the official SQuAD v1.1 "
                         "JSON (or fix the file)")


def _field(obj: dict, name: str, kind: type, path: str, where: str):
    if name not in obj:
        raise UsageError(f"{path}: {where} has no {name!r}; every SQuAD v1.1 entry needs one (fix the file)")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UsageError(f"{path}: {where}.{name} is {json_type(value)} ({json.dumps(value)[:40]}), not "
                         f"{json_type(kind())}; fix the file")
    return value


def _question(qa, context: str, title, path: str, where: str) -> SquadExample:
    """One question with its answers. SQuAD v1.1 answers every question (training labels the first
    answer's span, scoring takes the best of all): an unanswered one is v2.0 data, not supported."""
    _expect(qa, dict, path, where, "a question object with 'id', 'question' and 'answers'")
    qid = qa.get("id")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise UsageError(f"{path}: {where} has no usable 'id' (found {qid!r}); every question needs a unique id")
    where = f"{where} (question {qid})"
    question = _field(qa, "question", str, path, where)
    answers = _field(qa, "answers", list, path, where)
    if not answers:
        raise UsageError(f"{path}: {where} has no answers; SQuAD v1.1 training and scoring need at least one "
                         "(unanswerable SQuAD v2.0 questions are not supported)")
    texts, starts = [], []
    for i, answer in enumerate(answers):
        at = f"{where}.answers[{i}]"
        _expect(answer, dict, path, at, "an answer object with 'text' and 'answer_start'")
        text, start = _field(answer, "text", str, path, at), _field(answer, "answer_start", int, path, at)
        if not text.strip():
            raise UsageError(f"{path}: {at}: the answer text is empty; give the answer's words")
        if not 0 <= start <= len(context) - len(text):
            raise UsageError(f"{path}: {at}: answer_start {start} with an answer of {len(text)} characters is "
                             f"outside its context of {len(context)} characters; fix the file")
        if context[start:start + len(text)] != text:
            raise UsageError(f"{path}: question {qid}: answer {text!r} is not at answer_start {start} of its "
                             "context; fix the file")
        texts.append(text)
        starts.append(start)
    return SquadExample(str(qid), title if isinstance(title, str) else "", context, question, texts, starts)


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
    read_squad_json(path)  # the same checks as a training run: a bad file is refused before it is split
    raw = json.loads(read_text(path))
    articles = list(raw["data"])
    random.Random(seed).shuffle(articles)
    n_eval = max(1, round(eval_fraction * len(articles)))
    version = raw.get("version", "1.1")
    return {"version": version, "data": articles[n_eval:]}, {"version": version, "data": articles[:n_eval]}
