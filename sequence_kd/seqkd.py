"""SeqKD (Kim & Rush 2016) for LMs: the teacher answers every training prompt once, the student is
fine-tuned on those answers (optionally with token-level KD on top, which is what the released
MiniLLM "SeqKD" scripts ran). The answers are stored as jsonl and reused by the next run with the
same teacher, prompts and sampling settings."""
from __future__ import annotations

import hashlib
import json
import logging
import os

import torch

from distill.errors import UsageError
from distill.io_utils import atomic_write_text, weights_fingerprint
from distill.text_files import json_lines, read_text
from sequence_kd.sampling import sample

logger = logging.getLogger(__name__)


def responses_key(teacher_path: str, prompts: list[list[int]], sampling: dict, seed: int) -> str:
    settings = {k: v for k, v in sorted(sampling.items())}
    return hashlib.sha256(json.dumps([weights_fingerprint(teacher_path), prompts, settings, seed]).encode()
                          ).hexdigest()[:24]


def teacher_responses(teacher, tokenizer, records: list[dict], prompts: list[list[int]], *, path: str, key: str,
                      sampling: dict, seed: int, batch_size: int) -> list[dict]:
    """{'prompt', 'response', 'seqkd_key'} rows with the teacher's responses: read from `path` when it
    was made with `key`, else sampled (seeded) and written there atomically. The file is an ordinary
    prompt/response jsonl (usable as --train_file); 'seqkd_key' records what made it."""
    if os.path.exists(path):
        rows = [row for _, row in json_lines(read_text(path), path)]  # a damaged file: one line naming it
        if not all(isinstance(r, dict) for r in rows):
            raise UsageError(f"--seqkd_file {path} is not a file of teacher responses (its rows are not JSON "
                             "objects); delete it or pass another --seqkd_file")
        if rows and all(r.get("seqkd_key") == key for r in rows) and len(rows) == len(records):
            logger.info("SeqKD: %d teacher responses reused from %s", len(rows), path)
            return rows
        raise UsageError(f"--seqkd_file {path} holds responses of another teacher, prompt set or sampling setting; "
                         "delete it or pass another --seqkd_file")
    device = next(teacher.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    rows, eos = [], sampling.get("eos_id")
    for start in range(0, len(prompts), batch_size):
        out = sample(teacher, prompts[start:start + batch_size], generator=generator, **sampling)
        for record, ids in zip(records[start:start + batch_size], out.responses()):
            ids = ids[:-1] if ids and ids[-1] == eos else ids
            rows.append({"prompt": record["prompt"], "response": tokenizer.decode(ids, skip_special_tokens=True),
                         "seqkd_key": key})
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    logger.info("SeqKD: the teacher answered %d prompts; stored in %s", len(rows), path)
    return rows
