"""A local model dir's own files, checked before transformers reads them: a damaged file is then named
(transformers' errors often do not say which file, or blame another), and a dir without tokenizer
files is recognised (transformers would build a tokenizer of special tokens alone from config.json)."""
from __future__ import annotations

import functools
import os
import zipfile

from distill.errors import UsageError
from distill.text_files import json_type, parse_json, read_text

# The JSON files of a model dir that transformers reads (config, tokenizer, shard index).
MODEL_JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "model.safetensors.index.json")
DAMAGED = "the model dir is damaged: save or download the model again"


def check_model_files(path: str, weights: bool) -> None:
    """A local model dir (or config .json file): its JSON files parse as objects and, with `weights`,
    its weight files are whole (a safetensors header must cover the file: a truncated copy fails here,
    cheaply, without reading the tensors)."""
    if os.path.isfile(path) and path.endswith(".json"):
        _check_json_object(path)
    if not os.path.isdir(path):
        return
    for name in MODEL_JSON_FILES:
        if os.path.isfile(os.path.join(path, name)):
            _check_json_object(os.path.join(path, name))
    if not weights:
        return
    from safetensors import safe_open
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if name.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt"):
                    pass
            except Exception as e:
                raise UsageError(f"{file} is corrupt or truncated ({type(e).__name__}: "
                                 f"{(str(e).splitlines() or [''])[0][:120]}); {DAMAGED}") from None
        elif name.endswith(".bin") and name.startswith("pytorch_model"):
            with open(file, "rb") as f:
                legacy_pickle = f.read(1) == b"\x80"  # torch.save before the zip format
            if not legacy_pickle and not zipfile.is_zipfile(file):
                raise UsageError(f"{file} is not a whole PyTorch weights file (truncated or garbage); {DAMAGED}")


def _check_json_object(file: str) -> None:
    stat = os.stat(file)
    _check_json_object_once(file, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _check_json_object_once(file: str, mtime_ns: int, size: int) -> None:
    """Checked once per version of the file: a run loads the same dir several times (config, tokenizer,
    weights), and a tokenizer.json can be tens of MB."""
    try:
        value = parse_json(read_text(file), file, DAMAGED)
    except UsageError as e:
        raise UsageError(f"{e}" if DAMAGED in str(e) else f"{e} ({DAMAGED})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{file} holds {json_type(value)}, not an object; {DAMAGED}")


def has_tokenizer_files(directory: str) -> bool:
    """Whether a dir holds anything a tokenizer is read from (a vocabulary, merges, a sentencepiece
    model, tokenizer.json or tokenizer_config.json)."""
    for name in os.listdir(directory):
        if name.startswith(("tokenizer", "vocab", "merges", "spiece", "sentencepiece")) or \
                name.endswith((".model", ".spm", ".tiktoken")):
            return True
    return False
