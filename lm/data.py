"""LM data: raw text or jsonl -> tokenised documents (cached on disk) -> training sequences.

Tokenising is the slow part, so the tokenised documents are cached, keyed by the data's content and
the tokenizer; splitting and chunking are cheap numpy work done on every load:
- causal LM: documents (+ EOS) are concatenated and cut into blocks of max_seq_length (run_clm.py's
  packing; every token is predicted once, with as much context as the block allows);
- masked LM: each document becomes [CLS] ... [SEP] sequences of at most max_seq_length (DistilBERT's
  binarised data), so lengths vary and length-grouped batches pay off;
- one sequence per line (the DistilBERT pipeline's dump.txt, read so with --dump_path): each line is a
  document, cut into pieces of at most max_seq_length as that pipeline's LmSeqsDataset did, never packed
  (its filters of short and mostly-unknown sequences are not applied: every line is trained on);
- prompt/response jsonl (causal LM): one sequence per example, loss on the response tokens only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from distill.batching import TokenizedDataset
from distill.errors import UsageError
from distill.io_utils import atomic_path
from distill.text_files import check_is_file, json_lines, json_type, numpy_problem, read_text

logger = logging.getLogger(__name__)
CACHE_VERSION = 1
IGNORE = -100


@dataclass
class Documents:
    """Tokenised documents: ids[offsets[i]:offsets[i+1]] is document i; the first prompt_lengths[i]
    tokens of it are prompt (no loss), 0 for plain text."""
    ids: np.ndarray  # (total tokens,) int32
    offsets: np.ndarray  # (N + 1,) int64
    prompt_lengths: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, start: int, stop: int) -> "Documents":
        lo, hi = self.offsets[start], self.offsets[stop]
        return Documents(self.ids[lo:hi], self.offsets[start:stop + 1] - lo, self.prompt_lengths[start:stop])

    @property
    def has_prompts(self) -> bool:
        return bool(self.prompt_lengths.any())


# ---------------------------------------------------------------------------------------------- reading
# Dolly rows become prompts with the template of the MiniLLM/Alpaca code, so models trained there and
# here see the same text.
DOLLY_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                  "the request.\n\n### Instruction:\n{instruction}\n\n{context}### Response:\n")


def dolly_prompt(instruction: str, context: str = "") -> str:
    return DOLLY_TEMPLATE.format(instruction=instruction.strip(),
                                 context=f"### Input:\n{context.strip()}\n\n" if context.strip() else "")


def read_records(path: str, one_per_line: bool = False) -> list[dict]:
    """Documents of a file: .jsonl rows ({'text'}, {'prompt', 'response'} or Dolly's {'instruction',
    'context', 'response'}; an optional 'references' list gives extra references for evaluation), or
    plain text where blank lines separate documents (each keeps its line breaks), or with `one_per_line`
    where each non-empty line is one (stripped, as the DistilBERT pipeline read its dump.txt)."""
    text = read_text(path, not_found=f"data file not found: {path}; pass a .txt or .jsonl file "
                                     "(--train_file/--data_file)")
    if path.endswith(".jsonl"):
        return _read_jsonl(text, path)
    text = text.replace("\r\n", "\n")
    if one_per_line:
        docs = [line.strip() for line in text.split("\n")]
    else:
        docs = [d.strip("\n") for d in text.split("\n\n")]
    records = [{"text": d} for d in docs if d.strip()]
    if not records:
        raise UsageError(f"{path} holds no text; pass a non-empty corpus")
    return records


def _string_field(row: dict, name: str, path: str, n: int) -> str | None:
    """row[name] when it is a string; None when absent; a value of another type (a number, a list) is
    refused rather than taken for a missing field (which would name the wrong problem)."""
    value = row.get(name)
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"{path} line {n}: {name!r} is {json_type(value)} ({json.dumps(value)[:40]}), not a string; "
                     "write the text as a JSON string")


def _read_jsonl(text: str, path: str) -> list[dict]:
    records = []
    for n, row in json_lines(text, path):
        if not isinstance(row, dict):
            raise UsageError(f"{path} line {n} is {json_type(row)}, not an object; one JSON object per line "
                             "with a 'text' field, or 'prompt' and 'response' fields")
        fields = {name: _string_field(row, name, path, n) for name in ("text", "prompt", "instruction", "context",
                                                                       "response")}
        if fields["text"] is not None:
            records.append({"text": fields["text"]})
        elif fields["response"] is not None and (fields["prompt"] is not None or fields["instruction"] is not None):
            prompt = fields["prompt"] if fields["prompt"] is not None else dolly_prompt(
                fields["instruction"], fields["context"] or "")
            references = row.get("references")
            if references and (not isinstance(references, list) or not all(isinstance(r, str) for r in references)):
                raise UsageError(f"{path} line {n}: 'references' must be a list of strings (found "
                                 f"{json.dumps(references)[:40]}); fix the row")
            records.append({"prompt": prompt, "response": fields["response"]}
                           | ({"references": list(references)} if references else {}))
        else:
            raise UsageError(f"{path} line {n}: need a 'text' field, or 'prompt' (or Dolly's 'instruction' and "
                             f"'context') and 'response' fields, found {sorted(row)}")
    if not records:
        raise UsageError(f"{path} holds no examples; pass a non-empty jsonl file")
    kinds = {"text" in r for r in records}
    if len(kinds) > 1:
        raise UsageError(f"{path} mixes 'text' rows and 'prompt'/'response' rows; use one kind per file")
    return records


# ---------------------------------------------------------------------------------------------- tokenising
def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides the ids: the tokenizer's full definition and special tokens."""
    try:
        definition = tokenizer.backend_tokenizer.to_str()
    except AttributeError:  # a slow tokenizer
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    specials = json.dumps([type(tokenizer).__name__, tokenizer.all_special_ids, tokenizer.eos_token_id])
    return hashlib.sha256((definition + specials).encode()).hexdigest()


