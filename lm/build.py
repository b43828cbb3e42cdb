"""From flags to the LM datasets and collator train_lm_distill.py hands the trainer."""
from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING

from distill.batching import PaddingCollator, TokenizedDataset
from distill.errors import UsageError
from distill.io_utils import cache_root
from distill.text_files import is_pickle
from lm.data import (
    Documents,
    cached_documents,
    causal_sequences,
    file_content_key,
    first,
    masked_lm_sequences,
    read_records,
    split_documents,
    token_counts,
)
from lm.masking import MaskingCollator, MLMMasker, fixed_masking, smoothed_token_probs

if TYPE_CHECKING:
    from lm.pipeline import DumpFiles

logger = logging.getLogger(__name__)


def data_cache_dir(data_args) -> str:
    """Where tokenised data, token counts and SeqKD responses are cached: --data_cache_dir, default
    `$XDG_CACHE_HOME/distill/lm_data` (resolved now, not at import)."""
    return data_args.data_cache_dir or cache_root("lm_data")


def load_documents(data_args, tokenizer, mlm: bool, cache_dir: str | None = None,
                   dump: DumpFiles | None = None) -> tuple[Documents, Documents]:
    """(training documents, held-out documents), tokenised once and cached. In the DistilBERT pipeline's
    mode (`dump`) a .txt file holds one sequence per line, and the training file's tokenised data is
    kept in the dump path (unless --preprocessed_data_file names another file)."""
    cache = data_cache_dir(data_args)
    append_eos = not mlm  # a causal LM learns where documents end; MLM sequences get [CLS]/[SEP] instead
    lines = dump is not None

    def cached(key, loader, explicit=None):
        return cached_documents(key, loader, tokenizer, append_eos, cache, explicit, data_args.overwrite_cache)

    def from_file(path, explicit=None, in_dump=False):
        # the same bytes read as lines are other documents: another cache entry
        key, load = file_content_key(path) + (":lines" if lines else ""), lambda: read_records(path, lines)
        if in_dump:
            return dump.documents(key, load, tokenizer, append_eos, data_args.overwrite_cache, explicit)
        return cached(key, load, explicit)

    if data_args.train_file:
        train = from_file(data_args.train_file, data_args.preprocessed_data_file, in_dump=lines)
        if data_args.validation_file:
            return train, from_file(data_args.validation_file)
        if len(train) == 1 and data_args.validation_split_percentage > 0 and not data_args.train_file.endswith(
                ".jsonl"):
            raise UsageError(f"{data_args.train_file} is one document (blank lines separate the documents of a .txt "
                             "file), so none is left to hold out (--validation_split_percentage); separate its "
                             "documents by blank lines or pass --validation_file, or for a file of one sequence per "
                             "line (the DistilBERT pipeline's dump.txt) pass --dump_path instead of --output_dir")
        return split_documents(train, data_args.validation_split_percentage)
    if data_args.dataset_name:
        return _hub_documents(data_args, cached, cache_dir)
    if data_args.preprocessed_data_file:
        raise UsageError(f"--preprocessed_data_file {data_args.preprocessed_data_file} is checked against the text it "
                         "was made from: pass that file too (--data_file/--train_file)")
    raise UsageError("no data: pass --train_file (alias --data_file) with a .txt/.jsonl corpus, or --dataset_name")


def check_preprocessed_files(data_args, dump: DumpFiles | None) -> None:
    """The DistilBERT pipeline's binarised data and token counts are pickles (<teacher>.pickle): refused
    unread, before any model loads, since unpickling runs code. Ours are numpy files."""
    for flag, path, made, ours in (
            ("--preprocessed_data_file", data_args.preprocessed_data_file, "the data is re-tokenised",
             dump.data_file if dump else ".npz"),
            ("--preprocessed_token_counts" if dump else "--token_counts", data_args.token_counts,
             "the counts are recomputed", dump.counts_file if dump else ".npy")):
        if not (path and os.path.isfile(path) and is_pickle(path)):
            continue
        fix = (f"rerun without it and {made}, then reuse {ours}" if dump else
               f"name a new {ours} file instead: {made} into it, for later runs to reuse")
        raise UsageError(f"{flag} {path} is a pickle, which can run code when loaded; {fix}")


