"""Generation evaluation: sample a response for every held-out prompt and score it against the
references with Rouge-L F (stemmed, best reference, ×100; the `rouge-score` package, as the MiniLLM
evaluation) and exact match, averaged over several sampling seeds."""
from __future__ import annotations

import json
import logging

import numpy as np
import torch
from accelerate.state import PartialState
from rouge_score import rouge_scorer
from tqdm.auto import tqdm

from sequence_kd.sampling import sample


def normalize(text: str) -> str:
    return " ".join(text.split())


def rouge_l_scorer() -> rouge_scorer.RougeScorer:
    # rouge-score logs "Using default tokenizer." through absl for every scorer it makes: quiet it here,
    # when one is made, rather than at import
    logging.getLogger("absl").setLevel(logging.WARNING)
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, refs: list[str], scorer=None) -> float:
    """Rouge-L F of `prediction` against its best reference, ×100."""
    scorer = scorer or rouge_l_scorer()
    return 100.0 * max(scorer.score(ref, prediction)["rougeL"].fmeasure for ref in refs)


def exact_match(prediction: str, refs: list[str]) -> float:
    return 100.0 * float(any(normalize(prediction) == normalize(ref) for ref in refs))


class GenerationEvaluator:
    """`evaluator(model)` -> {'rougeL', 'exact_match', 'rougeL_std', 'response_length', 'samples'}; the
    last call's responses are kept for `generations_jsonl`."""

    def __init__(self, prompts: list[list[int]], prompt_texts: list[str], refs: list[list[str]], tokenizer, *,
                 seeds: list[int], batch_size: int, sampling: dict, show_progress: bool = True):
        self.prompts, self.prompt_texts, self.refs = prompts, prompt_texts, refs
        self.show_progress = show_progress and PartialState().is_local_main_process
        self.tokenizer, self.seeds, self.batch_size, self.sampling = tokenizer, seeds, batch_size, sampling
        self.scorer = rouge_l_scorer()
        self.generations: list[dict] = []

    def responses(self, model, seed: int) -> tuple[list[str], list[int]]:
        """(decoded responses, their lengths in tokens, EOS excluded)."""
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        texts, lengths = [], []
        starts = range(0, len(self.prompts), self.batch_size)
        for start in tqdm(starts, desc=f"generate (seed {seed})", disable=not self.show_progress):
            out = sample(model, self.prompts[start:start + self.batch_size], generator=generator, **self.sampling)
            eos = self.sampling.get("eos_id")
            for ids in out.responses():
                ids = ids[:-1] if ids and ids[-1] == eos else ids
                texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
                lengths.append(len(ids))
        return texts, lengths

    def __call__(self, model) -> dict[str, float]:
        per_seed, self.generations = [], []
        for seed in self.seeds:
            texts, lengths = self.responses(model, seed)
            rouge = [rouge_l(t, r, self.scorer) for t, r in zip(texts, self.refs)]
            em = [exact_match(t, r) for t, r in zip(texts, self.refs)]
            per_seed.append((float(np.mean(rouge)), float(np.mean(em)), float(np.mean(lengths))))
            self.generations += [{"seed": seed, "prompt": p, "response": t, "references": r, "rougeL": s}
                                 for p, t, r, s in zip(self.prompt_texts, texts, self.refs, rouge)]
        rouge, em, length = np.array(per_seed).T
        return {"rougeL": float(rouge.mean()), "rougeL_std": float(rouge.std()), "exact_match": float(em.mean()),
                "response_length": float(length.mean()), "samples": float(len(self.prompts))}

    def generations_jsonl(self) -> str:
        """The last evaluation's responses, one jsonl row per (seed, prompt) (the run writes them as
        eval_generations.jsonl)."""
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.generations)
