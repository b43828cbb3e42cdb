"""`checkpoint-<step>/` dirs: everything a resumed run needs to continue exactly.

A checkpoint is written to a temporary dir and renamed into place, so a run killed while saving
leaves the previous checkpoint intact and usable.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from distill.errors import UsageError
from distill.io_utils import atomic_write_json, replace_dir

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    # a teacher that learns (ProKT, LGTM) is selected on its own dev metric
    teacher_best_metric: float | None = None
    teacher_best_step: int | None = None
    log_history: list[dict] = field(default_factory=list)
    # Running sums of the step logs since the last logged step, checkpointed so that a resumed run
    # logs exactly what an uninterrupted one would.
    log_window: dict = field(default_factory=dict)
    train_loss_sum: float = 0.0  # Σ of the per-step total loss, for train_loss

    def save(self, path: str) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str) -> "TrainerState":
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))


def list_checkpoints(output_dir: str) -> list[str]:
    """checkpoint-<step> dirs of output_dir, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT_RE.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found)]


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, *, model, tokenizer, optimizer, scheduler, state: TrainerState,
                    teacher_state: dict, process_rng: dict, student_state: dict | None = None,
                    source_state: list | None = None) -> None:
    """Write a complete checkpoint atomically (temp dir, then rename). `model` is the plain model;
    `student_state`, when given, the training model's own state (e.g. MPO cores) for an exact resume;
    `source_state`, each process's batch-source state (MiniLLM's rollout buffer)."""
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "teacher": teacher_state, "rng": process_rng, "student": student_state,
                "source": source_state or []},
               os.path.join(tmp, "training_state.pt"))
    state.save(os.path.join(tmp, STATE_FILE))
    replace_dir(tmp, path)


def load_training_state(path: str) -> tuple[dict, TrainerState]:
    """The optimizer/scheduler/teacher/RNG state and the trainer state of a checkpoint."""
    state_file, training_file = os.path.join(path, STATE_FILE), os.path.join(path, "training_state.pt")
    if not (os.path.isfile(state_file) and os.path.isfile(training_file)):
        raise UsageError(f"{path} is not a complete checkpoint (needs {STATE_FILE} and training_state.pt); "
                         "resume from another checkpoint-<step> dir or start over with --overwrite_output_dir")
    try:
        training = torch.load(training_file, map_location="cpu", weights_only=False)
        return training, TrainerState.load(state_file)
    except Exception as e:
        raise UsageError(f"checkpoint {path} is corrupt ({type(e).__name__}); resume from an earlier "
                         "checkpoint-<step> dir or start over with --overwrite_output_dir") from None


def load_model_weights(model, path: str) -> None:
    """Load a saved `model.safetensors` into `model` (see load_state_checked)."""
    from safetensors.torch import load_file

    load_state_checked(model, load_file(path), path)


def load_state_checked(model, state: dict, where: str) -> None:
    """Load `state` into `model`, strictly: every key must match, except keys that save_pretrained
    dropped because they are tied to (share storage with) a saved one."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded = {current[k].data_ptr() for k in state if k in current}
    untied_missing = [k for k in missing if current[k].data_ptr() not in loaded]
    if unexpected or untied_missing:
        raise UsageError(f"{where} does not fit the model (missing {untied_missing[:3]}, unexpected "
                         f"{unexpected[:3]}); resume with the same model flags, or start over with "
                         "--overwrite_output_dir")


def rotate_checkpoints(output_dir: str, limit: int | None) -> None:
    """Keep the newest `limit` checkpoints."""
    if not limit:
        return
    for path in list_checkpoints(output_dir)[:-limit]:
        shutil.rmtree(path, ignore_errors=True)


def resolve_resume(output_dir: str, do_train: bool, overwrite_output_dir: bool,
                   resume_from_checkpoint: str | None) -> str | None:
    """The HF run_glue rule: an explicit checkpoint wins; otherwise a run resumes from the last
    checkpoint in output_dir; a non-empty output_dir without checkpoints needs --overwrite_output_dir."""
    if resume_from_checkpoint:
        if not os.path.isdir(resume_from_checkpoint):
            raise UsageError(f"--resume_from_checkpoint {resume_from_checkpoint} is not a directory; pass a "
                             "checkpoint-<step> dir")
        return resume_from_checkpoint
    if not do_train or overwrite_output_dir or not os.path.isdir(output_dir):
        return None
    checkpoints = list_checkpoints(output_dir)
    if checkpoints:
        return checkpoints[-1]
    if os.listdir(output_dir):
        raise UsageError(f"output directory {output_dir} is not empty and holds no checkpoint; pass "
                         "--overwrite_output_dir to train into it, or choose another --output_dir")
    return None
