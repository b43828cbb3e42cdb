"""Teacher-output caching (`--cache_teacher_outputs`): a frozen teacher runs over the training set once.

Its outputs (logits, and the last hidden state when a loss needs it) are stored on disk keyed by
example id (the row of the tokenised training set) and looked up per micro-batch in every later epoch
and every later run. The cache's name is a hash of everything the outputs depend on: the teacher's
weights, class and config, the teacher's input columns of every training example (so a changed data
file, tokenizer, max_seq_length or sample count makes a new cache), the forward arguments, the mixed
precision and the top-k setting. A stale cache is therefore never read; it is simply not found.

What is stored, per example:
- per-example outputs (a classifier's logits (C,)): the row as the teacher computed it;
- per-token outputs (span logits (T,), LM logits (T, V), hidden states (T, H)): the example's own
  tokens only. A batch pads them with 0: every loss here masks padding (it reads only real or
  labelled positions), so the student sees the same targets as with the live teacher;
- LM logits with `--teacher_cache_top_k k`: at each position, the k most likely tokens of the teacher's
  distribution at the KD temperature τ, p^τ = softmax(t/τ), and their log-probabilities. The rule for
  the rest: the remaining mass r = 1 − Σ_top-k p^τ spreads uniformly over the other V − k tokens, so the
  reconstruction p̂ is a distribution whose top k equal the teacher's exactly. The loss receives
  τ·log p̂ as the teacher's logits, so softmax(·/τ) inside the loss gives back p̂. k = V is exact.
  The chunked losses read those dense (B, T, V) logits (built per micro-batch, when read); the fused LM
  loss reads the stored ids and log-probabilities and builds each chunk's rows by the same rule.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file, save_file

from distill import io_utils
from distill.batching import TokenizedDataset, eval_batches
from distill.errors import UsageError
from distill.teacher import FrozenTeacher
from losses.fused_vocab import topk_teacher_logits

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
SPAN_OUTPUTS = ("start_logits", "end_logits")  # per-token although 2-D: (B, T)


def is_per_token(name: str, value: torch.Tensor) -> bool:
    """(B, T, ...) outputs: LM logits, hidden states, span logits; a classifier's (B, C) logits are not."""
    return name in SPAN_OUTPUTS or value.dim() >= 3


TOPK_IDS, TOPK_LOGPROBS = "logits.topk_ids", "logits.topk_logprobs"  # a top-k cache's LM logits


