"""Shared fixtures: a word-level tokenizer, tiny BERTs and a toy GLUE task, all made locally."""
from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """Caches (teacher outputs, tokenised LM data: distill/io_utils.cache_root) go to a dir of this test
    session, never into the user's ~/.cache: the suite neither reads a stale cache nor leaves one behind."""
    config.distill_cache_dir = tempfile.mkdtemp(prefix="distill-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config.distill_cache_dir


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "distill_cache_dir", ""), ignore_errors=True)


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


@pytest.fixture(scope="session")
def launch(tmp_path_factory):
    """Runs of the entry scripts as real processes, forked from one pre-warmed interpreter (tests/launcher.py):
    each starts in a fraction of a second instead of ~7 s of imports."""
    from launcher import Launcher
    with Launcher(str(tmp_path_factory.mktemp("launcher_logs"))) as launcher:
        yield launcher


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


# Parameters whose exact gradient is zero (checked in float64: test_two_process_equivalence.py): a softmax
# does not change when all its logits shift alike. An attention key's bias shifts every key's score for
# a query alike; the QA head's bias, and the bias of the LayerNorm under it (the last layer's output),
# shift every position's start/end logit alike. Their gradient is float noise, and AdamW, which divides
# by the gradient's own scale, turns noise larger than its ε into steps of up to ±learning rate: two runs
# that sum in another order (other batches, processes, CPUs) disagree there, and only there. Weight
# comparisons skip them. (GPT-2's fused c_attn bias holds such a key part too; its noise stays far below
# ε in our runs, so it is compared.)
KEY_BIAS = r"attention\.self\.key\.bias$"
QA_HEAD = r"^qa_outputs\.bias$|^bert\.encoder\.layer\.{last}\.output\.LayerNorm\.bias$"


def no_gradient(name: str, qa_layers: int | None = None) -> bool:
    """Whether parameter `name` has an exact gradient of zero (a QA model: pass its number of layers)."""
    pattern = KEY_BIAS if qa_layers is None else f"{KEY_BIAS}|{QA_HEAD.format(last=qa_layers - 1)}"
    return re.search(pattern, name) is not None


def kd_rounding(temperature: float) -> float:
    """A bound on how far float32 rounding alone moves the mean KD term τ²·Σ_c p_t,c (log p_t,c − log p_s,c)
    of two near-uniform 2-class heads. Near KD = 0 the logits' own rounding has no first-order effect
    (∂KD/∂s = τ(p_s − p_t) ≈ 0); what is left is log_softmax's: each log-probability (≈ −ln 2) is off by
    at most 2 ulp(ln 2) (its log-sum-exp and the subtraction; 1.8 measured), so one row's KL by at most
    τ²·4·ulp and two computations that round otherwise (micro-batches padded otherwise, another CPU's
    kernels) by τ²·8·ulp(ln 2) ≈ 1.9e-6 at τ = 2, and so does their mean. In absolute terms: it matters
    when KD is near zero (untrained heads: ~7e-6), where a relative 1e-5 assumes more than float32 gives."""
    return temperature**2 * 8 * float(np.spacing(np.float32(np.log(2))))


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


def snapshot(directory) -> dict[str, str]:
    """sha256 of every file below `directory`, by relative path: to assert that nothing changed."""
    import hashlib
    found = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


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
