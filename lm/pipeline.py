"""train_lm_distill.py in the DistilBERT pipeline's own mode: a command with `--dump_path` (HF's
research_projects/distillation train.py and its forks, run with their flags unchanged).

Its data file is read as that pipeline read it (a .txt holds one sequence per line, lm/data.py), and its
dump path (our --output_dir) holds, next to our Hugging Face model dir, the files its users load:
- `checkpoint.pth`: the student's state dict (tensors only, for torch.load(weights_only=True)), the
  latest saved: refreshed at every checkpoint, and at the end the model the run saves (the last one; the
  best by held-out perplexity when the command asks for --do_eval); `config.json` with it;
- `model_epoch_<n>.pth`: the student after epoch n (0-based, as that pipeline numbered them);
- `parameters.json`: every resolved flag, flat, as its json.dump(vars(args));
- `logs/`: the TensorBoard events;
- `<tokenizer name>.data.npz` and `<tokenizer name>.token_counts.npy`: the tokenised data and the
  token counts (numpy files, not that pipeline's pickles: loading them runs no code), which a later run
  reuses through --preprocessed_data_file and --preprocessed_token_counts.

Every one of them is written atomically, and only once the run has claimed the dir (RunStart.claim): a
fresh start clears what an earlier run left at that moment, and a run refused before it must leave the
dir as it was.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch

from distill.io_utils import atomic_path, atomic_write_json, atomic_write_text
from distill.run_dir import RunStart, inside
from distill.run_record import flat_args
from lm.data import (
    Documents,
    cached_documents,
    document_key,
    read_cached_documents,
    save_documents,
    save_token_counts,
    token_counts,
    tokenize_records,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)
DUMP_FLAG = "--dump_path"
# How a run record spells the flags of a pipeline command, so that its command reruns in this mode
PIPELINE_SPELLING = {"output_dir": "dump_path", "overwrite_output_dir": "force"}
CHECKPOINT_FILE = "checkpoint.pth"
PARAMETERS_FILE = "parameters.json"
LOGS_DIR = "logs"


def is_pipeline_command(argv: list[str]) -> bool:
    """Whether the command names its output dir the pipeline's way (before the flags are translated)."""
    return any(arg.partition("=")[0] == DUMP_FLAG for arg in argv)


def dump_files(train_args, tokenizer_path: str | None, parsed: tuple) -> DumpFiles:
    """The pipeline's files for this run."""
    name = os.path.basename(os.path.normpath(tokenizer_path)) if tokenizer_path else "data"
    return DumpFiles(train_args.output_dir, name, parsed)


def epoch_file(epoch: int) -> str:
    return f"model_epoch_{epoch}.pth"


class DumpFiles:
    """The pipeline's files in `dump_path`; `name` (the tokenizer's model name, e.g. roberta-base) names
    the data files, as the pipeline named them after its teacher."""

    def __init__(self, dump_path: str, name: str, parsed: tuple):
        self.dir = dump_path
        self.data_file = os.path.join(dump_path, f"{name}.data.npz")
        self.counts_file = os.path.join(dump_path, f"{name}.token_counts.npy")
        self.parsed = parsed
        # What to write into the dump once the run has claimed it: (path, key, documents), (path, counts)
        self._documents: tuple[str, str, Documents] | None = None
        self._counts: tuple[str, np.ndarray] | None = None

    def documents(self, source_key: str, load_records, tokenizer, append_eos: bool, overwrite: bool,
                  explicit: str | None) -> Documents:
        """The training file's tokenised documents. From --preprocessed_data_file (`explicit`) as outside
        this mode; else from this dump's data file when it holds them (a rerun), else tokenised now: a
        data file of other data is no error here (the user did not name it), this run's replaces it."""
        key = document_key(source_key, tokenizer, append_eos)
        if explicit is not None:
            docs = cached_documents(source_key, load_records, tokenizer, append_eos, self.dir, explicit, overwrite)
        else:
            stored = None
            if os.path.isfile(self.data_file) and not overwrite:
                stored = read_cached_documents(self.data_file, None)
            if stored is not None and stored[0] == key:
                docs = stored[1]
                logger.info("tokenised data from %s", self.data_file)
            else:
                docs = tokenize_records(load_records(), tokenizer, append_eos)
                logger.info("tokenised %d sequences (%d tokens) for %s", len(docs), len(docs.ids), self.data_file)
        if self._in_dump(explicit):
            self._documents = (explicit or self.data_file, key, docs)
        return docs

    def counts(self, docs: Documents, vocab_size: int, explicit: str | None) -> np.ndarray:
        """Token counts: read from --preprocessed_token_counts (`explicit`, checked against the vocabulary)
        or counted; the dump's are written once claimed."""
        counts = token_counts(docs, vocab_size, explicit)
        if self._in_dump(explicit):
            self._counts = (explicit or self.counts_file, counts)
        return counts

    def _in_dump(self, explicit: str | None) -> bool:
        """Whether a data file is this dump's: its own, or one the user named inside it, which a fresh
        start's clean-up removes after it was read, so it is written again."""
        return explicit is None or inside(explicit, self.dir)

    def start(self, start: RunStart, train_args) -> RunStart:
        """`start` that also writes the pipeline's run files when it claims the dir. The TensorBoard events
        go to <dump_path>/logs unless --logging_dir says otherwise (set only now, after the run's record
        was made: its command, rerun into another dump, logs there)."""
        if train_args.logging_dir is None:
            train_args.logging_dir = os.path.join(self.dir, LOGS_DIR)
        return DumpStart(**{f.name: getattr(start, f.name) for f in fields(start)}, files=self)

    def write_run_files(self) -> None:
        """parameters.json, and the tokenised data and token counts this run made (main process)."""
        atomic_write_json(os.path.join(self.dir, PARAMETERS_FILE), flat_args(self.parsed))
        if self._documents is not None:
            save_documents(*self._documents)
        if self._counts is not None:
            save_token_counts(*self._counts)

    def on_save(self, epoch: int | None, model: PreTrainedModel) -> None:
        """The trainer's save hook (`SaveHook`, distill/plugins.py) at every checkpoint and epoch end:
        checkpoint.pth (with the config it loads into), and model_epoch_<epoch>.pth at the end of an epoch. A
        resumed run redoes the steps after its checkpoint and so rewrites a file of a step it redoes, with the
        same weights: none is lost or doubled."""
        if epoch is not None:
            save_state_dict(os.path.join(self.dir, epoch_file(epoch)), model)
        atomic_write_text(os.path.join(self.dir, "config.json"), model.config.to_json_string())
        save_state_dict(os.path.join(self.dir, CHECKPOINT_FILE), model)

    def save_final(self, model: PreTrainedModel) -> None:
        """checkpoint.pth = the model the run saved (with its config.json, by the trainer just before)."""
        save_state_dict(os.path.join(self.dir, CHECKPOINT_FILE), model)


@dataclass
class DumpStart(RunStart):
    """A RunStart that writes the pipeline's run files right after claiming the dir."""
    files: DumpFiles | None = None

    def claim(self) -> None:
        super().claim()
        self.files.write_run_files()


def save_state_dict(path: str, model: torch.nn.Module) -> None:
    """`model`'s state dict as plain CPU tensors (tied weights stay shared), written atomically. (Saved
    through a file object: torch names the archive's entries after a path, here a random temporary one,
    which would make the same weights differ byte for byte.)"""
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