class CachedOutputs(dict):
    """The teacher's outputs rebuilt from the cache; read like a model output (`out.logits`).

    A top-k cache's rows stay as stored: (B, T, k) ids and log-probabilities at τ, `logits_topk`, which the
    fused LM loss reads as they are (lm/objective.py). The dense (B, T, V) `logits` they stand for are only
    built when something reads them (the chunked losses), then kept."""

    densify = None  # (log-probs, ids) -> (B, T, V) logits: set by the CachedTeacher of a top-k cache

    @property
    def logits_topk(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(ids (B, T, k), log-probabilities at τ (B, T, k)) of a top-k cache; None otherwise."""
        return (self[TOPK_IDS], self[TOPK_LOGPROBS]) if TOPK_IDS in self else None

    def __missing__(self, key):
        if key == "logits" and TOPK_IDS in self:
            self[key] = self.densify(self[TOPK_LOGPROBS], self[TOPK_IDS])  # (B, T, V)
            return self[key]
        raise KeyError(key)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class CachedTeacher(FrozenTeacher):
    """A frozen teacher whose outputs on the training set come from the on-disk cache.

    `top_k` (LM logits only) keeps the k most likely tokens at `temperature` (see the module docstring);
    `vocab_size` is the tokenizer's vocabulary (LM logits beyond it are padding and are not stored).
    """

    def __init__(self, model, accelerator, cache_root: str | None = None, top_k: int | None = None,
                 temperature: float = 1.0, vocab_size: int | None = None):
        super().__init__(model, accelerator)
        self.cache_root = cache_root or io_utils.cache_root("teacher_outputs")
        self.top_k, self.temperature, self.vocab_size = top_k, temperature, vocab_size
        self.tables: dict[str, torch.Tensor] = {}
        self.per_token: set[str] = set()
        self.offsets, self.spans = None, []
        self.path = None

    # ------------------------------------------------------------------ building or loading
    def prepare(self, setup) -> None:
        if setup.train_dataset is None:
            raise UsageError("--cache_teacher_outputs needs a fixed training set; this method makes new training "
                             "sequences as it trains (MiniLLM rollouts): drop --cache_teacher_outputs")
        dataset = setup.train_dataset
        self.forward_kwargs = dict(setup.forward_kwargs)
        key = self.cache_key(dataset)
        self.path = os.path.join(self.cache_root, key)
        if os.path.isfile(os.path.join(self.path, "meta.json")):
            logger.info("teacher outputs: reusing the cache %s", self.path)
        else:
            self._build(setup, dataset)
        self._load(dataset)

    def cache_key(self, dataset: TokenizedDataset) -> str:
        h = hashlib.sha256()
        config = {k: v for k, v in self.model.config.to_dict().items()
                  if not k.startswith("_") and k != "transformers_version"}
        h.update(json.dumps({"format": FORMAT_VERSION, "class": type(self.model).__name__, "config": config,
                             "forward": sorted(self.forward_kwargs.items()), "inputs": sorted(self.input_names),
                             "precision": self.accelerator.mixed_precision, "top_k": self.top_k,
                             "temperature": self.temperature if self.top_k else None, "vocab": self.vocab_size},
                            sort_keys=True, default=str).encode())
        for name, tensor in self.model.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        for name in sorted((set(self.input_names) - {"labels"}) & set(dataset.columns)):  # what the teacher reads
            h.update(name.encode())
            h.update(np.asarray(dataset.lengths, dtype=np.int64).tobytes())
            h.update(np.concatenate([np.asarray(x, dtype=np.int64) for x in dataset.columns[name]]).tobytes())
        return h.hexdigest()[:32]

    def _build(self, setup, dataset: TokenizedDataset) -> None:
        """Every process computes its share (the eval split: each example once) into its own part file;
        the main process then marks the cache complete (meta.json) and moves it into place atomically."""
        acc = self.accelerator
        token = [io_utils.partial_dir_name(self.path)]
        if acc.num_processes > 1:
            broadcast_object_list(token)  # one partial dir for the run, named by the main process
        partial = token[0]
        if acc.is_main_process:
            os.makedirs(partial)
        acc.wait_for_everyone()
        logger.info("teacher outputs: computing %d examples into %s", len(dataset), self.path)
        ids, parts, per_token = [], {}, set()
        for idx in eval_batches(dataset.lengths, setup.args.per_device_eval_batch_size, acc.num_processes,
                                acc.process_index):
            batch = setup.to_device(setup.collator([dataset[i] for i in idx]))
            out = super().outputs(batch, **self.forward_kwargs)
            for name, value in self._storable(out).items():
                rows = parts.setdefault(name, [])
                if is_per_token(name, value):  # this example's own tokens only
                    per_token.add(name)
                    rows.extend(value[b, :dataset.lengths[i]].cpu() for b, i in enumerate(idx))
                else:
                    rows.extend(value.cpu())
            ids.extend(idx)
        # per-token rows (L_i, ...) are concatenated, per-example rows (...) stacked
        tensors = {name: (torch.cat if name in per_token else torch.stack)(rows).contiguous()
                   for name, rows in parts.items()}
        tensors["example_id"] = torch.tensor(ids, dtype=torch.int64)
        what = f"the teacher-output cache {self.path}"
        with io_utils.writing(what):
            save_file(tensors, os.path.join(partial, f"part-{acc.process_index}.safetensors"))
        acc.wait_for_everyone()
        if acc.is_main_process:  # meta.json marks the parts complete; then the dir goes into place as a whole
            io_utils.atomic_write_json(os.path.join(partial, "meta.json"), {
                "format": FORMAT_VERSION, "examples": len(dataset), "parts": acc.num_processes,
                "per_token": sorted(per_token), "top_k": self.top_k, "temperature": self.temperature,
                "teacher": type(self.model).__name__})
            if not io_utils.publish_dir(partial, self.path, what):
                logger.info("teacher outputs: another run finished the same cache first; using it")
        acc.wait_for_everyone()

    def _storable(self, out) -> dict[str, torch.Tensor]:
        """The outputs to store: hidden states as the last layer; LM logits as top-k when asked."""
        stored = {}
        for name, value in out.items():
            if name == "hidden_states":
                stored[name] = value[-1]
            elif name == "logits" and self.top_k is not None:
                logp = torch.log_softmax(value[..., :self.vocab_size].float() / self.temperature, dim=-1)
                top = logp.topk(self.top_k, dim=-1)  # (B, T, k) each
                stored[TOPK_LOGPROBS], stored[TOPK_IDS] = top.values, top.indices.int()
            elif name != "loss":
                stored[name] = value
        return stored

    def _load(self, dataset: TokenizedDataset) -> None:
        try:
            self._read_tables(dataset)
        except Exception as e:  # a cache damaged on disk (truncated part, edited meta.json): never train on it
            raise UsageError(f"the teacher-output cache {self.path} is damaged ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:120]}); delete that dir (the next run rebuilds "
                             "it) or drop --cache_teacher_outputs") from None
        logger.info("teacher outputs: %s (%.1f MB in memory)", ", ".join(sorted(self.tables)),
                    sum(t.numel() * t.element_size() for t in self.tables.values()) / 2**20)

    def _read_tables(self, dataset: TokenizedDataset) -> None:
        with open(os.path.join(self.path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        lengths = torch.tensor(dataset.lengths, dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        bounds = self.offsets.tolist()
        self.spans = list(zip(bounds[:-1], bounds[1:]))  # example i's token rows, as ints for the per-step lookup
        self.per_token = set(meta["per_token"])
        parts = [load_file(os.path.join(self.path, f"part-{r}.safetensors")) for r in range(meta["parts"])]
        for name in parts[0]:
            if name == "example_id":
                continue
            first = parts[0][name]
            rows = int(self.offsets[-1]) if name in self.per_token else len(dataset)
            table = torch.empty((rows, *first.shape[1:]), dtype=first.dtype)
            for part in parts:
                ids = part["example_id"]
                if name in self.per_token:  # scatter each example's token rows to its own offset
                    starts = torch.cat([torch.zeros(1, dtype=torch.int64), lengths[ids].cumsum(0)])
                    for j, i in enumerate(ids.tolist()):
                        table[self.offsets[i]:self.offsets[i + 1]] = part[name][starts[j]:starts[j + 1]]
                else:
                    table[ids] = part[name]
            self.tables[name] = table
        stored = sorted(i for part in parts for i in part["example_id"].tolist())
        if stored != list(range(len(dataset))):
            raise ValueError(f"it holds {len(stored)} examples' outputs, not each of the {len(dataset)} once")

    # ------------------------------------------------------------------ per micro-batch
    def outputs(self, batch: dict[str, torch.Tensor], **forward_kwargs):
        """The training batch's rows of the cache (the trainer calls this for training batches only,
        after `prepare`); `forward_kwargs` were fixed when the cache was made."""
        ids = batch["example_id"].cpu()
        width = batch["input_ids"].shape[1]
        device = self.accelerator.device
        out = CachedOutputs()
        for name, table in self.tables.items():
            if name in self.per_token:
                out[name] = self._padded_rows(table, ids, width).to(device, non_blocking=True)  # (B, T, ...)
            else:
                out[name] = table[ids].to(device, non_blocking=True)  # (B, ...)
        if TOPK_IDS in out:  # (dense logits only when read: `CachedOutputs`)
            out.densify = self._dense_logits
        if "hidden_states" in out:
            out["hidden_states"] = (out["hidden_states"],)
        return out

    def _padded_rows(self, table: torch.Tensor, ids: torch.Tensor, width: int) -> torch.Tensor:
        rows = torch.zeros((len(ids), width, *table.shape[1:]), dtype=table.dtype)
        for b, i in enumerate(ids.tolist()):
            start, stop = self.spans[i]
            rows[b, :stop - start] = table[start:stop]
        return rows

    def _dense_logits(self, top_logp: torch.Tensor, top_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits z = τ·log p̂, with p̂ = the top k kept and the rest of the mass spread evenly (the
        fused loss builds its chunks' rows with the same function)."""
        return topk_teacher_logits(top_logp, top_ids, self.vocab_size, self.temperature)


