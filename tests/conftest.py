"""Shared fixtures: a word-level tokenizer, tiny BERTs and a toy GLUE task, all made locally."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "glue_tiny")  # hand-written, GLUE layouts
SHARED_GLUE = os.path.join(REPO_ROOT, "..", "shared", "data", "glue_data")


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """Paths of a toy tokenizer, a 2-layer teacher, a 1-layer student and a toy SST-2 task folder.

    Dropout is off so that runs are comparable step by step in the exactness tests.
    """
    from distill.toy import build_bert, build_tokenizer, write_toy_sst2

    root = tmp_path_factory.mktemp("toy")
    tok = build_tokenizer(str(root / "tokenizer"))
    dims = dict(hidden=32, heads=2, intermediate=64)
    paths = {
        "root": root,
        "tokenizer": str(root / "tokenizer"),
        "teacher": build_bert(str(root / "teacher"), tok, layers=2, seed=1, **dims),
        "student": build_bert(str(root / "student"), tok, layers=1, seed=2, **dims),
        "teacher4": build_bert(str(root / "teacher4"), tok, layers=4, seed=3, **dims),
        "task": write_toy_sst2(str(root / "SST-2"), n_train=96, n_dev=40, n_test=24, seed=0),
    }
    return paths


def toy_lm_corpus(root, n_docs=120, seed=0):
    """A text corpus of toy documents (1-4 sentences, blank-line separated) at root/corpus.txt, and a BPE
    tokenizer trained on it at root/bpe: (corpus path, tokenizer)."""
    import random

    from distill.toy import build_bpe_tokenizer, toy_sentence
    rng = random.Random(seed)
    docs = ["\n".join(toy_sentence(rng)[0] + " ." for _ in range(rng.randint(1, 4))) for _ in range(n_docs)]
    corpus = os.path.join(root, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    return corpus, build_bpe_tokenizer(os.path.join(root, "bpe"), docs, vocab_size=260)


def no_dropout_bert(path, **overrides):
    """A toy BERT classifier without dropout, so that runs can be compared step by step."""
    from transformers import BertForSequenceClassification
    kwargs = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **overrides}
    return BertForSequenceClassification.from_pretrained(path, **kwargs)


def toy_dataset(toy, n=8, seed=0):
    """n tokenised toy sentences (with labels) and the tokenizer."""
    import random

    from transformers import AutoTokenizer

    from distill.batching import TokenizedDataset
    from distill.toy import toy_sentence
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    rng = random.Random(seed)
    texts, labels = zip(*[toy_sentence(rng) for _ in range(n)])
    enc = tok(list(texts), truncation=True, max_length=64, return_token_type_ids=True)
    return TokenizedDataset({**{k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                             "labels": list(labels)}), tok


def crash_at_step(monkeypatch, main, argv, step):
    """Run `main(argv)` with a simulated kill (KeyboardInterrupt) at optimizer step `step`, as a killed
    job would leave its output dir; then restore the real step."""
    import pytest

    from distill.trainer import DistillationTrainer
    real_step, calls = DistillationTrainer.optimizer_step, {"n": 0}

    def crashing_step(self, micro):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt(f"simulated kill at step {step}")
        return real_step(self, micro)

    monkeypatch.setattr(DistillationTrainer, "optimizer_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        main([str(a) for a in argv])
    monkeypatch.setattr(DistillationTrainer, "optimizer_step", real_step)


def free_port() -> int:
    """A TCP port nothing listens on now (a fixed port fails when an earlier run still holds it)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_run(full_dir, resumed_dir, model_files=("model.safetensors",), result_files=("eval_results.json",),
                    state_keys=("best_step",)):
    """A resumed run ended exactly like the uninterrupted one: the same weights (to 1e-6), results and
    log history (every logged loss and metric of every step)."""
    import json

    import torch
    from safetensors.torch import load_file

    def read_json(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    for name in model_files:
        full, resumed = load_file(os.path.join(full_dir, name)), load_file(os.path.join(resumed_dir, name))
        assert full.keys() == resumed.keys(), name
        for key in full:
            torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=f"{name}:{key}")
    for name in result_files:
        assert read_json(os.path.join(resumed_dir, name)) == pytest.approx(read_json(os.path.join(full_dir, name)))
    full_state = read_json(os.path.join(full_dir, "trainer_state.json"))
    resumed_state = read_json(os.path.join(resumed_dir, "trainer_state.json"))
    assert resumed_state["log_history"] == full_state["log_history"]
    for key in state_keys:
        assert resumed_state[key] == full_state[key], key
