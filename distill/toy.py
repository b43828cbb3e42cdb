"""Self-made models, tokenizer and a learnable GLUE-format task, for the demo and the tests.

Nothing here touches the network or ../shared: `make demo` works on a bare machine.

The task ("toy sentiment", SST-2 layout) needs context to solve: a sentence mixes positive,
negative and filler words, and "not"/"never" flip the polarity of the next sentiment word; the
label is the sign of the summed polarity. Bag-of-words alone gets part of it; a transformer that
attends to the negators gets it all.
"""
from __future__ import annotations

import os
import random

from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "superb", "lovely", "brilliant", "charming", "moving", "witty", "fresh"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak", "clumsy", "tedious", "bland", "messy"]
NEGATORS = ["not", "never"]
FILLER = ["the", "a", "movie", "film", "plot", "cast", "story", "was", "is", "and", "but", "quite", "really",
          "acting", "script", "ending", "scene", "music", "very", "this", "it", "director", "truly", "overall"]
VOCAB_WORDS = POSITIVE + NEGATIVE + NEGATORS + FILLER


def build_tokenizer(out_dir: str) -> BertTokenizerFast:
    """A word-level BERT tokenizer over the toy vocabulary, saved to out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    vocab_path = os.path.join(out_dir, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(SPECIAL + VOCAB_WORDS) + "\n")
    # transformers 5 ignores `vocab_file=` (every token becomes [UNK]); `vocab=` is read.
    tokenizer = BertTokenizerFast(vocab=vocab_path, do_lower_case=True)
    assert len(tokenizer) == len(SPECIAL) + len(VOCAB_WORDS), "tokenizer did not read the vocabulary"
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_bert(out_dir: str, tokenizer, *, layers: int, hidden: int, heads: int, intermediate: int,
               num_labels: int = 2, seed: int = 0, max_positions: int = 128) -> str:
    """A randomly initialised BERT classifier (plus the tokenizer) saved as a HF model dir."""
    import torch
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, num_labels=num_labels,
                        max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def toy_sentence(rng: random.Random) -> tuple[str, int]:
    words, score = [], 0
    for _ in range(rng.randint(2, 4)):
        words += rng.sample(FILLER, rng.randint(0, 2))
        negated = rng.random() < 0.3
        if negated:
            words.append(rng.choice(NEGATORS))
        polarity = rng.choice([1, -1])
        words.append(rng.choice(POSITIVE if polarity > 0 else NEGATIVE))
        score += -polarity if negated else polarity
    if score == 0:  # break ties with one more unnegated word
        polarity = rng.choice([1, -1])
        words.append(rng.choice(POSITIVE if polarity > 0 else NEGATIVE))
        score += polarity
    return " ".join(words), int(score > 0)


def write_toy_sst2(task_dir: str, n_train: int = 2000, n_dev: int = 400, n_test: int = 200, seed: int = 0,
                   label_noise: float = 0.0) -> str:
    """train/dev/test TSVs in the download_glue_data.py SST-2 layout.

    `label_noise`: fraction of TRAINING labels flipped at random (annotation noise); dev stays clean.
    """
    rng = random.Random(seed)
    os.makedirs(task_dir, exist_ok=True)
    for name, n, noise in (("train.tsv", n_train, label_noise), ("dev.tsv", n_dev, 0.0)):
        with open(os.path.join(task_dir, name), "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            for _ in range(n):
                text, label = toy_sentence(rng)
                if rng.random() < noise:
                    label = 1 - label
                f.write(f"{text} \t{label}\n")
    with open(os.path.join(task_dir, "test.tsv"), "w", encoding="utf-8") as f:
        f.write("index\tsentence\n")
        for i in range(n_test):
            f.write(f"{i}\t{toy_sentence(rng)[0]}\n")
    return task_dir


def build_bpe_tokenizer(out_dir: str, texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer (GPT-2 style, with <|endoftext|> as BOS/EOS/pad) trained on `texts`,
    saved to out_dir: what causal-LM runs use where no pretrained tokenizer can be downloaded."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast
    eos = "<|endoftext|>"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[eos])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos,
                                        pad_token=eos, unk_token=eos)
    os.makedirs(out_dir, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
