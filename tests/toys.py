"""Toy data and models only the tests use (the demo's own are in distill/toy.py)."""
from __future__ import annotations

import random

from distill.toy import NEGATIVE, POSITIVE

NOUNS = ["movie", "film", "plot", "cast", "story", "acting", "script", "ending", "scene", "music", "director"]


def toy_squad(n_articles: int = 6, paragraphs: int = 3, clauses: int = 4, seed: int = 0) -> dict:
    """A SQuAD v1.1-format dict. A context "the plot was dull . the cast was witty . ..." has exactly one
    adjective of the minority polarity; the question "what was good ?" (or "bad") is answered by that
    adjective (char offsets exact). Each paragraph is asked about its odd one out, once."""
    rng = random.Random(seed)
    data = []
    for a in range(n_articles):
        paras = []
        for p in range(paragraphs):
            nouns = rng.sample(NOUNS, clauses)
            odd_positive = rng.random() < 0.5
            majority, minority = (NEGATIVE, POSITIVE) if odd_positive else (POSITIVE, NEGATIVE)
            adjs = [rng.choice(majority) for _ in nouns]
            odd = rng.randrange(clauses)
            adjs[odd] = rng.choice(minority)
            clauses_text = [f"the {n} was {j} ." for n, j in zip(nouns, adjs)]
            context = " ".join(clauses_text)
            start = len(" ".join(clauses_text[:odd])) + (1 if odd else 0) + len(f"the {nouns[odd]} was ")
            question = f"what was {'good' if odd_positive else 'bad'} ?"
            qas = [{"id": f"a{a}p{p}", "question": question, "answers": [{"text": adjs[odd], "answer_start": start}]}]
            paras.append({"context": context, "qas": qas})
        data.append({"title": f"article {a}", "paragraphs": paras})
    return {"version": "1.1", "data": data}



def build_gpt2(out_dir: str, tokenizer, *, layers: int, hidden: int, heads: int, max_positions: int = 128,
               seed: int = 0) -> str:
    """A randomly initialised GPT-2 LM (plus the tokenizer) saved as a HF model dir."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=hidden, n_layer=layers, n_head=heads,
                        n_positions=max_positions, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