def make_frozen_teacher(model, accelerator, args, *, temperature: float = 1.0,
                        vocab_size: int | None = None) -> FrozenTeacher:
    """The frozen-teacher strategy the flags ask for (checked by `check_cache_request`): cached
    (`--cache_teacher_outputs`) or live. `vocab_size`: LM distillation's vocabulary, for top-k."""
    if not args.cache_teacher_outputs:
        return FrozenTeacher(model, accelerator)
    top_k = args.teacher_cache_top_k
    if top_k is not None and vocab_size is not None and top_k > vocab_size:
        raise UsageError(f"--teacher_cache_top_k {top_k} is larger than the vocabulary ({vocab_size} tokens); give at "
                         f"most {vocab_size} (that many keeps the teacher's distribution exactly)")
    return CachedTeacher(model, accelerator, args.teacher_cache_dir, args.teacher_cache_top_k, temperature,
                         vocab_size)


def check_cache_request(args, *, has_teacher: bool, teacher_learns: bool = False, lm: bool = False,
                        refusal: str | None = None) -> None:
    """Refuse `--cache_teacher_outputs` where cached outputs could not equal the live teacher's, before
    anything is loaded (`lm`: the LM distillation script, the only one with top-k)."""
    if not args.cache_teacher_outputs:
        return
    if args.teacher_cache_top_k is not None and not lm:
        raise UsageError("--teacher_cache_top_k keeps the top tokens of an LM teacher's distribution; it applies to "
                         "train_lm_distill.py only: drop it")
    if not has_teacher:
        raise UsageError("--cache_teacher_outputs caches a teacher's outputs, but no teacher is used: pass "
                         "--teacher_model or drop --cache_teacher_outputs")
    if teacher_learns:
        raise UsageError("--cache_teacher_outputs needs a frozen teacher; --train_teacher changes its outputs every "
                         "step: drop one of the two")
    if refusal:
        raise UsageError(f"--cache_teacher_outputs: {refusal}")