def _hub_documents(data_args, cached, cache_dir):
    try:
        import datasets
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir)
    except Exception as e:
        raise UsageError(f"could not load the Hub dataset {data_args.dataset_name!r} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]}); go online or pass --train_file") from None

    def split_docs(name):
        # One document per non-empty line (wikitext's paragraphs and headings).
        return lambda: [{"text": t} for t in raw[name]["text"] if t.strip()]

    name = f"hub:{data_args.dataset_name}:{data_args.dataset_config_name}"
    train = cached(f"{name}:train:{raw['train']._fingerprint}", split_docs("train"))
    if "validation" in raw:
        return train, cached(f"{name}:validation:{raw['validation']._fingerprint}", split_docs("validation"))
    return split_documents(train, data_args.validation_split_percentage)


def causal_lm_data(train_docs: Documents, val_docs: Documents, data_args, pad_id: int, packed: bool = True):
    """(train dataset, held-out dataset, collator) for a causal LM (not `packed`: a sequence per document)."""
    train = first(causal_sequences(train_docs, data_args.max_seq_length, packed), data_args.max_train_samples)
    val = None
    if len(val_docs):
        val = first(causal_sequences(val_docs, data_args.max_seq_length, packed), data_args.max_eval_samples)
    return train, val, PaddingCollator(pad_id)


def masked_lm_data(train_docs: Documents, val_docs: Documents, data_args, loss_args, tokenizer, seed: int,
                   dump: DumpFiles | None = None):
    """(train dataset, held-out dataset masked once, masking collator) for a masked LM. The token counts
    come from --token_counts, else are counted (cached; in the pipeline's mode, kept in the dump path)."""
    for name in ("mask_token_id", "cls_token_id", "sep_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise UsageError(f"--mlm needs a tokenizer with {name.removesuffix('_id')} (a BERT/RoBERTa-style "
                             "tokenizer); this one has none")
    vocab = len(tokenizer)
    counts_path = data_args.token_counts
    if dump is not None:
        counts = dump.counts(train_docs, vocab, counts_path)
    else:
        if counts_path is None:  # computed once, cached next to the tokenised data, keyed by the exact ids
            digest = hashlib.sha256(train_docs.ids.tobytes()).hexdigest()[:24]
            counts_path = os.path.join(data_cache_dir(data_args), f"counts-{digest}-{vocab}.npy")
        counts = token_counts(train_docs, vocab, counts_path)
    masker = MLMMasker(smoothed_token_probs(counts, loss_args.mlm_smoothing, tokenizer.all_special_ids),
                       tokenizer.mask_token_id, tokenizer.all_special_ids, loss_args.mlm_mask_prop,
                       loss_args.word_mask, loss_args.word_keep, loss_args.word_rand)
    make = lambda docs: masked_lm_sequences(docs, data_args.max_seq_length, tokenizer.cls_token_id,  # noqa: E731
                                            tokenizer.sep_token_id)
    train = first(make(train_docs), data_args.max_train_samples)
    val = None
    if len(val_docs):
        val = first(make(val_docs), data_args.max_eval_samples)
        val = TokenizedDataset(fixed_masking(val.columns, masker, seed))
    return train, val, MaskingCollator(tokenizer.pad_token_id, masker)


def cache_refusal(method: str, mlm: bool, weights: dict[str, float], top_k: int | None) -> str | None:
    """Why cached teacher outputs could not stand in for the live teacher in this LM run (None: they can)."""
    if method == "minillm":
        return "MiniLLM's teacher scores new student samples every step; drop the flag"
    if mlm:
        return ("masked-LM distillation masks every batch anew, so the teacher's input changes each epoch; drop "
                "the flag (or distil a causal LM)")
    if top_k is not None and weights.get("mse"):
        return "--teacher_cache_top_k keeps probabilities, not the raw logits --alpha_mse compares; drop one"
    return None