def tokenize_records(records: list[dict], tokenizer, append_eos: bool) -> Documents:
    """Ids of each record, without special tokens (added when sequences are built); causal LMs get
    EOS at the end of every document / response (where the tokenizer has one)."""
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    if "text" in records[0]:
        bodies = tokenizer([r["text"] for r in records], add_special_tokens=False)["input_ids"]
        prompts = [[] for _ in records]
    else:
        prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]
        bodies = tokenizer([r["response"] for r in records], add_special_tokens=False)["input_ids"]
    docs = [p + b + eos for p, b in zip(prompts, bodies)]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(d) for d in docs])
    ids = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs]) if docs else np.zeros(0, np.int32)
    return Documents(ids, offsets, np.array([len(p) for p in prompts], dtype=np.int32))


def document_key(source_key: str, tokenizer, append_eos: bool) -> str:
    """What a tokenised-data file is checked against: the data's content, the tokenizer, the format."""
    return hashlib.sha256(json.dumps([CACHE_VERSION, source_key, tokenizer_fingerprint(tokenizer),
                                      append_eos]).encode()).hexdigest()[:24]


def cached_documents(source_key: str, load_records, tokenizer, append_eos: bool, cache_dir: str,
                     explicit_file: str | None = None, overwrite: bool = False) -> Documents:
    """Tokenised documents from the cache when it holds this (data, tokenizer) pair, else tokenised
    now and cached (written atomically). `source_key` identifies the data's content."""
    key = document_key(source_key, tokenizer, append_eos)
    path = explicit_file or os.path.join(cache_dir, f"docs-{key}.npz")
    if explicit_file and os.path.isdir(path):
        raise UsageError(f"--preprocessed_data_file {path} is a folder; pass a file path (.npz)")
    if os.path.isfile(path) and not overwrite:
        stored = read_cached_documents(path, "--preprocessed_data_file" if explicit_file else None)
        if stored is not None and stored[0] == key:
            logger.info("tokenised data from the cache %s", path)
            return stored[1]
        if explicit_file:
            raise UsageError(f"--preprocessed_data_file {path} was made from other data or another tokenizer; "
                             "delete it, pass another path, or add --overwrite_cache")
    docs = tokenize_records(load_records(), tokenizer, append_eos)
    save_documents(path, key, docs)
    logger.info("tokenised %d documents (%d tokens), cached in %s", len(docs), len(docs.ids), path)
    return docs


def save_documents(path: str, key: str, docs: Documents) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # (a unique temporary: runs may share the cache)
        np.savez(f, key=key, ids=docs.ids, offsets=docs.offsets, prompt_lengths=docs.prompt_lengths)


NPZ_FIELDS = ("key", "ids", "offsets", "prompt_lengths")


def read_cached_documents(path: str, flag: str | None) -> tuple[str, Documents] | None:
    """(key, documents) of a cache file. A file that is not one (garbage, truncated, another .npz) is
    refused when the user named it with `flag`; our own cache file in that state is tokenised anew
    (None). allow_pickle stays off: a cache file must never run code."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_FIELDS if k not in f.files]
            if missing:
                raise ValueError(f"it has no {', '.join(missing)} array")
            key, docs = str(f["key"]), Documents(f["ids"], f["offsets"], f["prompt_lengths"])
        _check_documents(docs)
    except Exception as e:  # np.load raises ValueError, OSError, EOFError, BadZipFile, TypeError (a .npy), ...
        reason = numpy_problem(path, e, ".npz archive")
        if flag:
            raise UsageError(f"{flag} {path} is not a tokenised-data file made by this script (it is {reason}); delete "
                             "it, pass another path, or add --overwrite_cache to remake it") from None
        logger.warning("the cache file %s is unreadable (%s); tokenising again", path, reason)
        return None
    return key, docs


def _check_documents(docs: Documents) -> None:
    """The arrays fit together (a damaged file could hold arrays of any shape or type)."""
    ok = (docs.ids.ndim == 1 and docs.offsets.ndim == 1 and docs.prompt_lengths.ndim == 1
          and np.issubdtype(docs.ids.dtype, np.integer) and np.issubdtype(docs.offsets.dtype, np.integer)
          and len(docs.offsets) == len(docs.prompt_lengths) + 1 and len(docs.offsets) >= 1
          and docs.offsets[0] == 0 and docs.offsets[-1] == len(docs.ids) and bool(np.all(np.diff(docs.offsets) >= 0)))
    if not ok:
        raise ValueError("its arrays do not fit together")


def file_content_key(path: str) -> str:
    check_is_file(path, f"data file not found: {path}; pass a .txt or .jsonl file (--train_file/--data_file)")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"file:{h.hexdigest()}"


def split_documents(docs: Documents, validation_percentage: float) -> tuple[Documents, Documents]:
    """(train, held-out): the held-out part is the LAST documents, contiguous, so that no passage has
    its neighbours on the other side (a random split of adjacent paragraphs leaks context)."""
    n_val = held_out_count(len(docs), validation_percentage)
    return docs.subset(0, len(docs) - n_val), docs.subset(len(docs) - n_val, len(docs))


def held_out_count(n: int, validation_percentage: float) -> int:
    """How many of the last of n documents (or records) are held out."""
    n_val = int(round(n * validation_percentage / 100.0))
    if validation_percentage > 0 and not 0 < n_val < n:
        raise UsageError(f"--validation_split_percentage {validation_percentage} of {n} documents leaves "
                         "an empty split; change it or pass --validation_file")
    return n_val


def token_counts(docs: Documents, vocab_size: int, cache_path: str | None = None) -> np.ndarray:
    """How often each token id occurs in the training documents (for --mlm_smoothing), cached."""
    if cache_path and os.path.isdir(cache_path):
        raise UsageError(f"token counts {cache_path} is a folder; pass a .npy file path")
    if cache_path and os.path.isfile(cache_path):
        counts = load_token_counts(cache_path)
        if counts.shape == (vocab_size,):
            return counts
        raise UsageError(f"token counts {cache_path} cover {counts.shape[0]} ids but the vocabulary has "
                         f"{vocab_size}; delete the file or pass counts made with this tokenizer")
    counts = np.bincount(docs.ids, minlength=vocab_size)[:vocab_size].astype(np.int64)
    if cache_path:
        save_token_counts(cache_path, counts)
    return counts


def save_token_counts(path: str, counts: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, counts)


def load_token_counts(path: str) -> np.ndarray:
    """A .npy of one non-negative, finite count per token id, or one line saying what the file is instead
    (np.load raises many kinds of errors on a file that is not a .npy; pickles are never loaded)."""
    fix = "delete it (it is remade) or pass counts made by this script (a .npy of one count per token id)"
    try:
        counts = np.load(path, allow_pickle=False)
    except Exception as e:
        reason = numpy_problem(path, e, ".npy array")
        raise UsageError(f"token counts {path} is not a readable .npy file (it is {reason}); {fix}") from None
    if not isinstance(counts, np.ndarray):  # an .npz archive
        counts.close()
        raise UsageError(f"token counts {path} is an .npz archive, not a .npy array; {fix}")
    if counts.ndim != 1 or not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise UsageError(f"token counts {path} hold a {counts.dtype} array of shape {counts.shape}, not one number "
                         f"per token id; {fix}")
    if not np.all(np.isfinite(counts)) or (counts < 0).any():  # masking probabilities would be NaN
        raise UsageError(f"token counts {path} hold negative, NaN or infinite values; {fix}")
    return counts


# ---------------------------------------------------------------------------------------------- sequences
def causal_sequences(docs: Documents, max_len: int, packed: bool = True) -> TokenizedDataset:
    """Plain text: all documents packed into max_len blocks (the last one shorter); not `packed`: each
    document cut into its own max_len pieces (one sequence per line, as the DistilBERT pipeline).
    Prompt/response: one sequence per example, truncated to max_len, labels -100 on the prompt."""
    if docs.has_prompts:
        seqs, labels, dropped = [], [], 0
        for i in range(len(docs)):
            ids, n_prompt = docs.doc(i)[:max_len].tolist(), int(docs.prompt_lengths[i])
            if n_prompt >= len(ids):  # no response token left to learn from
                dropped += 1
                continue
            seqs.append(ids)
            labels.append([IGNORE] * n_prompt + ids[n_prompt:])
        if dropped:
            logger.warning("%d examples dropped: their prompt fills --max_seq_length %d", dropped, max_len)
    else:
        pieces = [docs.ids] if packed else [docs.doc(i) for i in range(len(docs))]
        seqs = [ids[i:i + max_len].tolist() for ids in pieces for i in range(0, len(ids), max_len)]
        seqs = [s for s in seqs if len(s) > 1]  # a 1-token block predicts nothing
        labels = [list(s) for s in seqs]
    if not seqs:
        raise UsageError("no training sequence left after tokenising; check the data file and --max_seq_length")
    return TokenizedDataset({"input_ids": seqs, "attention_mask": [[1] * len(s) for s in seqs], "labels": labels})


def masked_lm_sequences(docs: Documents, max_len: int, cls_id: int, sep_id: int) -> TokenizedDataset:
    """Each document as [CLS] ... [SEP] pieces of at most max_len tokens."""
    body = max_len - 2
    seqs = []
    for i in range(len(docs)):
        ids = docs.doc(i).tolist()
        seqs += [[cls_id] + ids[j:j + body] + [sep_id] for j in range(0, len(ids), body)]
    if not seqs:
        raise UsageError("no training sequence left after tokenising; check the data file")
    return TokenizedDataset({"input_ids": seqs, "attention_mask": [[1] * len(s) for s in seqs]})


def first(dataset: TokenizedDataset, n: int | None) -> TokenizedDataset:
    if n is None or n >= len(dataset):
        return dataset
    return TokenizedDataset({k: v[:n] for k, v in dataset.columns.items()})
